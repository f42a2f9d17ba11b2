"""Labelled audio for fine-tuning and evaluation: (waveform, keyword id, speaker id).

-1 marks a missing label (a clip from an SV-only dataset has no keyword, and vice versa);
the losses ignore it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgedistill.audio import fit_length
from edgedistill.data.manifest import Clip, load_clip
from edgedistill.data.trials import IGNORE, label_index, make_trials  # noqa: F401 (re-exported)


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

    def __getitem__(self, item) -> tuple[np.ndarray, int, int]:
        idx, seed = item if isinstance(item, tuple) else (item, None)
        audio = load_clip(self.clips[idx])
        rng = np.random.default_rng(seed) if seed is not None else None
        audio = fit_length(audio, self.num_samples, rng)
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

    def add_members(self, indices, group: int | None = None, source: int = -1) -> int:
        """Adds `indices` (new items of the dataset) to class `group` of a source (the last by
        default; None: a new class, drawn as often as each other class of that source); returns
        the class's position."""
        classes = self.sources[source]
        idx = np.asarray(list(indices), dtype=np.int64)
        if group is None:
            classes.append(idx)
            return len(classes) - 1
        classes[group] = np.concatenate([classes[group], idx])
        return group

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
