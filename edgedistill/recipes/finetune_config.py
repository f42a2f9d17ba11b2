"""The fine-tuning recipe's config (`FinetuneConfig`): every setting of `edgedistill finetune`,
checked when it is made, before any model is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgedistill.config import BOOKKEEPING, MIXED_PRECISIONS, RESUMABLE
from edgedistill.deploy.quantize import TARGETS

_SELECT = ("combined", "kws_accuracy", "sv_eer", "stream")
HOLDOUT = "train-holdout"  # val_split: a fixed tenth of the train split's clips


@dataclass
class FinetuneConfig:
    """Joint keyword spotting + speaker verification on one backbone (Kerpicci et al. 2022)."""

    model: str = field(default="runs/demo_distill", metadata={
        "help": "backbone: a distill --out folder, a student folder, an HF id/path (e.g. the "
                "teacher itself, for the teacher baseline) or builtin:*"})
    data: str = field(default="embedded", metadata={
        "help": "labelled data: 'embedded', a manifest, a folder with manifest.csv, or "
                "speech_commands:DIR (SUPERB 12 classes) / speech_commands35:DIR"})
    sv_data: str | None = field(default=None, metadata={
        "help": "optional second dataset for SV (manifest, folder or voxceleb:DIR); then `data` "
                "trains KWS only and batches interleave the two"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    val_split: str = field(default="val", metadata={
        "help": f"split for model selection (never test); '{HOLDOUT}': a fixed tenth of the train split's "
                "clips, left out of training (the same speakers, other recordings)"})
    out: str = field(default="runs/finetune", metadata={"help": "output folder"})
    layer_mode: str = field(default="weighted", metadata={
        "help": "'weighted' (SUPERB learnable sum of all layers) or 'last'"})
    emb_dim: int = field(default=192, metadata={"help": "speaker-embedding size"})
    aam_scale: float = field(default=30.0, metadata={"help": "AAM softmax scale s"})
    aam_margin: float = field(default=0.2, metadata={"help": "AAM softmax margin m (radians)"})
    kws_weight: float = field(default=1.0, metadata={"help": "weight of the KWS loss"})
    sv_weight: float = field(default=1.0, metadata={"help": "weight of the SV (AAM) loss"})
    freeze_backbone: bool = field(default=False, metadata={
        "help": "train the heads only (fine-tuning the backbone is better: Kerpicci et al.)"})
    freeze_cnn: bool | None = field(default=None, metadata={
        "help": "keep the backbone's CNN frozen (null: frozen, except that `edgedistill run` trains a student CNN "
                "that is not the teacher's: thin_cnn, cnn_channels, the edge preset, init_from_teacher=false)"})
    qat: bool = field(default=False, metadata={
        "help": "quantization-aware training for the `int8` export: every conv and Linear trains with the "
                "export's int8 rounding (fake quantization, straight-through gradients) and the saved weights "
                "are the rounded ones (edgedistill.deploy.qat)"})
    qat_target: str = field(default="auto", metadata={
        "help": "the int8 target QAT rounds for (auto: this machine's, as `int8` export does)"})
    backbone_lr: float = field(default=5e-5, metadata={"help": "peak learning rate of the backbone"})
    head_lr: float = field(default=1e-3, metadata={"help": "peak learning rate of the heads"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_frac: float = field(default=0.1, metadata={"help": "fraction of steps for warm-up"})
    grad_clip: float = field(default=5.0, metadata={"help": "gradient-norm clip"})
    steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "clips per step per process"})
    clip_samples: int = field(default=16_000, metadata={"help": "training crop/pad length (samples)"})
    noise: str | None = field(default=None, metadata={
        "help": "folder of background-noise audio to mix in while training"})
    noise_prob: float = field(default=0.5, metadata={"help": "chance a training clip gets noise"})
    snr_db: tuple[float, float] = field(default=(5.0, 20.0), metadata={"help": "noise SNR range in dB"})
    detect_keywords: list[str] = field(default_factory=list, metadata={
        "help": "train for detection on a stream: windows of these target keywords, cut at the device's 100 ms hops "
                "from streams of the training clips, join the clips; a window holding another word whole at such a "
                "position keeps that word's label, every other window (part of a word, noise) is a '_background_' "
                "class; half the draws are windows, a third of those each target, background and other words "
                "(empty: clips only)"})
    detect_stream_s: float = field(default=1200.0, metadata={
        "help": "seconds of training stream the detection windows are cut from (10 streams, seeded, noise at snr_db)"})
    detect_rounds: int = field(default=0, metadata={
        "help": "hard-negative rounds (with detect_keywords): at this many evenly spaced steps the model listens to "
                "detect_negative_s of keyword-free training stream, and the windows where its detector fires at "
                "detect_mining_threshold join the training windows (a quarter of the window draws); 0: none"})
    detect_negative_s: float = field(default=600.0, metadata={
        "help": "seconds of keyword-free training stream each hard-negative round listens to"})
    detect_mining_threshold: float = field(default=0.5, metadata={
        "help": "detector threshold at which a hard-negative round collects windows (below the deployed one, so "
                "near misses come back too)"})
    context_s: float = field(default=0.0, metadata={
        "help": "seconds of audio heard before each training clip or window but left out of its pooling: the end of "
                "another item of the batch (words, noise), as a stream puts something before every window; meant "
                "for streaming students (micro), whose convolutions carry what came before the window (measured in "
                "benchmarks/results/micro_students.md); 0: each item starts from silence. A multiple of 0.02 s"})
    kd_teacher: str | None = field(default=None, metadata={
        "help": "a fine-tuned teacher (a `finetune --out` folder, same data, labels and detect_keywords) whose keyword "
                "posteriors are soft targets: kd_weight * T^2 * KL(teacher || student) at temperature kd_temperature is "
                "added to the loss on every item with a keyword label (Hinton et al. 2015); null: none"})
    kd_weight: float = field(default=1.0, metadata={"help": "weight of the soft-target loss (with kd_teacher)"})
    kd_temperature: float = field(default=2.0, metadata={"help": "softening temperature T (with kd_teacher)"})
    eval_every: int = field(default=200, metadata={"help": "steps between validations"})
    patience: int = field(default=0, metadata={
        "help": "early stopping: stop when the validation score has not improved for this many validations "
                "(0: train all `steps`); the best model is kept"})
    min_steps: int = field(default=0, metadata={"help": "early stopping never stops before this step"})
    select_metric: str = field(default="combined", metadata={
        "help": f"validation metric that picks the saved model: {_SELECT} (combined = accuracy - EER; stream = "
                "fewest misses of detect_keywords on a stream of the validation clips at select_fa_per_hour false "
                "alarms, counted on select_negative_s of their keyword-free stream; ties: combined)"})
    select_stream_s: float = field(default=600.0, metadata={
        "help": "select_metric=stream: seconds of the validation keyword stream"})
    select_negative_s: float = field(default=1800.0, metadata={
        "help": "select_metric=stream: seconds of the validation keyword-free stream false alarms are counted on"})
    select_fa_per_hour: float = field(default=1.0, metadata={
        "help": "select_metric=stream: the false-alarm rate misses are compared at"})
    num_trials: int = field(default=20_000, metadata={"help": "validation SV trials (half target)"})
    mixed_precision: str = field(default="auto", metadata={
        "help": f"one of {MIXED_PRECISIONS}; auto = bf16 on a GPU that has it, else fp32"})
    cpu: bool = field(default=False, metadata={"help": "train on the CPU even if a GPU is there"})
    num_workers: int = field(default=0, metadata={"resume": RESUMABLE, "help": "data-loader worker processes"})
    seed: int = field(default=0, metadata={"help": "seed of heads, sampling, crops and trials"})
    log_with: str | None = field(default=None, metadata={"resume": BOOKKEEPING,
        "help": "also log to an accelerate tracker: 'tensorboard' (in OUT/tensorboard), 'wandb', ..."})
    log_every: int = field(default=20, metadata={"resume": BOOKKEEPING, "help": "steps between log lines"})
    save_every: int = field(default=500, metadata={"resume": BOOKKEEPING, "help": "steps between checkpoints"})
    keep_checkpoints: int = field(default=2, metadata={"resume": BOOKKEEPING, "help": "checkpoints kept on disk"})

    def __post_init__(self):
        if self.select_metric not in _SELECT:
            raise ValueError(f"select_metric '{self.select_metric}': choose one of {_SELECT}")
        if self.select_metric == "stream" and not self.detect_keywords:
            raise ValueError("select_metric=stream needs detect_keywords: the keywords whose misses are counted")
        if self.select_stream_s < 60 or self.select_negative_s < 60 or self.select_fa_per_hour <= 0:
            raise ValueError("select_stream_s and select_negative_s must be >= 60, select_fa_per_hour > 0")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision '{self.mixed_precision}': choose one of {MIXED_PRECISIONS}")
        if self.qat_target != "auto" and self.qat_target not in TARGETS:
            raise ValueError(f"qat_target '{self.qat_target}': choose auto or one of {sorted(TARGETS)}")
        if self.layer_mode not in ("weighted", "last"):
            raise ValueError(f"layer_mode '{self.layer_mode}': use 'weighted' or 'last'")
        if self.kws_weight < 0 or self.sv_weight < 0 or self.kws_weight + self.sv_weight == 0:
            raise ValueError("kws_weight and sv_weight must be >= 0 and not both 0")
        if self.freeze_backbone and self.freeze_cnn is False:
            raise ValueError("freeze_backbone=true freezes the CNN too: drop freeze_cnn=false")
        if self.train_split == self.val_split:
            raise ValueError("train_split and val_split must differ: model selection needs held-out data")
        if self.val_split == "test":
            raise ValueError("select models on a validation split, never on test: set val_split=val")
        for name in ("steps", "batch_size", "eval_every", "log_every", "save_every", "emb_dim", "num_trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.clip_samples < 400:
            raise ValueError("clip_samples must be >= 400 (one frame of the HuBERT CNN)")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError("noise_prob must be in [0, 1]")
        if self.patience < 0 or self.min_steps < 0:
            raise ValueError("patience and min_steps must be >= 0")
        if self.detect_stream_s < 10:
            raise ValueError("detect_stream_s must be >= 10 (ten training streams of at least a second each)")
        if self.detect_rounds < 0 or self.detect_negative_s < 10 or not 0 < self.detect_mining_threshold <= 1:
            raise ValueError("detect_rounds must be >= 0, detect_negative_s >= 10, detect_mining_threshold in (0, 1]")
        if self.context_s < 0 or abs(self.context_s * 50 - round(self.context_s * 50)) > 1e-6:
            raise ValueError(f"context_s={self.context_s}: a multiple of 0.02 s (whole 20 ms frames), >= 0")
        if self.kd_weight < 0 or self.kd_temperature <= 0:
            raise ValueError("kd_weight must be >= 0 and kd_temperature > 0")
        if self.min_steps > self.steps:
            raise ValueError(f"min_steps {self.min_steps} > steps {self.steps}: raise steps (the most it may train)")
