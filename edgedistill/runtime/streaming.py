"""Continuous listening on a device: keyword events with timestamps from an endless stream,
optionally gated by enrolled speakers. numpy + onnxruntime only (no torch).

    from edgedistill.runtime.model import EdgeModel
    from edgedistill.runtime.streaming import Detector
    m = EdgeModel("model.int8.onnx", threads=1)
    m.enroll("alice", ["a1.wav", "a2.wav"])
    det = Detector(m, keywords={"yes": 0.8, "stop": 0.7}, only_enrolled=True)
    for chunk in microphone_chunks():          # any size: 10 ms to 1 s of 16 kHz audio
        for event in det.push(chunk):
            print(event)                        # Event(keyword="yes", start_s=..., end_s=..., ...)

How it works: a window of the model's clip length (default 1 s) slides over the stream and is
evaluated every hop (default 100 ms) at fixed sample positions of the stream, so the events do
not depend on how the caller cuts the audio into chunks. The keyword posteriors are averaged
over the last `smooth_hops` hops. A keyword's event is its peak: once the smoothed score
crosses the keyword's threshold, the detector follows it while it rises and emits the event
when it falls back (or `max_wait_hops` after the crossing, which bounds the delay). The keyword
then re-arms only once its score has dropped below the threshold again and `refractory_s` has
passed, so one utterance fires once however long the window keeps seeing it. Memory is one
window of audio and a few hops of scores, whatever the stream's length.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgedistill.audio import AudioError
from edgedistill.runtime.model import EdgeModel, softmax

NEVER_FIRE = ("_silence_", "_unknown_", "_background_")
DEFAULT_THRESHOLD = 0.8  # where a keyword has no calibrated threshold in the model


@dataclass(frozen=True)
class Event:
    """A detected keyword.

    Attributes:
        keyword: the label.
        score: its smoothed posterior at the peak (0..1).
        start_s, end_s: the peak window's span in seconds of the stream.
        speaker: the best-matching enrolled speaker (None without enrolment).
        speaker_score: cosine score against that speaker.
        accepted: speaker_score >= the SV threshold (None without enrolment).
        speaker_scores: cosine score against every enrolled speaker (None without enrolment).
    """

    keyword: str
    score: float
    start_s: float
    end_s: float
    speaker: str | None = None
    speaker_score: float | None = None
    accepted: bool | None = None
    speaker_scores: dict[str, float] | None = None

    def as_dict(self) -> dict:
        """JSON-able: `speaker` only where the gate accepted the voice; `best_match` is the closest
        enrolled speaker either way (None without enrolment)."""
        return {"time_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "keyword": self.keyword,
                "score": round(self.score, 4), "speaker": self.speaker if self.accepted else None,
                "best_match": self.speaker,
                "speaker_score": None if self.speaker_score is None else round(self.speaker_score, 4),
                "accepted": self.accepted}


class _LabelsOnly:
    """What a `Detector` needs of a model to decide on keyword logits computed elsewhere."""

    def __init__(self, labels: list[str], window: int, sample_rate: int = 16_000):
        self.labels, self.sample_rate = list(labels), sample_rate
        self.min_samples = self.max_samples = window
        self.speakers, self.threshold, self.keyword_thresholds = {}, None, {}

    def _need(self, name: str) -> None:
        pass


def detect_on_logits(logits: np.ndarray, labels: list[str], keywords: dict[str, float], window: int = 16_000,
                     hop: int = 1_600, sample_rate: int = 16_000, **settings) -> list[Event]:
    """The events a `Detector` with these `keywords` and `settings` gives on a stream whose
    windows' keyword logits [hops, labels] were computed elsewhere (a PyTorch model in training,
    in batches): row i is the window ending at sample `window + i * hop`, as the detector hears
    them. The same decisions, without a model call per hop."""
    if window % hop:
        raise ValueError(f"window {window} must be a multiple of hop {hop} (the detector hears whole hops)")
    det = Detector(_LabelsOnly(labels, window, sample_rate), keywords, window_s=window / sample_rate,
                   hop_s=hop / sample_rate, **settings)
    events: list[Event] = []
    for i, row in enumerate(np.asarray(logits, dtype=np.float32)):
        det._total = window + i * hop
        events += det._decide(row, None)
    return events + det.flush()


class Detector:
    """Sliding-window keyword detector over an `EdgeModel`.

    Args:
        model: an `edgedistill.runtime.EdgeModel` of a multi-task export.
        keywords: target labels, as {label: threshold} or a list; default: the keywords the
            model's thresholds were calibrated for (`EdgeModel.keyword_thresholds`), else every
            label except `_silence_` / `_unknown_` / `_background_`, which never fire.
        threshold: one threshold of a keyword's smoothed posterior (0..1) for every keyword of
            a list; default: each keyword's calibrated threshold where the model carries one
            (chosen at a target false-alarm rate), else 0.8.
        window_s: analysis window in seconds (default 1.0, the training clip length).
        hop_s: evaluation period in seconds (default 0.1 = 100 ms).
        smooth_hops: hops the posteriors are averaged over.
        refractory_s: silence of a keyword after its event, in seconds.
        max_wait_hops: hops after the threshold crossing after which the peak is emitted even
            if the score is still rising (bounds the detection delay).
        only_enrolled: drop events whose speaker is not accepted (needs enrolled speakers:
            `model.enroll(name, clips)`); otherwise events carry the decision.
        sv_threshold: speaker acceptance threshold (default: the model's, chosen on validation).
        windowed: run a streaming model on each whole window from silence, as the other models run
            (to compare the two; a stream is cheaper and hears what came before the window).
    """

    def __init__(self, model: EdgeModel, keywords: dict[str, float] | list[str] | None = None,
                 threshold: float | None = None,
                 window_s: float = 1.0, hop_s: float = 0.1, smooth_hops: int = 3, refractory_s: float = 1.0,
                 max_wait_hops: int = 3, only_enrolled: bool = False, sv_threshold: float | None = None,
                 windowed: bool = False):
        model._need("keyword_logits")
        self.model, self.sr = model, model.sample_rate
        labels = list(model.labels)
        calibrated = dict(getattr(model, "keyword_thresholds", None) or {})
        if keywords is None:
            keywords = list(calibrated) or [k for k in labels if k not in NEVER_FIRE]
        if not isinstance(keywords, dict):
            keywords = {k: threshold if threshold is not None else calibrated.get(k, DEFAULT_THRESHOLD)
                        for k in keywords}
        unknown = [k for k in keywords if k not in labels]
        if unknown:
            raise ValueError(f"keyword(s) {unknown} are not labels of this model; it knows {labels}")
        never = [k for k in keywords if k in NEVER_FIRE]
        if never:
            raise ValueError(f"{never} never fire (they mean 'no keyword'): leave them out of keywords")
        bad = {k: t for k, t in keywords.items() if not 0.0 < t <= 1.0}
        if bad:
            raise ValueError(f"thresholds must be in (0, 1], got {bad}")
        self.window, self.hop = int(round(window_s * self.sr)), int(round(hop_s * self.sr))
        self.streaming = getattr(model, "streaming", None) is not None and not windowed
        if getattr(model, "streaming", None) is not None:  # a streaming model hears each hop once; its window is fixed at export
            if self.window != model.window_samples:
                raise ValueError(f"this streaming model scores windows of {model.window_samples / self.sr:g} s (fixed at "
                                 f"export): use window_s={model.window_samples / self.sr:g}")
            if self.hop % model.frame_samples:
                raise ValueError(f"hop_s={hop_s} is not a whole number of the model's "
                                 f"{1000 * model.frame_samples / self.sr:g} ms frames: use e.g. hop_s=0.1")
        if self.hop < 1 or self.window < model.min_samples or self.window > model.max_samples:
            raise ValueError(f"window_s={window_s} and hop_s={hop_s} must give a hop of at least one sample and "
                             f"a window of {model.min_samples} to {model.max_samples} samples")
        if smooth_hops < 1 or max_wait_hops < 0 or refractory_s < 0:
            raise ValueError("smooth_hops must be >= 1, max_wait_hops and refractory_s >= 0")
        if only_enrolled and not model.speakers:
            raise ValueError("only_enrolled=True needs enrolled speakers: call model.enroll(name, clips) first")
        self.sv_threshold = model.threshold if sv_threshold is None else sv_threshold
        if model.speakers and self.sv_threshold is None:
            raise ValueError("speaker gating needs a threshold: the model carries none, pass sv_threshold=...")
        self.targets = [(labels.index(k), k, float(t)) for k, t in keywords.items()]
        self.smooth_hops, self.max_wait = smooth_hops, max_wait_hops
        self.refractory = int(round(refractory_s * self.sr))
        self.only_enrolled = only_enrolled
        self.hop_ms: deque[float] = deque(maxlen=10_000)  # per-hop compute, bounded
        self.reset()

    def reset(self) -> None:
        """Forgets the stream: the next sample is at time 0."""
        self._buf = np.zeros(self.window, np.float32)
        self._pending: list[np.ndarray] = []  # a streaming model's samples of the hop in progress
        if self.streaming:
            if getattr(self, "_stepper", None) is None:
                from edgedistill.runtime.model import HopStepper

                self._stepper = HopStepper(self.model, self.hop)
            self._stepper.reset()
        self._total = 0        # samples received since reset
        self._probs: deque[np.ndarray] = deque(maxlen=self.smooth_hops)
        self._cand: dict[str, dict] = {}          # keyword -> its rising peak since the crossing
        self._quiet_until: dict[str, int] = {}    # keyword -> first sample it may fire again
        self._armed = {name: True for _, name, _ in self.targets}  # False from an event until the score drops

    def push(self, chunk: np.ndarray, sample_rate: int | None = None) -> list[Event]:
        """Feeds audio; returns the events completed by it (in time order).

        Args:
            chunk: mono samples [n]: float32/float64 in [-1, 1], or int16 PCM (scaled by 1/32768).
            sample_rate: the chunk's rate in Hz, checked against the model's when given.

        Raises:
            AudioError: wrong rate, dtype, channels, or NaN/Inf samples (nothing is consumed).
        """
        x = self._check(chunk, sample_rate)
        events: list[Event] = []
        pos = 0
        while pos < len(x):
            # Samples up to the next hop boundary of the stream (boundaries are absolute).
            take = min(len(x) - pos, self.hop - self._total % self.hop)
            seg = x[pos:pos + take]
            self._total += take
            pos += take
            if self.streaming:  # every hop is heard (the state runs from the start); decisions as below
                self._pending.append(seg)
                if self._total % self.hop == 0:
                    out = self._step()
                    if self._total >= self.window:
                        events += self._decide(out["keyword_logits"][0], self._embedding(out))
                continue
            self._buf = np.concatenate([self._buf[take:], seg]) if take < self.window else seg[-self.window:].copy()
            if self._total % self.hop == 0 and self._total >= self.window:
                events += self._evaluate()
        return events

    def flush(self) -> list[Event]:
        """Emits the peaks still pending at the end of a recording."""
        events = [self._emit(k, c) for k, c in sorted(self._cand.items(), key=lambda kv: kv[1]["end"])]
        self._cand.clear()
        return [e for e in events if e is not None]

    def stats(self) -> dict:
        """Per-hop compute: mean and p99 ms, and the share of one core used at this hop
        (mean ms / hop ms, the number device budgets are made of)."""
        if not self.hop_ms:
            return {"hops": 0}
        t = np.asarray(self.hop_ms)
        hop_ms = 1000 * self.hop / self.sr
        return {"hops": len(t), "hop_ms": hop_ms, "mean_ms": float(t.mean()), "p99_ms": float(np.percentile(t, 99)),
                "core_share": float(t.mean() / hop_ms)}

    # ---- internals ---------------------------------------------------------------------
    def _check(self, chunk, sample_rate) -> np.ndarray:
        if sample_rate is not None and sample_rate != self.sr:
            raise AudioError(f"chunk is at {sample_rate} Hz but the model needs {self.sr} Hz: resample the stream")
        if not isinstance(chunk, np.ndarray):
            raise AudioError(f"expected a numpy array of samples, got {type(chunk).__name__}")
        if chunk.ndim != 1:
            raise AudioError(f"chunk has shape {chunk.shape}: a mono 1-D array [samples] is needed "
                             "(average the channels of [samples, channels] audio: `x.mean(axis=1)`)")
        if chunk.dtype == np.int16:
            return chunk.astype(np.float32) / 32768.0
        if not np.issubdtype(chunk.dtype, np.floating):
            raise AudioError(f"chunk has dtype {chunk.dtype}: give float32 in [-1, 1] or int16 PCM")
        if not np.isfinite(chunk).all():
            raise AudioError("chunk has NaN/Inf samples: fix the capture; nothing of this chunk was used")
        return chunk.astype(np.float32, copy=False)

    def _step(self) -> dict[str, np.ndarray]:
        """A streaming model's outputs for the hop just completed (its front end included in the timing)."""
        hop = np.concatenate(self._pending)
        self._pending = []
        t0 = time.perf_counter()
        out = self._stepper(hop)
        self.hop_ms.append(1000 * (time.perf_counter() - t0))
        return out

    @staticmethod
    def _embedding(out: dict) -> np.ndarray | None:
        emb = out.get("speaker_embedding")
        return None if emb is None else emb[0]

    def _evaluate(self) -> list[Event]:
        t0 = time.perf_counter()
        x = self._buf[None, :]
        out = (self.model.infer(x) if getattr(self.model, "streaming", None) is not None  # windowed=True
               else self.model.session.run(None, {"waveform": x}))
        self.hop_ms.append(1000 * (time.perf_counter() - t0))
        out = dict(zip(self.model.outputs, out))
        emb = out.get("speaker_embedding")
        return self._decide(out["keyword_logits"][0], None if emb is None else emb[0])

    def _decide(self, logits: np.ndarray, emb: np.ndarray | None) -> list[Event]:
        """The events completed by the window ending now (`self._total`), given its keyword
        logits [labels] and speaker embedding [dim] (or None)."""
        self._probs.append(softmax(logits))
        smooth = np.mean(self._probs, axis=0)
        emb = None if emb is None else emb[None]
        end = self._total
        events = []
        for idx, name, thr in self.targets:
            score = float(smooth[idx])
            cand = self._cand.get(name)
            if score < thr:
                self._armed[name] = True
            if cand is None:
                if score >= thr and self._armed[name] and end >= self._quiet_until.get(name, 0):
                    self._cand[name] = {"score": score, "end": end, "emb": None if emb is None else emb[0].copy(),
                                        "hops": 0}
                continue
            cand["hops"] += 1
            if score > cand["score"]:
                cand.update(score=score, end=end, emb=None if emb is None else emb[0].copy())
            if score < thr or score < cand["score"] or cand["hops"] >= self.max_wait:
                event = self._emit(name, self._cand.pop(name))
                if event is not None:
                    events.append(event)
        return sorted(events, key=lambda e: e.end_s)

    def _emit(self, name: str, cand: dict) -> Event | None:
        self._quiet_until[name] = cand["end"] + self.refractory
        self._armed[name] = False
        speaker = score = accepted = scores = None
        if self.model.speakers and cand["emb"] is not None:
            e = cand["emb"] / max(float(np.linalg.norm(cand["emb"])), 1e-12)
            scores = {n: float(np.dot(e, v)) for n, v in self.model.speakers.items()}
            speaker = max(scores, key=scores.get)
            score = scores[speaker]
            accepted = score >= self.sv_threshold
            if self.only_enrolled and not accepted:
                return None
        return Event(name, cand["score"], (cand["end"] - self.window) / self.sr, cand["end"] / self.sr,
                     speaker, score, accepted, scores)
