"""Hard negatives: between rounds of fine-tuning, the model listens to a keyword-free stream of
training clips; the windows where its detector fires come back as training windows, labelled
"no keyword" (`BACKGROUND`) or as the other word they hold whole (as openWakeWord and
microWakeWord feed their false alarms back).

The model's keyword logits of every device-hop window are computed in batches and the
streaming `Detector`'s own decisions are taken on them (`runtime.streaming.detect_on_logits`),
at a threshold below the deployed one, so near misses come back too.
"""

from __future__ import annotations

import numpy as np
import torch

from edgedistill.data.streams import build_stream, keyword_free_stream
from edgedistill.data.windows import add_false_alarms, label_roles, window_starts, words_of
from edgedistill.runtime.streaming import detect_on_logits

SR = 16_000


@torch.no_grad()
def stream_logits(model, audio: np.ndarray, window: int = SR, hop: int = SR // 10, batch_size: int = 64,
                  device="cpu") -> np.ndarray:
    """Keyword logits [hops, labels] of a `MultiTaskModel` on every device-hop window of `audio`."""
    was_training = model.training
    model.eval()
    out = []
    starts = window_starts(len(audio), window, hop)
    for i in range(0, len(starts), batch_size):
        x = torch.from_numpy(np.stack([audio[s:s + window] for s in starts[i:i + batch_size]])).to(device)
        out.append(model(x)["kws_logits"].float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def mine_false_alarms(model, clips, targets: list[str], labels: list[str], seconds: float, seed: int,
                      threshold: float = 0.5, noise=None, snr_db: float = 20.0, window: int = SR,
                      hop: int = SR // 10, batch_size: int = 64, device="cpu") -> tuple[dict, np.ndarray]:
    """The windows of a keyword-free stream (`data.streams.keyword_free_stream`, `seed`) where the model's detector
    fires at `threshold`: ({"seed", "seconds", "starts", "labels" (names), "fired", "hours"}, the
    stream's audio); the stream is rebuilt from its seed where the windows are needed again (a
    resumed run)."""
    audio, words = keyword_free_stream(clips, targets, seconds, seed, noise, snr_db)
    logits = stream_logits(model, audio, window, hop, batch_size, device)
    events = detect_on_logits(logits, labels, {k: threshold for k in targets}, window, hop)
    fired = [int(round(e.end_s * SR)) for e in events]
    others, silence = label_roles(labels, targets)
    starts, names, _ = add_false_alarms(np.zeros(0, np.int64), [], fired, window, words_of(words), targets,
                                        tail=hop + window // 4, slack=window // 5, others=others, silence=silence)
    return ({"seed": seed, "seconds": seconds, "starts": [int(s) for s in starts], "labels": names,
             "fired": len(fired), "hours": len(audio) / SR / 3600}, audio)


class HardNegatives:
    """The hard-negative rounds of one fine-tuning: at `rounds` evenly spaced steps the model
    mines `seconds` of keyword-free training stream (`mine_false_alarms`, seeded by the step) and
    the windows join the training windows (`StreamWindows.add`) as a class of their own in the
    sampler's window source: a quarter of the window draws once any exist. What was mined goes
    into the checkpoints (`state`) and is put back on resume (`restore`)."""

    def __init__(self, loader, sampler, clips, targets: list[str], labels: list[str], steps: int, rounds: int,
                 seconds: float, threshold: float, seed: int, noise=None, snr_db: float = 20.0):
        self.loader, self.sampler, self.clips, self.targets, self.labels = loader, sampler, clips, targets, labels
        self.steps = [round(k * steps / (rounds + 1)) for k in range(1, rounds + 1)] if targets else []
        self.seconds, self.threshold, self.seed, self.noise, self.snr_db = seconds, threshold, seed, noise, snr_db
        self.mined: list[dict] = []
        self._group: int | None = None

    def due(self, step: int) -> bool:
        return step in self.steps and all(m["step"] != step for m in self.mined)

    def mine(self, model, step: int, device="cpu") -> dict:
        found, audio = mine_false_alarms(model, self.clips, self.targets, self.labels, self.seconds,
                                         seed=int(np.random.default_rng([self.seed, step]).integers(2**31)),
                                         threshold=self.threshold, noise=self.noise, snr_db=self.snr_db,
                                         device=device)
        found["step"] = step
        self._add(found, audio)
        return found

    def state(self) -> list[dict]:
        return list(self.mined)

    def restore(self, mined: list[dict] | None) -> None:
        for found in mined or []:
            audio, _ = keyword_free_stream(self.clips, self.targets, found["seconds"], found["seed"], self.noise,
                                       self.snr_db)
            self._add(found, audio)

    def _add(self, found: dict, audio: np.ndarray) -> None:
        self.mined.append(found)
        if not found["starts"]:
            return
        dataset = self.loader.dataset
        first = len(dataset)
        dataset.windows.add(audio, np.asarray(found["starts"]), [self.labels.index(n) for n in found["labels"]])
        self._group = self.sampler.add_members(range(first, len(dataset)), group=self._group)


def stream_validation(model, clips, targets: list[str], seconds: float, negative_seconds: float,
                      fa_per_hour: float, seed: int = 0, device="cpu", floor: float = 0.05) -> dict:
    """Misses of `targets` on a stream of validation `clips` at `fa_per_hour` false alarms,
    counted on a keyword-free stream of them (`metrics.detection_report`): what checkpoint
    selection by the stream metric compares. The streams are rebuilt from `seed` each time (the
    same streams at every validation)."""
    from edgedistill.metrics import detection_report

    labels = list(model.labels)
    keywords = {k: floor for k in targets}
    audio, truth = build_stream(clips, targets, seconds, seed)
    events = detect_on_logits(stream_logits(model, audio, device=device), labels, keywords)
    neg_audio, _ = keyword_free_stream(clips, targets, negative_seconds, seed + 1)
    negatives = [e.score for e in detect_on_logits(stream_logits(model, neg_audio, device=device), labels, keywords)]
    r = detection_report(events, [(o.keyword, o.t0, o.t1) for o in truth], negatives,
                         len(neg_audio) / SR / 3600, fa_rates=(fa_per_hour,), floor=floor)
    at = r[f"at_{fa_per_hour:g}_fa_per_hour"]
    return {"frr": at["frr"], "frr_ci95": at["frr_ci95"], "false_alarms": at["false_alarms"],
            "occurrences": r["occurrences"], "negative_hours": r["negative_hours"], "fa_per_hour": fa_per_hour}
