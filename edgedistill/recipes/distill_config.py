"""The distillation recipe's config (`DistillConfig`): every setting of `edgedistill distill`,
checked when it is made, before any model is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgedistill.config import BOOKKEEPING, MIXED_PRECISIONS, RESUMABLE
from edgedistill.distill.heads import OBJECTIVES
from edgedistill.distill.text import UNITS
from edgedistill.models.student import StudentConfig
from edgedistill.models.teacher import TEACHER_PRECISIONS



@dataclass
class DistillConfig:
    """Layer-wise distillation (DistilHuBERT defaults, scaled down where noted)."""

    teacher: str = field(default="builtin:hubert-tiny", metadata={
        "help": "HF hub id, local folder or builtin:* name of the speech SSL teacher"})
    data: str = field(default="embedded", metadata={
        "help": "'embedded', a manifest CSV, a folder with manifest.csv, or a folder of audio"})
    split: str | None = field(default="train", metadata={
        "help": "manifest split to distil on (null: all rows; ignored for plain folders)"})
    out: str = field(default="runs/distill", metadata={"help": "output folder"})
    student: StudentConfig = field(default_factory=StudentConfig, metadata={"help": "student shape"})
    objective: str = field(default="prediction-heads", metadata={"help": f"one of {OBJECTIVES}"})
    target_layers: list[int] | None = field(default=None, metadata={
        "help": "teacher layers to predict (HF indexing); null: 4, 8, 12 scaled to the teacher"})
    student_layers: list[int] | None = field(default=None, metadata={
        "help": "layer-to-layer only: student layer per target (null: proportional)"})
    cos_weight: float = field(default=1.0, metadata={"help": "lambda of the -log sigmoid(cos) term"})
    layerwise_weight: float = field(default=1.0, metadata={
        "help": "weight of the layer-wise loss; 0 = text losses alone (the teacher's forward is skipped)"})
    cnn_hint_weight: float | None = field(default=None, metadata={
        "help": "weight of a FitHuBERT-style hint on the student's front end: its layer-0 hidden state (CNN, "
                "projection, positional conv) regresses the teacher's with the same L1 + cosine loss, through "
                "a Linear (identity where widths match). 0 = off; null: 1.0 where the student's CNN is not the "
                "teacher's and trains (preset edge, thin_cnn, cnn_channels, init_from_teacher=false), else 0"})
    text_teacher: str | None = field(default=None, metadata={
        "help": "text encoder (HF id, folder, builtin:bert-tiny) for text-informed distillation; null: off"})
    text_source: str = field(default="text", metadata={
        "help": "transcript per clip: 'text' (the manifest's text column) or 'label' (the keyword, '_' -> ' ')"})
    text_units: list[str] = field(default_factory=lambda: list(UNITS), metadata={
        "help": f"unit granularities, fine to coarse, among {UNITS}"})
    text_layers: list[int] | None = field(default=None, metadata={
        "help": "student layer of each text unit's auxiliary head (null: spread evenly, finest shallowest)"})
    text_weight: float = field(default=0.1, metadata={
        "help": "weight of the text alignment losses (below 1: per transcribed clip, their gradient into "
                "a HuBERT-shaped student is several times the layer-wise loss's at weight 1)"})
    global_weight: float = field(default=1.0, metadata={"help": "utterance (global) alignment weight"})
    local_weight: float = field(default=1.0, metadata={"help": "token / word (local) alignment weight"})
    contrastive_weight: float = field(default=0.0, metadata={
        "help": "in-batch InfoNCE term of the global alignment (0: off; keyword batches repeat words)"})
    adaptive_units: bool = field(default=True, metadata={
        "help": "learn the granularity weights during training (else fixed)"})
    quantity_weight: float = field(default=1.0, metadata={"help": "CIF quantity loss |sum(alpha) - N| weight"})
    monotonic_weight: float = field(default=1.0, metadata={"help": "monotonic alignment prior weight"})
    frequency_prior: bool = field(default=True, metadata={
        "help": "down-weight tokens frequent in the training transcripts (1 / log(e + count))"})
    steps: int = field(default=200_000, metadata={"resume": RESUMABLE, "help": "optimizer steps"})
    batch_size: int = field(default=24, metadata={"help": "clips per step per process"})
    max_samples: int = field(default=250_000, metadata={
        "help": "random crop length in samples (250,000 = 15.6 s at 16 kHz)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    betas: tuple[float, float] = field(default=(0.9, 0.98), metadata={"help": "Adam betas"})
    eps: float = field(default=1e-6, metadata={"help": "Adam epsilon"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_frac: float = field(default=0.07, metadata={"help": "fraction of steps for warm-up"})
    grad_clip: float = field(default=5.0, metadata={"help": "gradient-norm clip"})
    feature_grad_mult: float = field(default=0.1, metadata={
        "help": "gradient scale on the student CNN (0.1 in DistilHuBERT)"})
    freeze_cnn: bool = field(default=False, metadata={"help": "freeze the student CNN"})
    reuse_teacher_cnn: bool = field(default=False, metadata={
        "help": "feed the teacher's CNN features to the student (frozen, identical CNN): "
                "saves the student CNN's forward+backward, about a third of a step"})
    mixed_precision: str = field(default="auto", metadata={
        "help": f"student: one of {MIXED_PRECISIONS}; auto = bf16 on a GPU that has it, else fp32"})
    teacher_precision: str = field(default="fp32", metadata={
        "help": f"teacher: one of {tuple(TEACHER_PRECISIONS)} (fp32 as DistilHuBERT; bf16 halves its cost on a "
                "GPU, its targets' cosine to fp32's: benchmarks/results/distill_throughput.md; fp16: GPUs only)"})
    target_cache: str | None = field(default=None, metadata={
        "help": "folder of cached teacher targets: the first run writes it (one teacher pass, fixed crops), "
                "later epochs and runs read it instead of running the teacher; about 0.83 GB per hour of "
                "audio for 3 HuBERT Base layers. null: the teacher runs every step"})
    compile: bool = field(default=False, metadata={"resume": BOOKKEEPING,
        "help": "torch.compile the student's CNN, transformer and heads (minutes of compilation first)"})
    cpu: bool = field(default=False, metadata={"help": "train on the CPU even if a GPU is there"})
    num_workers: int | None = field(default=None, metadata={"resume": BOOKKEEPING,
        "help": "data-loader worker processes per training process; null: on a GPU the process's cores less "
                "one, at most 8, on a CPU 0 (benchmarks/loader_throughput.py measures what one worker decodes)"})
    seed: int = field(default=0, metadata={"help": "seed of init, data order, crops and dropout"})
    log_with: str | None = field(default=None, metadata={"resume": BOOKKEEPING,
        "help": "also log to an accelerate tracker: 'tensorboard' (in OUT/tensorboard), 'wandb', ..."})
    log_every: int = field(default=10, metadata={"resume": BOOKKEEPING, "help": "steps between log lines"})
    save_every: int = field(default=1000, metadata={"resume": BOOKKEEPING, "help": "steps between checkpoints"})
    keep_checkpoints: int = field(default=2, metadata={"resume": BOOKKEEPING, "help": "checkpoints kept on disk"})

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective '{self.objective}' unknown: choose one of {OBJECTIVES}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision '{self.mixed_precision}': choose one of {MIXED_PRECISIONS}")
        if self.student_layers is not None and self.objective != "layer-to-layer":
            raise ValueError("student_layers is only used with objective=layer-to-layer")
        if (self.student_layers is not None and self.target_layers is not None
                and len(self.student_layers) != len(self.target_layers)):
            raise ValueError("student_layers and target_layers must have the same length")
        if self.reuse_teacher_cnn:
            if self.student.micro:
                raise ValueError(f"reuse_teacher_cnn needs the teacher's CNN in the student; a micro student "
                                 f"({self.student.preset}) reads log-mel frames: drop reuse_teacher_cnn")
            if self.student.thin or self.student.cnn_channels:
                raise ValueError("reuse_teacher_cnn needs the teacher's CNN in the student: drop "
                                 "student.thin_cnn / student.cnn_channels / preset=edge, or reuse_teacher_cnn")
            if not self.student.init_from_teacher:
                raise ValueError("reuse_teacher_cnn needs student.init_from_teacher=true "
                                 "(the student CNN must equal the teacher's)")
        if self.teacher_precision not in TEACHER_PRECISIONS:
            raise ValueError(f"teacher_precision '{self.teacher_precision}': choose one of "
                             f"{tuple(TEACHER_PRECISIONS)}")
        if self.target_cache is not None:
            if self.reuse_teacher_cnn:
                raise ValueError("target_cache skips the teacher, so there are no teacher CNN features to "
                                 "reuse: drop reuse_teacher_cnn (freeze_cnn=true keeps the student CNN "
                                 "equal to the teacher's, as reuse does)")
            if self.text_teacher is not None:
                raise ValueError("target_cache does not yet combine with text_teacher: drop one of them")
            if self.layerwise_weight <= 0:
                raise ValueError("target_cache caches the layer-wise targets, but layerwise_weight is 0")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError("num_workers must be >= 0 (null: chosen from the CPU count)")
        if self.text_teacher is None and self.layerwise_weight <= 0:
            raise ValueError("layerwise_weight=0 leaves nothing to learn without a text_teacher: "
                             "set text_teacher or a positive layerwise_weight")
        if self.text_source not in ("text", "label"):
            raise ValueError(f"text_source '{self.text_source}': use 'text' or 'label'")
        bad = [u for u in self.text_units if u not in UNITS]
        if bad or not self.text_units:
            raise ValueError(f"text_units {self.text_units}: choose among {UNITS}")
        if self.text_layers is not None and len(self.text_layers) != len(self.text_units):
            raise ValueError(f"text_layers {self.text_layers} needs one layer per text unit {self.text_units}")
        if self.text_teacher is not None and not self.active_units():
            raise ValueError("global_weight and local_weight leave no text unit active: raise one of them")
        if self.cnn_hint_weight is not None and self.cnn_hint_weight > 0 and self.layerwise_weight <= 0:
            raise ValueError("cnn_hint_weight needs the layer-wise loss (its heads hold the hint): set a positive "
                             "layerwise_weight or cnn_hint_weight=0")
        if self.cnn_hint_weight is not None and self.cnn_hint_weight > 0 and (self.freeze_cnn or self.reuse_teacher_cnn):
            raise ValueError("cnn_hint_weight trains the student's CNN, but freeze_cnn / reuse_teacher_cnn keep it "
                             "fixed: drop one of them")
        for name in ("layerwise_weight", "cnn_hint_weight", "text_weight", "global_weight", "local_weight", "contrastive_weight",
                     "quantity_weight", "monotonic_weight"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("steps", "batch_size", "log_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_samples < 400:
            raise ValueError("max_samples must be >= 400 (one frame of the HuBERT CNN)")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError("warmup_frac must be in [0, 1)")

    def hint_weight(self, teacher_has_cnn: bool = True) -> float:
        """The CNN hint's weight, null resolved: 1.0 for a student CNN that is not the teacher's and
        trains (the Arabic edge student's rows with and without it:
        benchmarks/results/arabic_first_teacher/arabic_recipe.md), else 0.

        Args:
            teacher_has_cnn: False for a teacher without a waveform CNN (Whisper reads log-mel
                frames): every student's CNN is then fresh.
        """
        if self.cnn_hint_weight is not None:
            return self.cnn_hint_weight
        trains = not (self.freeze_cnn or self.reuse_teacher_cnn) and self.layerwise_weight > 0
        return 1.0 if trains and not (self.student.cnn_from_teacher and teacher_has_cnn) else 0.0

    def active_units(self) -> list[str]:
        """Text units with a positive weight (utterance: global_weight; token, word: local_weight)."""
        return [u for u in self.text_units
                if (self.global_weight if u == "utterance" else self.local_weight) > 0]
