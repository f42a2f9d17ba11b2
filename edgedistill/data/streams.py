"""Long test streams for continuous-listening evaluation, built from labelled clips.

Keyword clips of the evaluated split are placed at known times, separated by other words of
the dataset (non-target speech) and background, with noise over the whole stream at a chosen
SNR. The ground truth is where each target keyword is spoken: the clip's voiced span (frames
within 30 dB of its loudest), in seconds of the stream. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgedistill.data.manifest import Clip, load_clip

SR = 16_000
NOT_WORDS = ("_silence_",)   # labelled crops of background noise: never placed as a word


@dataclass(frozen=True)
class Occurrence:
    """A target keyword in a stream: spoken from `t0` to `t1` seconds by `speaker`."""

    keyword: str
    t0: float
    t1: float
    speaker: str | None
    path: str


def voiced_span(audio: np.ndarray, frame: int = 320, floor_db: float = 30.0) -> tuple[int, int]:
    """(first, last + 1) sample of the frames within `floor_db` of the loudest 20 ms frame."""
    n = max(1, len(audio) // frame)
    energy = np.array([np.mean(np.square(audio[i * frame:(i + 1) * frame], dtype=np.float64)) for i in range(n)])
    if energy.max() <= 0:
        return 0, len(audio)
    loud = np.flatnonzero(10 * np.log10(energy / energy.max() + 1e-20) > -floor_db)
    return int(loud[0] * frame), int(min(len(audio), (loud[-1] + 1) * frame))


def build_stream(clips: list[Clip], targets: list[str], seconds: float, seed: int = 0,
                 target_share: float = 0.3, gap_s: tuple[float, float] = (1.0, 3.0),
                 noise: list[np.ndarray] | None = None, snr_db: float = 20.0,
                 all_words: bool = False) -> tuple[np.ndarray, list[Occurrence]]:
    """A stream of about `seconds` and its target occurrences, reproducible from `seed`.

    Args:
        clips: labelled clips to draw from (their `label` decides target or not).
        targets: the target keywords; every other label is non-target speech.
        target_share: chance that a placed word is a target keyword.
        gap_s: (min, max) silence between words, in seconds.
        noise: background recordings (16 kHz) looped under the whole stream; None: low-passed
            white noise from the seed.
        snr_db: speech-to-noise ratio of the background, from the words' mean power.
        all_words: list every placed word, not only the targets (training windows label each;
            the stream itself is the same).

    Raises:
        ValueError: no clip of a target keyword, or none of another word.
    """
    rng = np.random.default_rng(seed)
    pos = [c for c in clips if c.label in targets]
    neg = [c for c in clips if c.label is not None and c.label not in targets and c.label not in NOT_WORDS]
    if not pos:
        raise ValueError(f"no clip has a target keyword {targets}")
    total = int(seconds * SR)
    out = np.zeros(total, np.float32)
    truth, power, t = [], [], int(rng.uniform(*gap_s) * SR)
    while True:
        is_target = not neg or rng.random() < target_share
        clip = (pos if is_target else neg)[rng.integers(len(pos) if is_target else len(neg))]
        audio = load_clip(clip)
        if t + len(audio) > total:
            break
        out[t:t + len(audio)] += audio
        a, b = voiced_span(audio)
        power.append(float(np.mean(np.square(audio[a:b], dtype=np.float64))))
        if is_target or all_words:
            truth.append(Occurrence(clip.label, (t + a) / SR, (t + b) / SR, clip.speaker, str(clip.path)))
        t += len(audio) + int(rng.uniform(*gap_s) * SR)
    bg = _background(noise, total, rng)
    speech = float(np.mean(power)) if power else 1e-4
    gain = np.sqrt(speech / (float(np.mean(np.square(bg, dtype=np.float64))) * 10 ** (snr_db / 10) + 1e-20))
    return (out + gain * bg).astype(np.float32), truth


def _background(noise: list[np.ndarray] | None, total: int, rng: np.random.Generator) -> np.ndarray:
    if noise:
        src = noise[rng.integers(len(noise))]
        reps = -(-total // len(src))
        start = int(rng.integers(len(src)))
        return np.tile(src, reps + 1)[start:start + total].astype(np.float32)
    # No recordings: white noise through an 8-tap moving average (most energy below 2 kHz).
    return np.convolve(rng.standard_normal(total), np.ones(8) / 8, "same").astype(np.float32)


def keyword_free_stream(clips: list[Clip], targets: list[str], seconds: float, seed: int = 0,
                        noise: list[np.ndarray] | None = None, snr_db: float = 20.0) -> tuple[np.ndarray, list[Occurrence]]:
    """(audio, every word placed) of a stream of `clips` holding none of `targets`: other words and
    background only (what false alarms are counted on, and hard negatives mined from).

    Raises:
        ValueError: no clip of a word other than `targets`.
    """
    others = [c for c in clips if c.label not in targets]
    if not any(c.label is not None and c.label not in NOT_WORDS and not c.label.startswith("_") for c in others):
        raise ValueError(f"no clip of a word other than {targets}: a keyword-free stream needs other words")
    # `targets` are named as the targets the builder would place (it needs one clip of them), and
    # target_share=0 places none of them
    one_target = [c for c in clips if c.label in targets][:1]
    audio, words = build_stream(others + one_target, targets, seconds, seed, target_share=0.0, noise=noise,
                                snr_db=snr_db, all_words=True)
    assert not any(w.keyword in targets for w in words), "a keyword-free stream must hold no keyword"
    return audio, words
