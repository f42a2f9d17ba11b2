"""Whisper's encoder as a speech model on 16 kHz waveforms: a teacher (and a fine-tunable backbone).

Whisper (any size; `openai/whisper-tiny.en` and friends, or a folder such as the one
`benchmarks/whisper_teacher.py` builds offline) reads 80 log-mel bins every 10 ms and halves the
rate in its second convolution: 50 frames a second, HuBERT's frame rate. Its feature extractor
pads every input to 30 s; `WhisperWave` does not: it computes the log-mel features itself, in
torch (`LogMel`, a fixed DFT convolution that also exports to ONNX), and adds the first T rows of
the sinusoidal position table to the clip's T frames. Hidden states follow `transformers`'
indexing: 0 = the convolutions' output plus positions, i = layer i's output, and the last one after
the encoder's final LayerNorm, as `WhisperEncoder` returns them.

Frames: a clip of n samples gives n // 160 mel frames and ceil(n / 320) encoder frames (50 for
1 s), a HuBERT-shaped student floor((n - 400) / 320) + 1 (49): distillation compares the first
frames both have. Whisper frame t is centred on 20 t ms, the student's on 20 t + 12.5 ms.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE, N_FFT, HOP = 16_000, 400, 160


class LogMel(nn.Module):
    """Whisper's log-mel spectrogram of a batch of waveforms, as `WhisperFeatureExtractor` computes
    it (periodic Hann window of 400 samples, hop 160, reflect-padded centred frames, power
    spectrum, Slaney mel filters from 0 to 8 kHz, log10 floored at 1e-10, the last frame dropped,
    each clip's range clamped to its maximum minus 8, then (x + 4) / 4), without the padding to 30 s.

    The short-time Fourier transform is a strided convolution with fixed cosine and sine kernels:
    the same numbers as `torch.stft`, and a graph ONNX exports and quantizes like any other conv.

    [batch, samples] float at 16 kHz -> [batch, n_mels, samples // 160].
    """

    def __init__(self, n_mels: int = 80):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        n = torch.arange(N_FFT, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / N_FFT)  # periodic Hann
        k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * n / N_FFT
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # [2 * 201, 400]
        self.register_buffer("dft", basis[:, None, :].float(), persistent=False)
        mel = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                              max_frequency=8000.0, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
        self.register_buffer("mel", torch.from_numpy(np.asarray(mel, dtype=np.float32)).T.contiguous(),
                             persistent=False)  # [n_mels, 201]
        self.n_mels = n_mels

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.shape[-1] <= N_FFT // 2:
            raise ValueError(f"a clip of {wave.shape[-1]} samples is too short for Whisper's features: "
                             f"at least {N_FFT // 2 + 1} samples (12.6 ms at 16 kHz)")
        x = F.pad(wave.float()[:, None], (N_FFT // 2, N_FFT // 2), mode="reflect")
        spec = F.conv1d(x, self.dft, stride=HOP)[..., :-1]  # [batch, 2 * 201, frames]
        re, im = spec.chunk(2, dim=1)
        power = re * re + im * im
        log_spec = torch.log10(torch.clamp(torch.matmul(self.mel, power), min=1e-10))
        top = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, top - 8.0)
        return (log_spec + 4.0) / 4.0


class _Output:
    """What `transformers` models return, as far as this library reads it."""

    def __init__(self, hidden_states: tuple[torch.Tensor, ...] | None, last_hidden_state: torch.Tensor):
        self.hidden_states, self.last_hidden_state = hidden_states, last_hidden_state

    def __getitem__(self, i):
        return (self.last_hidden_state, self.hidden_states)[i]


class WhisperWave(nn.Module):
    """A `transformers` `WhisperEncoder` that takes 16 kHz waveforms of any length up to 30 s.

    Called as the library calls every speech model: `model(wave, output_hidden_states=True)`
    returns an object with `hidden_states` (layers + 1 tensors [batch, frames, d_model]) and
    `last_hidden_state`.

    Args:
        encoder: a `transformers.models.whisper.modeling_whisper.WhisperEncoder`.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.frontend = LogMel(encoder.config.num_mel_bins)

    @property
    def config(self):
        return self.encoder.config

    @property
    def feature_extractor(self) -> nn.ModuleList:
        """The convolutions on the log-mel frames (what fine-tuning's `freeze_cnn` freezes)."""
        return nn.ModuleList([self.encoder.conv1, self.encoder.conv2])

    def max_samples(self) -> int:
        """The longest input, in samples (30 s for every released Whisper)."""
        return self.encoder.embed_positions.num_embeddings * 2 * HOP

    def forward(self, wave: torch.Tensor, output_hidden_states: bool = False, **_) -> _Output:
        """[batch, samples] at 16 kHz (zero-padded) -> hidden states [batch, ceil(samples / 320), d_model]."""
        enc = self.encoder
        if wave.shape[-1] > self.max_samples():
            raise ValueError(f"a clip of {wave.shape[-1] / SAMPLE_RATE:.1f} s is longer than Whisper's "
                             f"{self.max_samples() / SAMPLE_RATE:.0f} s: cut it into shorter clips")
        mel = self.frontend(wave).to(enc.conv1.weight.dtype)
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x)).transpose(1, 2)
        x = x + enc.embed_positions.weight[: x.shape[1]]  # positions cut to the clip's frames
        x = F.dropout(x, p=enc.dropout, training=self.training)
        states = [x]
        for layer in enc.layers:
            if self.training and enc.layerdrop > 0 and torch.rand([]) < enc.layerdrop:
                states.append(x)  # a dropped layer passes its input on
                continue
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
            states.append(x)
        states[-1] = enc.layer_norm(x)
        return _Output(tuple(states) if output_hidden_states else None, states[-1])

    def save_pretrained(self, folder: str | Path, **kw) -> None:
        """The encoder's weights (safetensors) with its WhisperConfig and feature-extractor config:
        `load_whisper_wave` reads it back."""
        from transformers import WhisperFeatureExtractor

        self.encoder.save_pretrained(folder, **kw)
        WhisperFeatureExtractor(feature_size=self.config.num_mel_bins).save_pretrained(folder)


_PREFIXES = ("model.encoder.", "encoder.")


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's tensors of a Whisper checkpoint, whatever it holds: a whole
    `WhisperForConditionalGeneration` ("model.encoder.*"), a `WhisperModel` ("encoder.*") or an
    encoder alone (no prefix)."""
    for prefix in _PREFIXES:
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if found:
            return found
    return dict(state)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model folder: safetensors (one file or shards), else
    `pytorch_model.bin` with `weights_only=True`."""
    files = sorted(folder.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        state = {}
        for f in files:
            state.update(load_file(f))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"'{folder}' holds no weights (*.safetensors or pytorch_model.bin)")


def load_whisper_wave(folder: str | Path, config=None) -> WhisperWave:
    """A `WhisperWave` from a saved Whisper folder (a hub snapshot, the offline build, or a
    fine-tuned backbone written by `WhisperWave.save_pretrained`).

    Raises:
        ValueError: the folder's weights do not fit its config (names it and what is missing).
    """
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    folder = Path(folder)
    config = config or WhisperConfig.from_pretrained(folder)
    with torch.device("meta"):
        encoder = WhisperEncoder(config)
    state = encoder_state(_read_weights(folder))
    expected = set(encoder.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(f"'{folder}' is not a Whisper encoder of its config: missing {sorted(missing)[:4]}, "
                         f"unexpected {sorted(unexpected)[:4]}")
    encoder.load_state_dict({k: state[k].float() for k in expected}, assign=True, strict=True)
    return WhisperWave(encoder.float())


def whisper_wave_from_config(config, seed: int = 0) -> WhisperWave:
    """A randomly initialised `WhisperWave` of `config` (tests and timing)."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(seed)
    return WhisperWave(WhisperEncoder(config))


def tiny_whisper_config(**overrides):
    """A tiny Whisper config (d_model 64, 4 encoder layers, 1 decoder layer, a 128-token vocabulary)
    for tests: only sizes differ from the `transformers` defaults (dropouts, layerdrop, SpecAugment
    settings, `max_source_positions` = 30 s are kept)."""
    from transformers import WhisperConfig

    size = dict(d_model=64, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=128, decoder_layers=1,
                decoder_attention_heads=4, decoder_ffn_dim=128, vocab_size=128, max_target_positions=64,
                bos_token_id=1, eos_token_id=2, pad_token_id=2, decoder_start_token_id=1)
    return WhisperConfig(**{**size, **overrides})


# The waveform CNN of a Whisper teacher's students: HuBERT's kernels and strides (20 ms frames) at
# 256 channels, the width of the Arabic recipe's students. HuBERT's 512 channels would be 4.2 M
# parameters, more than two 384-wide layers, and 2.5 times the distillation step on a CPU core.
WHISPER_STUDENT_CNN = 256


def hubert_shape_of(whisper_config):
    """The HuBERT config a waveform student of a Whisper teacher starts from: the encoder's width,
    depth, heads and FFN, GELU, pre-LayerNorm layers (`do_stable_layer_norm`, the layout of
    Whisper's own layers, so its layers can be copied in), a `WHISPER_STUDENT_CNN`-channel CNN
    (`student.cnn_channels` sets another) and `transformers`' HuBERT defaults for the rest
    (dropouts, the positional convolution)."""
    from transformers import HubertConfig

    w = whisper_config
    heads = w.encoder_attention_heads
    groups = 16 if w.d_model % 16 == 0 else 1
    return HubertConfig(hidden_size=w.d_model, num_hidden_layers=w.encoder_layers, num_attention_heads=heads,
                        intermediate_size=w.encoder_ffn_dim, hidden_act="gelu", do_stable_layer_norm=True,
                        num_conv_pos_embedding_groups=groups, conv_dim=(WHISPER_STUDENT_CNN,) * 7)


# Whisper encoder layer -> HuBERT pre-LN encoder layer (`hubert_shape_of`).
_LAYER_NAMES = {"self_attn.q_proj": "attention.q_proj", "self_attn.k_proj": "attention.k_proj",
                "self_attn.v_proj": "attention.v_proj", "self_attn.out_proj": "attention.out_proj",
                "self_attn_layer_norm": "layer_norm", "fc1": "feed_forward.intermediate_dense",
                "fc2": "feed_forward.output_dense", "final_layer_norm": "final_layer_norm"}


def as_hubert_state(whisper: nn.Module) -> dict[str, torch.Tensor]:
    """The Whisper encoder's layers under the names of a `hubert_shape_of` student's layers (the
    key projection gets the zero bias Whisper's lacks): what `init_from_teacher` copies. The
    convolutions and positions have no counterpart in a waveform student."""
    out = {}
    for name, value in whisper.encoder.state_dict().items():
        parts = name.split(".")
        if parts[0] != "layers":
            continue
        i, rest = parts[1], ".".join(parts[2:-1])
        if rest in _LAYER_NAMES:
            out[f"encoder.layers.{i}.{_LAYER_NAMES[rest]}.{parts[-1]}"] = value
    for key in [k for k in out if k.endswith("attention.k_proj.weight")]:
        out[key.replace(".weight", ".bias")] = torch.zeros(out[key].shape[0], dtype=out[key].dtype)
    return out
