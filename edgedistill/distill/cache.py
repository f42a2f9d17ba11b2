"""Cached teacher targets: one teacher pass writes the target layers, later epochs read them.

A cache is a folder:
- `targets.f16`: every clip's targets, float16, memory-mapped, [frames, layers, dim] per clip,
  clips one after the other;
- `index.npy`: [clips, 2] int64, (first frame, frames) of each clip;
- `manifest.json`: what was cached (teacher and a checksum of its weights, layers, precision,
  crop policy, the clips), and `complete` once every clip is written;
- `progress.json`: while it is written, the clips done (a stopped pass resumes there).

Crops are fixed per clip (the crop of epoch 0, `BucketBatchSampler(fixed_crops=True)`), so a
cached target is exactly what the live teacher computes on the clip the student sees. Each clip
is run through the teacher alone (or with clips of the same length): a padded batch would change
an unmasked teacher's outputs, so cached targets carry no padding.

Disk: frames per second (50) x layers x dim x 2 bytes; HuBERT Base with 3 target layers is
about 0.83 GB per hour of audio (LibriSpeech 960 h: about 0.8 TB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from edgedistill.config import ConfigError
from edgedistill.data.unlabelled import CroppedAudio, crop_seed

log = logging.getLogger(__name__)

VERSION = 1


def bytes_per_hour(layers: int, dim: int) -> float:
    """Disk bytes per hour of audio of a cache of `layers` targets of width `dim` (50 frames/s)."""
    return 3600 * 50 * layers * dim * 2


def cache_identity(teacher_name: str, teacher, layers: list[int], precision: str, dataset: CroppedAudio,
                   seed: int) -> dict:
    """What a cache was made from; a run may read a cache only if every field matches."""
    with torch.no_grad():
        checksum = float(sum(p.double().abs().sum() for p in teacher.model.parameters()))
    clips = hashlib.sha256("\n".join(f"{c.path}|{c.offset}|{n}" for c, n in
                                     zip(dataset.clips, dataset.lengths)).encode()).hexdigest()[:16]
    return {"version": VERSION, "teacher": str(teacher_name), "teacher_type": teacher.config.model_type,
            "teacher_weights_checksum": f"{checksum:.6e}", "layers": [int(x) for x in layers],
            "dim": int(teacher.config.hidden_size), "teacher_precision": precision,
            "do_normalize": bool(teacher.do_normalize),
            "crops": {"policy": "fixed (epoch 0)", "max_samples": int(dataset.max_samples), "seed": int(seed)},
            "clips": len(dataset), "clips_sha256": clips}


class TargetCache:
    """A complete cache, read-only. `get(i)` -> float16 [layers, frames, dim] of clip i."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self.index = np.load(self.folder / "index.npy")
        self._data = None  # opened lazily: each loader worker maps the file itself

    @property
    def data(self) -> np.memmap:
        if self._data is None:
            m = self.manifest
            self._data = np.memmap(self.folder / "targets.f16", dtype=np.float16, mode="r",
                                   shape=(m["frames"], len(m["layers"]), m["dim"]))
        return self._data

    def __getstate__(self):
        return {**self.__dict__, "_data": None}

    def get(self, i: int) -> np.ndarray:
        start, n = self.index[i]
        return np.ascontiguousarray(self.data[start:start + n].transpose(1, 0, 2))


def open_cache(folder: str | Path, identity: dict) -> TargetCache | None:
    """The complete cache in `folder` made from `identity`; None if the folder holds none yet.

    Raises:
        ConfigError: the folder holds a cache (complete or in progress) of something else.
    """
    folder = Path(folder)
    found = None
    for name in ("manifest.json", "identity.json"):
        if (folder / name).is_file():
            found = json.loads((folder / name).read_text())
            break
    if found is None:
        if folder.exists() and any(folder.iterdir()):
            raise ConfigError(f"target_cache folder '{folder}' is not empty and holds no cache: "
                              "name an empty or new folder")
        return None
    diff = {k: (found.get(k), v) for k, v in identity.items() if found.get(k) != v}
    if diff:
        what = "; ".join(f"{k}: cache {a!r}, this run {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"target_cache '{folder}' was made for another run ({what}): point target_cache "
                          "at a new folder (or delete this one) to cache this run's targets")
    return TargetCache(folder) if found.get("complete") else None


def write_cache(folder: str | Path, teacher, dataset: CroppedAudio, identity: dict, device,
                batch_size: int = 8, progress: bool = True) -> TargetCache:
    """Runs the teacher once over every clip (its fixed crop) and writes the cache; resumes a
    pass that was stopped, from its last flushed group of clips."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers, dim = identity["layers"], identity["dim"]
    frames = np.array([teacher.frames(n) for n in dataset.lengths], dtype=np.int64)
    index = np.stack([np.concatenate([[0], np.cumsum(frames)[:-1]]), frames], axis=1)
    total = int(frames.sum())
    size = total * len(layers) * dim * 2
    if not (folder / "identity.json").is_file():
        log.info("caching teacher targets of %d clips in %s: %.2f GB (%.2f GB per hour of audio)",
                 len(dataset), folder, size / 1e9, bytes_per_hour(len(layers), dim) / 1e9)
        _write_json(folder / "identity.json", identity)
        np.save(folder / "index.npy", index)
        with open(folder / "targets.f16", "wb") as f:
            f.truncate(size)
    done = json.loads((folder / "progress.json").read_text())["groups"] if (folder / "progress.json").is_file() else 0
    data = np.memmap(folder / "targets.f16", dtype=np.float16, mode="r+", shape=(total, len(layers), dim))
    groups = _same_length_groups(dataset.lengths, batch_size)
    seed = identity["crops"]["seed"]
    bar = tqdm(total=len(groups), initial=done, desc="cache targets", unit="batch", disable=not progress)
    last = time.monotonic()
    for g in range(done, len(groups)):
        idx = groups[g]
        wave = torch.from_numpy(np.stack([dataset[(i, crop_seed(seed, 0, i))] for i in idx])).to(device)
        hidden = teacher(wave)
        out = torch.stack([hidden[t] for t in layers], dim=2).to(torch.float16).cpu().numpy()  # [B, T, L, D]
        for b, i in enumerate(idx):
            start, n = index[i]
            data[start:start + n] = out[b, :n]
        bar.update(1)
        if time.monotonic() - last > 30 or g == len(groups) - 1:
            data.flush()
            _write_json(folder / "progress.json", {"groups": g + 1, "of": len(groups)})
            last = time.monotonic()
    bar.close()
    data.flush()
    del data
    _write_json(folder / "manifest.json", {**identity, "complete": True, "frames": total, "bytes": size,
                                           "gb_per_hour": bytes_per_hour(len(layers), dim) / 1e9})
    (folder / "identity.json").unlink()
    (folder / "progress.json").unlink(missing_ok=True)
    return TargetCache(folder)


def _same_length_groups(lengths, batch_size: int) -> list[list[int]]:
    """Clip indices in groups of equal crop length, at most `batch_size` each (a fixed order)."""
    by_len: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_len.setdefault(int(n), []).append(i)
    return [idx[k:k + batch_size] for n in sorted(by_len) for idx in [by_len[n]]
            for k in range(0, len(idx), batch_size)]


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def prepare_cache(folder: str | Path, accelerator, teacher, teacher_name: str, layers: list[int], precision: str,
                  dataset: CroppedAudio, seed: int, batch_size: int) -> TargetCache:
    """The cache of this run's targets in `folder`, written first (by the main process, the
    others waiting) if it is not there; the teacher then moves to the CPU (it will not run)."""
    identity = cache_identity(teacher_name, teacher, layers, precision, dataset, seed)
    if accelerator.is_main_process and open_cache(folder, identity) is None:
        write_cache(folder, teacher, dataset, identity, accelerator.device, batch_size=batch_size)
    accelerator.wait_for_everyone()
    cache = open_cache(folder, identity)
    teacher.to("cpu")
    return cache


class CachedTargets(torch.utils.data.Dataset):
    """`dataset`'s fixed crops paired with their cached targets: items (audio, float16 [L, T, D])."""

    def __init__(self, dataset: CroppedAudio, cache: TargetCache):
        self.dataset, self.cache = dataset, cache
        self.lengths, self.skipped = dataset.lengths, dataset.skipped

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        audio = self.dataset[item]
        return audio, self.cache.get(item[0])


def collate_targets(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(waves [B, samples], lengths [B], targets float16 [L, B, frames, D] zero-padded)."""
    from edgedistill.data.unlabelled import collate_padded

    waves, lengths = collate_padded([a for a, _ in batch])
    t = max(x.shape[1] for _, x in batch)
    first = batch[0][1]
    out = torch.zeros(first.shape[0], len(batch), t, first.shape[2], dtype=torch.float16)
    for b, (_, x) in enumerate(batch):
        out[:, b, :x.shape[1]] = torch.from_numpy(x)
    return waves, lengths, out
