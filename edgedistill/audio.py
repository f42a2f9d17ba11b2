"""Audio in: one loader for files and arrays, mono float32 at 16 kHz, with clear errors.

This module imports only numpy and soundfile (scipy lazily, for resampling), so the
on-device runtime can share its checks without torch.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence, Union

import numpy as np

SAMPLE_RATE = 16_000
# HuBERT / wav2vec 2.0 CNN: kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2) -> 400 samples
# (25 ms) give one frame, and each further frame needs 320 samples (20 ms).
HUBERT_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
HUBERT_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

AudioSource = Union[str, os.PathLike, np.ndarray]


class AudioError(ValueError):
    """Audio that cannot be used as it is. The message names the input and the fix."""


def receptive_field(conv_kernel: Sequence[int] = HUBERT_CONV_KERNEL,
                    conv_stride: Sequence[int] = HUBERT_CONV_STRIDE) -> int:
    """Samples needed for one output frame of a strided CNN (400 for the HuBERT CNN)."""
    field = 1
    for k, s in reversed(list(zip(conv_kernel, conv_stride))):
        field = (field - 1) * s + k
    return field


def num_frames(num_samples: int, conv_kernel: Sequence[int] = HUBERT_CONV_KERNEL,
               conv_stride: Sequence[int] = HUBERT_CONV_STRIDE) -> int:
    """Frames the CNN produces for `num_samples` samples (0 when too short)."""
    n = num_samples
    for k, s in zip(conv_kernel, conv_stride):
        n = (n - k) // s + 1
        if n <= 0:
            return 0
    return n


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (polyphase FIR with a Kaiser window, scipy's resample_poly).

    Args:
        audio: float array [samples] or [samples, channels].
        orig_sr, target_sr: rates in Hz.
    """
    if orig_sr == target_sr:
        return audio
    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise AudioError(f"the audio is at {orig_sr} Hz and the model needs {target_sr} Hz: resampling it needs "
                         f"scipy (pip install scipy), or convert the file first, e.g. "
                         f"`sox in.wav -r {target_sr} out.wav`") from None

    ratio = Fraction(target_sr, orig_sr).limit_denominator(1000)
    out = resample_poly(audio, ratio.numerator, ratio.denominator, axis=0)
    return out.astype(np.float32, copy=False)


def _name(source: AudioSource) -> str:
    return f"'{source}'" if not isinstance(source, np.ndarray) else "the given array"


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if not path.exists():
        raise FileNotFoundError(f"audio file '{path}' does not exist: check the path "
                                "(manifest paths are relative to the manifest's folder)")
    if path.is_dir():
        raise AudioError(f"'{path}' is a folder, not an audio file: pass a file inside it")
    if not os.access(path, os.R_OK):
        raise AudioError(f"audio file '{path}' cannot be opened: permission denied "
                         "(check the file's owner and mode, e.g. `chmod a+r`)")
    try:
        info = sf.info(str(path))
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"cannot read audio file '{path}': {exc}. It is not a readable "
                         "audio file (any libsndfile format works: wav, flac, ogg, ...); "
                         "re-encode it, e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`") from exc
    declared = _wav_declared_frames(path, info.channels) if info.format == "WAV" else None
    actual = data.shape[0]
    if (declared is not None and actual < declared) or (0 < actual < info.frames):
        raise AudioError(f"audio file '{path}' is truncated: its header promises "
                         f"{declared or info.frames} frames but only {actual} are there; "
                         "re-export or re-download the file")
    return data, sr


def _wav_declared_frames(path: Path, channels: int) -> int | None:
    """Frames the RIFF `data` chunk header declares (libsndfile silently shortens it)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif cid == b"data":
                if not block_align or size == 0xFFFFFFFF:  # streaming writers leave it unset
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), 1)


def load_audio(source: AudioSource, sample_rate: int | None = None, *,
               target_sr: int = SAMPLE_RATE, downmix: bool = False,
               normalize: str | None = None, min_samples: int = 400,
               resample_input: bool = True) -> np.ndarray:
    """Loads audio as mono float32 at `target_sr`.

    Args:
        source: a path to any libsndfile-readable file, or a float array [samples]
            (or [samples, channels] with `downmix=True`).
        sample_rate: rate of an array input in Hz (required for arrays; read from files).
        target_sr: output rate in Hz.
        downmix: average several channels into one; without it, multi-channel audio is an error.
        normalize: None (default, the waveform as recorded), "peak" (max |x| = 1) or
            "rms" (RMS = 0.1, i.e. -20 dBFS).
        min_samples: the fewest samples (at `target_sr`) accepted; 400 is the HuBERT CNN's
            receptive field (one frame). Pass `receptive_field(...)` for other CNNs.
        resample_input: if False, a rate other than `target_sr` is an error instead.

    Returns:
        float32 array [samples].

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: unreadable or truncated file, empty audio, NaN/Inf, wrong dtype,
            more channels than asked, clip too short.
    """
    name = _name(source)
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise AudioError("an array was given without its sample rate: "
                             "call load_audio(array, sample_rate=16000)")
        if not np.issubdtype(source.dtype, np.floating):
            raise AudioError(f"{name} has dtype {source.dtype}; float audio in [-1, 1] is "
                             "expected. For int16 PCM use `x.astype(np.float32) / 32768`")
        if source.ndim == 1:
            data = source.astype(np.float32, copy=False)[:, None]
        elif source.ndim == 2:
            data = source.astype(np.float32, copy=False)
        else:
            raise AudioError(f"{name} has shape {source.shape}; expected [samples] or "
                             "[samples, channels]")
        sr = int(sample_rate)
    elif isinstance(source, (str, os.PathLike)):
        data, sr = _read_file(Path(source))
    else:
        raise AudioError(f"cannot load audio from a {type(source).__name__}: "
                         "pass a file path or a float numpy array")

    if data.shape[0] == 0:
        raise AudioError(f"{name} is empty (0 samples): drop it from the data")
    if data.shape[1] > 1:
        if not downmix:
            raise AudioError(f"{name} has {data.shape[1]} channels, mono was asked for: "
                             "pass downmix=True to average the channels, or pick one")
        data = data.mean(axis=1, keepdims=True)
    audio = data[:, 0]
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise AudioError(f"{name} has {bad} NaN/Inf samples: the recording or its "
                         "decoding is broken; fix or drop it")
    if sr != target_sr:
        if not resample_input:
            raise AudioError(f"{name} is at {sr} Hz, the model needs {target_sr} Hz: "
                             f"resample it first (edgedistill.load_audio does it)")
        audio = resample(audio, sr, target_sr)
    if audio.shape[0] < min_samples:
        raise AudioError(
            f"{name} has {audio.shape[0]} samples ({1000 * audio.shape[0] / target_sr:.1f} "
            f"ms at {target_sr} Hz); the model's CNN needs at least {min_samples} samples "
            f"({1000 * min_samples / target_sr:.0f} ms) for one frame: pad or drop the clip")
    if normalize is not None:
        audio = normalize_audio(audio, normalize)
    return np.ascontiguousarray(audio, dtype=np.float32)


def fit_length(audio: np.ndarray, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Crops or zero-pads to `num_samples`: centred without `rng`, at a random offset with it."""
    n = num_samples
    if len(audio) >= n:
        start = int(rng.integers(0, len(audio) - n + 1)) if rng is not None else (len(audio) - n) // 2
        return audio[start:start + n]
    out = np.zeros(n, np.float32)
    start = int(rng.integers(0, n - len(audio) + 1)) if rng is not None else (n - len(audio)) // 2
    out[start:start + len(audio)] = audio
    return out


def normalize_audio(audio: np.ndarray, mode: str) -> np.ndarray:
    """Peak ("peak": max |x| = 1) or RMS ("rms": RMS = 0.1) normalisation; silence stays."""
    if mode == "peak":
        scale = float(np.abs(audio).max())
        return audio / scale if scale > 0 else audio
    if mode == "rms":
        rms = float(math.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        return (audio * (0.1 / rms)).astype(np.float32) if rms > 0 else audio
    raise AudioError(f"unknown normalize={mode!r}: use None, 'peak' or 'rms'")


def audio_num_samples(path: str | os.PathLike, target_sr: int = SAMPLE_RATE) -> int:
    """Length in samples at `target_sr` from the file header, without decoding."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"cannot read audio file '{path}': {exc}") from exc
    return int(round(info.frames * target_sr / info.samplerate))
