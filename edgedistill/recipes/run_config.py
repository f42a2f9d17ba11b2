"""The run's config (`RunConfig`): the whole pipeline in one recipe file, each stage's settings
under its own key (`distill.*`, `finetune.*`, `export.*`, ...), and the teacher it starts from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.config import shipped_recipe
from edgedistill.recipes.benchmark import BenchmarkStage, StreamStage
from edgedistill.recipes.distill_config import DistillConfig
from edgedistill.recipes.export import ExportStage
from edgedistill.recipes.finetune_config import HOLDOUT, FinetuneConfig

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
            "finetune.data": "data", "finetune.out": "out",
            "finetune.kd_teacher": "soft_targets=true (the run's own fine-tuned teacher)"}


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
    teacher_rows: bool = field(default=True, metadata={
        "help": "fine-tune, export and score the teacher as rows of the report; false: the students alone (the "
                "teacher's rows measured once in another run of the same recipe)"})

    soft_targets: bool = field(default=False, metadata={
        "help": "fine-tune the students with the run's fine-tuned teacher's keyword posteriors as soft targets "
                "too (finetune.kd_teacher: its OUT/teacher/ft model, a detector where the run trains detectors; "
                "finetune.kd_weight, finetune.kd_temperature); the scratch baseline stays without. Needs "
                "teacher_rows=true (the teacher's fine-tuning)"})

    def __post_init__(self):
        if self.soft_targets and not self.teacher_rows:
            raise ValueError("soft_targets=true learns from the run's fine-tuned teacher, which teacher_rows=false "
                             "skips: set teacher_rows=true")
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
