import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedistill.deploy.quantize import quantize_config, quantize_model
from edgedistill.deploy.trained_ranges import uint8_params
from edgedistill.errors import QuantizeError

WEIGHT = "model.backbone.fe.conv.weight"  # as torch.onnx.export names a wrapped module's parameter


def _conv_file(path):
    """waveform [1, 16000] -> Unsqueeze -> Conv (8 channels, kernel 10, stride 5) -> Conv `other`
    (8 channels, kernel 3, no trained ranges) -> y."""
    rng = np.random.default_rng(0)
    w, w2 = rng.standard_normal((8, 1, 10)).astype(np.float32), rng.standard_normal((8, 8, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Unsqueeze", ["waveform", "axes"], ["x"]),
         helper.make_node("Conv", ["x", WEIGHT], ["h"], strides=[5], name="conv"),
         helper.make_node("Conv", ["h", "model.backbone.fe.other.weight"], ["y"], name="other")], "g",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, 16000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 3197])],
        [numpy_helper.from_array(w, WEIGHT), numpy_helper.from_array(w2, "model.backbone.fe.other.weight"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _io_params(path):
    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    node = next(n for n in m.graph.node if n.op_type == "QLinearConv")
    return [(float(init[node.input[s]]), int(init[node.input[z]])) for s, z in ((1, 2), (6, 7))]


def test_int8_takes_a_qat_models_trained_ranges_for_its_convolutions(embedded_corpus, tmp_path):
    src = _conv_file(tmp_path / "m.onnx")
    ranges = tmp_path / "qat_ranges.json"
    ranges.write_text(json.dumps({"backbone.fe.conv": {"in": [-0.5, 0.25], "out": [0.3, 7.0]}}))
    cal = dict(calibration=str(embedded_corpus), calibration_clips=4)
    calibrated = quantize_model(src, tmp_path / "c.onnx", quantize_config("int8", **cal))["path"]
    trained = quantize_model(src, tmp_path / "t.onnx", quantize_config("int8", ranges=str(ranges), **cal))["path"]
    got, want = _io_params(trained), [uint8_params(-0.5, 0.25), uint8_params(0.3, 7.0)]
    assert got == [(pytest.approx(float(s)), int(z)) for s, z in want]
    assert want[1][1] == 0  # a range above 0 is stretched down to 0, as the training rounds
    assert _io_params(calibrated) != got

    # The sensitivity search may keep every convolution with trained ranges in float: no error.
    kept = quantize_model(src, tmp_path / "f.onnx", quantize_config("int8", ranges=str(ranges), exclude_nodes=["conv"],
                                                                    **cal))["path"]
    assert [n.op_type for n in onnx.load(str(kept)).graph.node if "Conv" in n.op_type] == ["Conv", "QLinearConv"]

    ranges.write_text(json.dumps({"encoder.other.conv": {"in": [-1, 1], "out": [-1, 1]}}))
    with pytest.raises(QuantizeError, match="come from another model"):
        quantize_model(src, tmp_path / "x.onnx", quantize_config("int8", ranges=str(ranges), **cal))
    ranges.write_text("{not json")
    with pytest.raises(QuantizeError, match="cannot read the trained ranges"):
        quantize_model(src, tmp_path / "x.onnx", quantize_config("int8", ranges=str(ranges), **cal))
    with pytest.raises(QuantizeError, match="cannot read the trained ranges"):
        quantize_model(src, tmp_path / "x.onnx", quantize_config("int8", ranges=str(tmp_path / "none.json"), **cal))
    assert not (tmp_path / "x.onnx").exists()
