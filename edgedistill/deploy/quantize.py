"""Quantization of exported models with `onnxruntime.quantization` (no torch).

Each scheme is a config dataclass registered in `MODES` with its handler (`apply`), after
torchao's `quantize_(model, config)`: a new scheme is one class, not an `if` on mode names.
`quantize_model(src, dst, quantize_config("int8", calibration=DATA))`.
- `int8-dynamic`: MatMul/Gemm weights int8, activations quantized at run time; convs stay
  float (the default op list's ConvInteger is slower than fp32 convs on these models);
- `int8`: convs static per-channel int8 (QLinearConv, calibrated on real audio, or with a
  quantization-aware model's trained ranges) and MatMuls dynamic: the fast CPU layout;
- `int8-static`: everything QDQ, calibrated (for accelerators / runtimes that want QDQ);
- `int4-weights`: 4-bit block-wise weight-only MatMuls (MatMulNBits) for the largest matrices;
- `fp16`: half-precision weights and compute, float32 input and outputs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgedistill.deploy.calibration import calibration_reader as _reader
from edgedistill.deploy.fusion import type_fused_outputs
from edgedistill.errors import QuantizeError

log = logging.getLogger(__name__)

# Per-target integer settings. x86 CPUs without VNNI multiply u8 x s8 with VPMADDUBSW, whose
# int16 intermediate sums saturate: 7-bit weights (reduce_range) avoid that. With VNNI the
# products accumulate in int32, so the full range is safe. Arm64 dot-product kernels (sdot)
# prefer symmetric signed int8 for static activations.
TARGETS: dict[str, dict] = {
    "x86-avx2": {"reduce_range": True, "activation": "QUInt8", "weight": "QInt8", "symmetric_activation": False},
    "x86-avx512-vnni": {"reduce_range": False, "activation": "QUInt8", "weight": "QInt8", "symmetric_activation": False},
    "arm64": {"reduce_range": False, "activation": "QInt8", "weight": "QInt8", "symmetric_activation": True},
}


def detect_target() -> str:
    """The TARGETS entry for this machine, from its CPU flags."""
    import platform

    from edgedistill.reporting.machine import cpu_flags

    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    flags = cpu_flags()
    return "x86-avx512-vnni" if ({"avx512_vnni", "avx_vnni"} & flags) else "x86-avx2"


@dataclass
class QuantScheme:
    """What every scheme has. A scheme is a config dataclass registered with its handler
    (`register`): a new scheme is one class and one `apply`, with no `if` on mode names."""

    mode: ClassVar[str] = ""
    marks: ClassVar[set[str]] = set()       # op types that show the scheme did something
    node_types: ClassVar[set[str]] = set()  # op types it quantizes (sensitivity candidates)

    target: str = field(default="auto", metadata={"help": "auto, x86-avx2, x86-avx512-vnni or arm64"})
    exclude_nodes: list[str] = field(default_factory=list, metadata={"help": "node names kept in float"})

    def __post_init__(self):
        if self.target != "auto" and self.target not in TARGETS:
            raise ValueError(f"unknown target '{self.target}': choose auto or one of {sorted(TARGETS)}")

    def settings(self) -> dict:
        """The target's integer settings (`TARGETS`), `auto` resolved for this machine."""
        target = self.target if self.target != "auto" else detect_target()
        return {"target": target, **TARGETS[target]}

    def apply(self, src: Path, dst: Path, s: dict, tmp: Path) -> None:
        """Writes the quantized `src` to `dst` (`s`: `settings()`, `tmp`: a scratch folder)."""
        raise NotImplementedError

    def nothing_quantized(self, src: Path) -> str:
        """The error when the result has none of `marks`."""
        return (f"{self.mode} found nothing to quantize in '{src}' (no {', '.join(sorted(self.marks))} node in "
                "the result; were all nodes excluded?). No file was written")


@dataclass
class CalibratedScheme(QuantScheme):
    """A scheme whose activation ranges are calibrated on real audio."""

    calibration: str | None = field(default=None, metadata={
        "help": "calibration audio: manifest, folder or 'embedded'"})
    calibration_split: str | None = field(default="train", metadata={"help": "manifest split for calibration"})
    calibration_clips: int = field(default=64, metadata={"help": "clips used for calibration"})
    calibration_samples: int = field(default=16_000, metadata={"help": "samples per calibration clip"})
    calibration_method: str = field(default="percentile", metadata={
        "help": "minmax, percentile or entropy. Percentile is the default: after the CNN's "
                "GroupNorm, rare outliers stretch MinMax ranges and cost accuracy"})
    calibration_percentile: float = field(default=99.9, metadata={"help": "percentile for calibration_method=percentile"})

    def __post_init__(self):
        super().__post_init__()
        if not self.calibration:
            raise ValueError(f"mode '{self.mode}' calibrates on real audio: give calibration=MANIFEST "
                             "(or use int8-dynamic, which needs none)")
        if self.calibration_method not in ("minmax", "percentile", "entropy"):
            raise ValueError(f"calibration_method '{self.calibration_method}': use minmax, percentile or entropy")
        if self.calibration_clips < 1:
            raise ValueError("calibration_clips must be >= 1")


MODES: dict[str, type[QuantScheme]] = {}


def register(cls: type[QuantScheme]) -> type[QuantScheme]:
    """Makes a scheme available by its `mode` name (CLI `--quantize`, `export.quantize`)."""
    MODES[cls.mode] = cls
    return cls


def quantize_config(mode: str, **settings) -> QuantScheme:
    """The scheme called `mode` with `settings`; settings the scheme does not have are refused
    with a message naming the ones it has."""
    from dataclasses import fields

    if mode not in MODES:
        raise ValueError(f"unknown quantization mode '{mode}': choose one of {sorted(MODES)}")
    cls = MODES[mode]
    names = {f.name for f in fields(cls)}
    extra = sorted(set(settings) - names)
    if extra:
        raise ValueError(f"{extra} are not settings of {mode}: its settings are {sorted(names)}")
    return cls(**settings)


def scheme_with_calibration(mode: str, **calibration) -> QuantScheme:
    """The scheme `mode` with its defaults, given the `calibration*` settings only if it
    calibrates (a run names one calibration set for all its modes)."""
    calibrated = issubclass(MODES[mode], CalibratedScheme) if mode in MODES else False
    return quantize_config(mode, **(calibration if calibrated else {}))


def _calibration(cfg: CalibratedScheme) -> dict:
    from onnxruntime.quantization import CalibrationMethod

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.calibration_method]
    extra = {"CalibPercentile": cfg.calibration_percentile} if cfg.calibration_method == "percentile" else {}
    return {"calibrate_method": method, "extra": extra}


def _qtype(name: str):
    from onnxruntime.quantization import QuantType

    return getattr(QuantType, name)


def _preprocess(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import quant_pre_process

    # The dynamo exporter's shapes confuse the symbolic shape inference: skip it.
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    type_fused_outputs(dst)
    return dst


def _dynamic_matmul(src: Path, dst: Path, cfg: QuantScheme, s: dict) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=_qtype(s["weight"]),
                     reduce_range=s["reduce_range"], per_channel=False, nodes_to_exclude=cfg.exclude_nodes)


@register
@dataclass
class Int8Dynamic(QuantScheme):
    """MatMul/Gemm weights int8, activations quantized at run time; convs stay float (the
    default op list's ConvInteger is slower than fp32 convs on these models)."""

    mode: ClassVar[str] = "int8-dynamic"
    marks: ClassVar[set[str]] = {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"}
    node_types: ClassVar[set[str]] = {"MatMul", "Gemm"}

    def apply(self, src: Path, dst: Path, s: dict, tmp: Path) -> None:
        _dynamic_matmul(src, dst, self, s)


@register
@dataclass
class Int8(CalibratedScheme):
    """Convs static per-channel int8 (QLinearConv, calibrated) and MatMuls dynamic: the fast CPU layout."""

    mode: ClassVar[str] = "int8"
    marks: ClassVar[set[str]] = {"QLinearConv", "DynamicQuantizeMatMul", "MatMulInteger"}
    node_types: ClassVar[set[str]] = {"MatMul", "Gemm", "Conv"}
    ranges: str | None = field(default=None, metadata={"help": "a quantization-aware model's trained conv ranges "
                                                              "(its qat_ranges.json), used instead of calibrated ones"})

    def apply(self, src: Path, dst: Path, s: dict, tmp: Path) -> None:
        from onnxruntime.quantization import QuantFormat, quantize_static

        from edgedistill.deploy.trained_ranges import apply_trained_ranges, read_ranges

        ranges = read_ranges(self.ranges) if self.ranges else None  # a bad file fails before calibrating
        pre = _preprocess(src, tmp / "pre.onnx")
        convs = tmp / "convs.onnx"
        cal = _calibration(self)
        _calibrated(quantize_static, str(pre), str(convs), _reader(self, src), quant_format=QuantFormat.QOperator,
                    op_types_to_quantize=["Conv"], per_channel=True, reduce_range=s["reduce_range"],
                    activation_type=_qtype("QUInt8"), weight_type=_qtype(s["weight"]),
                    nodes_to_exclude=self.exclude_nodes, calibrate_method=cal["calibrate_method"],
                    extra_options=cal["extra"])
        if ranges:
            log.info("int8: trained ranges for %d conv(s)", len(apply_trained_ranges(convs, ranges)))
        _dynamic_matmul(convs, dst, self, s)


@register
@dataclass
class Int8Static(CalibratedScheme):
    """Everything QDQ, calibrated (for accelerators / runtimes that want QDQ)."""

    mode: ClassVar[str] = "int8-static"
    marks: ClassVar[set[str]] = {"QuantizeLinear"}
    node_types: ClassVar[set[str]] = {"MatMul", "Gemm", "Conv"}

    def apply(self, src: Path, dst: Path, s: dict, tmp: Path) -> None:
        from onnxruntime.quantization import QuantFormat, quantize_static

        pre = _preprocess(src, tmp / "pre.onnx")
        cal = _calibration(self)
        # Calibrate (and quantize) only op types whose tensors are finite: WavLM's relative-position
        # `Log` gives -inf on the diagonal, which no int8 range can hold.
        op_types = _finite_op_types(pre, _reader(self, src))
        _calibrated(quantize_static, str(pre), str(dst), _reader(self, src), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=s["reduce_range"], activation_type=_qtype(s["activation"]),
                    weight_type=_qtype(s["weight"]), nodes_to_exclude=self.exclude_nodes,
                    op_types_to_quantize=op_types, calibrate_method=cal["calibrate_method"],
                    extra_options={"ActivationSymmetric": s["symmetric_activation"], **cal["extra"]})


def _calibrated(fn, *args, **kwargs) -> None:
    """Runs a calibrating quantizer; its failures become a QuantizeError that says what to try."""
    try:
        fn(*args, **kwargs)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise QuantizeError(f"calibration failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): try "
                            "calibration_method=minmax, more calibration_clips, or keep the failing nodes in "
                            "float with exclude_nodes=[...]; int8-dynamic needs no calibration") from exc


def _finite_op_types(path: Path, reader) -> list[str]:
    """QDQ-quantizable op types of the model whose inputs and outputs stay finite on the first
    calibration clip. Op types that touch a non-finite tensor are left in float (logged)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.registry import QDQRegistry

    model = onnx.load(str(path))
    floats = {vi.name for vi in list(model.graph.value_info) + list(model.graph.output)
              if vi.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    produced = {o for n in model.graph.node for o in n.output}
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(vi for vi in model.graph.value_info
                              if vi.name in floats and vi.name in produced and vi.name not in outputs)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, reader.get_next())))
    bad = {n for n, v in values.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()}
    present = {n.op_type for n in model.graph.node if n.op_type in QDQRegistry}
    skipped = {n.op_type for n in model.graph.node if bad & set(n.input) | bad & set(n.output)} & present
    if skipped:
        log.warning("int8-static: op types %s touch non-finite tensors (e.g. %s) and stay in float",
                    sorted(skipped), sorted(bad)[:3])
    return sorted(present - skipped)


@register
@dataclass
class Int4Weights(QuantScheme):
    """4-bit block-wise weight-only MatMuls (MatMulNBits) for the largest matrices."""

    mode: ClassVar[str] = "int4-weights"
    marks: ClassVar[set[str]] = {"MatMulNBits"}
    node_types: ClassVar[set[str]] = {"MatMul"}

    int4_block_size: int = field(default=32, metadata={"help": "block size"})
    int4_min_elements: int = field(default=65_536, metadata={
        "help": "only MatMuls whose weight has at least this many elements"})

    def __post_init__(self):
        super().__post_init__()
        if self.int4_block_size < 16:
            raise ValueError("int4_block_size must be >= 16")

    def apply(self, src: Path, dst: Path, s: dict, tmp: Path) -> None:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(src))
        weights = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
        small = [n.name for n in model.graph.node if n.op_type == "MatMul"
                 and weights.get(n.input[1], 0) < max(self.int4_min_elements, 1)]
        q = MatMulNBitsQuantizer(model, bits=4, block_size=self.int4_block_size, is_symmetric=True,
                                 nodes_to_exclude=list(self.exclude_nodes) + small)
        q.process()
        q.model.save_model_to_file(str(dst), use_external_data_format=False)

    def nothing_quantized(self, src: Path) -> str:
        import onnx

        model = onnx.load(str(src))
        sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
        largest = max((sizes.get(n.input[1], 0) for n in model.graph.node if n.op_type == "MatMul"), default=0)
        return (f"int4-weights changed nothing: no MatMul weight has int4_min_elements={self.int4_min_elements:,} "
                f"elements or more (the largest has {largest:,}); lower it (e.g. int4_min_elements={max(largest, 16)}) "
                "or use int8-dynamic. No file was written")


@register
@dataclass
class Fp16(QuantScheme):
    """Half-precision weights and compute, float32 input and outputs."""

    mode: ClassVar[str] = "fp16"
    marks: ClassVar[set[str]] = {"Cast"}
    node_types: ClassVar[set[str]] = {"MatMul", "Gemm", "Conv"}

    def apply(self, src: Path, dst: Path, s: dict, tmp: Path) -> None:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                         node_block_list=self.exclude_nodes or None)
        onnx.save(model, str(dst))


def quantize_model(src: str | Path, dst: str | Path, cfg: QuantScheme) -> dict:
    """Quantizes `src` into `dst` (metadata kept, plus the mode and target); returns a summary."""
    import onnx

    from edgedistill.runtime.metadata import read_metadata, set_metadata

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model '{src}' does not exist")
    meta = read_metadata(src)
    if meta.get("quantization"):
        raise QuantizeError(f"'{src}' is already quantized ({meta['quantization']}): quantize the float "
                            "export (model.fp32.onnx)")
    s = cfg.settings()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / "out.onnx"
        with _quiet_onnxruntime():   # its calibration prints with print(), its quantizer warns on root
            cfg.apply(src, tmp_out, s, Path(tmp))
        model = onnx.load(str(tmp_out))
        ops = sorted({n.op_type for n in model.graph.node})
        if not cfg.marks & set(ops):
            raise QuantizeError(cfg.nothing_quantized(src))
        meta.update(quantization=cfg.mode, quantization_target=s["target"], excluded_nodes=cfg.exclude_nodes)
        if meta.get("streaming"):  # a micro student's file, where names weigh as much as weights
            from edgedistill.deploy.graph import compact_graph

            compact_graph(model, keep_node_names=False)
        set_metadata(model, meta)
        # Renamed into place once complete: a kill never leaves a half-written model at `dst`.
        part = dst.with_name(dst.name + ".tmp")
        onnx.save(model, str(part))
        os.replace(part, dst)
    return {"path": str(dst), "mode": cfg.mode, "target": s["target"], "reduce_range": s["reduce_range"],
            "file_bytes": dst.stat().st_size, "float_file_bytes": src.stat().st_size, "ops": ops}


def _not_from_onnxruntime(record: logging.LogRecord) -> bool:
    return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet_onnxruntime():
    """What onnxruntime's quantizer prints, or logs on the root logger (e.g. "Please check if
    the model is already quantized", said of every model), goes to the debug log instead of
    the console; -v shows it."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    buf, root = io.StringIO(), logging.getLogger()
    handlers = list(root.handlers)
    for h in handlers:
        h.addFilter(_not_from_onnxruntime)
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for h in handlers:
            h.removeFilter(_not_from_onnxruntime)
    for line in buf.getvalue().splitlines():
        log.debug("onnxruntime: %s", line)
