import numpy as np
import onnx
import pytest

from edgedistill.data.layouts import resolve_labelled
from edgedistill.evaluation.scores import compare, evaluate_onnx
from edgedistill.deploy.quantize import MODES, TARGETS, detect_target, quantize_config, quantize_model


def _ops(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _matmul_weight_bytes(path):
    m = onnx.load(str(path))
    inits = {i.name: i for i in m.graph.initializer}
    total = 0
    for n in m.graph.node:
        if n.op_type in ("MatMul", "Gemm"):
            for name in n.input[1:2]:
                if name in inits:
                    total += int(np.prod(inits[name].dims)) * 4
    return total


def test_int8_dynamic_shrinks_matmul_weights_4x_and_keeps_convs_float(exported, tmp_path):
    src, _ = exported
    r = quantize_model(src, tmp_path / "q.onnx", quantize_config("int8-dynamic"))
    fp32 = src.stat().st_size
    expected = fp32 - 0.75 * _matmul_weight_bytes(src)
    assert abs(r["file_bytes"] - expected) < 0.05 * fp32, (r["file_bytes"], expected, fp32)
    ops = _ops(tmp_path / "q.onnx")
    assert "ConvInteger" not in ops and "Conv" in ops and "DynamicQuantizeLinear" in ops


@pytest.mark.parametrize("mode, must_have", [
    ("int8", {"QLinearConv", "DynamicQuantizeLinear"}), ("int8-static", {"QuantizeLinear", "DequantizeLinear"}),
    ("int4-weights", {"MatMulNBits"}), ("fp16", {"Cast"})])
def test_every_mode_produces_its_operators(exported, embedded_corpus, tmp_path, mode, must_have):
    src, _ = exported
    settings = {"int8": dict(calibration=str(embedded_corpus), calibration_clips=8),
                "int8-static": dict(calibration=str(embedded_corpus), calibration_clips=8),
                "int4-weights": dict(int4_min_elements=0), "fp16": {}}[mode]
    cfg = quantize_config(mode, **settings)
    r = quantize_model(src, tmp_path / f"{mode}.onnx", cfg)
    assert must_have <= _ops(tmp_path / f"{mode}.onnx") and r["file_bytes"] < src.stat().st_size
    assert "Gelu" in _ops(tmp_path / f"{mode}.onnx")  # the export's fused GELUs survive quantization
    from edgedistill.runtime.model import EdgeModel

    m = EdgeModel(tmp_path / f"{mode}.onnx")
    assert m.metadata["quantization"] == mode and m.labels  # metadata survives quantization


def test_int8_dynamic_outputs_stay_close_on_the_embedded_corpus(exported, embedded_corpus, tmp_path):
    src, _ = exported
    clips = resolve_labelled(str(embedded_corpus), "val")
    base = evaluate_onnx(src, clips, num_trials=2000)
    q = quantize_model(src, tmp_path / "q.onnx", quantize_config("int8-dynamic"))
    change = compare(base, evaluate_onnx(q["path"], clips, num_trials=2000))
    assert change["top1_agreement"] > 0.9 and change["embedding_cosine_mean"] > 0.97, change
    assert abs(change["kws_accuracy_change"]) < 0.05 and abs(change["sv_eer_change"]) < 0.05, change


def test_targets_and_config_errors():
    assert TARGETS["x86-avx2"]["reduce_range"] and not TARGETS["x86-avx512-vnni"]["reduce_range"]
    assert detect_target() in TARGETS
    with pytest.raises(ValueError, match="calibrates on real audio"):
        quantize_config("int8")
    with pytest.raises(ValueError, match="unknown quantization mode"):
        quantize_config("int3")
    with pytest.raises(ValueError, match="unknown target"):
        quantize_config("int8-dynamic", target="riscv")
    # a setting of another scheme is refused, naming the scheme's own
    with pytest.raises(ValueError, match=r"\['int4_block_size'\] are not settings of int8-dynamic: its settings are"):
        quantize_config("int8-dynamic", int4_block_size=64)


def test_a_new_scheme_is_one_registered_class(exported, tmp_path):
    """The torchao pattern: a scheme is a config dataclass with its handler; nothing else changes."""
    from dataclasses import dataclass
    from typing import ClassVar

    from edgedistill.deploy.quantize import Int8Dynamic, QuantScheme, register

    @dataclass
    class Int8DynamicNoFfn(QuantScheme):
        mode: ClassVar[str] = "int8-dynamic-attention-only"
        marks: ClassVar[set[str]] = Int8Dynamic.marks
        node_types: ClassVar[set[str]] = {"MatMul"}

        def apply(self, src, dst, s, tmp):
            import onnx

            ffn = [n.name for n in onnx.load(str(src)).graph.node if "feed_forward" in n.name]
            Int8Dynamic(target=self.target, exclude_nodes=self.exclude_nodes + ffn).apply(src, dst, s, tmp)

    try:
        register(Int8DynamicNoFfn)
        r = quantize_model(exported[0], tmp_path / "q.onnx", quantize_config("int8-dynamic-attention-only"))
        full = quantize_model(exported[0], tmp_path / "full.onnx", quantize_config("int8-dynamic"))
        assert r["mode"] == "int8-dynamic-attention-only" and full["file_bytes"] < r["file_bytes"] < r["float_file_bytes"]
    finally:
        MODES.pop("int8-dynamic-attention-only", None)
