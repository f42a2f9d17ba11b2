"""Unlabelled audio for distillation: random crops, length-sorted buckets, zero-padded batches.

All randomness is a function of (seed, epoch, index), so a resumed run sees exactly the
batches an uninterrupted run would have seen, and each rank takes its own share.
"""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgedistill.audio import AudioError, audio_num_samples, load_audio
from edgedistill.data.manifest import Clip

log = logging.getLogger(__name__)


class CroppedAudio(Dataset):
    """Yields random crops of at most `max_samples` samples.

    Items are addressed by (index, crop_seed) pairs from `BucketBatchSampler`. With
    `transcripts` (one per clip, e.g. `Clip.text`), an item is (audio, transcript), and the
    transcript is None when the clip was cropped: it no longer matches the audio.
    """

    def __init__(self, clips: list[Clip], max_samples: int, min_samples: int = 400,
                 transcripts: list[str | None] | None = None):
        if transcripts is not None and len(transcripts) != len(clips):
            raise ValueError(f"{len(transcripts)} transcripts for {len(clips)} clips")
        self.max_samples, self.min_samples = max_samples, min_samples
        self.lengths = []
        self.transcripts: list[str | None] | None = None if transcripts is None else []
        self.skipped: list[tuple[str, str]] = []
        kept = []
        for i, c in enumerate(clips):
            try:
                n = c.frames or audio_num_samples(c.path)   # a segment (e.g. a _silence_ crop): its length
            except AudioError as exc:
                self.skipped.append((str(c.path), str(exc)))
                continue
            if n < min_samples:
                self.skipped.append((str(c.path), f"{n} samples, fewer than the CNN's {min_samples}"))
                continue
            kept.append(c)
            self.lengths.append(min(n, max_samples))
            if transcripts is not None:
                self.transcripts.append(transcripts[i])
        if self.skipped:
            log.warning("skipped %d unusable clip(s), e.g. %s", len(self.skipped), self.skipped[:2])
        if not kept:
            raise AudioError(f"none of the {len(clips)} clips is usable: {self.skipped[:3]}")
        self.clips = kept

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: tuple[int, int]):
        idx, crop_seed = item
        clip = self.clips[idx]
        audio = load_audio(clip.path, min_samples=self.min_samples)
        if clip.frames:
            audio = audio[clip.offset:clip.offset + clip.frames]
        cropped = len(audio) > self.max_samples
        if cropped:
            start = np.random.default_rng(crop_seed).integers(0, len(audio) - self.max_samples + 1)
            audio = audio[start:start + self.max_samples]
        if self.transcripts is None:
            return audio
        return audio, None if cropped else self.transcripts[idx]


class BucketBatchSampler(Sampler):
    """Length-sorted buckets in a seeded random order, sharded across ranks.

    Each epoch: sort clips by length (ties broken at random), cut into batches of
    `batch_size`, shuffle the batch order, and give rank r the batches r, r + world, ...
    Every rank gets the same number of batches. Yields lists of (index, crop_seed); with
    `fixed_crops` a clip's crop seed is the same every epoch (what cached targets need).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, fixed_crops: bool = False):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world_size
        self.epoch, self.start, self.fixed_crops = 0, 0, fixed_crops
        n_batches = -(-len(lengths) // batch_size)
        if n_batches < world_size:
            raise ValueError(f"{len(lengths)} clips make {n_batches} batches of {batch_size}, "
                             f"fewer than the {world_size} processes: lower batch_size")

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Selects the epoch and skips this rank's first `start_batch` batches (for resume)."""
        self.epoch, self.start = epoch, start_batch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.lexsort((rng.random(len(self.lengths)), self.lengths))
        batches = [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        perm = rng.permutation(len(batches))
        usable = len(batches) // self.world * self.world
        return [batches[j] for j in perm[:usable]]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) // self.world

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        mine = self._batches()[self.rank::self.world]
        epoch = 0 if self.fixed_crops else self.epoch
        for batch in mine[self.start:]:
            yield [(i, crop_seed(self.seed, epoch, i)) for i in batch]


def crop_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of clip `index`'s random crop in `epoch` (a function of nothing else)."""
    return (seed * 1_000_003 + epoch) * 10_000_019 + index


def default_workers(processes: int = 1, gpu: bool = True) -> int:
    """Loader workers per training process. On a GPU: the cores this process may use, shared
    among `processes`, less one for the training loop itself, at most 8 (0 on a single core).
    On a CPU: 0, since the training step already uses every core and a worker only competes
    with it (benchmarks/results/loader_throughput.md)."""
    import os

    if not gpu:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores // max(processes, 1) - 1))


def loader_options(num_workers: int, pin_memory: bool) -> dict:
    """DataLoader keywords for `num_workers` processes: persistent workers that prefetch 4
    batches each, and pinned memory for asynchronous copies to a GPU."""
    extra = {"persistent_workers": True, "prefetch_factor": 4} if num_workers > 0 else {}
    return {"num_workers": num_workers, "pin_memory": pin_memory, **extra}


def collate_padded(batch: list) -> tuple:
    """Zero-pads to the longest clip (HuBERT Base takes no attention mask).

    Returns:
        waves [batch, samples] float32, lengths [batch] int64; and the transcripts (a list)
        when the items are (audio, transcript) pairs.
    """
    if batch and isinstance(batch[0], tuple):
        waves, lengths = collate_padded([a for a, _ in batch])
        return waves, lengths, [t for _, t in batch]
    lengths = torch.tensor([len(a) for a in batch], dtype=torch.long)
    waves = torch.zeros(len(batch), int(lengths.max()))
    for i, a in enumerate(batch):
        waves[i, : len(a)] = torch.from_numpy(a)
    return waves, lengths
