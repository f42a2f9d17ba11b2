"""Training windows for keyword detection, cut from streams the way the device sees them.

A detector judges a window of `window` samples every `hop` samples of a stream. Trained on
centred one-word clips only, a model never sees what most of those windows hold: half words,
two words, a word's edge, noise alone. Here a window of a stream built from training clips
(`edgedistill.data.streams.build_stream`, `all_words=True`) is labelled as the detector should
answer it:

- a target keyword, where the window holds that word's whole voiced span and the word ends in
  the window's last `tail` samples (where hops of `hop` place a word's end before the detector
  sees it whole and fires);
- `BACKGROUND` ("no keyword") otherwise: part of a target word, other words, several words, or
  noise alone.

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND = "_background_"  # the "no keyword" class of a detector


@dataclass(frozen=True)
class Word:
    """A word placed in a stream: voiced from sample `start` to `end` (exclusive)."""

    label: str
    start: int
    end: int


def words_of(occurrences) -> list[Word]:
    """`Word`s (samples at 16 kHz) of a stream's occurrences (`streams.Occurrence`, seconds)."""
    return [Word(o.keyword, int(round(o.t0 * 16_000)), int(round(o.t1 * 16_000))) for o in occurrences]


def window_label(start: int, window: int, words: list[Word], targets: set[str] | list[str], tail: int) -> str:
    """The label of the window [start, start + window) of a stream holding `words`: the target
    keyword whose whole voiced span it holds, ending in its last `tail` samples (the latest
    ending one if several), else `BACKGROUND`."""
    stop = start + window
    whole = [w for w in words if w.label in targets and w.start >= start and w.end <= stop and w.end >= stop - tail]
    return max(whole, key=lambda w: w.end).label if whole else BACKGROUND


def window_starts(total: int, window: int, hop: int) -> np.ndarray:
    """The start of every window a detector with this `hop` evaluates on a stream of `total`
    samples (the first once a whole window has arrived)."""
    if total < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, total - window + 1, hop, dtype=np.int64)


def label_windows(total: int, words: list[Word], targets: list[str], window: int, hop: int,
                  tail: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(starts, labels) of every device-hop window of a stream. `tail` defaults to the hop plus
    a quarter of the window: the word's end may fall anywhere in the last part of the window."""
    tail = hop + window // 4 if tail is None else tail
    starts = window_starts(total, window, hop)
    targets = set(targets)
    return starts, [window_label(int(s), window, words, targets, tail) for s in starts]


def add_false_alarms(starts: np.ndarray, labels: list[str], fired_ends: list[int], window: int,
                     words: list[Word], targets: list[str], tail: int) -> tuple[np.ndarray, list[str], int]:
    """Hard negatives: the windows ending where a detector fired (`fired_ends`, samples of the
    stream) that hold no whole target word join the windows as `BACKGROUND`. Returns (starts,
    labels, windows added)."""
    extra = [e - window for e in fired_ends if e - window >= 0]
    extra = [s for s in extra if window_label(s, window, words, set(targets), tail) == BACKGROUND]
    if not extra:
        return starts, labels, 0
    return (np.concatenate([starts, np.asarray(extra, dtype=np.int64)]), labels + [BACKGROUND] * len(extra),
            len(extra))
