"""Micro students: causal convolutional encoders of 30k to 300k parameters for microcontroller-class
devices, distilled from the teacher like the transformer students and run as a stream.

Why this shape. Keyword spotting on the smallest devices runs depthwise-separable and dilated
temporal convolutions over log-mel frames (wekws's MDTC, TC-ResNet, BC-ResNet, microWakeWord's
MixedNet): a convolution with a cache streams exactly, costs a hop's compute per hop, and its
weights are few. A thin convolutional front end on the waveform (FitHuBERT's) would spend most
of such a budget on its first layers, so the micro student reads log-mel frames
(`edgedistill.runtime.frontend`, 30 ms windows every 10 ms, 40 bins), computed in numpy on the
device and in torch in training.

    log-mel [batch, 40, 100 Hz] -> BatchNorm
    -> stem: causal conv (kernel 5, stride 2) + BatchNorm + ReLU        -> 50 Hz, hidden state 0
    -> block x N: causal depthwise conv (kernel 3, dilation 1, 2, 4, 8, 1, ...) + BN + ReLU,
                  pointwise conv + BN, residual add, ReLU               -> hidden states 1..N

50 frames a second, the teacher's rate: frame t ends at sample 320 (t + 1), so a clip of n
samples gives n // 320 frames (a HuBERT gives (n - 400) // 320 + 1: distillation compares the
frames both have; student frame t hears 7.5 ms past the centre of teacher frame t). Every
convolution is causal: zero history at the start of a clip, and in a stream the cached last
frames of the previous chunk, so a stream cut into chunks gives the same frames as one call.

Presets (`edgedistill students`): `micro30k`, `micro100k`, `micro300k` (encoder parameters;
the fine-tuned model adds its keyword and speaker heads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.runtime.frontend import FrontendSpec, hann, mel_filters

MODEL_TYPE = "edgedistill-micro"
# preset -> (channels, blocks); parameters with 40 mel bins: tests/models/test_micro.py
MICRO_PRESETS = {"micro30k": (48, 7), "micro100k": (96, 8), "micro300k": (160, 10)}
DILATIONS = (1, 2, 4, 8)
FRAME_SAMPLES = 320  # samples per encoder frame (2 front-end hops)


def _config_class():
    from transformers import PretrainedConfig

    class MicroConfig(PretrainedConfig):
        """A micro student's shape and its front end (a `transformers` config: saved as config.json)."""

        model_type = MODEL_TYPE

        def __init__(self, hidden_size: int = 96, num_hidden_layers: int = 8, kernel_size: int = 3,
                     dilations: list[int] | None = None, stem_kernel: int = 5, dropout: float = 0.1,
                     frontend: dict | None = None, **kw):
            self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
            self.kernel_size, self.stem_kernel, self.dropout = kernel_size, stem_kernel, dropout
            self.dilations = list(dilations or [DILATIONS[i % len(DILATIONS)] for i in range(num_hidden_layers)])
            self.frontend = FrontendSpec(**(frontend or {})).as_dict()
            if len(self.dilations) != num_hidden_layers:
                raise ValueError(f"dilations {self.dilations} must give one value per block ({num_hidden_layers})")
            super().__init__(**kw)

        # What the library reads of every speech model's CNN: n samples give
        # (n - 320) // 320 + 1 = n // 320 frames.
        @property
        def conv_kernel(self) -> list[int]:
            return [FRAME_SAMPLES]

        @property
        def conv_stride(self) -> list[int]:
            return [FRAME_SAMPLES]

    return MicroConfig


_REGISTERED: dict = {}


def register() -> tuple[type, type]:
    """(MicroConfig, MicroModel), registered once with `AutoConfig` / `AutoModel` so that a saved
    micro student loads with `AutoModel.from_pretrained` like any other."""
    if not _REGISTERED:
        from transformers import AutoConfig, AutoModel

        cfg_cls = _config_class()
        model_cls = _model_class(cfg_cls)
        AutoConfig.register(MODEL_TYPE, cfg_cls, exist_ok=True)
        AutoModel.register(cfg_cls, model_cls, exist_ok=True)
        _REGISTERED.update(config=cfg_cls, model=model_cls)
    return _REGISTERED["config"], _REGISTERED["model"]


def micro_config(preset: str | None = None, **overrides):
    """A `MicroConfig` of a preset (`MICRO_PRESETS`) with `overrides` (hidden_size, num_hidden_layers, ...)."""
    cfg_cls, _ = register()
    shape = {}
    if preset is not None:
        if preset not in MICRO_PRESETS:
            raise ValueError(f"unknown micro preset '{preset}': choose one of {tuple(MICRO_PRESETS)}")
        shape = dict(zip(("hidden_size", "num_hidden_layers"), MICRO_PRESETS[preset]))
    return cfg_cls(**{**shape, **{k: v for k, v in overrides.items() if v is not None}})


def is_micro(model_or_config) -> bool:
    cfg = getattr(model_or_config, "config", model_or_config)
    return getattr(cfg, "model_type", None) == MODEL_TYPE


class LogMel(nn.Module):
    """`edgedistill.runtime.frontend.LogMelFrontend` in torch: [batch, samples] -> [batch, n_mels, samples // hop],
    zero history before the clip."""

    def __init__(self, spec: FrontendSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("window", torch.from_numpy(hann(spec.win_length)), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filters(spec)), persistent=False)

    def reset_buffers(self) -> None:
        """Recomputes the window and filters (not saved: `from_pretrained` builds models on "meta")."""
        with torch.no_grad():
            self.window.copy_(torch.from_numpy(hann(self.spec.win_length)))
            self.filters.copy_(torch.from_numpy(mel_filters(self.spec)))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        s = self.spec
        n = wave.shape[-1] - wave.shape[-1] % s.hop_length
        full = F.pad(wave[:, :n].float(), (s.context, 0))
        blocks = full.reshape(full.shape[0], -1, s.hop_length)
        k = s.win_length // s.hop_length
        frames = torch.cat([blocks[:, i:blocks.shape[1] - k + 1 + i] for i in range(k)], dim=-1) * self.window
        spec = torch.fft.rfft(frames, n=s.n_fft, dim=-1)
        power = spec.real * spec.real + spec.imag * spec.imag
        return torch.log(power @ self.filters + s.log_floor).transpose(1, 2)


class Frontend(nn.Module):
    """Log-mel frames and a BatchNorm over the bins: the part fine-tuning's `freeze_cnn` freezes."""

    def __init__(self, spec: FrontendSpec):
        super().__init__()
        self.logmel = LogMel(spec)
        self.norm = nn.BatchNorm1d(spec.n_mels)
        self.frozen = False

    def _freeze_parameters(self) -> None:
        """No gradient, and the BatchNorm's statistics kept as they are (it stays in eval mode)."""
        self.requires_grad_(False)
        self.frozen = True
        self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.norm(self.logmel(wave))


class CausalConv(nn.Module):
    """Conv1d that sees only the past: `context` frames of history (zeros at a clip's start, or
    `cache`), so chunked and whole inputs give the same frames. Returns (output, new cache)."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation, groups=groups)
        self.context = dilation * (kernel - 1) - (stride - 1)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(x, (self.context, 0)) if cache is None else torch.cat([cache, x], dim=-1)
        return self.conv(x), x[..., x.shape[-1] - self.context:]


class Block(nn.Module):
    """Depthwise causal dilated conv + BN + ReLU, pointwise conv + BN, residual, ReLU."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.depthwise = CausalConv(channels, channels, kernel, dilation, groups=channels)
        self.bn1 = nn.BatchNorm1d(channels)
        self.pointwise = nn.Conv1d(channels, channels, 1)
        self.bn2 = nn.BatchNorm1d(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y, cache = self.depthwise(x, cache)
        y = self.bn2(self.pointwise(F.relu(self.bn1(y))))
        return F.relu(x + self.dropout(y)), cache


class MicroOutput:
    """What `transformers` speech models return, as far as this library reads it."""

    def __init__(self, hidden_states, last_hidden_state):
        self.hidden_states, self.last_hidden_state = hidden_states, last_hidden_state

    def __getitem__(self, i):
        return (self.last_hidden_state, self.hidden_states)[i]


def _model_class(cfg_cls):
    from transformers import PreTrainedModel

    class MicroModel(PreTrainedModel):
        """The micro student: waveforms [batch, samples] -> hidden states [batch, samples // 320, hidden].

        `model(wave, output_hidden_states=True)` as every speech model; `stream(features, caches)`
        runs a chunk of log-mel frames from the caches of the previous chunk (what the streaming
        export traces)."""

        config_class = cfg_cls
        base_model_prefix = "micro"
        main_input_name = "input_values"

        def __init__(self, config):
            super().__init__(config)
            spec = FrontendSpec(**config.frontend)
            c = config.hidden_size
            self.feature_extractor = Frontend(spec)
            self.stem = CausalConv(spec.n_mels, c, config.stem_kernel, stride=2)
            self.stem_norm = nn.BatchNorm1d(c)
            self.encoder = nn.ModuleList(Block(c, config.kernel_size, d, config.dropout) for d in config.dilations)
            self.post_init()

        def _init_weights(self, module):  # PyTorch's own initialisation, also for weights made on "meta"
            if isinstance(module, (nn.Conv1d, nn.BatchNorm1d)):
                module.reset_parameters()
            elif isinstance(module, LogMel):
                module.reset_buffers()

        def cache_shapes(self) -> list[tuple[int, int]]:
            """(channels, frames) of each convolution's cache: the stem's, then each block's."""
            c = self.config.hidden_size
            return ([(self.feature_extractor.norm.num_features, self.stem.context)]
                    + [(c, b.depthwise.context) for b in self.encoder])

        def encode(self, mel: torch.Tensor, caches: list[torch.Tensor] | None = None, channels_last: bool = True):
            """Normalised log-mel [batch, n_mels, frames] (an even number) -> (hidden states [batch, frames // 2,
            hidden], or [batch, hidden, frames // 2] without `channels_last`; new caches)."""
            new = []
            x, c = self.stem(mel, None if caches is None else caches[0])
            new.append(c)
            x = F.relu(self.stem_norm(x))
            states = [x]
            for i, block in enumerate(self.encoder):
                x, c = block(x, None if caches is None else caches[i + 1])
                new.append(c)
                states.append(x)
            return [s.transpose(1, 2) for s in states] if channels_last else states, new

        def stream(self, features: torch.Tensor, caches: list[torch.Tensor], channels_last: bool = True):
            """Log-mel frames [batch, frames, n_mels] from the device's front end, following `caches`
            -> (hidden states, each [batch, frames // 2, hidden] (see `encode`), new caches)."""
            return self.encode(self.feature_extractor.norm(features.transpose(1, 2)), caches, channels_last)

        def forward(self, input_values: torch.Tensor, output_hidden_states: bool = False, **_) -> MicroOutput:
            if input_values.shape[-1] < FRAME_SAMPLES:
                raise ValueError(f"a clip of {input_values.shape[-1]} samples is too short for a micro student: "
                                 f"at least {FRAME_SAMPLES} (20 ms at 16 kHz)")
            n = input_values.shape[-1] - input_values.shape[-1] % FRAME_SAMPLES
            states, _ = self.encode(self.feature_extractor(input_values[:, :n]))
            return MicroOutput(tuple(states) if output_hidden_states else None, states[-1])

    return MicroModel
