import numpy as np
import pytest
import torch
from transformers import HubertModel

from edgedistill.config import load_config
from edgedistill.data.layouts import resolve_labelled
from edgedistill.data.manifest import load_clip
from edgedistill.deploy.onnx import export_onnx
from edgedistill.deploy.qat import fold_qat, prepare_qat, weight_qmax
from edgedistill.deploy.quantize import quantize_config, quantize_model
from edgedistill.deploy.trained_ranges import RANGES_FILE
from edgedistill.models.teacher import tiny_hubert_config
from edgedistill.recipes.export import with_trained_ranges
from edgedistill.recipes.finetune import FinetuneConfig, finetune


def _integers(x: torch.Tensor) -> bool:
    return torch.allclose(x, torch.round(x), atol=1e-3)


def test_prepare_rounds_like_the_int8_export_and_fold_keeps_the_rounded_weights():
    torch.manual_seed(0)
    model = HubertModel(tiny_hubert_config())  # layerdrop, dropouts, SpecAugment as shipped
    plain_keys = set(model.state_dict())
    wave = torch.randn(2, 16000)
    prepare_qat(model, "x86-avx2")
    model.train()
    model(wave).last_hidden_state.pow(2).mean().backward()
    q = model.encoder.layers[0].attention.q_proj
    assert q.parametrizations.weight.original.grad.abs().sum() > 0  # straight through the rounding
    model.eval()
    with torch.no_grad():
        fake = model(wave).last_hidden_state
    folded = fold_qat(model)
    assert set(folded.state_dict()) == plain_keys  # saves and loads as the plain model does
    qmax = weight_qmax("x86-avx2")
    assert qmax == 64
    w = folded.encoder.layers[0].attention.q_proj.weight
    assert _integers(w / (w.abs().max() / qmax))  # per tensor, as dynamic MatMul quantization
    c = folded.feature_extractor.conv_layers[1].conv.weight
    assert _integers(c / (c.abs().flatten(1).amax(1) / qmax)[:, None, None])  # per output channel
    assert not _integers(model.encoder.layers[0].attention.q_proj.parametrizations.weight.original
                         / (w.abs().max() / qmax))  # the latent weights stay float
    with torch.no_grad():
        assert torch.equal(model(wave).last_hidden_state, fake)  # folding a copy leaves the model training
        assert not torch.equal(folded(wave).last_hidden_state, fake)  # no activation rounding once folded
    with pytest.raises(ValueError, match="unknown target 'arm32'"):
        weight_qmax("arm32")
    with pytest.raises(ValueError, match="qat_target 'arm32'"):
        FinetuneConfig(qat=True, qat_target="arm32")


def _logits(path, waves):
    from edgedistill.runtime.model import EdgeModel

    return EdgeModel(str(path)).run(waves)["keyword_logits"]


def _change(x, ref) -> float:
    """Mean |logit change| over the spread of the reference logits."""
    return float(np.abs(x - ref).mean() / ref.std())


def _as_trained(folder, waves):
    """The logits of a `qat=true` fine-tune's saved model as it trained: folded weights (already
    rounded: rounding them again changes nothing) and its saved ranges, fake quantization on."""
    import json

    from edgedistill.deploy.qat import StaticActQuant
    from edgedistill.models.multitask import MultiTaskModel

    model = prepare_qat(MultiTaskModel.from_pretrained(folder))
    for name, r in json.loads((folder / RANGES_FILE).read_text()).items():
        for key in ("in", "out"):
            q: StaticActQuant = getattr(model.get_submodule(name), f"qat_{key}")
            q.lo.fill_(r[key][0]), q.hi.fill_(r[key][1]), q.seen.fill_(1)
    with torch.no_grad():
        return model.eval()(torch.from_numpy(waves))["kws_logits"].numpy()


def test_the_int8_file_of_a_qat_model_rounds_as_the_model_trained(embedded_corpus, tmp_path):
    """Same start, same steps, with and without QAT. Post-training int8 moves the logits by a
    good part of their spread (the CNN's per-tensor uint8 activations); so does the QAT model's
    file calibrated afresh, against the model as trained (other ranges: other rounding). With the
    trained ranges (what export and the run's qat stage use) the file is the model that trained.
    QAT's float model (rounded weights, float activations) is not what it trained, so "closer to
    the float model" is not its promise: at this size either wins by chance, seed to seed."""
    clips = resolve_labelled(str(embedded_corpus), "val")[:64]
    waves = np.stack([np.pad(w, (0, 16000 - len(w)))[:16000] for w in map(load_clip, clips)]).astype(np.float32)
    int8 = quantize_config("int8", calibration=str(embedded_corpus), calibration_clips=16)
    files = {}
    for qat in (False, True):
        out = tmp_path / f"qat_{qat}"
        finetune(load_config(FinetuneConfig, None, [
            f"data={embedded_corpus}", f"out={out}", "model=builtin:hubert-tiny", "cpu=true", "batch_size=16",
            "freeze_cnn=false", "head_lr=5e-3", "backbone_lr=2e-3", "steps=40", "eval_every=40",
            "num_trials=500", f"qat={str(qat).lower()}"]))
        files[qat] = export_onnx(out / "model", tmp_path / f"{qat}.fp32.onnx")["path"]
    assert not (tmp_path / "qat_False" / "model" / RANGES_FILE).exists()
    trained = with_trained_ranges(int8, tmp_path / "qat_True")
    assert trained.ranges == str(tmp_path / "qat_True" / "model" / RANGES_FILE)
    assert with_trained_ranges(int8, tmp_path / "qat_False") is int8
    ptq = _change(_logits(quantize_model(files[False], tmp_path / "ptq.onnx", int8)["path"], waves),
                  _logits(files[False], waves))
    as_trained = _as_trained(tmp_path / "qat_True" / "model", waves)
    fresh = _change(_logits(quantize_model(files[True], tmp_path / "fresh.onnx", int8)["path"], waves), as_trained)
    kept = _change(_logits(quantize_model(files[True], tmp_path / "kept.onnx", trained)["path"], waves), as_trained)
    print(f"logit change: post-training {ptq:.4f}, QAT calibrated afresh {fresh:.4f}, QAT trained ranges {kept:.4f}")
    assert kept < 0.25 * ptq and kept < 0.25 * fresh, (ptq, fresh, kept)


def test_rounding_takes_half_precision_activations():
    from edgedistill.deploy.qat import StaticActQuant

    x = torch.randn(2, 4, 50)
    q = StaticActQuant()
    y = q(x.bfloat16())
    assert y.dtype == torch.bfloat16 and (y.float() - x).abs().max() < 0.1
    assert len(torch.unique(q(x))) <= 256  # uint8: at most 256 levels
