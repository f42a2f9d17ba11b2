import json

import numpy as np
import pytest
import torch

from edgedistill.config import ConfigError
from edgedistill.data.layouts import distillation_clips
from edgedistill.data.unlabelled import CroppedAudio, crop_seed
from edgedistill.audio import num_frames
from edgedistill.distill.cache import (TargetCache, bytes_per_hour, cache_identity, collate_targets, open_cache,
                                       write_cache)
from edgedistill.distill.losses import layerwise_loss
from edgedistill.models.teacher import load_teacher

LAYERS = [2, 4]


def _setup(corpus, max_samples=6000):
    teacher = load_teacher("builtin:hubert-tiny")
    clips = distillation_clips(str(corpus), "train")[:10]
    dataset = CroppedAudio(clips, max_samples)
    return teacher, dataset, cache_identity("builtin:hubert-tiny", teacher, LAYERS, "fp32", dataset, seed=3)


def test_cached_targets_give_the_live_teachers_loss_on_the_same_crops(small_corpus, tmp_path):
    teacher, dataset, identity = _setup(small_corpus)
    cache = write_cache(tmp_path / "cache", teacher, dataset, identity, "cpu", batch_size=4, progress=False)
    idx = [0, 3, 7]
    waves = torch.from_numpy(np.stack([dataset[(i, crop_seed(3, 0, i))] for i in idx]))
    hidden = teacher(waves)  # equal-length crops: no padding, as in the cache pass
    live = torch.stack([hidden[t] for t in LAYERS])                      # [L, B, T, D]
    _, _, cached = collate_targets([(dataset[(i, crop_seed(3, 0, i))], cache.get(i)) for i in idx])
    assert cached.dtype == torch.float16 and cached.shape == live.shape
    assert torch.allclose(cached.float(), live, atol=2e-2, rtol=1e-2)
    pred = live + 0.3 * torch.randn_like(live)
    a, _ = layerwise_loss(pred, live)
    b, _ = layerwise_loss(pred, cached.float())
    assert abs(float(a) - float(b)) < 1e-3 * float(a)
    frames = num_frames(6000, teacher.config.conv_kernel, teacher.config.conv_stride)
    assert cache.index[:, 1].tolist() == [frames] * len(dataset)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["layers"] == LAYERS
    assert manifest["gb_per_hour"] == pytest.approx(bytes_per_hour(2, 64) / 1e9)


def test_a_cache_made_for_another_teacher_layers_or_crops_is_refused(small_corpus, tmp_path):
    teacher, dataset, identity = _setup(small_corpus)
    write_cache(tmp_path / "cache", teacher, dataset, identity, "cpu", progress=False)
    assert isinstance(open_cache(tmp_path / "cache", identity), TargetCache)
    other = load_teacher("builtin:hubert-tiny", seed=1)
    for changed, what in [(cache_identity("builtin:hubert-tiny", teacher, [1, 4], "fp32", dataset, 3), "layers"),
                          (cache_identity("builtin:hubert-tiny", other, LAYERS, "fp32", dataset, 3), "checksum"),
                          (cache_identity("builtin:hubert-tiny", teacher, LAYERS, "fp32", dataset, 4), "crops")]:
        with pytest.raises(ConfigError, match=f"made for another run.*{what}"):
            open_cache(tmp_path / "cache", changed)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds no cache"):
        open_cache(tmp_path / "junk", identity)


def test_a_stopped_cache_pass_resumes_where_it_stopped(small_corpus, tmp_path, monkeypatch):
    teacher, dataset, identity = _setup(small_corpus, max_samples=16000)
    whole = write_cache(tmp_path / "whole", teacher, dataset, identity, "cpu", batch_size=2, progress=False)
    calls = {"n": 0}
    forward = type(teacher).forward

    def stop_after_two(self, wave, features=None):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return forward(self, wave, features)

    monkeypatch.setattr(type(teacher), "forward", stop_after_two)
    monkeypatch.setattr("edgedistill.distill.cache.time.monotonic", lambda: calls["n"] * 100.0)
    with pytest.raises(KeyboardInterrupt):
        write_cache(tmp_path / "cut", teacher, dataset, identity, "cpu", batch_size=2, progress=False)
    assert open_cache(tmp_path / "cut", identity) is None  # in progress: not readable yet
    assert json.loads((tmp_path / "cut" / "progress.json").read_text())["groups"] == 2
    monkeypatch.setattr(type(teacher), "forward", forward)
    done = write_cache(tmp_path / "cut", teacher, dataset, identity, "cpu", batch_size=2, progress=False)
    assert all(np.array_equal(done.get(i), whole.get(i)) for i in range(len(dataset)))
