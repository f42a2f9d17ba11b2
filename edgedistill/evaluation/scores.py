"""Task metrics of an exported ONNX model, with onnxruntime alone (no torch).

Clips are centre-cropped or zero-padded to `num_samples`, as in the PyTorch evaluation,
so float PyTorch, float ONNX and quantized ONNX numbers are comparable.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from edgedistill.audio import fit_length
from edgedistill.data.manifest import Clip, load_clip
from edgedistill.data.trials import label_index, trials_for_clips
from edgedistill.metrics import kws_report, sv_report


def run_onnx(model, clips: list[Clip], num_samples: int = 16_000, batch_size: int = 16,
             threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(KWS probabilities [n, classes], embeddings [n, dim]) of `clips`; `model` is an
    `EdgeModel` or the path of one. Embeddings are None for a model without a speaker output
    (a keyword-only peer)."""
    from edgedistill.runtime.model import EdgeModel, softmax

    if not isinstance(model, EdgeModel):
        model = EdgeModel(model, threads=threads)
    probs, embs = [], []
    for i in range(0, len(clips), batch_size):
        batch = []
        for c in clips[i:i + batch_size]:
            batch.append(fit_length(load_clip(c), num_samples))
        out = model.run(np.stack(batch))
        probs.append(softmax(out["keyword_logits"]))
        embs.append(out.get("speaker_embedding"))
    return np.concatenate(probs), None if embs[0] is None else np.concatenate(embs)


def evaluate_onnx(path, clips: list[Clip], num_trials: int = 20_000, seed: int = 0,
                  num_samples: int = 16_000, threads: int = 1, cache: dict | None = None,
                  trials: np.ndarray | None = None) -> dict:
    """KWS accuracy and SV EER / minDCF of an ONNX multi-task model on `clips`
    (`task_metrics` of its outputs; `cache` keeps drawn trials between calls)."""
    from edgedistill.runtime.model import EdgeModel

    model = EdgeModel(path, threads=threads)
    probs, emb = run_onnx(model, clips, num_samples)
    if trials is None and cache is not None:
        key = ("trials", len(clips), num_trials, seed)
        if key not in cache:
            cache[key] = trials_for_clips(clips, num_trials, seed)
        trials = cache[key]
    return task_metrics(probs, emb, clips, model.labels, trials, num_trials, seed,
                        sv_threshold=model.metadata.get("sv_threshold"))


def task_metrics(probs: np.ndarray, emb: np.ndarray, clips: list[Clip], labels: list[str],
                 trials: np.ndarray | None = None, num_trials: int = 20_000, seed: int = 0,
                 sv_threshold: float | None = None) -> dict:
    """KWS and SV metrics from a model's outputs on `clips`, the same for PyTorch and ONNX.

    Args:
        probs: KWS probabilities [n, classes]; emb: L2-normalised speaker embeddings [n, dim]
            (None: a keyword-only model, no SV metrics).
        clips: the clips they came from. KWS is scored on the clips that have a keyword (all
            must be among `labels`), SV on those that have a speaker (a `_silence_` crop has none).
        trials: [n, 3] rows (i, j, target) into `clips` (e.g. an official list); None: draw
            `num_trials` with `seed` among the clips' speakers.
        sv_threshold: the model's saved SV threshold: adds FAR / FRR at it.

    Returns `kws_accuracy`, `sv_eer`, `sv_min_dcf` (normalised, P_tar 0.01), `sv_min_dcf_p0.05`,
    counts, the KWS confusion and per-keyword FRR at 1% FAR, and the arrays `probs`,
    `embeddings`, `trial_scores`, `trial_targets` (agreement checks, DET curves).
    """
    kw = np.array([i for i, c in enumerate(clips) if c.label is not None], dtype=np.int64)
    report: dict = {"clips": len(clips), "speakers": len({c.speaker for c in clips if c.speaker is not None}),
                    "probs": probs, "embeddings": emb}
    if len(kw):
        k = kws_report(probs[kw], label_index([clips[i] for i in kw], labels), labels)
        report.update(kws_accuracy=k["accuracy"], kws_mean_frr_at_far0_01=k["mean_frr_at_far0.01"],
                      kws_confusion=k["confusion"], kws_labels=k["labels"], kws_frr_at_far0_01=k["frr_at_far0.01"],
                      clips_per_label=dict(Counter(clips[i].label for i in kw)))
    if trials is None and emb is not None:
        trials = trials_for_clips(clips, num_trials, seed)
    if trials is not None and emb is not None:
        scores = cosine_scores(emb, trials)
        s = sv_report(scores, trials[:, 2])
        report.update(sv_eer=s["eer"], sv_eer_threshold=s["eer_threshold"], sv_min_dcf=s["min_dcf_p0.01"],
                      **{"sv_min_dcf_p0.05": s["min_dcf_p0.05"]}, trials=s["trials"],
                      target_trials=s["target_trials"], trial_scores=scores, trial_targets=trials[:, 2])
        if sv_threshold is not None:
            y = trials[:, 2].astype(bool)
            report.update(sv_threshold=sv_threshold, sv_far_at_threshold=float(np.mean(scores[~y] >= sv_threshold)),
                          sv_frr_at_threshold=float(np.mean(scores[y] < sv_threshold)))
    return report


def cosine_scores(emb: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Cosine scores of trials [n, 3] (i, j, target) over L2-normalised embeddings [clips, dim]."""
    return np.einsum("nd,nd->n", emb[trials[:, 0]], emb[trials[:, 1]])


def compare(base: dict, other: dict) -> dict:
    """What quantization changed: metric deltas, top-1 agreement, embedding cosine."""
    out = {"kws_accuracy_change": other.get("kws_accuracy", np.nan) - base.get("kws_accuracy", np.nan),
           "sv_eer_change": other.get("sv_eer", np.nan) - base.get("sv_eer", np.nan),
           "top1_agreement": float((base["probs"].argmax(1) == other["probs"].argmax(1)).mean()),
           "embedding_cosine_mean": float(np.sum(base["embeddings"] * other["embeddings"], axis=1).mean())}
    out["cost"] = max(0.0, -out["kws_accuracy_change"] if np.isfinite(out["kws_accuracy_change"]) else 0.0) + \
        max(0.0, out["sv_eer_change"] if np.isfinite(out["sv_eer_change"]) else 0.0)
    return out


def evaluate_stream(path, clips: list[Clip], targets: list[str], seconds: float = 600.0, seed: int = 0,
                    threshold: float = 0.05, hop_s: float = 0.1, threads: int = 1, noise=None,
                    snr_db: float = 20.0, tolerance_s: float = 0.5, enroll_clips: int = 0,
                    negative_hours: float = 0.0, cache=None, windowed: bool = False) -> dict:
    """Continuous-listening metrics of an exported model on a stream built from `clips`
    (`edgedistill.data.streams.build_stream`, reproducible from `seed`).

    The detector runs once at a low `threshold`; FRR at fixed false alarms per hour then sweeps
    a threshold over the events' peak scores (an approximation: at a higher threshold a
    detector would also re-arm differently). With `enroll_clips`, every speaker of `clips` is
    enrolled from that many of their non-target clips (left out of the stream), and the hits at
    the 1 FA/h threshold give the speaker-gating figures (`metrics.speaker_gate_report`).
    Returns `stream_report` plus the per-hop cost (`mean_ms`, `p99_ms`, `core_share` at
    `threads`), the stream's seed and length, and `speaker_gate` when enrolled.

    With `negative_hours`, false alarms are also counted on that many hours of a second stream
    of the same clips holding no target (`false_alarms`, seed + 1), and `detection` holds misses
    at fixed false alarms per hour measured apart, with 95% intervals
    (`metrics.detection_report`): the figures to compare detectors by. One hour of dense words
    rests 1 FA/h on a single event. `cache`: a folder where each hour heard is kept (resumable).
    `windowed`: a streaming model (a micro student's) runs on each whole window from silence, as
    the other models do (what hearing the stream changes).
    """
    from edgedistill.data.streams import build_stream
    from edgedistill.metrics import detection_report, match_events, speaker_gate_report, stream_report
    from edgedistill.runtime.model import EdgeModel
    from edgedistill.runtime.streaming import Detector

    model = EdgeModel(path, threads=threads)
    # The enrolment clips leave the stream whether or not the model can verify speakers: a
    # keyword-only model (the openWakeWord peer) hears the very stream the others hear.
    enrolled, pool = _enrolment(clips, targets, enroll_clips, seed)
    if "speaker_embedding" not in model.outputs:
        enrolled = {}
    for spk, chosen in enrolled.items():
        model.enroll(spk, [load_clip(c) for c in chosen])
    audio, truth = build_stream(pool, targets, seconds, seed, noise=noise, snr_db=snr_db)
    if not truth:
        raise ValueError(f"a {seconds:g} s stream holds no target keyword: make it longer")
    det = Detector(model, {k: threshold for k in targets}, hop_s=hop_s, windowed=windowed,
                   sv_threshold=model.threshold if model.threshold is not None else 0.0)
    events = run_detector(det, audio)
    occ = [(o.keyword, o.t0, o.t1) for o in truth]
    report = stream_report(events, occ, len(audio) / model.sample_rate, tolerance_s)
    report.update(det.stats(), targets=list(targets), seed=seed, seconds=len(audio) / model.sample_rate,
                  snr_db=snr_db, threads=threads, enrolled_speakers=len(enrolled))
    if negative_hours > 0:
        neg, hours, made_of = false_alarms(path, pool, targets, negative_hours * 3600, seed + 1, floor=threshold,
                                           hop_s=hop_s, threads=threads, noise=noise, snr_db=snr_db, cache=cache,
                                           windowed=windowed)
        report["detection"] = detection_report(events, occ, neg, hours, tolerance_s, floor=threshold)
        report["detection"]["negative_stream"] = {"seed": seed + 1, "snr_db": snr_db, **made_of}
    if enroll_clips > 0 and "speaker_embedding" not in model.outputs:
        report["speaker_gate"] = {"unscored": "the model has no speaker output"}
    if enrolled:
        if model.threshold is None:
            report["speaker_gate"] = {"unscored": "the model carries no SV threshold"}
        else:
            thr = report["threshold_at_1_fa_per_hour"]
            kept = [e for e in events if e.score >= thr]
            m = match_events(kept, occ, tolerance_s)
            hits = [(truth[j].speaker, kept[i].speaker_scores) for i, j in m["hits"]]
            n_occ = sum(o.speaker in enrolled for o in truth)
            report["speaker_gate"] = speaker_gate_report(hits, model.threshold, n_occ)
    return report


def run_detector(det, audio) -> list:
    """Every event of a `Detector` over a whole recording, fed a hop at a time, then flushed."""
    events = []
    for i in range(0, len(audio), det.hop):
        events += det.push(audio[i:i + det.hop])
    return events + det.flush()


def _enrolment(clips: list[Clip], targets: list[str], per_speaker: int, seed: int):
    """({speaker: enrolment clips}, the other clips): `per_speaker` non-target word clips of
    each speaker that has enough, drawn with `seed`."""
    if per_speaker <= 0:
        return {}, clips
    rng = np.random.default_rng(seed + 1)
    by_spk: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        if c.speaker is not None and c.label is not None and c.label not in targets and not c.label.startswith("_"):
            by_spk.setdefault(c.speaker, []).append(i)
    chosen = {spk: sorted(rng.choice(idx, per_speaker, replace=False).tolist())
              for spk, idx in sorted(by_spk.items()) if len(idx) > per_speaker}
    used = {i for idx in chosen.values() for i in idx}
    return ({spk: [clips[i] for i in idx] for spk, idx in chosen.items()},
            [c for i, c in enumerate(clips) if i not in used])


def false_alarms(path, clips: list[Clip], keywords: list[str], seconds: float, seed: int = 0, floor: float = 0.05,
                 hop_s: float = 0.1, threads: int = 1, noise=None, snr_db: float = 20.0,
                 piece_s: float = 3600.0, cache=None, windowed: bool = False) -> tuple[list, float, dict]:
    """The detector's events on a stream of `clips` holding none of the `keywords` (other words
    and background only), at the low threshold `floor`: ([(keyword, peak score)], hours of
    stream, what the stream is made of). What thresholds are calibrated on
    (`metrics.calibrate_thresholds`) and false alarms per hour are measured on
    (`metrics.detection_report`).

    A long stream is built and heard in pieces of at most `piece_s` (piece k seeded
    [seed, k]; the first with `seed` itself), the detector reset between them, so memory stays
    that of one piece. The composition: words placed, distinct recordings among them, how often a
    recording recurs on average, pieces. With a `cache` folder, each piece heard is saved there
    (keyed by the model file's checksum and every setting), so a stopped 10 h measurement resumes
    at the piece it stopped in. `windowed`: as `evaluate_stream`'s.
    """
    import hashlib
    import json
    import os
    from pathlib import Path

    from edgedistill.data.streams import keyword_free_stream
    from edgedistill.runtime.model import EdgeModel
    from edgedistill.runtime.streaming import Detector

    model = EdgeModel(path, threads=threads)
    det = Detector(model, {k: floor for k in keywords}, hop_s=hop_s, windowed=windowed,
                   sv_threshold=model.threshold if model.threshold is not None else 0.0)
    events, total, placed = [], 0, []
    pieces = max(1, int(np.ceil(seconds / piece_s - 1e-9)))
    key = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if cache is not None else ""
    for k in range(pieces):
        length = min(piece_s, seconds - k * piece_s)
        saved = None
        if cache is not None:
            spec = json.dumps([key, sorted(keywords), len(clips), length, seed, k, floor, hop_s, snr_db,
                               noise is not None] + (["windowed"] if windowed else []), sort_keys=True)
            saved = Path(cache) / f"negative_{hashlib.sha256(spec.encode()).hexdigest()[:16]}.json"
            if saved.is_file():
                piece = json.loads(saved.read_text())
                events += [tuple(e) for e in piece["events"]]
                total += piece["samples"]
                placed += piece["placed"]
                continue
        audio, words = keyword_free_stream(clips, keywords, length,
                                           seed if k == 0 else int(np.random.default_rng([seed, k]).integers(2**31)),
                                           noise, snr_db)
        det.reset()
        heard = [(e.keyword, e.score) for e in run_detector(det, audio)]
        events += heard
        total += len(audio)
        placed += [w.path for w in words]
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps({"events": heard, "samples": len(audio), "placed": [w.path for w in words]}))
            os.replace(tmp, saved)
    made_of = {"words": len(placed), "distinct_recordings": len(set(placed)),
               "mean_recurrence": len(placed) / max(1, len(set(placed))), "pieces": pieces}
    return events, total / model.sample_rate / 3600, made_of
