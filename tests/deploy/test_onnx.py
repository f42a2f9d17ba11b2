import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgedistill.deploy.onnx import ExportError, check_parity, export_onnx
from edgedistill.runtime.metadata import read_metadata
from edgedistill.models.multitask import MultiTaskModel

TOL = 1e-4  # fp32 ONNX vs PyTorch, absolute, on logits and normalised embeddings


@pytest.mark.parametrize("batch, samples", [(1, 400), (2, 3_000), (3, 16_000), (1, 48_000)])
def test_fp32_onnx_matches_pytorch(exported, trained_multitask, batch, samples):
    path, _ = exported
    model = MultiTaskModel.from_pretrained(trained_multitask)
    x = (0.1 * np.random.default_rng(samples).standard_normal((batch, samples))).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    logits, emb = ort.InferenceSession(str(path)).run(None, {"waveform": x})
    assert logits.shape == (batch, len(model.labels)) and emb.shape == (batch, 192)
    np.testing.assert_allclose(logits, ref["kws_logits"].numpy(), atol=TOL)
    np.testing.assert_allclose(emb, torch.nn.functional.normalize(ref["embedding"], dim=-1).numpy(), atol=TOL)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_metadata_round_trips_and_the_file_is_self_contained(exported, trained_multitask):
    path, summary = exported
    meta = read_metadata(path)
    model = MultiTaskModel.from_pretrained(trained_multitask)
    assert meta["labels"] == model.labels and meta["sv_threshold"] == pytest.approx(model.spec["sv_threshold"])
    assert meta["sample_rate"] == 16000 and meta["embedding_dim"] == 192 and meta["min_samples"] == 400
    assert meta["kind"] == "multitask" and meta["version"]
    assert summary["parity_max_abs_diff"] < TOL
    assert list(path.parent.glob("*.data")) == []  # no external-data sidecar
    onnx.checker.check_model(onnx.load(str(path)))


def test_backbone_export_with_hidden_states_and_weight_norm_folded(tiny_hubert, tmp_path):
    from torch.nn.utils import parametrize

    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = tiny_hubert(x).last_hidden_state
    r = export_onnx(tiny_hubert, tmp_path / "bb.onnx", hidden_states=True)  # the module itself, not a folder
    sess = ort.InferenceSession(r["path"])
    last, hs = sess.run(None, {"waveform": np.zeros((2, 16000), np.float32)})
    assert last.shape == (2, 49, 64) and hs.shape == (5, 2, 49, 64)
    ops = [n.op_type for n in onnx.load(r["path"]).graph.node]
    assert "ReduceL2" not in ops  # weight norm folded into the positional conv
    assert r["metadata"]["kind"] == "backbone"
    # ... in a copy: the caller's model keeps its weight norm and its outputs (folding it in place
    # of the copy once deleted the conv's weight from the class both share)
    conv = tiny_hubert.encoder.pos_conv_embed.conv
    assert parametrize.is_parametrized(conv, "weight")
    with torch.no_grad():
        torch.testing.assert_close(tiny_hubert(x).last_hidden_state, before)


def test_unparametrize_folds_a_copy_and_leaves_the_original_parametrized():
    import copy

    from torch.nn.utils import parametrize

    from edgedistill.deploy.onnx import unparametrize

    class Double(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    m = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(3, 2))
    m.register_buffer("scale", torch.ones(2))
    parametrize.register_parametrization(m, "scale", Double())
    x = torch.randn(4, 3)
    before = m(x)
    c = copy.deepcopy(m)
    assert unparametrize(c) == 2
    assert not parametrize.is_parametrized(c) and type(c) is torch.nn.Linear
    assert isinstance(c.weight, torch.nn.Parameter) and "scale" in dict(c.named_buffers())
    torch.testing.assert_close(c.scale, 2 * torch.ones(2))
    torch.testing.assert_close(c(x), before)
    assert parametrize.is_parametrized(m, "weight") and parametrize.is_parametrized(m, "scale")
    torch.testing.assert_close(m(x), before)  # the original still runs: its class kept its weight
    assert unparametrize(copy.deepcopy(m)) == 2  # and can be folded again


def test_parity_failure_is_loud(exported, trained_multitask):
    path, _ = exported
    model = MultiTaskModel.from_pretrained(trained_multitask)
    with torch.no_grad():
        model.kws_head.bias += 1.0  # PyTorch now disagrees with the exported file
    from edgedistill.deploy.onnx import _MultiTaskGraph

    with pytest.raises(ExportError, match="keyword_logits differs from PyTorch"):
        check_parity(_MultiTaskGraph(model).eval(), path, None, 1e-3)


def test_exported_file_carries_no_debug_metadata(exported):
    """Defect: per-node stack traces from the exporter were 40% of the file."""
    proto = onnx.load(str(exported[0]))
    assert not any(len(n.metadata_props) or n.doc_string for n in proto.graph.node)
    assert read_metadata(exported[0])["labels"]  # the model's own metadata stays


def test_a_failed_export_leaves_nothing_at_the_final_name(trained_multitask, tmp_path, monkeypatch):
    """Defect: torch wrote the final path and metadata came after: a kill in between left a
    valid-looking model without labels."""
    import edgedistill.deploy.onnx as ex

    def boom(*a, **k):
        raise ExportError("killed")

    monkeypatch.setattr(ex, "check_parity", boom)
    with pytest.raises(ExportError, match="killed"):
        export_onnx(trained_multitask, tmp_path / "model.fp32.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_folder_holding_another_models_export(trained_multitask, tiny_hubert, tmp_path, capsys):
    """Defect: exporting into another model's folder replaced model.fp32.onnx and left the old
    int8 file and model card beside it."""
    from edgedistill.cli import main

    deploy = tmp_path / "deploy"
    assert main(["export", "--model", str(trained_multitask.parent), "--out", str(deploy),
                 "--quantize", "int8-dynamic"]) == 0
    assert "cd deploy && python infer.py model.int8-dynamic.onnx clip.wav" in capsys.readouterr().out
    tiny_hubert.save_pretrained(tmp_path / "other")
    assert main(["export", "--model", str(tmp_path / "other"), "--out", str(deploy)]) == 2
    assert "already holds an export" in capsys.readouterr().err
    assert (deploy / "model.int8-dynamic.onnx").exists()      # nothing was touched
    assert main(["export", "--model", str(tmp_path / "other"), "--out", str(deploy), "--overwrite"]) == 0
    assert not (deploy / "model.int8-dynamic.onnx").exists()  # no stale file of the old model
    assert read_metadata(deploy / "model.fp32.onnx")["kind"] == "backbone"
    # the same model again is not "another model"
    from edgedistill.deploy.onnx import claim_export_folder

    claim_export_folder(str(tmp_path / "other"), deploy)
    assert not (deploy / "model.fp32.onnx").exists()  # its old files are cleared for the new export
