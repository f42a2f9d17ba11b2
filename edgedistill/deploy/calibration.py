"""Calibration audio for onnxruntime's static quantization (no torch)."""

from __future__ import annotations

import numpy as np


class AudioCalibrationReader:
    """`CalibrationDataReader` over clips: one clip in memory at a time."""

    def __init__(self, clips, num_clips: int, num_samples: int, seed: int = 0, model=None):
        from edgedistill.data.manifest import load_clip

        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(clips))[:num_clips]
        self._clips, self._load, self._n = [clips[i] for i in idx], load_clip, num_samples
        self._it = iter(self._clips)
        self._streaming = None
        if model is not None:  # a streaming file takes log-mel frames and its state, not samples
            from edgedistill.runtime.frontend import LogMelFrontend
            from edgedistill.runtime.metadata import read_metadata

            meta = read_metadata(model)
            if meta.get("streaming"):
                self._streaming = (meta["streaming"], LogMelFrontend(meta["frontend"]))

    def get_next(self):
        clip = next(self._it, None)
        if clip is None:
            return None
        a = self._load(clip)[: self._n]
        a = np.pad(a, (0, self._n - len(a)))[None, :].astype(np.float32)
        if self._streaming is None:
            return {"waveform": a}
        spec, frontend = self._streaming  # the clip heard from silence, in one step
        a = a[:, :a.shape[1] - a.shape[1] % spec["frame_samples"]]
        return {spec["features"]: frontend.clip(a),
                **{st["input"]: np.zeros((1, *st["shape"]), np.float32) for st in spec["states"]}}

    def rewind(self):
        self._it = iter(self._clips)


def calibration_reader(cfg, model=None) -> AudioCalibrationReader:
    """The reader over a calibrated scheme's `calibration*` settings, feeding `model` (an .onnx
    path: its inputs; None: a `waveform`)."""
    from edgedistill.data.layouts import resolve_labelled

    clips = resolve_labelled(cfg.calibration, cfg.calibration_split)
    return AudioCalibrationReader(clips, cfg.calibration_clips, cfg.calibration_samples, model=model)
