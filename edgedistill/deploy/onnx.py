"""ONNX export of a multi-task model (keyword logits + speaker embedding) or a bare backbone.

The dynamo exporter with dynamic batch and time, traced at batch 2 (a batch-1 example can
freeze the batch dimension), weight norm folded into the positional conv, one self-contained
file below 2 GB, metadata embedded, `onnx.checker` run, and parity against PyTorch checked
at export time (an `ExportError` beyond the tolerance).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.audio import receptive_field
from edgedistill.deploy.fusion import fuse_gelu
from edgedistill.deploy.graph import save_checked, strip_debug_info
from edgedistill.runtime.metadata import read_metadata, set_metadata

log = logging.getLogger(__name__)
PARITY_LENGTHS = ((2, 16_000), (1, 400), (3, 8_000), (1, 64_000))


from edgedistill.errors import ExportError  # noqa: E402 (re-exported)


class _MultiTaskGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, waveform: torch.Tensor):
        out = self.model(waveform)
        return out["kws_logits"], nn.functional.normalize(out["embedding"], dim=-1)


class _BackboneGraph(nn.Module):
    def __init__(self, model, do_normalize: bool, hidden_states: bool):
        super().__init__()
        self.model, self.do_normalize, self.hidden_states = model, do_normalize, hidden_states

    def forward(self, waveform: torch.Tensor):
        from edgedistill.models.teacher import prepare_input

        out = self.model(prepare_input(waveform, self.do_normalize), output_hidden_states=self.hidden_states)
        if self.hidden_states:
            return out.last_hidden_state, torch.stack(out.hidden_states)
        return (out.last_hidden_state,)


def fold_weight_norm(model: nn.Module) -> int:
    """Removes weight-norm parametrizations (same outputs, one less ReduceL2 per run)."""
    from torch.nn.utils import parametrize

    return sum(unparametrize(m) for m in model.modules() if parametrize.is_parametrized(m))


def unparametrize(module: nn.Module) -> int:
    """Replaces each parametrized tensor of `module` by its current value, a plain parameter (or
    buffer, where the parametrized tensor was one); returns how many. Not
    `remove_parametrizations`: it deletes the tensor from the parametrized class, which a deep
    copy shares with its original (the original would lose its weight)."""
    with torch.no_grad():
        values = {name: getattr(module, name).detach().clone() for name in module.parametrizations}
    # weight norm keeps two originals (original0/1, parameters); one `original` may be a buffer
    buffers = {name for name, plist in module.parametrizations.items()
               if (orig := getattr(plist, "original", None)) is not None and not isinstance(orig, nn.Parameter)}
    module.__class__ = module.__class__.__bases__[0]
    del module._modules["parametrizations"]
    for name, value in values.items():
        if name in buffers:
            module.register_buffer(name, value)
        else:
            module.register_parameter(name, nn.Parameter(value))
    return len(values)


def _load(model) -> tuple[nn.Module, dict]:
    """(module, metadata) for a MultiTaskModel, a saved folder, or a HF speech backbone."""
    from edgedistill.models.multitask import MultiTaskModel, find_multitask_folder

    if isinstance(model, (str, Path)):
        p = Path(model)
        if not p.exists():
            raise FileNotFoundError(f"model '{p}' does not exist: pass a `finetune --out` folder, its "
                                    "model/, or a backbone folder")
        folder = find_multitask_folder(p, required=False)
        if folder is not None:
            model = MultiTaskModel.from_pretrained(folder)
        else:
            from edgedistill.models.builders import load_backbone

            backbone, do_norm = load_backbone(str(p))
            return backbone, {"kind": "backbone", "do_normalize": do_norm}
    if isinstance(model, MultiTaskModel):
        s = model.spec
        return model, {"kind": "multitask", "labels": s["labels"], "embedding_dim": s["emb_dim"],
                       "sv_threshold": s["sv_threshold"], "do_normalize": s["do_normalize"]}
    return model, {"kind": "backbone", "do_normalize": False}


def export_onnx(model, out: str | Path, *, hidden_states: bool = False, opset: int = 18,
                parity_atol: float = 1e-3, parity_audio: list[np.ndarray] | None = None,
                extra_metadata: dict | None = None, fuse: bool = True) -> dict:
    """Exports `model` to one ONNX file and checks it.

    Args:
        model: a MultiTaskModel, a saved multi-task folder (`finetune --out` or its `model/`),
            or a backbone (HF folder / distill --out / module).
        out: the .onnx path.
        hidden_states: backbone only: also output all hidden states [layers+1, batch, frames, dim].
        parity_atol: largest |ONNX - PyTorch| allowed on any output.
        parity_audio: real clips (float32, 16 kHz) checked for parity besides random inputs.
        fuse: rewrite the exporter's erf-GELU chains into single Gelu nodes (`deploy.fusion`).

    Input `waveform` float32 [batch, samples] at 16 kHz. Outputs (multi-task):
    `keyword_logits` [batch, classes], `speaker_embedding` [batch, dim] (L2-normalised);
    (backbone): `last_hidden_state` [batch, frames, dim] (+ `hidden_states`).

    Returns:
        dict with `path`, `file_bytes`, `parity_max_abs_diff`, `fused_gelu` (nodes), `metadata`.
    """
    import onnx

    from edgedistill import __version__

    module, meta = _load(model)
    from edgedistill.models.micro import is_micro

    if is_micro(module.backbone if meta["kind"] == "multitask" else module):
        return _export_micro(module, meta, out, opset, parity_atol, parity_audio, extra_metadata)
    module = copy.deepcopy(module).eval().float()
    fold_weight_norm(module)
    backbone = module.backbone if meta["kind"] == "multitask" else module
    cfg = backbone.config
    if cfg.model_type == "whisper":  # log-mel frames of 400 samples; positions for 30 s
        min_samples, max_samples = 400, backbone.max_samples()
    else:
        min_samples, max_samples = receptive_field(cfg.conv_kernel, cfg.conv_stride), 16_000 * 3600
    if meta["kind"] == "multitask":
        graph, outputs = _MultiTaskGraph(module), ["keyword_logits", "speaker_embedding"]
    else:
        graph = _BackboneGraph(module, meta["do_normalize"], hidden_states)
        outputs = ["last_hidden_state"] + (["hidden_states"] if hidden_states else [])
    graph.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed once metadata and checks are done: a kill
    # mid-export never leaves a valid-looking model without its metadata at `out`.
    tmp = out.with_name(out.name + ".tmp")
    batch = torch.export.Dim("batch", min=1, max=4096)
    samples = torch.export.Dim("samples", min=min_samples, max=max_samples)
    example = torch.randn(2, 16_000, generator=torch.Generator().manual_seed(0)) * 0.1
    import warnings

    debug = log.isEnabledFor(logging.DEBUG)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    if not debug:  # torch configures its loggers on import: quiet them here, e.g. "torchvision is not installed"
        exporter_log.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # verbose=False: no "[torch.onnx] ..." progress prints (None prints them; -v turns them back on)
        try:
            torch.onnx.export(graph, (example,), str(tmp), dynamo=True, opset_version=opset,
                              verbose=None if debug else False,
                              input_names=["waveform"], output_names=outputs,
                              dynamic_shapes={"waveform": {0: batch, 1: samples}}, external_data=False)
        finally:
            exporter_log.setLevel(level)
    proto = onnx.load(str(tmp))
    strip_debug_info(proto)
    fused = fuse_gelu(proto) if fuse else 0
    metadata = {"version": __version__, "sample_rate": 16_000, "min_samples": min_samples,
                **({"max_samples": max_samples} if cfg.model_type == "whisper" else {}),
                "input": "waveform float32 [batch, samples], mono, 16 kHz, in [-1, 1]",
                "preprocessing": json.dumps({"do_normalize": meta["do_normalize"], "resample_to": 16_000}),
                **{k: v for k, v in meta.items() if k != "do_normalize"}, **(extra_metadata or {})}
    set_metadata(proto, metadata)
    diff = save_checked(proto, tmp, out, lambda f: check_parity(graph, f, parity_audio, parity_atol))
    return {"path": str(out), "file_bytes": out.stat().st_size, "parity_max_abs_diff": diff, "fused_gelu": fused,
            "metadata": read_metadata(out)}


def _export_micro(module, meta: dict, out, opset: int, parity_atol: float, parity_audio, extra_metadata) -> dict:
    """A micro student exports as a stream (`edgedistill.deploy.streaming`)."""
    from edgedistill import __version__
    from edgedistill.deploy.streaming import export_streaming_onnx

    if meta["kind"] != "multitask":
        raise ExportError("a micro student exports with its keyword and speaker heads, as a stream: fine-tune it "
                          "(`edgedistill finetune --model DISTILL_OUT`) and export the fine-tuned folder")
    base = {"version": __version__, "sample_rate": 16_000,
            "preprocessing": json.dumps({"do_normalize": False, "resample_to": 16_000}),
            **{k: v for k, v in meta.items() if k != "do_normalize"}}
    return export_streaming_onnx(module, out, opset=opset, parity_atol=parity_atol, parity_audio=parity_audio,
                                 extra_metadata=extra_metadata, base_metadata=base)


def claim_export_folder(model, out: str | Path, overwrite: bool = False) -> None:
    """Makes `out` ready for `model`'s export without mixing two models in one folder.

    A folder that already holds an export of another model (by `export.json`'s source, or any
    `model.*.onnx` without one) is refused unless `overwrite`; the previous export's model
    files and model card are removed before the new ones are written, so stale quantized
    files never sit beside a new fp32 model.

    Raises:
        ExportError: `out` holds another model's export and `overwrite` is False.
    """
    from edgedistill.models.multitask import find_multitask_folder

    out = Path(out)
    source = None
    if isinstance(model, (str, Path)):
        source = str((find_multitask_folder(model, required=False) or Path(model)).resolve())
    marker = out / "export.json"
    previous = sorted(out.glob("model.*")) if out.is_dir() else []
    if previous:
        saved = json.loads(marker.read_text()).get("model") if marker.is_file() else None
        if (saved != source or source is None) and not overwrite:
            raise ExportError(f"'{out}' already holds an export of {f'{saved!r}' if saved else 'another model'} "
                              f"({', '.join(p.name for p in previous[:4])}): choose another --out, or pass "
                              "--overwrite to replace it")
        for f in previous + [out / "README.md"]:
            f.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"model": source}, indent=1))


@torch.no_grad()
def check_parity(graph: nn.Module, path: Path, audio: list[np.ndarray] | None, atol: float) -> float:
    """Largest |ONNX - PyTorch| over random inputs of several batch sizes and lengths and
    over `audio`; raises ExportError beyond `atol`."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = [(0.1 * rng.standard_normal((b, n))).astype(np.float32) for b, n in PARITY_LENGTHS]
    inputs += [a[None, :].astype(np.float32) for a in (audio or [])]
    worst = 0.0
    for x in inputs:
        ref = graph(torch.from_numpy(x))
        got = sess.run(None, {"waveform": x})
        for name, r, g in zip([o.name for o in sess.get_outputs()], ref, got):
            if r.shape != g.shape:
                raise ExportError(f"output {name}: ONNX shape {g.shape} != PyTorch {tuple(r.shape)} for input {x.shape}")
            d = float(np.abs(r.numpy() - g).max())
            worst = max(worst, d)
            if d > atol:
                raise ExportError(f"output {name} differs from PyTorch by {d:.2e} (> {atol:.0e}) for input "
                                  f"{x.shape}: the export is wrong; please report it with the model config")
    return worst


def set_keyword_thresholds(path: str | Path, thresholds: dict[str, float], **provenance) -> dict:
    """Writes calibrated keyword thresholds ({label: threshold}) into an exported file's
    metadata (`keyword_thresholds`, plus `keyword_thresholds_at`: how they were chosen, e.g. the
    target false alarms per hour and the hours of stream), so `EdgeModel` / `Detector` / the
    kit use them without tuning. The file is rewritten under a temporary name and renamed.
    Returns the file's new metadata."""
    import onnx

    path = Path(path)
    metadata = read_metadata(path)
    labels = metadata.get("labels") or []
    unknown = sorted(set(thresholds) - set(labels))
    if unknown:
        raise ExportError(f"thresholds for {unknown}, which are not labels of '{path}' ({labels})")
    bad = {k: t for k, t in thresholds.items() if not 0.0 < float(t) <= 1.0}
    if bad:
        raise ExportError(f"keyword thresholds must be in (0, 1], got {bad}")
    proto = onnx.load(str(path))
    metadata = {**metadata, "keyword_thresholds": {k: float(t) for k, t in thresholds.items()},
                "keyword_thresholds_at": provenance}
    set_metadata(proto, metadata)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return metadata
