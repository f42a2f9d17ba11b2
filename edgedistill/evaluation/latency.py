"""Latency measurement: pinned threads, warm-up, p50/p90 in ms (the ORT path is torch-free)."""

from __future__ import annotations

import time

import numpy as np


def _percentiles(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 90) * 1000)


def _audio(seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal((1, int(16_000 * seconds)))).astype(np.float32)


def _run(model, x: np.ndarray) -> None:
    """One run of an `EdgeModel` on a batch: the whole clip (a streaming model's from silence, its
    front end included)."""
    if getattr(model, "streaming", None) is not None:
        model.infer(x)
    else:
        model.session.run(None, {"waveform": x})


def time_onnx(path, seconds: float = 1.0, threads: int = 1, runs: int = 20, warmup: int = 3) -> tuple[float, float]:
    """(p50, p90) ms of one batch-1 run of an ONNX model on `seconds` of audio."""
    from edgedistill.runtime.model import EdgeModel

    model = EdgeModel(path, threads=threads)
    x = _audio(seconds)
    times = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        _run(model, x)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return _percentiles(times)


def time_torch(model, seconds: float = 1.0, threads: int = 1, runs: int = 20, warmup: int = 3) -> tuple[float, float]:
    """(p50, p90) ms of one batch-1 forward of a PyTorch model on `seconds` of audio, on `threads`
    torch threads (the caller's thread count is given back)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    x = torch.from_numpy(_audio(seconds))
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                t = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)  # the caller's training keeps its threads
    return _percentiles(times)


def time_onnx_side_by_side(paths: dict[str, object], seconds: float = 1.0, threads: int = 1, rounds: int = 50,
                           warmup: int = 3, disabled_fusions: dict[str, tuple] | None = None
                           ) -> dict[str, tuple[float, float]]:
    """{name: (p50, p90) ms} of batch-1 runs of several ONNX models on the same `seconds` of audio,
    interleaved: each round runs every model once, so a load that comes and goes (another process,
    frequency scaling) falls on all of them alike and their ratios hold even where the absolute
    times move. Every session is opened before any timing starts. `disabled_fusions` gives a
    name its own onnxruntime rewrites to leave off (`EdgeModel`'s; the default elsewhere), so one
    file can be timed with and without a rewrite."""
    from edgedistill.runtime.model import EdgeModel

    if not paths:
        raise ValueError("no ONNX model to time: pass at least one {name: path}")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds ({rounds}) must be >= 1 and warmup ({warmup}) >= 0")
    own = disabled_fusions or {}
    sessions = {name: EdgeModel(path, threads=threads, **({"disabled_fusions": own[name]} if name in own else {}))
                for name, path in paths.items()}
    x = _audio(seconds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(warmup + rounds):
        for name, session in sessions.items():
            t = time.perf_counter()
            _run(session, x)
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: _percentiles(t) for name, t in times.items()}


def time_hops_side_by_side(paths: dict[str, object], hop_s: float = 0.1, window_s: float = 1.0, threads: int = 1,
                           rounds: int = 300, warmup: int = 20, interleave: bool = False) -> dict[str, dict]:
    """Per-hop compute of keyword spotting on a stream, what a device pays every `hop_s`: a windowed
    model runs on a whole `window_s` window per hop, a streaming model (a micro student's) steps one
    hop from its state as a `Detector` does (`HopStepper`), its numpy front end included. Each file is timed alone, one after the other
    (a device runs one model: interleaved with a 10 MB model, a 140 kB one loses its caches every hop
    and runs 2-3 times slower); `interleave` runs the files in turn each round instead, as
    `time_onnx_side_by_side`, where a load that comes and goes must fall on all alike.
    Returns {name: {"mean_ms", "p50_ms", "p99_ms", "hop_ms", "core_share", "streaming"}}."""
    from edgedistill.runtime.model import EdgeModel

    if not paths:
        raise ValueError("no ONNX model to time: pass at least one {name: path}")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds ({rounds}) must be >= 1 and warmup ({warmup}) >= 0")
    from edgedistill.runtime.model import HopStepper

    models = {name: EdgeModel(path, threads=threads) for name, path in paths.items()}
    hop, window = int(round(16_000 * hop_s)), int(round(16_000 * window_s))
    audio = _audio(window_s + (warmup + rounds) * hop_s + 1)[0]
    states = {name: HopStepper(m, hop) for name, m in models.items() if m.streaming is not None}  # as a Detector
    times: dict[str, list[float]] = {name: [] for name in models}

    def one(name: str, m, i: int) -> None:
        end = window + i * hop
        t = time.perf_counter()
        if name in states:
            states[name](audio[end - hop:end])
        else:
            m.session.run(None, {"waveform": audio[None, end - window:end]})
        if i >= warmup:
            times[name].append(time.perf_counter() - t)

    if interleave:
        for i in range(warmup + rounds):
            for name, m in models.items():
                one(name, m, i)
    else:
        for name, m in models.items():
            for i in range(warmup + rounds):
                one(name, m, i)
    out = {}
    for name, t in times.items():
        ms = np.asarray(t) * 1000
        out[name] = {"mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
                     "p99_ms": float(np.percentile(ms, 99)), "hop_ms": 1000 * hop_s,
                     "core_share": float(ms.mean() / (1000 * hop_s)), "streaming": name in states}
    return out
