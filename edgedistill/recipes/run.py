"""Recipe: one command from a teacher to a benchmarked edge model.

    edgedistill run RECIPE.yaml [key=value ...]      edgedistill demo

Stages, each in its own folder of the run: teacher -> distill -> finetune -> export (+
quantize) [-> qat: quantization-aware fine-tuning, int8] [-> baseline] -> benchmark. With `teacher: train` the teacher is a small HuBERT-shaped model
trained here from random weights (nothing can be downloaded offline); with a pretrained
teacher, the teacher stage fine-tunes it with the student's heads and recipe (the report's
upper bound). Finished stages with the same config are skipped, interrupted ones resume
(`edgedistill.training.stages`).

A recipe says only what differs from the stage defaults (the config dataclasses). The run sets
each stage's teacher, data and output folder itself, so a recipe that sets them is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import edgedistill
from edgedistill.config import ConfigError, non_default, shipped_recipe, to_dict
from edgedistill.recipes.benchmark import BenchmarkStage, StreamStage
from edgedistill.recipes.distill_config import DistillConfig
from edgedistill.recipes.export import ExportStage
from edgedistill.recipes.finetune import HOLDOUT, FinetuneConfig

log = logging.getLogger(__name__)
TRAIN_TEACHER = "train"  # `teacher:` value that trains a small teacher in the run


@dataclass
class TeacherTraining:
    """The teacher trained here when `teacher: train` (random init, joint KWS + SV), trained as
    an upper bound: at least as many steps as the student gets (distillation + fine-tuning),
    then until its validation score stops improving, at most `steps`."""

    layers: int = field(default=8, metadata={"help": "transformer layers"})
    hidden: int = field(default=128, metadata={"help": "width (heads = width / 64)"})
    cnn: int = field(default=64, metadata={"help": "last CNN width (thin CNN: c/4, c/2 x4, c, c)"})
    steps: int = field(default=2000, metadata={"help": "the most joint KWS + SV training steps"})
    eval_every: int = field(default=100, metadata={"help": "steps between validations"})
    patience: int = field(default=3, metadata={
        "help": "stop after this many validations without improvement (once past the student's step count)"})
    seed: int = field(default=0, metadata={
        "help": "seed of the teacher's init and training (its own: student seeds share one teacher)"})
    val_split: str = field(default=HOLDOUT, metadata={
        "help": f"validation split of the early stopping: '{HOLDOUT}' (a tenth of the train clips, never the "
                "benchmark speakers) or a split name"})
    cycles: int = field(default=1, metadata={
        "help": "training cycles: each after the first fine-tunes the previous cycle's backbone again with fresh "
                "heads and a restarted learning-rate schedule (warm restarts), the second training a student gets "
                "on top of its teacher (the born-again effect), given to the teacher"})
    cycle_steps: int | None = field(default=None, metadata={
        "help": "steps of each cycle after the first (null: the student's finetune.steps)"})
    data: str | None = field(default=None, metadata={
        "help": "the teacher's own labelled corpus, standing in for a pretrained model's larger one: the teacher "
                "trains there (any labels), the student distils from that model, and the teacher row is it fine-tuned "
                "on `data` with fresh heads and the student's recipe, as with a pretrained teacher, for the steps the "
                "student gets on `data` (distill + finetune) (null: train on `data`)"})

    def __post_init__(self):
        heads = max(1, self.hidden // 64)
        if self.layers < 1 or self.steps < 1 or self.cnn < 4 or self.eval_every < 1 or self.patience < 0:
            raise ValueError("teacher_training: layers, steps and eval_every must be >= 1, cnn >= 4, patience >= 0")
        if self.cycles < 1 or (self.cycle_steps is not None and self.cycle_steps < 1):
            raise ValueError(f"teacher_training: cycles={self.cycles}, cycle_steps={self.cycle_steps}: cycles must be "
                             ">= 1 and cycle_steps >= 1 (or null: the student's finetune.steps)")
        if self.hidden < 16 or self.hidden % 16 or self.hidden % heads:
            raise ValueError(f"teacher_training.hidden={self.hidden}: use a multiple of 16 (the positional "
                             f"convolution has 16 groups) divisible by its {heads} attention head(s), e.g. 128 or 256")


# Stage keys the run sets itself, and what a recipe sets instead.
RUN_SETS = {"distill.teacher": "teacher", "distill.data": "distill_data (or data)", "distill.out": "out",
            "finetune.model": "teacher (the run fine-tunes its own distilled student)",
            "finetune.data": "data", "finetune.out": "out"}


@dataclass
class RunConfig:
    """The whole pipeline. Stage defaults are the stage configs' own; `configs/demo.yaml` is the demo."""

    out: str = field(default="runs/run", metadata={"help": "run folder"})
    data: str = field(default="embedded", metadata={"help": "labelled data for every stage (manifest, folder, embedded)"})
    distill_data: str | None = field(default=None, metadata={
        "help": "unlabelled audio for distillation (e.g. LibriSpeech); null: `data`"})
    teacher: str = field(default=TRAIN_TEACHER, metadata={
        "help": f"'{TRAIN_TEACHER}' (train a small teacher here first), an HF id / folder of a pretrained one, or "
                "'embedded' (a small HuBERT built once into the cache, trained on other synthetic speakers)"})
    teacher_training: TeacherTraining = field(default_factory=TeacherTraining, metadata={
        "help": f"the teacher trained here (teacher: {TRAIN_TEACHER})"})
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "distillation stage"})
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig, metadata={"help": "fine-tuning stage"})
    export: ExportStage = field(default_factory=ExportStage, metadata={"help": "export stage"})
    benchmark: BenchmarkStage = field(default_factory=BenchmarkStage, metadata={"help": "benchmark stage"})
    stream: StreamStage = field(default_factory=StreamStage, metadata={
        "help": "streaming benchmark (FRR at fixed false alarms per hour, per-hop cost)"})
    qat: bool = field(default=False, metadata={
        "help": "also fine-tune the distilled student with quantization-aware training (`finetune.qat`, the "
                "fine-tuning's settings) and export it in int8: the 'student qat-int8' row, next to "
                "post-training int8"})
    baseline: bool = field(default=False, metadata={
        "help": "also fine-tune a student of the same shape from random weights (no distillation) "
                "and benchmark it as 'scratch fp32': what distillation buys"})

    def __post_init__(self):
        for key, instead in RUN_SETS.items():
            stage, name = key.split(".")
            default = next(f.default for f in dataclasses.fields(getattr(self, stage)) if f.name == name)
            if getattr(getattr(self, stage), name) != default:
                raise ValueError(f"{key} is set by the run (each stage reads the one before it): remove it from "
                                 f"the recipe and set {instead} instead")


def recipe_path(name: str | Path) -> Path:
    """A recipe file: a path, or the name of a shipped recipe (`demo`, `arabic_speech_commands`,
    `hubert_base`), found in the installed package (`edgedistill/configs/`) or the checkout's `configs/`."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(f"recipe '{p}' does not exist")
        return p
    found = shipped_recipe(str(name))
    if found is not None:
        return found
    raise FileNotFoundError(f"recipe '{name}' is neither a file nor a shipped recipe (demo, arabic_speech_commands, "
                            "hubert_base)")


def plan(cfg: RunConfig) -> dict:
    """The config each stage of the run gets: {"teacher": {"init": TeacherTraining or None,
    "finetune": its last FinetuneConfig, "cycles": every FinetuneConfig of the teacher in order,
    "names": their names in the training plot}, "distill", "finetune", "qat", "baseline", "export",
    "benchmark", "stream"}."""
    out = Path(cfg.out)
    if cfg.teacher == TRAIN_TEACHER:
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
        teacher_backbone = str(Path(cycles[-1].out) / "model" / "backbone")
        names = [f"teacher cycle {k}" for k in range(1, tt.cycles + 1)] if tt.cycles > 1 else ["teacher"]
        if tt.data:
            names = [n.replace("teacher", "teacher pretraining") for n in names] + ["teacher fine-tuning"]
    else:
        tt, cycles, teacher_backbone, names = None, [], cfg.teacher, ["teacher"]
    if tt is None or tt.data:
        # A pretrained teacher (or the stand-in): fine-tuned on the run's data with the student's
        # recipe, for the steps the student gets on that data (an upper bound): fine-tuning, plus
        # distillation where the student distils on it; selected on val every eval_every.
        on_data = cfg.finetune.steps + (cfg.distill.steps if cfg.distill_data in (None, cfg.data) else 0)
        ft = dataclasses.replace(cfg.finetune, model=teacher_backbone, data=cfg.data, out=str(out / "teacher" / "ft"),
                                 steps=on_data, eval_every=tt.eval_every if tt else cfg.finetune.eval_every)
        cycles.append(ft)
    teacher_ft = cycles[-1]
    distill = dataclasses.replace(cfg.distill, teacher=teacher_backbone, data=cfg.distill_data or cfg.data,
                                  out=str(out / "distill"))
    has_cnn = teacher_has_cnn(cfg.teacher)
    if cfg.distill.cnn_hint_weight is None and (hint := distill.hint_weight(has_cnn)) > 0:
        # Written in where it is on, so the stage's config says so; left null where it resolves to 0
        # (a stage hash that predates the field stays the same).
        distill = dataclasses.replace(distill, cnn_hint_weight=hint)
    finetune = dataclasses.replace(cfg.finetune, model=str(out / "distill"), data=cfg.data, out=str(out / "finetune"))
    if cfg.finetune.freeze_cnn is None and not (cfg.distill.student.cnn_from_teacher and has_cnn):
        # A CNN that is not the teacher's had only the distillation's steps: frozen, it caps the
        # student (Arabic edge student: EER 27.4% frozen, 20.1% trained).
        finetune = dataclasses.replace(finetune, freeze_cnn=False)
    # The baseline's CNN is random: frozen (finetune.freeze_cnn) it could learn nothing.
    baseline = dataclasses.replace(finetune, model=str(out / "baseline" / "init"), out=str(out / "baseline" / "ft"),
                                   freeze_cnn=False)
    qat = dataclasses.replace(finetune, qat=True, out=str(out / "qat" / "ft"))
    return {"teacher": {"init": tt, "finetune": teacher_ft, "cycles": cycles, "names": names}, "distill": distill,
            "finetune": finetune, "qat": qat if cfg.qat else None, "baseline": baseline if cfg.baseline else None,
            "export": cfg.export, "benchmark": cfg.benchmark, "stream": cfg.stream}


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


def train_teacher(teacher: dict) -> dict:
    """Trains (or resumes) the teacher of a plan (`plan(cfg)["teacher"]`): a seeded random
    init where it is trained here, then each of its fine-tunings in turn; returns the last's summary."""
    from edgedistill.models.builders import save_small_hubert
    from edgedistill.recipes.finetune import finetune

    if (tt := teacher["init"]) is not None:
        save_small_hubert(teacher["cycles"][0].model, tt.layers, tt.hidden, tt.cnn, seed=tt.seed)
    for c in teacher["cycles"]:
        summary = finetune(c, resume=True)
    return summary


def run(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Runs (or resumes) the pipeline; returns the report dict (also in OUT/report.json).

    With `overwrite`, stages whose config changed are deleted and redone; without it such a
    run folder (e.g. another recipe's finished run) is refused before anything is deleted.
    """
    from edgedistill.deploy.onnx import export_onnx
    from edgedistill.models.multitask import MultiTaskModel
    from edgedistill.models.teacher import EMBEDDED_TEACHER, embedded_teacher_provenance, embedded_teacher_summary
    from edgedistill.models.student import count_parameters, save_scratch_student
    from edgedistill.recipes.benchmark import benchmark
    from edgedistill.recipes.distill import distill
    from edgedistill.recipes.embedded_teacher import ensure_embedded_teacher
    from edgedistill.deploy.kit import write_device_kit
    from edgedistill.recipes.export import budget_notes, export_variants
    from edgedistill.recipes.finetune import finetune
    from edgedistill.reporting.card import model_card
    from edgedistill.training.stages import run_stage

    _check_stream_keywords(cfg)
    if cfg.teacher != TRAIN_TEACHER and cfg.teacher_training != TeacherTraining():
        log.warning("teacher_training is not used: the teacher is the pretrained '%s' (it applies only with "
                    "teacher: %s)", cfg.teacher, TRAIN_TEACHER)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    p = plan(cfg)
    teacher_ft = p["teacher"]["finetune"]
    ensure_embedded_teacher(cfg.teacher)  # after every check: bad settings fail before its first build

    def teacher_stage():
        return {"summary": train_teacher(p["teacher"]), "model": str(Path(teacher_ft.out) / "model")}

    # The teacher's own fine-tuning config (not the student's: student seeds share one teacher),
    # without its folders (a finished teacher stage copied into another run is reused).
    # Specs hold the fields that differ from the defaults: a field added later with a default
    # does not redo finished stages.
    teacher_spec = {k: v for k, v in non_default(teacher_ft).items() if k not in ("model", "out")}
    if cfg.teacher == TRAIN_TEACHER:
        spec = {"data": cfg.data, "train": non_default(cfg.teacher_training), "finetune": teacher_spec}
        upstream = spec
    else:
        # The embedded teacher by its weights too: another release's is another teacher.
        upstream = {"teacher": cfg.teacher, **({"sha256": embedded_teacher_provenance()["sha256"]}
                                               if cfg.teacher == EMBEDDED_TEACHER else {})}
        spec = {**upstream, "data": cfg.data, "finetune": teacher_spec}
    run_stage("teacher", out / "teacher", spec, teacher_stage, overwrite)
    teacher_model = str(Path(teacher_ft.out) / "model")  # this run's copy, wherever the stage ran

    specs = {"distill": {"up": upstream, "cfg": non_default(p["distill"])}}
    run_stage("distill", out / "distill", specs["distill"], lambda: distill(p["distill"], resume=True), overwrite)

    specs["finetune"] = {"up": specs["distill"], "cfg": non_default(p["finetune"])}
    run_stage("finetune", out / "finetune", specs["finetune"], lambda: finetune(p["finetune"], resume=True), overwrite)

    def export_stage():
        e = cfg.export
        files = export_variants(str(out / "finetune" / "model"), out / "export", e, cfg.data, cfg.finetune.train_split,
                                cfg.finetune.val_split, seed=cfg.finetune.seed, num_trials=cfg.benchmark.num_trials)
        write_device_kit(out / "export")
        teacher_modes = dataclasses.replace(e, quantize=e.quantize if e.quantize_teacher else [])
        # searched with the teacher's own seed (its SV trials): student seeds that share one teacher
        # share its int8 file, and its search is measured once (the cache)
        teacher = export_variants(teacher_model, out / "benchmark_models", teacher_modes, cfg.data,
                                  cfg.finetune.train_split, cfg.finetune.val_split, name="teacher",
                                  budget=e.teacher_budget, seed=teacher_ft.seed, num_trials=cfg.benchmark.num_trials)
        found = {f"teacher {mode}": r for mode, r in teacher.pop("sensitivity", {}).items()}
        return {**files, **teacher, **({"sensitivity": {**files.get("sensitivity", {}), **found}} if found else {})}

    searched = cfg.export.teacher_budget and cfg.export.quantize_teacher and cfg.export.searched()
    # The teacher's search is in the hash where it runs, and so is the search's version where one
    # runs (an export from before either is redone: v2 tries masked nodes together).
    search = {"search": 2} if cfg.export.searched() else {}
    specs["export"] = {"up": specs["finetune"], "cfg": non_default(cfg.export), "teacher": spec,
                       **({"teacher_searched": True} if searched else {}), **search}
    files = run_stage("export", out / "export", specs["export"], export_stage, overwrite)

    if p["qat"] is not None:
        def qat_stage():
            finetune(p["qat"], resume=True)
            qat_files = export_variants(str(out / "qat" / "ft" / "model"), out / "qat", dataclasses.replace(
                cfg.export, quantize=["int8"]), cfg.data, cfg.finetune.train_split, cfg.finetune.val_split,
                name="student-qat", seed=cfg.finetune.seed, num_trials=cfg.benchmark.num_trials,
                reference=files["student-fp32"], against="student fp32")
            found = {f"qat {mode}": r for mode, r in qat_files.get("sensitivity", {}).items()}
            return {"student-qat-int8": qat_files["student-qat-int8"], "sensitivity": found}

        # Its int8 file takes the trained conv ranges, and its budget is held against the student's
        # fp32 export, not its own (a qat stage from before either is redone).
        specs["qat"] = {"up": specs["distill"], "cfg": non_default(p["qat"]), "export": non_default(cfg.export),
                        "int8_ranges": "trained", **search,
                        **({"budget_against": "student fp32", "student": specs["finetune"]} if search else {})}
        qat = run_stage("qat", out / "qat", specs["qat"], qat_stage, overwrite)
        files = {**files, "student-qat-int8": qat["student-qat-int8"],
                 "sensitivity": {**files.get("sensitivity", {}), **qat["sensitivity"]}}

    baseline = None
    if p["baseline"] is not None:
        def baseline_stage():
            save_scratch_student(p["distill"].teacher, cfg.distill.student, out / "baseline" / "init", cfg.distill.seed)
            summary = finetune(p["baseline"], resume=True)
            model = str(out / "baseline" / "ft" / "model")
            return {"summary": summary, "model": model,
                    "onnx": export_onnx(model, out / "baseline" / "scratch.fp32.onnx")["path"]}

        specs["baseline"] = {"up": upstream, "student": non_default(cfg.distill.student), "cfg": non_default(p["finetune"])}
        baseline = run_stage("baseline", out / "baseline", specs["baseline"], baseline_stage, overwrite)

    def benchmark_stage():
        params = {m: count_parameters(MultiTaskModel.from_pretrained(m).backbone)
                  for m in (teacher_model, str(out / "finetune" / "model"))}
        student = params[str(out / "finetune" / "model")]
        variants = [(k.replace("-", " ", 1), v, params[teacher_model]) for k, v in files.items()
                    if k.startswith("teacher")]
        variants += [(k.replace("-", " ", 1), v, student) for k, v in files.items() if k.startswith("student")]
        if baseline:
            variants.append(("scratch fp32", baseline["onnx"], student))
        teacher = p["teacher"]
        logs = {name: Path(c.out) / "train_log.jsonl" for name, c in zip(teacher["names"], teacher["cycles"])}
        logs |= {"distill": out / "distill" / "train_log.jsonl",
                "finetune": out / "finetune" / "train_log.jsonl", "scratch": out / "baseline" / "ft" / "train_log.jsonl"}
        notes = budget_notes(files.get("sensitivity", {}))
        if notes:
            notes = ["## int8 budget (sensitivity search in the export stage)", "", *notes, "",
                     f"The search measures on the '{cfg.finetune.val_split}' split"
                     + (", the same speakers as this report: the budget is met on them by construction."
                        if cfg.finetune.val_split == cfg.benchmark.split else ".")]
        report = benchmark(variants, out, cfg.data, cfg.benchmark, cfg.stream, fallback_split=cfg.finetune.val_split,
                           sv_data=cfg.finetune.sv_data, seed=cfg.finetune.seed, training_logs=logs, notes=notes)
        labels = json.loads((out / "finetune" / "model" / "multitask.json").read_text())["labels"]
        (out / "export" / "README.md").write_text(model_card(
            report, to_dict(cfg), len(labels), edgedistill.__version__, teacher_ft.steps,
            embedded_teacher_summary() if cfg.teacher == EMBEDDED_TEACHER else None))
        return report

    specs["benchmark"] = {"up": specs["export"], "cfg": non_default(cfg.benchmark), "baseline": specs.get("baseline"),
                          "stream": non_default(cfg.stream), **({"qat": specs["qat"]} if "qat" in specs else {})}
    return run_stage("benchmark", out / "benchmark", specs["benchmark"], benchmark_stage, overwrite)


def _check_stream_keywords(cfg: RunConfig) -> None:
    """Unknown streaming keywords fail before any training, not in the benchmark an hour later."""
    if not cfg.stream.keywords:
        return
    from edgedistill.data.layouts import resolve_labelled

    labels = {c.label for c in resolve_labelled(cfg.data, cfg.finetune.train_split)} - {None}
    missing = [k for k in cfg.stream.keywords if k not in labels]
    if missing:
        raise ConfigError(f"stream.keywords {missing} are not labels of {cfg.data}: choose among {sorted(labels)}")
