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
"""

from __future__ import annotations

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
