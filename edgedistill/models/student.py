"""Students: stock `transformers` configs of the teacher's family, so a saved student loads
with plain `AutoModel.from_pretrained` without edgedistill installed.

Presets scale with the teacher (numbers for HuBERT Base, 12 x 768, FFN 3072):
- `distilhubert`: 2 layers x hidden (FFN as the teacher) -> 23,491,200 parameters;
- `deep`: all layers at half width (12 x 384, FFN 1536, 6 heads) -> 26,871,936;
- `wide`: a quarter of the layers at full width (3 x 768) -> 30,579,072;
- `edge`: `distilhubert` with the thin CNN below (FitHuBERT-style channel widths): the
  device preset (its latency against distilhubert's: benchmarks/results/latency.md); distilled with a FitHuBERT-style
  hint on its CNN by default (`DistillConfig.cnn_hint_weight`);
- `custom`: set the shape yourself;
- `micro30k`, `micro100k`, `micro300k`: not the teacher's family: causal convolutional encoders
  on log-mel frames that stream on a microcontroller-class device (`edgedistill.models.micro`);
  `hidden_size` / `num_layers` change their channels and blocks.
`thin_cnn=True` swaps the CNN for FitHuBERT-style widths (c/4, c/2 x 4, c, c; 128-256-...-512
for HuBERT): the 512-channel CNN is most of DistilHuBERT's compute.
All presets drop the feature-projection LayerNorm, SpecAugment and layerdrop, as DistilHuBERT.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgedistill.models.micro import MICRO_PRESETS

PRESETS = ("distilhubert", "edge", "deep", "wide", "custom", *MICRO_PRESETS)
PRESET_HELP = {
    "distilhubert": "2 layers at the teacher's width (DistilHuBERT)",
    "edge": "distilhubert with a thin CNN (FitHuBERT-style c/4, c/2 x4, c, c channels): for small CPUs; "
            "distillation adds a hint on its CNN (distill.cnn_hint_weight)",
    "deep": "every layer at half width (Deep vs Wide: deep-narrow)",
    "wide": "a quarter of the layers at full width (Deep vs Wide: wide-shallow)",
    "custom": "num_layers / hidden_size / ... set by you",
    **{p: f"streaming causal conv encoder on log-mel frames, {c} channels x {b} blocks (microcontroller-class)"
       for p, (c, b) in MICRO_PRESETS.items()},
}


@dataclass
class StudentConfig:
    """The student's shape. Unset (None) fields come from the preset and the teacher."""

    preset: str = field(default="distilhubert", metadata={"help": f"one of {PRESETS}"})
    num_layers: int | None = field(default=None, metadata={"help": "transformer layers"})
    hidden_size: int | None = field(default=None, metadata={"help": "model width"})
    intermediate_size: int | None = field(default=None, metadata={"help": "FFN width"})
    num_heads: int | None = field(default=None, metadata={"help": "attention heads"})
    thin_cnn: bool = field(default=False, metadata={
        "help": "FitHuBERT-style thin CNN (c/4, c/2 x4, c, c channels). Its first six conv layers change shape "
                "and start fresh; the last conv layer (c -> c), the feature projection and the transformer "
                "layers keep the teacher's shapes and are still copied from it (init_from_teacher=false: nothing is)"})
    cnn_channels: list[int] | None = field(default=None, metadata={
        "help": "explicit CNN channels, one per conv layer (overrides thin_cnn)"})
    feat_proj_layer_norm: bool = field(default=False, metadata={
        "help": "keep a LayerNorm before the feature projection (DistilHuBERT has none)"})
    init_from_teacher: bool = field(default=True, metadata={
        "help": "copy CNN, projection, positional conv and the first N layers where shapes match"})
    dropout: float | None = field(default=None, metadata={
        "help": "hidden/attention/activation dropout (None: the teacher's)"})

    @property
    def micro(self) -> bool:
        """Whether the student is a micro (streaming convolutional) student, not of the teacher's family."""
        return self.preset in MICRO_PRESETS

    @property
    def thin(self) -> bool:
        """Whether the student's CNN is the thin one (`thin_cnn`, or the `edge` preset)."""
        return self.thin_cnn or self.preset == "edge"

    @property
    def cnn_from_teacher(self) -> bool:
        """Whether the student's whole CNN is copied from the teacher (not thin, not re-shaped, initialised from it)."""
        return not (self.thin or self.cnn_channels or self.micro) and self.init_from_teacher

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"unknown student preset '{self.preset}': choose one of {PRESETS}")
        if self.micro:
            wrong = [n for n in ("intermediate_size", "num_heads", "cnn_channels") if getattr(self, n) is not None]
            wrong += ["thin_cnn"] if self.thin_cnn else []
            wrong += ["feat_proj_layer_norm"] if self.feat_proj_layer_norm else []
            if wrong:
                raise ValueError(f"student.{', student.'.join(wrong)} belong to transformer students; a micro "
                                 f"student ({self.preset}) has channels (hidden_size) and blocks (num_layers) only")
        if self.preset == "custom" and None in (self.num_layers, self.hidden_size):
            raise ValueError("preset 'custom' needs num_layers and hidden_size "
                             "(e.g. student.num_layers=4 student.hidden_size=256)")
        if self.thin_cnn and self.cnn_channels:
            raise ValueError("set either thin_cnn or cnn_channels, not both")
        if self.preset == "edge" and self.cnn_channels:
            raise ValueError("preset 'edge' is distilhubert with the thin CNN: for other channels use "
                             "preset=distilhubert with cnn_channels=[...]")
        for name in ("num_layers", "hidden_size", "intermediate_size", "num_heads"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"student.{name} must be >= 1, got {v}")


def _shape(t, cfg: StudentConfig) -> dict:
    """The student's transformer shape for teacher config `t`."""
    if cfg.preset == "deep":
        shape = dict(num_layers=t.num_hidden_layers, hidden_size=t.hidden_size // 2,
                     intermediate_size=t.intermediate_size // 2,
                     num_heads=max(1, t.num_attention_heads // 2))
    elif cfg.preset == "wide":
        shape = dict(num_layers=max(1, t.num_hidden_layers // 4), hidden_size=t.hidden_size,
                     intermediate_size=t.intermediate_size, num_heads=t.num_attention_heads)
    else:  # distilhubert, edge, and the base of custom
        shape = dict(num_layers=min(2, t.num_hidden_layers), hidden_size=t.hidden_size,
                     intermediate_size=t.intermediate_size, num_heads=t.num_attention_heads)
    for k in shape:
        if getattr(cfg, k) is not None:
            shape[k] = getattr(cfg, k)
    if cfg.preset == "custom" and cfg.intermediate_size is None:
        shape["intermediate_size"] = 4 * shape["hidden_size"]
    if cfg.preset == "custom" and cfg.num_heads is None:
        shape["num_heads"] = max(1, shape["hidden_size"] // 64)
    return shape


def student_config(teacher_config, cfg: StudentConfig):
    """A `transformers` config of the teacher's family with the student's shape. A Whisper
    teacher's students are HuBERT-shaped waveform models of its encoder's size
    (`edgedistill.models.whisper.hubert_shape_of`)."""
    if cfg.micro:
        from edgedistill.models.micro import micro_config

        return micro_config(cfg.preset, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                            dropout=cfg.dropout)
    t = teacher_config
    if getattr(t, "model_type", None) == "whisper":
        from edgedistill.models.whisper import hubert_shape_of

        t = hubert_shape_of(t)
    s = copy.deepcopy(t)
    shape = _shape(t, cfg)
    if shape["hidden_size"] % shape["num_heads"]:
        raise ValueError(f"student hidden_size {shape['hidden_size']} is not divisible by "
                         f"num_heads {shape['num_heads']}: change one of them")
    groups = getattr(t, "num_conv_pos_embedding_groups", 1)
    if shape["hidden_size"] % groups:
        raise ValueError(f"student hidden_size {shape['hidden_size']} is not divisible by the "
                         f"positional conv's {groups} groups")
    s.num_hidden_layers = shape["num_layers"]
    s.hidden_size = shape["hidden_size"]
    s.intermediate_size = shape["intermediate_size"]
    s.num_attention_heads = shape["num_heads"]
    channels = cfg.cnn_channels
    if cfg.thin:
        c = list(t.conv_dim)
        channels = [max(1, c[0] // 4)] + [max(1, x // 2) for x in c[1:-2]] + c[-2:]
    if channels is not None:
        if len(channels) != len(t.conv_dim):
            raise ValueError(f"cnn_channels needs {len(t.conv_dim)} values (one per conv "
                             f"layer), got {len(channels)}")
        s.conv_dim = list(channels)
    if hasattr(s, "feat_proj_layer_norm"):
        s.feat_proj_layer_norm = cfg.feat_proj_layer_norm
    if cfg.dropout is not None:
        s.hidden_dropout = s.attention_dropout = s.activation_dropout = cfg.dropout
    s.layerdrop = 0.0
    s.mask_time_prob = 0.0
    s.mask_feature_prob = 0.0
    s.apply_spec_augment = False
    s.architectures = None
    if hasattr(s, "num_adapter_layers"):
        s.add_adapter = False
    return s


def freeze_cnn(model: nn.Module) -> None:
    """Freezes a speech model's CNN for real: its parameters, and the `transformers` flag that
    otherwise makes the waveform require a gradient in training mode, so that backward would
    still run through every convolution down to the input. Every speech family's feature
    encoder does both in `_freeze_parameters`; anything else gets its parameters frozen."""
    fe = model.feature_extractor
    if hasattr(fe, "_freeze_parameters"):
        fe._freeze_parameters()
    else:
        fe.requires_grad_(False)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Never copied: the encoder LayerNorm keeps its fresh init (as DistilHuBERT), the
# SpecAugment embedding is absent from students.
_NEVER_COPY = ("encoder.layer_norm.", "masked_spec_embed")


def _module_of(name: str) -> str:
    """The owning module of a tensor, with weight-norm parametrizations folded in."""
    name = name.split(".parametrizations.")[0] if ".parametrizations." in name else name
    return name.rsplit(".", 1)[0]


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, list[str]]:
    """Copies each student module whose tensors all match the teacher's by name and shape.

    Whole modules only: a weight-normed conv whose `g` matches but whose `v` does not is
    left fresh. Student layer i takes teacher layer i (the first N layers). A Whisper teacher
    gives its encoder layers (`edgedistill.models.whisper.as_hubert_state`); its convolutions read
    log-mel frames, so the student's CNN and positional convolution start fresh. Returns the
    tensor names copied and those left at their fresh init.
    """
    from edgedistill.models.teacher import is_whisper

    if is_whisper(teacher):
        from edgedistill.models.whisper import as_hubert_state

        t_state = as_hubert_state(teacher)
    else:
        t_state = teacher.state_dict()
    s_state = student.state_dict()
    groups: dict[str, list[str]] = {}
    for name in s_state:
        groups.setdefault(_module_of(name), []).append(name)
    copied, fresh = [], []
    with torch.no_grad():
        for names in groups.values():
            ok = all(n in t_state and t_state[n].shape == s_state[n].shape
                     and not any(n.startswith(p) or p in n for p in _NEVER_COPY) for n in names)
            for n in names:
                if ok:
                    s_state[n].copy_(t_state[n])
            (copied if ok else fresh).extend(names)
    return {"copied": copied, "fresh": fresh}


def build_student(teacher_model: nn.Module, cfg: StudentConfig | None = None,
                  seed: int = 0) -> tuple[nn.Module, dict]:
    """Builds the student for `teacher_model` (a `transformers` speech model).

    Returns:
        (student, report) where report holds `config`, `params` and the init lists.
    """
    from transformers import AutoModel

    cfg = cfg or StudentConfig()
    s_cfg = student_config(teacher_model.config, cfg)
    torch.manual_seed(seed)
    student = AutoModel.from_config(s_cfg)
    report = {"copied": [], "fresh": [n for n in student.state_dict()]}
    if cfg.init_from_teacher:
        report = init_from_teacher(student, teacher_model)
    report["params"] = count_parameters(student)
    return student, report


def save_scratch_student(teacher: str, cfg: StudentConfig, folder: str | Path, seed: int = 0) -> str:
    """Writes a randomly initialised student of `cfg`'s shape for `teacher` (an id, folder or
    builtin:*) to `folder` (HF `save_pretrained` + feature-extractor config): the no-distillation
    baseline. Kept if already there. Returns the folder."""
    from dataclasses import replace

    from transformers import Wav2Vec2FeatureExtractor

    from edgedistill.models.teacher import load_teacher

    folder = Path(folder)
    if not (folder / "config.json").exists():
        t = load_teacher(teacher, seed=seed)
        student, _ = build_student(t.model, replace(cfg, init_from_teacher=False), seed=seed)
        student.save_pretrained(folder)
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0,
                                 do_normalize=t.do_normalize, return_attention_mask=False).save_pretrained(folder)
    return str(folder)


def preset_table(teacher_config) -> list[dict]:
    """Shape and parameter count of each preset (with and without thin CNN) for a teacher."""
    from transformers import AutoModel

    rows = []
    whisper = getattr(teacher_config, "model_type", None) == "whisper"  # its students' CNN is HuBERT's
    for preset in [p for p in PRESETS if p != "custom"]:
        if preset in MICRO_PRESETS:
            s = student_config(teacher_config, StudentConfig(preset=preset))
            with torch.device("meta"):
                params = count_parameters(AutoModel.from_config(s))
            rows.append({"preset": preset, "layers": s.num_hidden_layers, "hidden": s.hidden_size, "ffn": "-",
                         "heads": "-", "cnn": f"log-mel {s.frontend['n_mels']}", "params": params,
                         "what": PRESET_HELP[preset]})
            continue
        for thin in (False, True) if preset != "edge" else (False,):
            cfg = StudentConfig(preset=preset, thin_cnn=thin)
            s = student_config(teacher_config, cfg)
            with torch.device("meta"):
                params = count_parameters(AutoModel.from_config(s))
            rows.append({"preset": preset + ("+thin_cnn" if thin else ""),
                         "layers": s.num_hidden_layers, "hidden": s.hidden_size,
                         "ffn": s.intermediate_size, "heads": s.num_attention_heads,
                         "cnn": "x".join(map(str, s.conv_dim)) if cfg.thin or whisper else "teacher",
                         "params": params, "what": PRESET_HELP[preset]})
    return rows
