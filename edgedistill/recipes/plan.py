"""The plan of a run: the config each stage gets, derived from a `RunConfig` (`plan(cfg)`).

The run sets each stage's teacher, data and folder (`OUT/teacher`, `OUT/distill`, ...); the
recipe sets the rest. `edgedistill run` prints nothing of this; `plan(cfg)` is how a test or a
reader sees what every stage will be given before anything runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.config import ConfigError
from edgedistill.recipes.benchmark import BenchmarkStage, StreamStage
from edgedistill.recipes.distill_config import DistillConfig
from edgedistill.recipes.export import ExportStage
from edgedistill.recipes.finetune_config import FinetuneConfig
from edgedistill.recipes.run_config import TRAIN_TEACHER, RunConfig, TeacherTraining


@dataclass
class TeacherPlan:
    """How the run's teacher is made. `init`: the small teacher trained here from random weights
    (None for a pretrained one); `cycles`: every fine-tuning of it in order, the last (`finetune`)
    giving the teacher rows; `names`: their curves in the training plot."""

    init: TeacherTraining | None
    cycles: list[FinetuneConfig]
    names: list[str]
    backbone: str  # what the student distils from

    @property
    def finetune(self) -> FinetuneConfig:
        return self.cycles[-1]

    @property
    def model(self) -> str:
        """The fine-tuned teacher (its `MultiTaskModel` folder): the teacher rows."""
        return str(Path(self.finetune.out) / "model")


@dataclass
class RunPlan:
    """The config of every stage of one run; `qat` and `baseline` are None where the run has none."""

    teacher: TeacherPlan
    distill: DistillConfig
    finetune: FinetuneConfig
    qat: FinetuneConfig | None
    baseline: FinetuneConfig | None
    export: ExportStage
    benchmark: BenchmarkStage
    stream: StreamStage = field(default_factory=StreamStage)


def plan(cfg: RunConfig) -> RunPlan:
    """The config each stage of the run `cfg` gets."""
    out = Path(cfg.out)
    if cfg.stream.keywords and cfg.stream.detector and not cfg.finetune.detect_keywords:
        # Every row (teacher, students, baseline) trained as a detector of the stream's keywords.
        cfg = dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune,
                                                                    detect_keywords=list(cfg.stream.keywords)))
    teacher = _teacher_plan(cfg)
    distill = dataclasses.replace(cfg.distill, teacher=teacher.backbone, data=cfg.distill_data or cfg.data,
                                  out=str(out / "distill"))
    has_cnn = teacher_has_cnn(cfg.teacher)
    if cfg.distill.cnn_hint_weight is None and (hint := distill.hint_weight(has_cnn)) > 0:
        # Written in where it is on, so the stage's config says so; left null where it resolves to 0
        # (a stage hash that predates the field stays the same).
        distill = dataclasses.replace(distill, cnn_hint_weight=hint)
    finetune = dataclasses.replace(cfg.finetune, model=str(out / "distill"), data=cfg.data, out=str(out / "finetune"))
    if cfg.finetune.freeze_cnn is None and not (cfg.distill.student.cnn_from_teacher and has_cnn):
        # A CNN that is not the teacher's had only the distillation's steps: frozen, it caps the
        # student (benchmarks/results/arabic_speech_commands.md measures it).
        finetune = dataclasses.replace(finetune, freeze_cnn=False)
    if cfg.soft_targets:  # the students hear the fine-tuned teacher's posteriors too
        finetune = dataclasses.replace(finetune, kd_teacher=teacher.model)
    # The baseline's CNN is random: frozen (finetune.freeze_cnn) it could learn nothing; it learns
    # from the labels alone (what distillation buys).
    baseline = dataclasses.replace(finetune, model=str(out / "baseline" / "init"), out=str(out / "baseline" / "ft"),
                                   freeze_cnn=False, kd_teacher=None)
    qat = dataclasses.replace(finetune, qat=True, out=str(out / "qat" / "ft"))
    return RunPlan(teacher, distill, finetune, qat if cfg.qat else None, baseline if cfg.baseline else None,
                   cfg.export, cfg.benchmark, cfg.stream)


def _teacher_plan(cfg: RunConfig) -> TeacherPlan:
    out = Path(cfg.out)
    if cfg.teacher != TRAIN_TEACHER:
        tt, cycles, backbone, names = None, [], cfg.teacher, ["teacher"]
    else:
        tt = cfg.teacher_training
        # From random weights the CNN must learn too, whatever the student's fine-tuning does with
        # it. An upper bound: never fewer steps than the student gets, then early stopping.
        first = dataclasses.replace(cfg.finetune, model=str(out / "teacher" / "init"), data=tt.data or cfg.data,
                                    out=str(out / "teacher" / "ft"), steps=tt.steps, eval_every=tt.eval_every,
                                    patience=tt.patience, val_split=tt.val_split,
                                    min_steps=min(tt.steps, cfg.distill.steps + cfg.finetune.steps),
                                    seed=tt.seed, freeze_cnn=False, freeze_backbone=False)
        # Cycles: cycle k trains in teacher/cycleK, the last in teacher/ft (where one cycle trains),
        # each from the backbone before it with fresh heads, validated once at its end.
        # With its own data the teacher is a stand-in pretrained model: trained there (in
        # teacher/pretrain), then handled as a pretrained teacher is (below).
        folders = [f"cycle{k}" for k in range(1, tt.cycles)] + ["pretrain" if tt.data else "ft"]
        cycles = [dataclasses.replace(first, out=str(out / "teacher" / folders[0]))]
        later = tt.cycle_steps or cfg.finetune.steps
        for k, folder in enumerate(folders[1:], 2):
            cycles.append(dataclasses.replace(
                first, model=str(Path(cycles[-1].out) / "model" / "backbone"), steps=later, eval_every=later,
                patience=0, min_steps=0, seed=tt.seed + k - 1, out=str(out / "teacher" / folder)))
        backbone = str(Path(cycles[-1].out) / "model" / "backbone")
        names = [f"teacher cycle {k}" for k in range(1, tt.cycles + 1)] if tt.cycles > 1 else ["teacher"]
        if tt.data:
            names = [n.replace("teacher", "teacher pretraining") for n in names] + ["teacher fine-tuning"]
    if tt is None or tt.data:
        # A pretrained teacher (or the stand-in): fine-tuned on the run's data with the student's
        # recipe, for the steps the student gets on that data (an upper bound): fine-tuning, plus
        # distillation where the student distils on it; selected on val every eval_every.
        on_data = cfg.finetune.steps + (cfg.distill.steps if cfg.distill_data in (None, cfg.data) else 0)
        cycles.append(dataclasses.replace(cfg.finetune, model=backbone, data=cfg.data, out=str(out / "teacher" / "ft"),
                                          steps=on_data, eval_every=tt.eval_every if tt else cfg.finetune.eval_every))
    return TeacherPlan(tt, cycles, names, backbone)


def teacher_has_cnn(teacher: str) -> bool:
    """Whether a run's teacher has a waveform CNN a student can copy: False for a Whisper teacher
    (its convolutions read log-mel frames), True for the others and for one not found yet (its
    own stage reports that)."""
    from edgedistill.models.teacher import EMBEDDED_TEACHER, TeacherNotFoundError, find_speech_config

    if teacher in (TRAIN_TEACHER, EMBEDDED_TEACHER) or teacher.startswith("builtin:"):
        return True
    try:
        return find_speech_config(teacher)[2].model_type != "whisper"
    except (TeacherNotFoundError, ConfigError, OSError, ValueError):
        return True
