import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgedistill.deploy.fusion import fuse_gelu
from edgedistill.deploy.onnx import export_onnx


def _graph(pattern: str, extra_reader: bool = False):
    """y = gelu(x) in one of the spellings exporters write (plus an optional extra reader of the
    erf output, which must block the fusion)."""
    c = lambda name, v: helper.make_tensor(name, TensorProto.FLOAT, [], [v])  # noqa: E731
    inits = [c("sqrt2", 2 ** 0.5), c("inv_sqrt2", 2 ** -0.5), c("one", 1.0), c("half", 0.5)]
    scale = (helper.make_node("Div", ["x", "sqrt2"], ["d"]) if pattern != "mul-scale"
             else helper.make_node("Mul", ["inv_sqrt2", "x"], ["d"]))
    nodes = [scale, helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"])]
    if pattern in ("dynamo", "mul-scale"):  # ((erf + 1) * 0.5) * x
        nodes += [helper.make_node("Mul", ["a", "half"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])]
    elif pattern == "x-first":  # (x * (erf + 1)) * 0.5
        nodes += [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    else:  # (0.5 * x) * (erf + 1)
        nodes += [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["h", "a"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])]
    if extra_reader:
        nodes.append(helper.make_node("Neg", ["e"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5]))
    g = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])], outputs,
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _run(proto, x):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize("pattern", ["dynamo", "mul-scale", "x-first", "half-x"])
def test_every_gelu_spelling_becomes_one_node_with_the_same_output(pattern):
    proto = _graph(pattern)
    x = np.linspace(-4, 4, 10, dtype=np.float32).reshape(2, 5)
    before = _run(proto, x)[0]
    assert fuse_gelu(proto) == 1
    assert [(n.op_type, n.domain) for n in proto.graph.node] == [("Gelu", "com.microsoft")]
    assert [i.name for i in proto.graph.initializer] == []  # the chain's constants went with it
    onnx.checker.check_model(proto)
    np.testing.assert_allclose(_run(proto, x)[0], before, atol=1e-6)


def test_a_chain_with_another_reader_or_another_constant_is_left_alone():
    proto = _graph("dynamo", extra_reader=True)
    assert fuse_gelu(proto) == 0 and "Gelu" not in {n.op_type for n in proto.graph.node}
    proto = _graph("dynamo")
    proto.graph.initializer[0].CopyFrom(helper.make_tensor("sqrt2", TensorProto.FLOAT, [], [1.5]))  # not sqrt 2
    assert fuse_gelu(proto) == 0 and len(proto.graph.node) == 5


def test_export_fuses_every_gelu_and_keeps_the_outputs(trained_multitask, exported, tmp_path):
    path, summary = exported
    plain = tmp_path / "plain.onnx"
    assert export_onnx(trained_multitask, plain, fuse=False)["fused_gelu"] == 0
    erfs = sum(n.op_type == "Erf" for n in onnx.load(str(plain)).graph.node)
    fused = onnx.load(str(path))
    assert erfs > 0 and summary["fused_gelu"] == erfs  # every GELU of the CNN and the transformer
    assert not any(n.op_type == "Erf" for n in fused.graph.node)
    assert sum(n.op_type == "Gelu" for n in fused.graph.node) == erfs
    x = (0.1 * np.random.default_rng(3).standard_normal((2, 16_000))).astype(np.float32)
    a = ort.InferenceSession(str(path)).run(None, {"waveform": x})
    b = ort.InferenceSession(str(plain)).run(None, {"waveform": x})
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, atol=1e-5)



def test_an_untyped_fused_output_gets_its_inputs_type(tmp_path):
    """onnxruntime's pre-processing renames a Gelu's output when it moves transposes across it;
    ONNX shape inference cannot type the contrib op, and static quantization calibrates typed
    tensors only."""
    from edgedistill.deploy.fusion import type_fused_outputs

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])
    g = helper.make_graph([helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"),
                           helper.make_node("Neg", ["g"], ["y"])], "untyped", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]),
              str(path))
    assert "g" not in {v.name for v in onnx.load(str(path)).graph.value_info}
    type_fused_outputs(path)
    typed = {v.name: v for v in onnx.load(str(path)).graph.value_info}
    assert typed["g"].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [d.dim_value for d in typed["g"].type.tensor_type.shape.dim] == [2, 5]
