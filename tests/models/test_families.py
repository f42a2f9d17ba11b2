"""Every supported speech family, built the way real checkpoints ship (layerdrop 0.1, dropouts,
SpecAugment, norm types at their `transformers` defaults), through what users run: the CLI's
fine-tuning, the export and every quantization mode."""

import json

import pytest
import torch

from edgedistill.cli import main
from edgedistill.models.teacher import SPEECH_MODEL_TYPES, tiny_config

# (name, model_type, extra config): the four families at their defaults, plus the "large"
# layout (layer-normed CNN, pre-LN transformer) of wav2vec 2.0 Large / HuBERT Large.
FAMILIES = [(t, t, {}) for t in SPEECH_MODEL_TYPES] + [
    ("hubert-large-layout", "hubert", {"feat_extract_norm": "layer", "do_stable_layer_norm": True})]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family_dir(request, tmp_path_factory):
    from transformers import AutoModel

    name, model_type, extra = request.param
    cfg = tiny_config(model_type, **extra)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(name) / "model"
    AutoModel.from_config(cfg).save_pretrained(folder)
    return folder


def test_tiny_configs_keep_the_real_checkpoints_non_size_defaults():
    for t in SPEECH_MODEL_TYPES:
        c = tiny_config(t)
        assert c.layerdrop == 0.1 and c.hidden_dropout == 0.1 and c.attention_dropout == 0.1, t
        assert c.mask_time_prob == 0.05 and getattr(c, "apply_spec_augment", True), t


def test_cli_finetune_with_layerdrop_then_export_and_every_quantize_mode(family_dir, small_corpus, tmp_path, capsys):
    """Defect: a dropped layer adds no hidden state, so the weighted layer sum crashed at a random
    step for every real checkpoint (layerdrop 0.1); int8-static crashed on every WavLM (-inf in the
    relative-position Log); int4-weights silently did nothing on small models."""
    cfg = json.loads((family_dir / "config.json").read_text())
    assert cfg["layerdrop"] == 0.1  # as saved, like a downloaded checkpoint
    ft = tmp_path / "ft"
    # 20 steps: with 4 layers at layerdrop 0.1, a step without a dropped layer has p <= 0.73,
    # so the old code crashed within 20 steps with p > 0.998.
    assert main(["finetune", "--model", str(family_dir), "--data", str(small_corpus), "--out", str(ft),
                 "steps=20", "batch_size=8", "eval_every=20", "num_trials=200"]) == 0, capsys.readouterr().err
    deploy = tmp_path / "deploy"
    assert main(["export", "--model", str(ft), "--out", str(deploy), "--quantize", "int8-static",
                 "--calibration", str(small_corpus), "calibration_clips=4"]) == 0, capsys.readouterr().err
    for mode in ("int8-dynamic", "int8", "fp16"):
        assert main(["quantize", "--model", str(deploy / "model.fp32.onnx"), "--quantize", mode,
                     "--calibration", str(small_corpus), "calibration_clips=4"]) == 0, capsys.readouterr().err
    # int4: the tiny model's matrices are below the default size threshold -> a clear refusal,
    # never a file labelled int4 that is the fp32 model
    assert main(["quantize", "--model", str(deploy / "model.fp32.onnx"), "--quantize", "int4-weights"]) == 2
    assert "int4-weights changed nothing" in capsys.readouterr().err
    assert not (deploy / "model.int4-weights.onnx").exists()
    assert main(["quantize", "--model", str(deploy / "model.fp32.onnx"), "--quantize", "int4-weights",
                 "int4_min_elements=4096"]) == 0
    from edgedistill.runtime.model import EdgeModel

    fp32 = (deploy / "model.fp32.onnx").stat().st_size
    for mode in ("int8-static", "int8-dynamic", "int8", "fp16", "int4-weights"):
        m = EdgeModel(deploy / f"model.{mode}.onnx")
        assert m.metadata["quantization"] == mode
        label, probs = m.keyword(small_corpus.parent / _first_clip(small_corpus))
        assert label in m.labels and abs(sum(probs.values()) - 1) < 1e-4
    # the exporter's debug metadata is stripped: fp16 is about half of fp32
    assert (deploy / "model.fp16.onnx").stat().st_size < 0.6 * fp32


def _first_clip(manifest):
    return manifest.read_text().splitlines()[1].split(",")[0]
