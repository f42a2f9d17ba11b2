import numpy as np
import pytest
import torch

from edgedistill.models.micro import MICRO_PRESETS, is_micro, micro_config
from edgedistill.models.student import StudentConfig, build_student, count_parameters, preset_table
from edgedistill.runtime.frontend import FrontendSpec, LogMelFrontend


def _model(preset="micro30k", seed=0, **kw):
    from transformers import AutoModel

    torch.manual_seed(seed)
    m = AutoModel.from_config(micro_config(preset, **kw))
    with torch.no_grad():  # BatchNorm statistics that are not the identity, as after training
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
    return m.eval()


def test_the_presets_have_the_sizes_they_are_named_after(tiny_hubert):
    sizes = {p: count_parameters(_model(p)) for p in MICRO_PRESETS}
    assert sizes == {"micro30k": 28_976, "micro100k": 100_208, "micro300k": 302_960}
    rows = {r["preset"]: r for r in preset_table(tiny_hubert.config)}
    assert {p: rows[p]["params"] for p in MICRO_PRESETS} == sizes
    assert rows["micro100k"]["hidden"] == 96 and rows["micro100k"]["layers"] == 8


def test_a_micro_student_is_built_for_any_teacher_and_copies_nothing_from_it(tiny_hubert):
    student, report = build_student(tiny_hubert, StudentConfig(preset="micro100k", dropout=0.0))
    assert is_micro(student) and report["copied"] == [] and report["params"] == 100_208
    assert student.config.dropout == 0.0
    with pytest.raises(ValueError, match="belong to transformer students"):
        StudentConfig(preset="micro30k", thin_cnn=True)
    with pytest.raises(ValueError, match="num_heads"):
        StudentConfig(preset="micro30k", num_heads=2)


def test_the_torch_front_end_computes_the_devices_numpy_frames(embedded_corpus):
    from edgedistill.data.manifest import load_clip, read_manifest

    m = _model()
    clip = load_clip(read_manifest(embedded_corpus, split="val")[0])[None, :16_000].astype(np.float32)
    noise = (0.1 * np.random.default_rng(0).standard_normal((2, 12_345))).astype(np.float32)
    fe = LogMelFrontend(FrontendSpec())
    for x in (clip, noise):
        torch_frames = m.feature_extractor.logmel(torch.from_numpy(x)).transpose(1, 2).numpy()
        np_frames = fe.clip(x)
        assert np_frames.shape == (x.shape[0], x.shape[1] // 160, 40)
        np.testing.assert_allclose(torch_frames, np_frames, atol=2e-4, rtol=1e-4)
    # the device's front end in chunks gives the frames of the whole recording
    cache, parts = fe.initial_cache(1), []
    for i in range(0, 16_000, 480):
        f, cache = fe(clip[:, i:i + 480], cache)
        parts.append(f)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), fe.clip(clip), atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 160"):
        fe(clip[:, :100], fe.initial_cache(1))


def test_frames_are_causal_at_the_teachers_rate_and_a_chunked_stream_gives_the_same_frames():
    m = _model("micro100k")
    x = torch.randn(2, 16_000) * 0.1
    with torch.no_grad():
        out = m(x, output_hidden_states=True)
        assert out.last_hidden_state.shape == (2, 50, 96) and len(out.hidden_states) == 9
        assert m(x[:, :16_100]).last_hidden_state.shape[1] == 50  # a part-frame tail is not heard
        later = x.clone()
        later[:, 8_000:] = 0.3  # the future changes; the frames that end before it do not
        past = m(later).last_hidden_state
        torch.testing.assert_close(past[:, :25], out.last_hidden_state[:, :25])
        assert not torch.allclose(past[:, 25:], out.last_hidden_state[:, 25:])
        fe = LogMelFrontend(FrontendSpec(**m.config.frontend))
        cache = fe.initial_cache(2)
        caches = [torch.zeros(2, c, k) for c, k in m.cache_shapes()]
        frames = []
        for i in range(0, 16_000, 1_600):
            f, cache = fe(x[:, i:i + 1_600].numpy(), cache)
            hs, caches = m.stream(torch.from_numpy(f), caches)
            frames.append(hs[-1])
    torch.testing.assert_close(torch.cat(frames, 1), out.last_hidden_state, atol=1e-4, rtol=1e-4)


def test_a_saved_micro_student_reloads_with_automodel_and_as_a_backbone(tmp_path):
    from transformers import AutoModel

    from edgedistill.models.builders import load_backbone

    m = _model()
    m.save_pretrained(tmp_path / "s")
    x = torch.randn(1, 8_000) * 0.1
    with torch.no_grad():
        ref = m(x).last_hidden_state
        # the window and mel filters are not saved: a reload must rebuild them, not leave them empty
        torch.testing.assert_close(AutoModel.from_pretrained(tmp_path / "s").eval()(x).last_hidden_state, ref)
        backbone, do_norm = load_backbone(str(tmp_path / "s"))
        torch.testing.assert_close(backbone.eval()(x).last_hidden_state, ref)
    assert do_norm is False


def test_a_frozen_front_end_keeps_its_statistics_in_training():
    from edgedistill.models.student import freeze_cnn

    m = _model()
    before = m.feature_extractor.norm.running_mean.clone()
    freeze_cnn(m)
    m.train()
    m(torch.randn(4, 8_000))
    assert torch.equal(m.feature_extractor.norm.running_mean, before)
    assert not any(p.requires_grad for p in m.feature_extractor.parameters())
    assert m.encoder[0].training
