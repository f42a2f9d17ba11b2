"""Task metrics (numpy only, so the device runtime can use them too).

Definitions:
- ROC over verification trials: a trial is accepted when score >= threshold.
  FAR (false-accept rate) = accepted non-target trials / non-target trials;
  FRR (false-reject rate, miss rate) = rejected target trials / target trials.
- EER: the rate where FAR = FRR, linearly interpolated between the two ROC points
  (thresholds) on either side of the crossing.
- minDCF: min over thresholds of C_miss * FRR * P_tar + C_fa * FAR * (1 - P_tar), divided by
  min(C_miss * P_tar, C_fa * (1 - P_tar)) (the normalised value, as NIST SRE and
  SUPERB-style toolkits report it), with C_miss = C_fa = 1.
- Streaming keyword detection (`match_events`, `stream_report`): a true occurrence is a
  keyword spoken from t0 to t1 s of the stream; an event (keyword, start_s, end_s, score) is a
  hit when it names that keyword and its window [start_s, end_s] overlaps [t0 - tol, t1 + tol];
  each occurrence takes at most one hit (the earliest); every other event is a false alarm
  (a second event on the same word, another keyword, or noise); an occurrence without a hit
  is a miss. FRR = misses / occurrences; FA/h = false alarms / hours of stream; detection
  latency = end_s of the hit - t1 (how long after the word ends the event's window closes).
  FRR at a fixed FA/h sweeps a threshold over the event scores (events of a detector run at
  a low threshold) and takes the lowest FRR whose FA/h does not exceed the rate.
- Speaker gating on a stream (`speaker_gate_report`), with every speaker of the stream
  enrolled from clips left out of it: a hit spoken by speaker S is *accepted for S* when its
  window's embedding scores >= the SV threshold against S's profile. Owner acceptance =
  accepted-for-own-speaker hits / hits (a device enrolled by S wakes for S); impostor
  acceptance = (hit, other enrolled speaker E) pairs accepted for E / such pairs (a device
  enrolled by E wakes for someone else's keyword); owner end-to-end FRR = 1 - hits accepted for
  their own speaker / occurrences (keyword misses and speaker rejections together).
"""

from __future__ import annotations

import math

import numpy as np


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN/Inf")
    if y.all() or (~y).all():
        raise ValueError("need both target (1) and non-target (0) trials")
    return s, y


def roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, frr, thresholds), one point per distinct threshold, from accept-nothing
    (threshold +inf: FAR 0, FRR 1) to accept-everything (lowest score: FAR 1, FRR 0)."""
    s, y = _check(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last_of_run]
    fp = last_of_run + 1 - tp
    far = np.r_[0.0, fp / (~y).sum()]
    frr = np.r_[1.0, 1 - tp / y.sum()]
    return far, frr, np.r_[np.inf, s[last_of_run]]


def eer(scores, labels) -> tuple[float, float]:
    """(EER, threshold at the crossing). Labels: 1 = same speaker (target)."""
    far, frr, thr = roc(scores, labels)
    d = frr - far                       # 1 at the start, -1 at the end, never increasing
    i = int(np.argmax(d <= 0))
    if d[i] == 0:
        return float(far[i]), float(thr[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    rate = far[i - 1] + t * (far[i] - far[i - 1])
    lo, hi = thr[i], thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
    return float(rate), float(hi + t * (lo - hi))


def min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """(normalised minDCF, threshold that reaches it)."""
    far, frr, thr = roc(scores, labels)
    dcf = c_miss * frr * p_target + c_fa * far * (1 - p_target)
    i = int(np.argmin(dcf))
    return float(dcf[i] / min(c_miss * p_target, c_fa * (1 - p_target))), float(thr[i])


def frr_at_far(scores, labels, far_target: float = 0.01) -> float:
    """The lowest FRR whose FAR stays at or below `far_target`."""
    far, frr, _ = roc(scores, labels)
    return float(frr[far <= far_target].min())


def accuracy(pred, target) -> float:
    pred, target = np.asarray(pred), np.asarray(target)
    return float((pred == target).mean()) if target.size else float("nan")


def confusion(pred, target, num_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(target), np.asarray(pred)), 1)
    return m


def kws_report(probs: np.ndarray, target, labels: list[str], far_target: float = 0.01) -> dict:
    """Accuracy, confusion and per-keyword FRR at `far_target` FAR (one-vs-rest on the
    class probability), macro-averaged over keywords that occur."""
    probs, target = np.asarray(probs), np.asarray(target)
    pred = probs.argmax(1)
    frrs = {}
    for k, name in enumerate(labels):
        y = target == k
        if y.any() and (~y).any():
            frrs[name] = frr_at_far(probs[:, k], y, far_target)
    return {"accuracy": accuracy(pred, target), "confusion": confusion(pred, target, len(labels)).tolist(),
            "labels": list(labels), f"frr_at_far{far_target:g}": frrs,
            f"mean_frr_at_far{far_target:g}": float(np.mean(list(frrs.values()))) if frrs else float("nan")}


def sv_report(scores, labels) -> dict:
    """EER, minDCF at P_tar 0.01 and 0.05 (normalised), the EER threshold, trial counts."""
    e, thr = eer(scores, labels)
    y = np.asarray(labels).astype(bool)
    return {"eer": e, "eer_threshold": thr, "min_dcf_p0.01": min_dcf(scores, labels, 0.01)[0],
            "min_dcf_p0.05": min_dcf(scores, labels, 0.05)[0], "trials": int(y.size),
            "target_trials": int(y.sum()), "nontarget_trials": int((~y).sum())}


def match_events(events, truth, tolerance_s: float = 0.5) -> dict:
    """Hits, misses and false alarms of streaming keyword events (see the module docstring).

    Args:
        events: (keyword, start_s, end_s, score) tuples (or objects with those attributes).
        truth: (keyword, t0_s, t1_s) true occurrences.
        tolerance_s: slack around an occurrence, in seconds.

    Returns:
        dict with `hits` (list of (event index, occurrence index)), `false_alarms` (event
        indices), `misses` (occurrence indices).
    """
    ev = [_event_tuple(e) for e in events]
    order = sorted(range(len(ev)), key=lambda i: ev[i][2])
    taken: set[int] = set()
    hits, false_alarms = [], []
    for i in order:
        kw, start, end, _ = ev[i]
        match = next((j for j, (tk, t0, t1) in enumerate(truth)
                      if j not in taken and tk == kw and start <= t1 + tolerance_s and end >= t0 - tolerance_s), None)
        if match is None:
            false_alarms.append(i)
        else:
            taken.add(match)
            hits.append((i, match))
    return {"hits": hits, "false_alarms": false_alarms, "misses": [j for j in range(len(truth)) if j not in taken]}


def _event_tuple(e) -> tuple[str, float, float, float]:
    if hasattr(e, "keyword"):
        return e.keyword, float(e.start_s), float(e.end_s), float(e.score)
    kw, start, end, score = e
    return kw, float(start), float(end), float(score)


def stream_report(events, truth, duration_s: float, tolerance_s: float = 0.5,
                  fa_rates: tuple[float, ...] = (0.5, 1.0, 2.0)) -> dict:
    """FRR and FA/h of the events as given, FRR at fixed false alarms per hour over a score
    sweep, the FRR-vs-FA/h curve and detection latency (median, p90) of the hits.

    Args:
        events: (keyword, start_s, end_s, score) of a detector run at a low threshold.
        truth: (keyword, t0_s, t1_s) occurrences.
        duration_s: the stream's length in seconds.
    """
    if duration_s <= 0 or not truth:
        raise ValueError("stream_report needs a stream of positive duration with at least one occurrence")
    ev = [_event_tuple(e) for e in events]
    hours = duration_s / 3600

    def at(threshold: float) -> tuple[float, float, dict]:
        kept = [e for e in ev if e[3] >= threshold]
        m = match_events(kept, truth, tolerance_s)
        return len(m["misses"]) / len(truth), len(m["false_alarms"]) / hours, {"m": m, "kept": kept}

    thresholds = sorted({e[3] for e in ev}) + [np.inf]
    curve = [(t, *at(t)[:2]) for t in thresholds]
    frr_at = {}
    for rate in fa_rates:
        ok = [(frr, t) for t, frr, fa in curve if fa <= rate]
        best = min(ok, key=lambda ft: (ft[0], ft[1])) if ok else (1.0, np.inf)
        frr_at[f"frr_at_{rate:g}_fa_per_hour"] = float(best[0])
        frr_at[f"threshold_at_{rate:g}_fa_per_hour"] = float(best[1])
    frr, fa, detail = at(-np.inf)
    lat = np.array([detail["kept"][i][2] - truth[j][2] for i, j in detail["m"]["hits"]])
    return {"occurrences": len(truth), "events": len(ev), "hours": hours, "frr": frr, "fa_per_hour": fa,
            "hits": len(detail["m"]["hits"]), "misses": len(detail["m"]["misses"]),
            "false_alarms": len(detail["m"]["false_alarms"]), **frr_at,
            "latency_s_median": float(np.median(lat)) if lat.size else float("nan"),
            "latency_s_p90": float(np.percentile(lat, 90)) if lat.size else float("nan"),
            "curve": {"threshold": [float(t) for t, _, _ in curve], "frr": [float(f) for _, f, _ in curve],
                      "fa_per_hour": [float(a) for _, _, a in curve]}}


def speaker_gate_report(hits, threshold: float, occurrences: int | None = None) -> dict:
    """Speaker-gating figures of keyword hits (definitions in the module docstring).

    Args:
        hits: (true speaker, {enrolled name: cosine score}) per hit.
        threshold: the SV acceptance threshold.
        occurrences: target occurrences by enrolled speakers (for the end-to-end FRR).
    """
    own = [scores[spk] >= threshold for spk, scores in hits if spk in scores]
    other = [sc >= threshold for spk, scores in hits for name, sc in scores.items() if name != spk]
    out = {"sv_threshold": float(threshold), "owner_hits": len(own), "impostor_pairs": len(other),
           "owner_acceptance": float(np.mean(own)) if own else float("nan"),
           "impostor_acceptance": float(np.mean(other)) if other else float("nan")}
    if occurrences:
        out["owner_frr_end_to_end"] = 1.0 - sum(own) / occurrences
    return out


def calibrate_thresholds(false_alarms, hours: float, keywords: list[str], target_fa_per_hour: float = 0.5,
                         floor: float = 0.05) -> dict[str, float]:
    """Per-keyword thresholds that keep the detector's false alarms at `target_fa_per_hour` in
    all, on `hours` of stream holding none of the `keywords`.

    The rate is shared equally: each keyword may fire `target_fa_per_hour / len(keywords)` times
    an hour, so at most n = floor(that * hours) of its `false_alarms` (events (keyword, peak
    score), of a detector run at the low threshold `floor`) may stay above its threshold. The
    threshold is the smallest that keeps n: just above its (n + 1)-th highest peak, or `floor`
    where it has n or fewer. Few hours calibrate coarsely: with n = 0 the threshold only has to
    clear the highest false alarm seen.
    """
    if hours <= 0 or target_fa_per_hour <= 0 or not keywords:
        raise ValueError("calibration needs hours > 0, target_fa_per_hour > 0 and at least one keyword")
    allowed = int(np.floor(target_fa_per_hour / len(keywords) * hours + 1e-9))
    out = {}
    for k in keywords:
        peaks = sorted((float(s) for kw, s in false_alarms if kw == k), reverse=True)
        out[k] = float(np.nextafter(peaks[allowed], 1.0)) if len(peaks) > allowed else float(floor)
        out[k] = min(max(out[k], floor), 1.0)
    return out


def _poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam), summed in log space."""
    if lam <= 0:
        return 1.0
    terms = [i * math.log(lam) - lam - math.lgamma(i + 1) for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    logc = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
            + (n - i) * math.log1p(-p) for i in range(k + 1)]
    top = max(logc)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in logc))


def _solve(f, lo: float, hi: float, target: float, increasing: bool) -> float:
    """x in [lo, hi] with f(x) = target for a monotone f, by bisection (60 halvings)."""
    for _ in range(60):
        mid = (lo + hi) / 2
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def poisson_interval(k: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) two-sided interval of a Poisson mean from an observed count `k`."""
    a = (1 - confidence) / 2
    hi_bound = k + 10 * math.sqrt(k + 1) + 10
    lo = 0.0 if k == 0 else _solve(lambda m: 1 - _poisson_cdf(k - 1, m), 0.0, hi_bound, a, True)
    hi = _solve(lambda m: _poisson_cdf(k, m), 0.0, hi_bound, a, False)
    return lo, hi


def binomial_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a proportion from `k` of `n`."""
    if n <= 0:
        return float("nan"), float("nan")
    a = (1 - confidence) / 2
    lo = 0.0 if k == 0 else _solve(lambda p: 1 - _binomial_cdf(k - 1, n, p), 0.0, 1.0, a, True)
    hi = 1.0 if k == n else _solve(lambda p: _binomial_cdf(k, n, p), 0.0, 1.0, a, False)
    return lo, hi


def detection_report(events, truth, negatives, negative_hours: float, tolerance_s: float = 0.5,
                     fa_rates: tuple[float, ...] = (0.5, 1.0, 2.0), floor: float = 0.0) -> dict:
    """Misses at fixed false alarms per hour, measured apart (as openWakeWord and microWakeWord
    do): false alarms on `negative_hours` of stream holding no target keyword, misses on a
    stream of target words, each with a 95% interval.

    For each rate r the threshold is the lowest that keeps the negative stream's false alarms
    at n = floor(r * hours) or fewer (just above its (n + 1)-th highest peak; `floor`, the
    detector's own threshold, where it has n or fewer); FRR is the share of `truth` without a hit
    among the `events` at or above it. Intervals: Clopper-Pearson for FRR (misses of
    occurrences), Garwood (Poisson) for the false-alarm count, divided by the hours.

    Where `negatives` name their keyword, each rate is also measured with the per-keyword
    thresholds a deployed detector gets (`calibrate_thresholds`: the rate shared equally among
    the truth's keywords), under `at_R_fa_per_hour_per_keyword`: {"thresholds", "frr", "misses",
    "frr_ci95", "false_alarms", "fa_per_hour"}.

    Args:
        events: (keyword, start_s, end_s, score) of the detector on the keyword stream.
        truth: (keyword, t0_s, t1_s) occurrences of that stream.
        negatives: peak scores (or (keyword, score)) of the detector's events on the negative stream.
    """
    if negative_hours <= 0 or not truth:
        raise ValueError("detection_report needs negative hours > 0 and at least one occurrence")
    ev = [_event_tuple(e) for e in events]
    neg = np.sort([float(s[1] if isinstance(s, (tuple, list)) else s) for s in negatives])[::-1]
    out: dict = {"occurrences": len(truth), "negative_hours": negative_hours, "negative_events": int(neg.size)}
    for rate in fa_rates:
        allowed = int(np.floor(rate * negative_hours + 1e-9))
        thr = float(np.nextafter(neg[allowed], np.inf)) if neg.size > allowed else float(floor)
        kept = [e for e in ev if e[3] >= thr]
        m = match_events(kept, truth, tolerance_s)
        misses, fas = len(m["misses"]), int(np.sum(neg >= thr))
        lat = np.array([kept[i][2] - truth[j][2] for i, j in m["hits"]])
        out[f"at_{rate:g}_fa_per_hour"] = {
            "threshold": thr, "frr": misses / len(truth), "misses": misses,
            "frr_ci95": list(binomial_interval(misses, len(truth))),
            "false_alarms": fas, "fa_per_hour": fas / negative_hours,
            "fa_per_hour_ci95": [x / negative_hours for x in poisson_interval(fas)],
            "keyword_stream_false_alarms": len(m["false_alarms"]),
            "latency_s_median": float(np.median(lat)) if lat.size else float("nan"),
            "latency_s_p90": float(np.percentile(lat, 90)) if lat.size else float("nan")}
    if negatives and all(isinstance(n, (tuple, list)) for n in negatives):
        keywords = sorted({t[0] for t in truth})
        for rate in fa_rates:
            thr = calibrate_thresholds(negatives, negative_hours, keywords, rate, floor or 1e-9)
            m = match_events([e for e in ev if e[3] >= thr.get(e[0], np.inf)], truth, tolerance_s)
            misses = len(m["misses"])
            fas = sum(1 for k, score in negatives if score >= thr.get(k, np.inf))
            out[f"at_{rate:g}_fa_per_hour_per_keyword"] = {
                "thresholds": thr, "frr": misses / len(truth), "misses": misses,
                "frr_ci95": list(binomial_interval(misses, len(truth))),
                "false_alarms": fas, "fa_per_hour": fas / negative_hours}
    grid = np.unique(np.concatenate([neg, [e[3] for e in ev], [np.inf]]))
    if grid.size > 200:
        grid = np.unique(np.quantile(grid[np.isfinite(grid)], np.linspace(0, 1, 200)).tolist() + [np.inf])
    curve = {"threshold": [], "frr": [], "fa_per_hour": []}
    for t in grid:
        m = match_events([e for e in ev if e[3] >= t], truth, tolerance_s)
        curve["threshold"].append(float(t))
        curve["frr"].append(len(m["misses"]) / len(truth))
        curve["fa_per_hour"].append(float(np.sum(neg >= t)) / negative_hours)
    out["curve"] = curve
    return out
