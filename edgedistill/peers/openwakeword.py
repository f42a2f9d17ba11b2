"""openWakeWord's frozen speech embedding with a small trained head: the peer a wake-word user
would pick instead, as an edgedistill ONNX model the same `Detector`, streams and metric code
run.

openWakeWord (Apache-2.0) computes its features with two ONNX graphs that ship in its wheel:
`melspectrogram.onnx` (16-bit PCM scale waveform -> 32 log-mel bins every 10 ms; the package
rescales them with `x / 10 + 2` to match Google's TF-Hub `speech_embedding`) and
`embedding_model.onnx` (76 mel frames, 775 ms -> one 96-dim embedding; one every 8 frames,
80 ms). Its wake-word models are small dense heads over the last few embeddings. Here the two
graphs are read from the installed wheel (`pip install --no-deps openwakeword==0.5.1`; never a
runtime dependency of edgedistill), wired into one graph with the slicing written as ONNX nodes,
and a head trained on the same windows as the students (`recipes.peer`) is appended:

    waveform [batch, samples] -> features [batch, n, 96] -> keyword_logits [batch, labels]

Nothing of openWakeWord's code is used; its pipeline was read from its `utils.AudioFeatures`.
onnx + numpy at import; torch only inside `Head`.
"""

from __future__ import annotations

import importlib.machinery
import math
from pathlib import Path

import numpy as np

OPENWAKEWORD = "openwakeword==0.5.1"
MEL_HOP = 160          # samples per mel frame (10 ms at 16 kHz)
EMBED_FRAMES = 76      # mel frames per embedding
EMBED_STEP = 8         # mel frames between embeddings (80 ms)
EMBED_DIM = 96
OPSET = 13             # the opset of both openWakeWord graphs


class PeerUnavailableError(RuntimeError):
    """openWakeWord's feature graphs are not installed."""


def openwakeword_graphs() -> tuple[Path, Path]:
    """The paths of openWakeWord's `melspectrogram.onnx` and `embedding_model.onnx` in the
    installed wheel (found without importing the package, whose `__init__` needs scikit-learn)."""
    spec = importlib.machinery.PathFinder.find_spec("openwakeword")  # sys.path only: never imports it
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailableError(f"the openWakeWord peer needs the feature graphs of {OPENWAKEWORD}: "
                                   f"pip install --no-deps {OPENWAKEWORD} (benchmarks only; edgedistill never "
                                   "needs it at run time)")
    models = Path(next(iter(spec.submodule_search_locations))) / "resources" / "models"
    paths = models / "melspectrogram.onnx", models / "embedding_model.onnx"
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise PeerUnavailableError(f"{missing} missing from the installed openwakeword: reinstall it with "
                                   f"pip install --no-deps --force-reinstall {OPENWAKEWORD}")
    return paths


def mel_frames(samples: int) -> int:
    """Mel frames openWakeWord's melspectrogram graph gives for `samples` (ceil(samples/160 - 3))."""
    return int(math.ceil(samples / MEL_HOP - 3))


def embeddings_per_window(samples: int) -> int:
    """Embeddings of one window of `samples` (a window of 76 frames every 8)."""
    n = (mel_frames(samples) - EMBED_FRAMES) // EMBED_STEP + 1
    if n < 1:
        raise ValueError(f"a window of {samples} samples gives {mel_frames(samples)} mel frames; openWakeWord's "
                         f"embedding needs {EMBED_FRAMES} ({(EMBED_FRAMES + 3) * MEL_HOP} samples at least)")
    return n


def _prefixed(model, prefix: str):
    import onnx.compose

    return onnx.compose.add_prefix(model, prefix)


def feature_graph(samples: int):
    """One ONNX graph (opset 13): `waveform` float32 [batch, samples] in [-1, 1] -> `features`
    float32 [batch, n, 96], n = `embeddings_per_window(samples)`: openWakeWord's features of the
    window, computed as its `AudioFeatures._get_embeddings` does."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = embeddings_per_window(samples)
    mel_path, emb_path = openwakeword_graphs()
    mel, emb = _prefixed(onnx.load(str(mel_path)), "mel/"), _prefixed(onnx.load(str(emb_path)), "emb/")
    (mel_in,), (mel_out,) = [i.name for i in mel.graph.input], [o.name for o in mel.graph.output]
    (emb_in,), (emb_out,) = [i.name for i in emb.graph.input], [o.name for o in emb.graph.output]

    def const(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [const("pcm_scale", 32768.0), const("mel_div", 10.0), const("mel_add", 2.0),
             const("emb_batch", [-1, EMBED_FRAMES, 32, 1], np.int64), const("feat_shape", [-1, n, EMBED_DIM], np.int64),
             const("axis2", [2], np.int64)]
    nodes = [helper.make_node("Mul", ["waveform", "pcm_scale"], [mel_in]), *mel.graph.node,
             helper.make_node("Div", [mel_out, "mel_div"], ["mel_scaled"]),   # [B, 1, T, 32]
             helper.make_node("Add", ["mel_scaled", "mel_add"], ["mel_ready"])]
    for i in range(n):  # embedding i sees mel frames [8 i, 8 i + 76)
        inits += [const(f"start{i}", [i * EMBED_STEP], np.int64),
                  const(f"end{i}", [i * EMBED_STEP + EMBED_FRAMES], np.int64)]
        nodes.append(helper.make_node("Slice", ["mel_ready", f"start{i}", f"end{i}", "axis2"], [f"win{i}"]))
    nodes += [helper.make_node("Concat", [f"win{i}" for i in range(n)], ["wins"], axis=1),  # [B, n, 76, 32]
              helper.make_node("Reshape", ["wins", "emb_batch"], [emb_in]),               # [B*n, 76, 32, 1]
              *emb.graph.node,
              helper.make_node("Reshape", [emb_out, "feat_shape"], ["features"])]
    graph = helper.make_graph(
        nodes, "openwakeword_features",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", samples])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n, EMBED_DIM])],
        initializer=inits + list(mel.graph.initializer) + list(emb.graph.initializer))
    opsets = {o.domain: o.version for m in (mel, emb) for o in m.opset_import}
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="edgedistill")
    model.ir_version = max(mel.ir_version, emb.ir_version)
    onnx.checker.check_model(model)
    return model


class FeatureExtractor:
    """openWakeWord's features of fixed-length windows with onnxruntime (the frozen part of the
    peer): `extractor(audio [batch, samples]) -> [batch, n, 96]`."""

    def __init__(self, samples: int = 16_000, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.samples, self.n = samples, embeddings_per_window(samples)
        self.session = ort.InferenceSession(feature_graph(samples).SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 2 or audio.shape[1] != self.samples:
            raise ValueError(f"expected windows [batch, {self.samples}], got {audio.shape}")
        return self.session.run(None, {"waveform": audio})[0]


def make_head(n: int, classes: int, width: int = 128):
    """openWakeWord's head shape (flatten -> dense -> layer norm -> ReLU, twice -> dense), with
    one logit per label instead of one sigmoid per model."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(n * EMBED_DIM, width), nn.LayerNorm(width), nn.ReLU(),
                         nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, classes))


def _head_nodes(head) -> tuple[list, list]:
    """The head as opset-13 ONNX nodes from `features` to `keyword_logits` (LayerNorm written
    out: opset 13 has no LayerNormalization)."""
    from onnx import helper, numpy_helper
    from torch import nn

    nodes, inits, x = [], [], "features"
    inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"))
    nodes.append(helper.make_node("Reshape", [x, "flat_shape"], ["h_flat"]))
    x = "h_flat"
    for i, layer in enumerate(head):
        if isinstance(layer, nn.Flatten):
            continue
        p = f"h{i}_"
        if isinstance(layer, nn.Linear):
            inits += [numpy_helper.from_array(layer.weight.detach().numpy().astype(np.float32), p + "w"),
                      numpy_helper.from_array(layer.bias.detach().numpy().astype(np.float32), p + "b")]
            nodes.append(helper.make_node("Gemm", [x, p + "w", p + "b"], [p + "out"], transB=1))
        elif isinstance(layer, nn.LayerNorm):
            inits += [numpy_helper.from_array(layer.weight.detach().numpy().astype(np.float32), p + "g"),
                      numpy_helper.from_array(layer.bias.detach().numpy().astype(np.float32), p + "b"),
                      numpy_helper.from_array(np.array(layer.eps, np.float32), p + "eps")]
            nodes += [helper.make_node("ReduceMean", [x], [p + "mean"], axes=[-1]),
                      helper.make_node("Sub", [x, p + "mean"], [p + "d"]),
                      helper.make_node("Mul", [p + "d", p + "d"], [p + "d2"]),
                      helper.make_node("ReduceMean", [p + "d2"], [p + "var"], axes=[-1]),
                      helper.make_node("Add", [p + "var", p + "eps"], [p + "vare"]),
                      helper.make_node("Sqrt", [p + "vare"], [p + "std"]),
                      helper.make_node("Div", [p + "d", p + "std"], [p + "n"]),
                      helper.make_node("Mul", [p + "n", p + "g"], [p + "ng"]),
                      helper.make_node("Add", [p + "ng", p + "b"], [p + "out"])]
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [x], [p + "out"]))
        else:
            raise TypeError(f"no ONNX form for head layer {type(layer).__name__}")
        x = p + "out"
    nodes[-1].output[0] = "keyword_logits"
    return nodes, inits


def peer_model(head, labels: list[str], samples: int = 16_000, metadata: dict | None = None):
    """The whole peer as one ONNX model an `EdgeModel` opens: `waveform` [batch, samples] ->
    `keyword_logits` [batch, labels], with edgedistill metadata (labels, a fixed window)."""
    import onnx
    from onnx import TensorProto, helper

    from edgedistill import __version__
    from edgedistill.runtime.metadata import set_metadata

    model = feature_graph(samples)
    nodes, inits = _head_nodes(head.cpu().eval())
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("keyword_logits", TensorProto.FLOAT,
                                                            ["batch", len(labels)]))
    set_metadata(model, {"version": __version__, "sample_rate": 16_000, "min_samples": samples,
                         "max_samples": samples, "labels": list(labels),
                         "input": f"waveform float32 [batch, {samples}], mono, 16 kHz, in [-1, 1]",
                         "peer": f"openWakeWord speech embedding ({OPENWAKEWORD}, frozen) + trained head",
                         **(metadata or {})})
    onnx.checker.check_model(model)
    return model
