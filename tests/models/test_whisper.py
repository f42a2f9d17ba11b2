"""Whisper encoders as teachers: log-mel features in torch, clips of any length, HuBERT-shaped
waveform students, and the whole pipeline on a tiny Whisper built in memory (HF defaults kept)."""

import numpy as np
import pytest
import torch

from edgedistill.config import ConfigError
from edgedistill.models.student import StudentConfig, build_student
from edgedistill.models.teacher import load_teacher
from edgedistill.models.whisper import (LogMel, WhisperWave, hubert_shape_of, load_whisper_wave,
                                        tiny_whisper_config)


@pytest.fixture
def tiny_whisper():
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    return WhisperForConditionalGeneration(tiny_whisper_config()).eval()


@pytest.fixture
def tiny_whisper_folder(tiny_whisper, tmp_path):
    from transformers import WhisperFeatureExtractor

    folder = tmp_path / "whisper"
    tiny_whisper.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_the_tiny_config_keeps_whispers_own_defaults():
    from transformers import WhisperConfig

    tiny, real = tiny_whisper_config(), WhisperConfig()
    for key in ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "apply_spec_augment",
                "mask_time_prob", "max_source_positions", "num_mel_bins", "activation_function"):
        assert getattr(tiny, key) == getattr(real, key), key


def test_log_mel_matches_whispers_feature_extractor_padded_and_unpadded():
    from transformers import WhisperFeatureExtractor

    wave = _speechlike(1.3)
    ref = WhisperFeatureExtractor(feature_size=80)(wave, sampling_rate=16_000, return_tensors="np").input_features[0]
    padded = np.zeros(480_000, np.float32)
    padded[:wave.size] = wave
    mel = LogMel(80)
    assert np.abs(mel(torch.from_numpy(padded)[None])[0].numpy() - ref).max() < 1e-3
    short = mel(torch.from_numpy(wave)[None])[0].numpy()
    assert short.shape == (80, wave.size // 160)
    # the same frames but the last two, whose windows reach past the clip (zeros, or the reflection)
    assert np.abs(short[:, :-2] - ref[:, :short.shape[1] - 2]).max() < 1e-3
    with pytest.raises(ValueError, match="too short"):
        mel(torch.zeros(1, 150))


def test_on_30_s_the_wave_encoder_is_hfs_encoder_and_short_clips_use_the_first_positions(tiny_whisper):
    from transformers import WhisperFeatureExtractor

    model = WhisperWave(tiny_whisper.get_encoder()).eval()
    wave = np.zeros(480_000, np.float32)
    wave[:20_000] = _speechlike(1.25)
    feats = WhisperFeatureExtractor(feature_size=80)(wave, sampling_rate=16_000, return_tensors="pt").input_features
    with torch.no_grad():
        ref = tiny_whisper.get_encoder()(feats).last_hidden_state
        ours = model(torch.from_numpy(wave)[None], output_hidden_states=True)
        assert len(ours.hidden_states) == tiny_whisper.config.encoder_layers + 1
        assert (ours.last_hidden_state - ref).abs().max() < 1e-3
        # a 1.25 s clip: ceil(1.25 s / 20 ms) = 63 frames, the first 63 rows of the position table
        short = model(torch.from_numpy(wave[:20_000])[None], output_hidden_states=True).hidden_states
        enc = tiny_whisper.get_encoder()
        mel = model.frontend(torch.from_numpy(wave[:20_000])[None])
        conv = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(mel)))).transpose(1, 2)
    assert short[0].shape[1] == 63
    assert torch.allclose(short[0], conv + enc.embed_positions.weight[:63], atol=1e-5)
    with pytest.raises(ValueError, match="longer than Whisper's 30 s"):
        model(torch.zeros(1, 480_001))


def test_a_whisper_folder_loads_as_a_teacher_and_its_encoder_round_trips(tiny_whisper_folder, tmp_path):
    teacher = load_teacher(str(tiny_whisper_folder))
    assert teacher.config.model_type == "whisper" and not teacher.do_normalize
    wave = torch.from_numpy(_speechlike(1.0))[None]
    hidden = teacher(wave)
    assert len(hidden) == 5 and hidden[0].shape == (1, 50, 64) and teacher.frames(16_000) == 50
    teacher.model.save_pretrained(tmp_path / "encoder")  # encoder only: what a fine-tuned backbone saves
    again = load_whisper_wave(tmp_path / "encoder").eval()
    with torch.no_grad():
        assert torch.equal(again(wave).last_hidden_state, hidden[-1])
    with pytest.raises(ConfigError, match="no waveform CNN"):
        teacher.cnn_features(wave)


def test_students_of_a_whisper_teacher_are_waveform_huberts_that_start_from_its_layers(tiny_whisper):
    teacher = load_teacher(tiny_whisper)
    student, report = build_student(teacher.model, StudentConfig(preset="distilhubert"))
    assert student.config.model_type == "hubert" and student.config.do_stable_layer_norm
    assert student.config.hidden_size == 64 and student.config.num_hidden_layers == 2
    # layers 0 and 1 copied (16 tensors each, the key bias added as zeros); CNN and positions fresh
    assert len(report["copied"]) == 32 and all(n.startswith("encoder.layers.") for n in report["copied"])
    x = torch.randn(2, 30, 64)
    with torch.no_grad():
        w = tiny_whisper.get_encoder().layers[1](x, None)
        s = student.eval().encoder.layers[1](x)
    w, s = (w[0] if isinstance(w, tuple) else w), (s[0] if isinstance(s, tuple) else s)
    assert torch.allclose(w, s, atol=1e-5)
    scratch, rep = build_student(teacher.model, StudentConfig(preset="edge", init_from_teacher=False))
    assert rep["copied"] == [] and scratch.config.conv_dim[0] < hubert_shape_of(tiny_whisper.config).conv_dim[0]
    deep, rep = build_student(teacher.model, StudentConfig(preset="deep"))
    assert rep["copied"] == [] and deep.config.hidden_size == 32  # half width: nothing fits


def test_distill_from_a_whisper_folder_lowers_the_loss_with_a_cnn_hint_and_caches_its_targets(
        tiny_whisper_folder, small_corpus, tmp_path):
    import json

    from edgedistill.config import load_config
    from edgedistill.recipes.distill import DistillConfig, distill

    def cfg(out, *extra):
        return load_config(DistillConfig, None, [
            f"data={small_corpus}", f"out={out}", f"teacher={tiny_whisper_folder}", "batch_size=8", "max_samples=16000",
            "lr=1e-3", "log_every=2", "save_every=20", "cpu=true", "steps=20", *extra])

    summary = distill(cfg(tmp_path / "live"))
    log = [json.loads(x) for x in (tmp_path / "live" / "train_log.jsonl").read_text().splitlines()]
    assert summary["finished"] and log[-1]["loss"] < 0.8 * log[0]["loss"], (log[0]["loss"], log[-1]["loss"])
    assert "cnn_hint" in log[0]  # every student CNN of a Whisper teacher is new: the hint is on by default
    assert summary["teacher_init_copied"] == 32
    cache = tmp_path / "cache"
    distill(cfg(tmp_path / "cached", "steps=4", f"target_cache={cache}"))
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["teacher_type"] == "whisper" and manifest["frames"] == 50 * manifest["clips"]
    with pytest.raises(ConfigError, match="made for another run"):  # another teacher's cache is refused
        distill(cfg(tmp_path / "other", "steps=2", f"target_cache={cache}", "teacher=builtin:hubert-tiny"))
    with pytest.raises(ConfigError, match="no waveform CNN"):
        distill(cfg(tmp_path / "reuse", "steps=2", "reuse_teacher_cnn=true"))


def test_a_whisper_teacher_fine_tunes_exports_and_quantizes_with_its_features_in_the_graph(
        tiny_whisper_folder, small_corpus, tmp_path):
    from edgedistill.config import load_config
    from edgedistill.deploy.onnx import export_onnx
    from edgedistill.models.multitask import MultiTaskModel
    from edgedistill.recipes.finetune import FinetuneConfig, finetune
    from edgedistill.runtime import EdgeModel
    from edgedistill.runtime.model import AudioError

    out = tmp_path / "ft"
    finetune(load_config(FinetuneConfig, None, [f"data={small_corpus}", f"out={out}", f"model={tiny_whisper_folder}",
                                                "cpu=true", "batch_size=8", "steps=4", "eval_every=4", "num_trials=200"]))
    model = MultiTaskModel.from_pretrained(out)
    assert isinstance(model.backbone, WhisperWave)
    result = export_onnx(out, tmp_path / "teacher.onnx")
    assert result["parity_max_abs_diff"] < 1e-3 and result["metadata"]["max_samples"] == 480_000
    edge = EdgeModel(tmp_path / "teacher.onnx")
    wave = _speechlike(1.0)
    with torch.no_grad():
        ref = model(torch.from_numpy(wave)[None])["kws_logits"][0].numpy()
    assert np.abs(edge.run(wave)["keyword_logits"][0] - ref).max() < 1e-3  # the log-mel front end is in the file
    with pytest.raises(AudioError, match="at most 30 s"):
        edge.prepare(np.zeros(16_000 * 31, np.float32))
