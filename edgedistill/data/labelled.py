"""Labelled audio for fine-tuning and evaluation: (waveform, keyword id, speaker id).

-1 marks a missing label (a clip from an SV-only dataset has no keyword, and vice versa);
the losses ignore it.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgedistill.audio import load_audio
from edgedistill.data.manifest import Clip, ManifestError

IGNORE = -1


def label_index(clips: list[Clip], labels: list[str], what: str = "keyword") -> list[int]:
    """Maps clip labels to indices of `labels`; unknown labels are an error."""
    pos = {name: i for i, name in enumerate(labels)}
    unknown = Counter(c.label for c in clips if c.label not in pos)
    if unknown:
        raise ManifestError(f"{sum(unknown.values())} clip(s) have {what}s the model does not know: "
                            f"{dict(unknown.most_common(5))}; it knows {labels}. Drop those rows "
                            "or map them to a known label (e.g. _unknown_)")
    return [pos[c.label] for c in clips]


class LabelledAudio(Dataset):
    """Fixed-length clips with keyword and speaker ids.

    Training items are addressed by (index, seed) pairs (see `BalancedSampler`): a random
    crop or a random placement inside zero padding, plus optional background noise. Eval
    items are plain indices: centred crop or padding, no noise.

    Args:
        clips: the clips.
        keyword_ids, speaker_ids: per clip, `IGNORE` where unknown.
        num_samples: output length in samples (16,000 = 1 s).
        noise: background-noise waveforms (float32 at 16 kHz) to mix in while training.
        snr_db: (low, high) SNR range in dB for the noise.
        noise_prob: chance that a training clip gets noise.
    """

    def __init__(self, clips: list[Clip], keyword_ids: list[int], speaker_ids: list[int],
                 num_samples: int = 16_000, noise: list[np.ndarray] | None = None,
                 snr_db: tuple[float, float] = (5.0, 20.0), noise_prob: float = 0.0):
        if not (len(clips) == len(keyword_ids) == len(speaker_ids)):
            raise ValueError("clips, keyword_ids and speaker_ids must have the same length")
        self.clips, self.kw, self.spk = clips, keyword_ids, speaker_ids
        self.num_samples, self.noise, self.snr_db, self.noise_prob = num_samples, noise or [], snr_db, noise_prob

    def __len__(self) -> int:
        return len(self.clips)

    def _audio(self, clip: Clip) -> np.ndarray:
        audio = load_audio(clip.path, downmix=True)
        if clip.offset or clip.frames:
            audio = audio[clip.offset: clip.offset + clip.frames if clip.frames else None]
        return audio

    def __getitem__(self, item) -> tuple[np.ndarray, int, int]:
        idx, seed = item if isinstance(item, tuple) else (item, None)
        audio = self._audio(self.clips[idx])
        n = self.num_samples
        rng = np.random.default_rng(seed) if seed is not None else None
        if len(audio) >= n:
            start = rng.integers(0, len(audio) - n + 1) if rng else (len(audio) - n) // 2
            audio = audio[start:start + n]
        else:
            out = np.zeros(n, np.float32)
            start = rng.integers(0, n - len(audio) + 1) if rng else (n - len(audio)) // 2
            out[start:start + len(audio)] = audio
            audio = out
        if rng is not None and self.noise and rng.random() < self.noise_prob:
            audio = mix_noise(audio, self.noise[rng.integers(len(self.noise))], rng, self.snr_db)
        return audio, self.kw[idx], self.spk[idx]


def mix_noise(audio: np.ndarray, noise: np.ndarray, rng: np.random.Generator,
              snr_db: tuple[float, float]) -> np.ndarray:
    """Adds a random segment of `noise` at an SNR drawn from `snr_db` (silent audio: as is)."""
    n = len(audio)
    if len(noise) < n:
        noise = np.tile(noise, -(-n // len(noise)))
    start = rng.integers(0, len(noise) - n + 1)
    seg = noise[start:start + n].astype(np.float64)
    p_sig, p_noise = np.mean(audio.astype(np.float64) ** 2), np.mean(seg ** 2)
    if p_sig == 0 or p_noise == 0:
        return audio
    snr = rng.uniform(*snr_db)
    gain = np.sqrt(p_sig / (p_noise * 10 ** (snr / 10)))
    return (audio + gain * seg).astype(np.float32)


class BalancedSampler(Sampler):
    """Class-balanced sampling: each draw picks a source, then a class, then a clip.

    `balance_ids` are the classes to balance (keywords, or speakers for an SV-only source).
    `source_ids` (optional) name the dataset each clip came from; with two sources (a KWS
    and an SV dataset) draws are half from each. Yields (index, seed) pairs; an epoch is
    `num_samples` draws, reproducible from (seed, epoch).
    """

    def __init__(self, balance_ids: list[int], num_samples: int, seed: int = 0,
                 source_ids: list[int] | None = None):
        ids = np.asarray(balance_ids)
        src = np.zeros_like(ids) if source_ids is None else np.asarray(source_ids)
        self.sources = [[np.flatnonzero((src == s) & (ids == c)) for c in np.unique(ids[src == s])]
                        for s in np.unique(src)]
        self.num_samples, self.seed, self.epoch, self.start = num_samples, seed, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Selects the epoch and skips its first `start` draws (to resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for k in range(self.num_samples):
            groups = self.sources[rng.integers(len(self.sources))]
            members = groups[rng.integers(len(groups))]
            item = int(members[rng.integers(len(members))]), int(rng.integers(2**62))
            if k >= self.start:
                yield item


def collate_labelled(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> waves [batch, samples], keyword ids [batch], speaker ids [batch]."""
    waves = torch.from_numpy(np.stack([b[0] for b in batch]))
    return waves, torch.tensor([b[1] for b in batch]), torch.tensor([b[2] for b in batch])


def make_trials(speakers: list[str], num_trials: int = 20_000, seed: int = 0) -> np.ndarray:
    """Verification trials from speaker labels: [n, 3] rows (i, j, same_speaker).

    Half target (same speaker), half non-target pairs, drawn without replacement from all
    pairs i < j (all of them when there are fewer), reproducible from `seed`. A clip is
    never paired with itself.

    Raises:
        ManifestError: fewer than 2 speakers, or a speaker with only one clip.
    """
    spk = np.asarray(speakers)
    counts = Counter(speakers)
    if len(counts) < 2:
        raise ManifestError(f"speaker verification needs clips of at least 2 speakers, got {len(counts)}")
    lonely = [s for s, c in counts.items() if c < 2]
    if lonely:
        raise ManifestError(f"speaker(s) {lonely[:5]} have only one clip, so no same-speaker trial can "
                            "be made: add clips or drop those speakers")
    rng = np.random.default_rng(seed)
    by_spk = {s: np.flatnonzero(spk == s) for s in counts}
    n_target_pairs = sum(c * (c - 1) // 2 for c in counts.values())
    n_pairs = len(spk) * (len(spk) - 1) // 2
    want = num_trials // 2
    target, nontarget = set(), set()
    if n_target_pairs <= want:
        target = {(int(a), int(b)) for idx in by_spk.values() for k, a in enumerate(idx) for b in idx[k + 1:]}
    names = list(by_spk)
    weights = np.array([counts[s] * (counts[s] - 1) / 2 for s in names], dtype=float)
    while len(target) < min(want, n_target_pairs):
        s = names[rng.choice(len(names), p=weights / weights.sum())]
        a, b = rng.choice(by_spk[s], size=2, replace=False)
        target.add((int(min(a, b)), int(max(a, b))))
    want_non = min(want, n_pairs - n_target_pairs)
    while len(nontarget) < want_non:
        a, b = rng.integers(len(spk), size=2)
        if spk[a] != spk[b]:
            nontarget.add((int(min(a, b)), int(max(a, b))))
    rows = sorted((a, b, 1) for a, b in target) + sorted((a, b, 0) for a, b in nontarget)
    return np.asarray(rows, dtype=np.int64)
