"""Label indices and verification trials (numpy only: the device runtime uses them too)."""

from __future__ import annotations

from collections import Counter

from pathlib import Path

import numpy as np

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


def make_trials(speakers: list[str], num_trials: int = 20_000, seed: int = 0) -> np.ndarray:
    """Verification trials from speaker labels: [n, 3] rows (i, j, same_speaker).

    Half target (same speaker), half non-target pairs, drawn without replacement from all
    pairs i < j (all of them when there are fewer), reproducible from `seed`. A clip is
    never paired with itself. A speaker with a single clip (common in Speech Commands splits)
    takes part in non-target trials only.

    Raises:
        ManifestError: fewer than 2 speakers, or no speaker with 2 clips (no target trial).
    """
    spk = np.asarray(speakers)
    counts = Counter(speakers)
    if len(counts) < 2:
        raise ManifestError(f"speaker verification needs clips of at least 2 speakers, got {len(counts)}")
    if max(counts.values()) < 2:
        raise ManifestError(f"all {len(counts)} speakers have only one clip, so no same-speaker trial can "
                            "be made: add clips of some speakers")
    rng = np.random.default_rng(seed)
    by_spk = {s: np.flatnonzero(spk == s) for s in counts}
    n_target_pairs = sum(c * (c - 1) // 2 for c in counts.values())
    n_pairs = len(spk) * (len(spk) - 1) // 2
    want = num_trials // 2
    target, nontarget = set(), set()
    if n_target_pairs <= want:
        target = {(int(a), int(b)) for idx in by_spk.values() for k, a in enumerate(idx) for b in idx[k + 1:]}
    names = [s for s in by_spk if counts[s] > 1]
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


def sv_unscored_reason(clips: list[Clip], split: str | None = None) -> str | None:
    """Why speaker verification cannot be scored on `clips` (None when it can)."""
    counts = Counter(c.speaker for c in clips if c.speaker is not None)
    where = f"the '{split}' split" if split else "these clips"
    if len(counts) < 2:
        return f"{where} has {len(counts)} speaker(s) and SV trials need at least 2"
    if max(counts.values()) < 2:
        return f"every speaker of {where} has a single clip, so no same-speaker trial can be made"
    return None


def trials_for_clips(clips: list[Clip], num_trials: int = 20_000, seed: int = 0) -> np.ndarray | None:
    """Trials [n, 3] (i, j, target) indexing `clips`, drawn among the clips that have a
    speaker; None when SV cannot be scored on them (`sv_unscored_reason`)."""
    idx = np.array([i for i, c in enumerate(clips) if c.speaker is not None], dtype=np.int64)
    if sv_unscored_reason(clips) is not None:
        return None
    local = make_trials([clips[i].speaker for i in idx], num_trials, seed)
    return np.c_[idx[local[:, 0]], idx[local[:, 1]], local[:, 2]]


def trials_from_list(clips: list[Clip], rows: list[tuple[int, str, str]], root) -> np.ndarray:
    """Official trial-list rows (label, rel_path1, rel_path2) -> [n, 3] indices into `clips`."""
    root = Path(root)
    base = root / "wav" if (root / "wav").is_dir() else root
    index = {str(c.path.relative_to(base)): i for i, c in enumerate(clips)}
    missing = [p for _, a, b in rows for p in (a, b) if p not in index]
    if missing:
        raise ManifestError(f"{len(missing)} trial-list file(s) are not among the clips, e.g. {missing[:3]}")
    return np.array([(index[a], index[b], y) for y, a, b in rows], dtype=np.int64)


def official_trials(spec: str, clips: list[Clip], split: str | None) -> np.ndarray | None:
    """The official trial list of a `voxceleb:DIR` test split as [n, 3] indices into `clips`
    (None for any other data or split, or when DIR holds no trial list: trials are then drawn)."""
    from edgedistill.data.layouts import find_trial_list, read_trial_list

    kind, _, root = str(spec).partition(":")
    found = find_trial_list(Path(root)) if kind == "voxceleb" and split == "test" else None
    return trials_from_list(clips, read_trial_list(found), root) if found else None
