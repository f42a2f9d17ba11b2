import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedistill.deploy.graph import compact_graph


def _model():
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "model.encoder.layer.0.a_long.weight")
    nodes = [helper.make_node("MatMul", ["waveform", w.name], ["model.encoder.layer.0.output"], name="node_MatMul_0"),
             helper.make_node("Relu", ["model.encoder.layer.0.output"], ["logits"], name="node_Relu_1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])], [w],
                              value_info=[helper.make_tensor_value_info("model.encoder.layer.0.output",
                                                                        TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_short_names_shrink_the_file_and_keep_inputs_outputs_and_results():
    import onnxruntime as ort

    model = _model()
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"waveform": x})[0]
    saved = compact_graph(model)
    onnx.checker.check_model(model)
    assert saved > 0 and not model.graph.value_info
    assert [n.name for n in model.graph.node] == ["node_MatMul_0", "node_Relu_1"]  # sensitivity names nodes
    assert model.graph.node[1].output == ["logits"] and model.graph.node[0].input[0] == "waveform"
    np.testing.assert_array_equal(ort.InferenceSession(model.SerializeToString()).run(None, {"waveform": x})[0], before)
    compact_graph(model, keep_node_names=False)
    assert not any(n.name for n in model.graph.node)
