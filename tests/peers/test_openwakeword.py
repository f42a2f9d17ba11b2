"""The openWakeWord peer: its features are openWakeWord's own, its head's ONNX form is the
trained head, and it runs through the same device code as a student."""

import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from edgedistill.peers.openwakeword import (FeatureExtractor, PeerUnavailableError, embeddings_per_window,
                                            make_head, openwakeword_graphs, peer_model)


def _openwakeword_audio_features():
    """openWakeWord's own `utils.AudioFeatures`, loaded from the installed wheel without its
    package `__init__` (which imports scikit-learn for a verifier nothing here uses)."""
    root = openwakeword_graphs()[0].parents[2]
    saved = sys.modules.get("openwakeword")
    sys.modules["openwakeword"] = types.ModuleType("openwakeword")
    try:
        spec = importlib.util.spec_from_file_location("_oww_utils", root / "utils.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.AudioFeatures(inference_framework="onnx")
    finally:
        if saved is None:
            del sys.modules["openwakeword"]
        else:
            sys.modules["openwakeword"] = saved


def _a_clip(embedded_corpus) -> np.ndarray:
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.data.manifest import load_clip

    clip = next(c for c in resolve_labelled(str(embedded_corpus), "train") if c.label and not c.label.startswith("_"))
    x = np.zeros(16_000, np.float32)
    audio = load_clip(clip)[:16_000]
    x[:len(audio)] = audio
    return x


def test_features_match_openwakewords_own_pipeline_on_a_clip(embedded_corpus):
    x = _a_clip(embedded_corpus)
    pcm = np.round(x * 32767).astype(np.int16)
    reference = _openwakeword_audio_features()._get_embeddings(pcm)  # [n, 96]
    mine = FeatureExtractor(16_000)((pcm.astype(np.float32) / 32768)[None])[0]
    assert reference.shape == mine.shape == (3, 96)
    np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-3)
    assert np.abs(reference).max() > 1.0  # a real embedding, not zeros


def test_embeddings_per_window_follow_the_mel_frames():
    assert embeddings_per_window(16_000) == 3      # 97 frames: windows at 0, 8, 16
    assert embeddings_per_window(32_000) == 16     # 197 frames: openWakeWord's 16-embedding heads
    with pytest.raises(ValueError, match="needs 76"):
        embeddings_per_window(8_000)


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec", classmethod(lambda cls, name, *a: None))
    with pytest.raises(PeerUnavailableError, match="pip install --no-deps openwakeword==0.5.1"):
        openwakeword_graphs()


def test_the_peer_model_is_the_trained_head_on_the_features_and_runs_as_an_edge_model(tmp_path):
    from edgedistill.runtime.model import EdgeModel
    from edgedistill.runtime.streaming import Detector
    from edgedistill.evaluation.scores import run_detector
    from edgedistill.audio import AudioError

    torch.manual_seed(0)
    labels = ["_background_", "go", "stop"]
    head = make_head(3, len(labels), width=16).eval()
    with torch.no_grad():  # LayerNorm gains/biases away from 1/0, so the written-out form is checked
        for m in head:
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    path = tmp_path / "peer.onnx"
    path.write_bytes(peer_model(head, labels).SerializeToString())
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 16_000)) * 0.1).astype(np.float32)
    feats = FeatureExtractor(16_000)(x)
    with torch.no_grad():
        want = head(torch.from_numpy(feats)).numpy()
    model = EdgeModel(path)
    got = model.run(x)["keyword_logits"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert model.labels == labels and "speaker_embedding" not in model.outputs
    det = Detector(model, ["go", "stop"], threshold=0.05)  # every hop scores: the stream runs through
    run_detector(det, (rng.standard_normal(48_000) * 0.05).astype(np.float32))
    assert det.stats()["hops"] == 21 and det.stats()["mean_ms"] > 0
    with pytest.raises(AudioError, match="at most 1 s .fixed by its design"):
        model.run(np.zeros((1, 20_000), np.float32))  # a fixed window: longer input is refused


def test_the_peer_trains_on_a_students_batches_and_is_scored_like_one(embedded_corpus, tmp_path):
    from edgedistill.config import load_config
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.evaluation.scores import evaluate_onnx, evaluate_stream
    from edgedistill.recipes.finetune_config import FinetuneConfig
    from edgedistill.recipes.peer import train_openwakeword_peer

    cfg = load_config(FinetuneConfig, None, [f"data={embedded_corpus}", f"out={tmp_path / 'student'}",
                                            "model=builtin:hubert-tiny", "batch_size=32", "steps=150",
                                            "detect_keywords=[go,stop]", "detect_stream_s=60"])
    summary = train_openwakeword_peer(cfg, tmp_path / "peer")
    assert summary["steps"] == 150 and "_background_" in summary["labels"]
    again = train_openwakeword_peer(cfg, tmp_path / "peer")  # finished: left alone
    assert again == summary
    val = resolve_labelled(str(embedded_corpus), "val")
    r = evaluate_onnx(tmp_path / "peer" / "model.fp32.onnx", val)
    chance = 1 / len(summary["labels"])
    assert r["kws_accuracy"] > 2 * chance and "sv_eer" not in r
    s = evaluate_stream(tmp_path / "peer" / "model.fp32.onnx", val, ["go", "stop"], seconds=60, enroll_clips=2)
    assert s["speaker_gate"] == {"unscored": "the model has no speaker output"} and s["occurrences"] > 0
