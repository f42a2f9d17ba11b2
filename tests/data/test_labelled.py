from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from edgedistill.data.labelled import (IGNORE, BalancedSampler, LabelledAudio, label_index, make_trials,
                                       mix_noise)
from edgedistill.data.manifest import Clip, ManifestError


def test_trials_are_reproducible_half_target_and_never_self_paired():
    spk = [f"s{i % 5}" for i in range(60)]
    a, b = make_trials(spk, 200, seed=3), make_trials(spk, 200, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, make_trials(spk, 200, seed=4))
    assert len(a) == 200 and a[:, 2].sum() == 100
    assert (a[:, 0] != a[:, 1]).all() and len({(i, j) for i, j, _ in a}) == 200
    assert all((spk[i] == spk[j]) == bool(t) for i, j, t in a)


def test_all_pairs_when_few_clips():
    t = make_trials(["a", "a", "b", "b", "b"], 1000)
    assert len(t) == 10 and t[:, 2].sum() == 4


def test_single_clip_speakers_enter_only_non_target_trials():
    t = make_trials(["a", "a", "b", "c", "c"], 1000)
    targets = {(int(i), int(j)) for i, j, y in t if y}
    assert targets == {(0, 1), (3, 4)} and any(2 in (i, j) for i, j, y in t if not y)


@pytest.mark.parametrize("spk, match", [(["a", "b", "c"], "all 3 speakers have only one clip"),
                                        (["a", "a"], "at least 2 speakers")])
def test_trial_errors(spk, match):
    with pytest.raises(ManifestError, match=match):
        make_trials(spk)


def test_balanced_sampler_balances_classes_and_sources():
    ids = [0] * 90 + [1] * 10
    draws = [i for i, _ in BalancedSampler(ids, 4000, seed=0)]
    c = Counter(ids[i] for i in draws)
    assert abs(c[0] - c[1]) < 400
    src = [0] * 50 + [1] * 50
    draws = [i for i, _ in BalancedSampler(list(range(50)) + [7] * 50, 4000, source_ids=src)]
    assert abs(sum(src[i] for i in draws) - 2000) < 200
    s = BalancedSampler(ids, 50, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=20)
    assert list(s) == full[20:]


def test_labelled_audio_crops_pads_and_mixes_noise(tmp_path):
    x = np.ones(24000, np.float32) * 0.1
    sf.write(tmp_path / "long.wav", x, 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", x[:8000], 16000, subtype="FLOAT")
    clips = [Clip(tmp_path / "long.wav"), Clip(tmp_path / "short.wav"), Clip(tmp_path / "long.wav", offset=100, frames=500)]
    ds = LabelledAudio(clips, [0, 1, IGNORE], [IGNORE, 2, 3], 16000)
    a, kw, spk = ds[1]
    assert a.shape == (16000,) and (kw, spk) == (1, 2) and a[:4000].sum() == 0 and a[4000:12000].min() > 0
    assert ds[(1, 5)][0].shape == (16000,)
    assert np.count_nonzero(ds[2][0]) == 500
    noise = np.random.default_rng(0).normal(size=20000).astype(np.float32)
    y = mix_noise(np.ones(1000, np.float32), noise, np.random.default_rng(0), (10.0, 10.0))
    snr = 10 * np.log10(1 / np.mean((y - 1) ** 2))
    assert snr == pytest.approx(10, abs=0.01)


def test_unknown_labels_are_named():
    clips = [Clip("a", "yes"), Clip("b", "maybe"), Clip("c", "maybe")]
    with pytest.raises(ManifestError, match=r"2 clip\(s\).*'maybe': 2.*knows \['yes', 'no'\]"):
        label_index(clips, ["yes", "no"])
