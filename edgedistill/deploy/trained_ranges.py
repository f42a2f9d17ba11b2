"""A quantization-aware model's trained activation ranges, written into its `int8` file.

Quantization-aware fine-tuning (`edgedistill.deploy.qat`) rounds every convolution's input and
output over running ranges it learns with the weights. Calibrating the exported file afresh gives
other ranges, so other rounding: on the embedded corpus the int8 file then differed from the
model as trained by about as much as post-training int8 differs from its float model. With the
trained ranges written into the file it reproduces the trained model (the logits' mean change
fell from 0.36 to 0.009 of their spread). Fine-tuning with `qat=true` saves them next to the
model (`RANGES_FILE`); the export's `int8` mode uses them when they are there.

Torch-free: the ranges are JSON, the file is edited with `onnx`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgedistill.errors import QuantizeError

RANGES_FILE = "qat_ranges.json"
WEIGHT_INPUT = {"QLinearConv": 3, "Conv": 1}  # where each conv node takes its weight


def read_ranges(path: str | Path) -> dict[str, dict[str, list[float]]]:
    """{module path: {"in": [lo, hi], "out": [lo, hi]}} from a `RANGES_FILE`."""
    try:
        ranges = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise QuantizeError(f"cannot read the trained ranges '{path}' ({exc}): it is written by fine-tuning with "
                            f"qat=true; remove ranges= to calibrate instead") from exc
    if not isinstance(ranges, dict) or not all(
            isinstance(r, dict) and {"in", "out"} <= set(r) for r in ranges.values()):
        raise QuantizeError(f"'{path}' is not a trained-ranges file ({{module: {{'in': [lo, hi], 'out': [lo, hi]}}}})")
    return ranges


def uint8_params(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """Scale and zero point of uint8 over [lo, hi] (0 included), as the training rounded."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = np.float32(max((hi - lo) / 255, 1e-8))
    return scale, np.uint8(np.clip(np.round(-lo / scale), 0, 255))


def _module_of(weight: str, modules: dict) -> str | None:
    """The module path in `modules` that owns the ONNX weight initializer `weight` (the export
    names initializers by parameter path, under a wrapper's prefix)."""
    stem = weight.removesuffix("_quantized").removesuffix(".weight")
    found = [m for m in modules if stem == m or stem.endswith("." + m)]
    return max(found, key=len) if found else None


def apply_trained_ranges(path: str | Path, ranges: dict) -> list[str]:
    """Rewrites, in the ONNX file `path`, the input and output quantization of each QLinearConv
    whose weight belongs to a module of `ranges`; returns those nodes' names. Convolutions without
    trained ranges (the positional convolution) keep their calibrated ones; those kept in float
    (`exclude_nodes`, as the sensitivity search tries them) take none. Ranges that belong to no
    convolution of the file, quantized or float, come from another model and fail."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {i.name: i for i in model.graph.initializer}
    done, owned = [], False
    for node in model.graph.node:
        weight = WEIGHT_INPUT.get(node.op_type)
        name = _module_of(node.input[weight], ranges) if weight is not None else None
        owned = owned or name is not None
        if node.op_type != "QLinearConv" or name is None:
            continue
        for (s, z), key in (((1, 2), "in"), ((6, 7), "out")):
            scale, zero = uint8_params(*ranges[name][key])
            init[node.input[s]].CopyFrom(numpy_helper.from_array(np.array(scale, np.float32), node.input[s]))
            init[node.input[z]].CopyFrom(numpy_helper.from_array(np.array(zero, np.uint8), node.input[z]))
        done.append(node.name)
    if not owned and ranges:
        raise QuantizeError(f"none of the {len(ranges)} trained ranges belongs to a convolution of "
                            f"'{path}': they come from another model (remove ranges= to calibrate instead)")
    onnx.save(model, str(path))
    return done
