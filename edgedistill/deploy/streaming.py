"""Streaming export of a fine-tuned micro student: one hop in, the scores and the new state out.

The graph takes log-mel frames (the device's front end, `edgedistill.runtime.frontend`, computes
them from samples) and the state of the stream so far:

- one cache per causal convolution (its last input frames: `MicroModel.cache_shapes`);
- the pooled frames of the last `window_frames` frames (the window the heads pool over, 50
  frames = 1 s, the training clips' length): the frame features `ring_h`, their attention
  logits `ring_a` and which slots hold a frame yet (`ring_n`);

and returns the keyword logits and the speaker embedding of the window that ends with the hop,
and the new state. A hop costs a hop's compute: each frame is computed once.

From a zero state, a clip of at most `window_frames` frames gives the PyTorch model's outputs
on that clip (the heads pool over exactly its frames), whether it comes in one call or in
chunks: the export checks both against PyTorch.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.errors import ExportError
from edgedistill.models.micro import FRAME_SAMPLES
from edgedistill.runtime.frontend import FrontendSpec, LogMelFrontend
from edgedistill.runtime.metadata import read_metadata, set_metadata

log = logging.getLogger(__name__)
MASKED = -1e4  # the attention logit of an empty slot of the window (exp underflows to 0)


class StreamingGraph(nn.Module):
    """A `MultiTaskModel` on a micro backbone as one step of a stream (see the module doc)."""

    def __init__(self, model, window_frames: int = 50):
        super().__init__()
        self.model, self.window = model, int(window_frames)
        self.n_caches = len(model.backbone.cache_shapes())

    def state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape without the batch axis) of each state tensor, in input order."""
        c = self.model.backbone.config.hidden_size
        caches = [(f"cache_{i}", s) for i, s in enumerate(self.model.backbone.cache_shapes())]
        return caches + [("ring_h", (self.window, c)), ("ring_a", (self.window, c)), ("ring_n", (self.window,))]

    def zero_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(batch, *shape) for _, shape in self.state_shapes()]

    def forward(self, features: torch.Tensor, *state: torch.Tensor):
        m = self.model
        caches, (ring_h, ring_a, ring_n) = list(state[:self.n_caches]), state[self.n_caches:]
        hs, new_caches = m.backbone.stream(features, caches, channels_last=False)  # one transpose, after the sum
        if m.layer_weights is None:
            h = hs[-1]
        else:
            w = torch.softmax(m.layer_weights, dim=0)
            h = (w[:, None, None, None] * torch.stack(hs)).sum(0)
        h = h.transpose(1, 2)
        a = m.sv_pool.attn(h)
        ring_h = torch.cat([ring_h, h], dim=1)[:, -self.window:]
        ring_a = torch.cat([ring_a, a], dim=1)[:, -self.window:]
        ring_n = torch.cat([ring_n, torch.ones_like(h[..., 0])], dim=1)[:, -self.window:]
        valid = ring_n[..., None]
        pooled = (ring_h * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        logits = m.kws_head(pooled)
        wts = torch.softmax(ring_a + (1.0 - valid) * MASKED, dim=1)
        mean = (wts * ring_h).sum(1)
        var = (wts * ring_h * ring_h).sum(1) - mean * mean
        emb = m.sv_embed(torch.cat([mean, torch.sqrt(var.clamp(min=1e-6))], dim=-1))
        return (logits, nn.functional.normalize(emb, dim=-1), *new_caches, ring_h, ring_a, ring_n)


def _run(sess, frontend: LogMelFrontend, graph: StreamingGraph, audio: np.ndarray, chunk: int | None):
    """ONNX outputs (logits, embedding) for `audio` [batch, n] heard from silence, in chunks of
    `chunk` samples (None: one call)."""
    names = [i.name for i in sess.get_inputs()]
    state = [np.zeros((audio.shape[0], *s), np.float32) for _, s in graph.state_shapes()]
    cache = frontend.initial_cache(audio.shape[0])
    step = chunk or audio.shape[1]
    for start in range(0, audio.shape[1], step):
        feats, cache = frontend(audio[:, start:start + step], cache)
        out = sess.run(None, dict(zip(names, [feats, *state])))
        state = out[2:]
    return out[0], out[1]


@torch.no_grad()
def check_streaming_parity(model, path: Path, graph: StreamingGraph, audio: list[np.ndarray] | None,
                           atol: float) -> float:
    """Largest |ONNX - PyTorch| of the keyword logits and embeddings over random and real clips of
    up to one window, heard in one call and in 100 ms chunks; ExportError beyond `atol`."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frontend = LogMelFrontend(model.backbone.config.frontend)
    rng = np.random.default_rng(0)
    n_max = graph.window * FRAME_SAMPLES
    clips = [(0.1 * rng.standard_normal((b, n))).astype(np.float32)
             for b, n in ((2, n_max), (1, 8_000), (3, 4_800))]
    clips += [np.pad(a[:n_max], (0, max(0, n_max - len(a))))[None].astype(np.float32) for a in (audio or [])]
    worst = 0.0
    for x in clips:
        ref = model(torch.from_numpy(x))
        ref = (ref["kws_logits"].numpy(), nn.functional.normalize(ref["embedding"], dim=-1).numpy())
        for chunk in (None, 1_600):
            got = _run(sess, frontend, graph, x, chunk)
            for name, r, g in zip(("keyword_logits", "speaker_embedding"), ref, got):
                d = float(np.abs(r - g).max())
                worst = max(worst, d)
                if d > atol:
                    raise ExportError(f"streaming output {name} differs from PyTorch by {d:.2e} (> {atol:.0e}) for "
                                      f"input {x.shape} in {'one call' if chunk is None else f'chunks of {chunk}'}: "
                                      "the export is wrong; please report it with the model config")
    return worst


def export_streaming_onnx(model, out: str | Path, *, window_frames: int = 50, opset: int = 18,
                          parity_atol: float = 1e-3, parity_audio: list[np.ndarray] | None = None,
                          extra_metadata: dict | None = None, base_metadata: dict | None = None) -> dict:
    """Exports a `MultiTaskModel` on a micro backbone as a streaming ONNX graph (module doc).

    Inputs: `features` float32 [batch, frames, n_mels] (frames even: a multiple of 320 samples),
    then the state tensors `state_shapes()` [batch, ...]. Outputs: `keyword_logits`,
    `speaker_embedding` (L2-normalised), then the new state in the same order. The metadata says
    all of it (`streaming`, `frontend`), so `EdgeModel` and `Detector` drive the file on their own.

    Returns: dict with `path`, `file_bytes`, `parity_max_abs_diff`, `metadata`.
    """
    import onnx

    from edgedistill.deploy.graph import compact_graph, save_checked, strip_debug_info

    module = copy.deepcopy(model).eval().float()
    graph = StreamingGraph(module, window_frames).eval()
    shapes = graph.state_shapes()
    spec = FrontendSpec(**module.backbone.config.frontend)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    batch = torch.export.Dim("batch", min=1, max=4096)
    pairs = torch.export.Dim("pairs", min=1, max=90_000)  # frames = 2 * pairs
    example = (torch.randn(2, 10, spec.n_mels), *graph.zero_state(2))
    in_names = ["features"] + [f"{n}_in" for n, _ in shapes]
    out_names = ["keyword_logits", "speaker_embedding"] + [f"{n}_out" for n, _ in shapes]
    dynamic = ({0: batch, 1: 2 * pairs}, tuple({0: batch} for _ in shapes))  # (features, *state)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    if not log.isEnabledFor(logging.DEBUG):
        exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, str(tmp), dynamo=True, opset_version=opset, verbose=False,
                              input_names=in_names, output_names=out_names, dynamic_shapes=dynamic,
                              external_data=False)
    finally:
        exporter_log.setLevel(level)
    proto = onnx.load(str(tmp))
    strip_debug_info(proto)
    compact_graph(proto)
    streaming = {"frame_samples": FRAME_SAMPLES, "window_frames": graph.window, "features": "features",
                 "states": [{"input": f"{n}_in", "output": f"{n}_out", "shape": list(s)} for n, s in shapes]}
    metadata = {**(base_metadata or {}), "min_samples": FRAME_SAMPLES,
                "input": "features float32 [batch, frames, n_mels]: the log-mel front end's frames (edgedistill.runtime."
                         "frontend) of mono 16 kHz audio in [-1, 1], plus the stream's state",
                "frontend": spec.as_dict(), "streaming": streaming, **(extra_metadata or {})}
    set_metadata(proto, metadata)
    diff = save_checked(proto, tmp, out, lambda f: check_streaming_parity(module, f, graph, parity_audio, parity_atol),
                        "streaming graph")
    return {"path": str(out), "file_bytes": out.stat().st_size, "parity_max_abs_diff": diff, "fused_gelu": 0,
            "metadata": read_metadata(out)}
