"""Calibration audio for onnxruntime's static quantization (no torch)."""

from __future__ import annotations

import numpy as np


class AudioCalibrationReader:
    """`CalibrationDataReader` over clips: one clip in memory at a time."""

    def __init__(self, clips, num_clips: int, num_samples: int, seed: int = 0):
        from edgedistill.data.manifest import load_clip

        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(clips))[:num_clips]
        self._clips, self._load, self._n = [clips[i] for i in idx], load_clip, num_samples
        self._it = iter(self._clips)

    def get_next(self):
        clip = next(self._it, None)
        if clip is None:
            return None
        a = self._load(clip)[: self._n]
        a = np.pad(a, (0, self._n - len(a)))
        return {"waveform": a[None, :].astype(np.float32)}

    def rewind(self):
        self._it = iter(self._clips)


def calibration_reader(cfg) -> AudioCalibrationReader:
    """The reader over a calibrated scheme's `calibration*` settings."""
    from edgedistill.data.layouts import resolve_labelled

    clips = resolve_labelled(cfg.calibration, cfg.calibration_split)
    return AudioCalibrationReader(clips, cfg.calibration_clips, cfg.calibration_samples)
