"""Recipe: keyword thresholds calibrated at a target false-alarm rate, written into the file.

    edgedistill calibrate --model deploy/model.int8.onnx --data DATA --split val --keywords yes,stop

The detector runs over a long stream of the split's other words and background (no keyword),
at a low threshold; each keyword's threshold is then the smallest that keeps the false alarms
at `target_fa_per_hour` in all (`metrics.calibrate_thresholds`), and goes into the ONNX file's
metadata, where `EdgeModel`, `Detector`, the kit's `infer.py --stream` and `listen.py` find it.
Calibrate on speakers the report is not measured on (a validation split).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgedistill.data.layouts import check_keywords, resolve_labelled, stream_noise
from edgedistill.deploy.onnx import set_keyword_thresholds
from edgedistill.evaluation.scores import false_alarms
from edgedistill.metrics import calibrate_thresholds

log = logging.getLogger("edgedistill.calibrate")


def calibrate(model: str | Path, data: str, split: str, keywords: list[str], hours: float = 10.0,
              target_fa_per_hour: float = 0.5, seed: int = 0, threads: int = 1, noise: str | None = None,
              snr_db: float = 20.0) -> dict:
    """Calibrates and writes the thresholds of `keywords` into `model` (an exported .onnx);
    returns {"thresholds", "false_alarms", "hours", ...}."""
    clips = resolve_labelled(data, split)
    check_keywords(keywords, clips, f"the '{split}' split of {data}")
    noise_dir, recordings = stream_noise(data, split, noise)
    log.info("calibrating %s on %.1f h of the '%s' split's other words (seed %d)", ", ".join(keywords), hours,
             split, seed)
    fa, got_hours, _ = false_alarms(model, clips, keywords, hours * 3600, seed, threads=threads,
                                    noise=recordings, snr_db=snr_db)
    thresholds = calibrate_thresholds(fa, got_hours, keywords, target_fa_per_hour)
    at = {"target_fa_per_hour": target_fa_per_hour, "hours": round(got_hours, 3), "data": str(data),
          "split": split, "seed": seed, "snr_db": snr_db, "noise": noise_dir}
    set_keyword_thresholds(model, thresholds, **at)
    return {"thresholds": thresholds, "false_alarms": len(fa), **at}
