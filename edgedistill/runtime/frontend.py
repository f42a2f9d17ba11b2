"""The log-mel front end of the micro students, in numpy: what a device computes before the model.

A micro student's ONNX file takes log-mel frames, not samples (as microWakeWord's models take
the TFLite micro front end's): the short-time Fourier transform is cheap in numpy and costly as
ONNX nodes (onnxruntime's DFT node, or a DFT matrix that would outweigh the model). Training
computes the very same numbers in torch (`edgedistill.models.micro.LogMel`, built from
`mel_filters` here); a test holds the two equal.

Frames are causal: frame k is the `win_length` samples that end at sample `hop_length * (k + 1)`
(a 30 ms periodic-Hann window every 10 ms, zero-padded to `n_fft`), so a frame is ready as soon
as its last sample has arrived, and a stream cut into chunks gives the frames of the whole
recording. Power spectrum -> HTK mel filters (`n_mels` between `fmin` and `fmax`) ->
log(x + `log_floor`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class FrontendSpec:
    """What the front end computes; an exported micro model carries it in its metadata."""

    sample_rate: int = 16_000
    win_length: int = 480
    hop_length: int = 160
    n_fft: int = 512
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 8_000.0
    log_floor: float = 1e-6

    def __post_init__(self):
        if self.win_length % self.hop_length:
            raise ValueError(f"win_length {self.win_length} must be a multiple of hop_length {self.hop_length}")
        if self.n_fft < self.win_length:
            raise ValueError(f"n_fft {self.n_fft} is shorter than win_length {self.win_length}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"mel range {self.fmin}-{self.fmax} Hz must lie in 0..{self.sample_rate / 2:g} Hz")

    @property
    def context(self) -> int:
        """Samples of history a frame needs beyond its hop (the samples a stream keeps)."""
        return self.win_length - self.hop_length

    def as_dict(self) -> dict:
        return asdict(self)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filters(spec: FrontendSpec) -> np.ndarray:
    """Triangular HTK mel filters, float32 [n_fft // 2 + 1, n_mels] (power spectrum @ filters)."""
    bins = spec.n_fft // 2 + 1
    freqs = np.linspace(0.0, spec.sample_rate / 2, bins)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(spec.fmin), _hz_to_mel(spec.fmax), spec.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of n samples, float32."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


class LogMelFrontend:
    """Log-mel frames of a batch of waveforms, one call per recording or per chunk of a stream.

        fe = LogMelFrontend(FrontendSpec())
        feats = fe.clip(audio)                  # [batch, samples // 160, 40], zero history
        cache = fe.initial_cache(1)             # a stream: keep the cache between chunks
        feats, cache = fe(chunk[None], cache)   # chunk of a multiple of 160 samples
    """

    def __init__(self, spec: FrontendSpec | dict | None = None):
        self.spec = FrontendSpec(**spec) if isinstance(spec, dict) else (spec or FrontendSpec())
        self.window = hann(self.spec.win_length)
        self.filters = mel_filters(self.spec)

    def initial_cache(self, batch: int = 1) -> np.ndarray:
        """The history of a fresh stream: zeros [batch, context]."""
        return np.zeros((batch, self.spec.context), np.float32)

    def __call__(self, audio: np.ndarray, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frames [batch, n // hop, n_mels] float32, new cache) for `audio` [batch, n], n a
        multiple of `hop_length`, following `cache` [batch, context]."""
        s = self.spec
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2 or audio.shape[1] % s.hop_length:
            raise ValueError(f"the front end takes [batch, samples] with samples a multiple of {s.hop_length}; "
                             f"got shape {audio.shape}")
        full = np.concatenate([cache.astype(np.float32, copy=False), audio], axis=1)
        blocks = full.reshape(full.shape[0], -1, s.hop_length)
        k = s.win_length // s.hop_length
        n = blocks.shape[1] - k + 1
        frames = np.concatenate([blocks[:, i:i + n] for i in range(k)], axis=-1) * self.window
        spec = np.fft.rfft(frames, n=s.n_fft, axis=-1)
        power = (spec.real * spec.real + spec.imag * spec.imag).astype(np.float32)
        mel = np.log(power @ self.filters + np.float32(s.log_floor)).astype(np.float32)
        return mel, full[:, full.shape[1] - s.context:].copy()

    def clip(self, audio: np.ndarray) -> np.ndarray:
        """Frames of whole recordings [batch, n] heard from silence (n cut down to a multiple of the hop)."""
        audio = np.asarray(audio, dtype=np.float32)
        n = audio.shape[1] - audio.shape[1] % self.spec.hop_length
        return self(audio[:, :n], self.initial_cache(audio.shape[0]))[0]
