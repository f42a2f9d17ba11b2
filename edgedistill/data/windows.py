"""Training windows for keyword detection, cut from streams the way the device sees them.

A detector judges a window of `window` samples every `hop` samples of a stream. Trained on
centred one-word clips only, a model never sees what most of those windows hold: half words,
two words, a word's edge, noise alone. Here a window of a stream built from training clips
(`edgedistill.data.streams.build_stream`, `all_words=True`) is labelled as the detector should
answer it:

- a target keyword, where the window holds that word's whole voiced span (up to `slack` samples
  of its onset: a span measured over a clip's own background can fill a 1 s clip, which a 1 s
  window at 100 ms hops would then never hold whole) and the word ends in the window's last
  `tail` samples (where hops of `hop` place a word's end before the detector sees it whole and
  fires);
- another word the model knows, where the window holds it whole at such a position (what a
  clip of that word looks like: its clip says so too);
- `BACKGROUND` ("no keyword") otherwise: part of a word, or several words cut at the edges;
- noise alone (no word's voiced span reaches into the window) is `BACKGROUND` too, or, where the
  model has a class for it (`_silence_`, crops of the background recordings labelled as clips),
  that class: labelling the same sound `_background_` in windows and `_silence_` in clips would
  teach the two opposite answers.

numpy only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgedistill.data.layouts import SILENCE  # a data set's class of background-noise crops

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


def window_label(start: int, window: int, words: list[Word], targets: set[str] | list[str], tail: int,
                 slack: int = 0, others: set[str] | frozenset = frozenset(), silence: str | None = None) -> str:
    """The label of the window [start, start + window) of a stream holding `words`: the target
    keyword whose voiced span it holds (all but at most `slack` samples of its onset), ending
    in its last `tail` samples (the latest ending one if several); else, likewise, a word of
    `others` (non-target labels the model knows: such a window is what a clip of that word
    looks like, and labelling it "no keyword" would contradict the clip's own label); else
    `silence` (when given) where no word's span reaches into the window; else `BACKGROUND`."""
    stop = start + window

    def whole(names):
        return [w for w in words if w.label in names and w.start >= start - slack and w.end <= stop
                and w.end >= stop - tail]

    found = whole(targets) or whole(others)
    if found:
        return max(found, key=lambda w: w.end).label
    if silence is not None and not any(w.end > start and w.start < stop for w in words):
        return silence
    return BACKGROUND


def label_roles(labels, targets) -> tuple[frozenset, str | None]:
    """(the non-target words among a detector's `labels`, its class for noise alone or None): what
    `window_label` takes as `others` and `silence`."""
    return frozenset(labels) - {BACKGROUND, SILENCE} - set(targets), SILENCE if SILENCE in labels else None


def window_starts(total: int, window: int, hop: int) -> np.ndarray:
    """The start of every window a detector with this `hop` evaluates on a stream of `total`
    samples (the first once a whole window has arrived)."""
    if total < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, total - window + 1, hop, dtype=np.int64)


def label_windows(total: int, words: list[Word], targets: list[str], window: int, hop: int,
                  tail: int | None = None, slack: int | None = None,
                  others: set[str] | frozenset = frozenset(), silence: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(starts, labels) of every device-hop window of a stream (`window_label`). `tail` defaults
    to the hop plus a quarter of the window (the word's end may fall anywhere in the last part
    of the window), `slack` to a fifth of the window."""
    tail = hop + window // 4 if tail is None else tail
    slack = window // 5 if slack is None else slack
    starts = window_starts(total, window, hop)
    targets = set(targets)
    return starts, [window_label(int(s), window, words, targets, tail, slack, others, silence) for s in starts]


def add_false_alarms(starts: np.ndarray, labels: list[str], fired_ends: list[int], window: int,
                     words: list[Word], targets: list[str], tail: int, slack: int = 0,
                     others: set[str] | frozenset = frozenset(),
                     silence: str | None = None) -> tuple[np.ndarray, list[str], int]:
    """Hard negatives: the windows ending where a detector fired (`fired_ends`, samples of the
    stream) that hold no whole target word join the windows with their own label (`BACKGROUND`,
    a word of `others` held whole, or `silence` over noise alone: "not the keyword" either way).
    Returns (starts, labels, windows added)."""
    extra = [(e - window, window_label(e - window, window, words, set(targets), tail, slack, others, silence))
             for e in fired_ends if e - window >= 0]
    extra = [(s, lab) for s, lab in extra if lab not in targets]
    if not extra:
        return starts, labels, 0
    return (np.concatenate([starts, np.asarray([s for s, _ in extra], dtype=np.int64)]),
            list(labels) + [lab for _, lab in extra], len(extra))


class StreamWindows:
    """Labelled device-hop windows of training streams, as a dataset: items (audio [window],
    keyword id, `IGNORE`) addressed by (index, seed) like `labelled.LabelledAudio`'s, with a
    random gain. Built once from the training clips (`build_stream(all_words=True)`, `streams`
    streams of `seconds` each, seeded; noise at an SNR drawn from `snr_db` per stream).

    A window holding a whole non-target word at a device position keeps that word's label (as
    its clip does); one of noise alone is `_silence_` where `label_ids` has that class; `kind` is 0
    for a target window, 1 for "no keyword" (`BACKGROUND` or `_silence_`), 2 for another word: a
    sampler balances the three (how the "no keyword" class is weighted); `is_background` marks
    the kind-1 windows.
    """

    def __init__(self, clips, targets: list[str], label_ids: dict[str, int], window: int = 16_000, hop: int = 1_600,
                 seconds: float = 120.0, streams: int = 10, seed: int = 0, noise: list | None = None,
                 snr_db: tuple[float, float] = (5.0, 20.0), gain_db: tuple[float, float] = (-6.0, 6.0)):
        from edgedistill.data.streams import build_stream

        rng = np.random.default_rng([seed, 7])
        others, silence = label_roles(label_ids, targets)
        self.window, self.gain_db, self.audio, rows = window, gain_db, [], []
        for k in range(streams):
            audio, occ = build_stream(clips, targets, seconds, seed=int(rng.integers(2**31)), noise=noise,
                                      snr_db=float(rng.uniform(*snr_db)), all_words=True)
            starts, labels = label_windows(len(audio), words_of(occ), targets, window, hop, others=others,
                                           silence=silence)
            self.audio.append(audio)
            rows += [(k, int(s), label_ids[lab]) for s, lab in zip(starts, labels)]
        if not rows:
            raise ValueError(f"training streams of {seconds:g} s are shorter than one window ({window} samples)")
        self.rows = rows
        self._quiet = {label_ids[BACKGROUND]} | ({label_ids[silence]} if silence else set())
        self.is_background = np.array([lab in self._quiet for _, _, lab in rows])
        target_ids = {label_ids[t] for t in targets}
        self.kind = np.array([0 if lab in target_ids else 1 if b else 2
                              for (_, _, lab), b in zip(rows, self.is_background)], dtype=np.int64)
        self.labels = [lab for _, _, lab in rows]

    def add(self, audio: np.ndarray, starts: np.ndarray, labels: list[int]) -> None:
        """Appends windows of another stream (`labels`: label ids) as kind 3, hard negatives: the
        windows of a keyword-free stream where the model's detector fired (`training.mining`)."""
        k = len(self.audio)
        self.audio.append(audio)
        self.rows += [(k, int(s), int(lab)) for s, lab in zip(starts, labels)]
        self.labels += [int(lab) for lab in labels]
        self.is_background = np.concatenate([self.is_background, np.array([lab in self._quiet for lab in labels],
                                                                          dtype=bool)])
        self.kind = np.concatenate([self.kind, np.full(len(labels), 3, dtype=np.int64)])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        from edgedistill.data.labelled import IGNORE

        idx, seed = item if isinstance(item, tuple) else (item, None)
        k, start, label = self.rows[idx]
        audio = self.audio[k][start:start + self.window]
        if seed is not None:
            audio = audio * np.float32(10 ** (np.random.default_rng(seed).uniform(*self.gain_db) / 20))
        return np.clip(audio, -1.0, 1.0).astype(np.float32), label, IGNORE


class ClipsAndWindows:
    """The clips' dataset followed by the windows' (indices past the clips are windows)."""

    def __init__(self, clips, windows: StreamWindows):
        self.clips, self.windows = clips, windows

    def __len__(self) -> int:
        return len(self.clips) + len(self.windows)

    def __getitem__(self, item):
        idx, seed = item if isinstance(item, tuple) else (item, None)
        source, idx = (self.clips, idx) if idx < len(self.clips) else (self.windows, idx - len(self.clips))
        return source[idx if seed is None else (idx, seed)]
