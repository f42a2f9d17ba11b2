import numpy as np
import soundfile as sf

from edgedistill.data.manifest import Clip
from edgedistill.data.unlabelled import BucketBatchSampler, CroppedAudio, collate_padded


def test_buckets_are_length_sorted_and_shards_are_disjoint():
    lengths = list(np.random.default_rng(0).integers(400, 5000, size=37))
    full = BucketBatchSampler(lengths, 4, seed=1)
    batches = [[i for i, _ in b] for b in full]
    assert sorted(i for b in batches for i in b) == list(range(37))
    for b in batches:  # a batch spans a narrow length range
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) <= np.ptp(lengths) / 2
    r0 = [tuple(b) for b in BucketBatchSampler(lengths, 4, seed=1, rank=0, world_size=2)]
    r1 = [tuple(b) for b in BucketBatchSampler(lengths, 4, seed=1, rank=1, world_size=2)]
    assert len(r0) == len(r1) == 5 and not set(r0) & set(r1)


def test_epochs_differ_and_resume_skips_exactly():
    s = BucketBatchSampler(list(range(400, 440)), 3, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    assert list(s) != e0
    s.set_epoch(0, start_batch=5)
    assert list(s) == e0[5:]


def test_crops_are_seeded_and_bounded(tmp_path):
    x = np.random.default_rng(0).uniform(-.5, .5, 8000).astype(np.float32)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", x[:300], 16000, subtype="FLOAT")
    ds = CroppedAudio([Clip(tmp_path / "a.wav"), Clip(tmp_path / "short.wav")], max_samples=1000)
    assert len(ds) == 1 and ds.skipped and "300 samples" in ds.skipped[0][1]
    a, b, c = ds[(0, 7)], ds[(0, 7)], ds[(0, 8)]
    assert len(a) == 1000 and np.array_equal(a, b) and not np.array_equal(a, c)


def test_collate_zero_pads():
    w, n = collate_padded([np.ones(3, np.float32), np.ones(5, np.float32)])
    assert w.shape == (2, 5) and n.tolist() == [3, 5] and w[0, 3:].abs().sum() == 0


def test_a_segment_clip_is_read_as_its_segment(tmp_path):
    import soundfile as sf

    from edgedistill.data.manifest import Clip
    from edgedistill.data.unlabelled import CroppedAudio

    x = np.arange(16000 * 5, dtype=np.float32) / (16000 * 5)
    sf.write(tmp_path / "long.wav", x, 16000, subtype="FLOAT")
    ds = CroppedAudio([Clip(tmp_path / "long.wav", offset=16000, frames=8000)], max_samples=16000)
    assert ds.lengths == [8000]
    audio = ds[(0, 0)]
    assert len(audio) == 8000 and np.allclose(audio, x[16000:24000])


def test_distillation_leaves_the_silence_crops_out(tmp_path):
    import soundfile as sf

    from edgedistill.data.layouts import distillation_clips, resolve_labelled

    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", np.full(16000 * 20, 0.1, np.float32), 16000)
    rows = ["path,label,speaker,split"]
    for i in range(4):
        sf.write(tmp_path / f"w{i}.wav", np.zeros(16000, np.float32), 16000)
        rows.append(f"w{i}.wav,{'yes' if i % 2 else 'no'},s{i},train")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    spec = f"{tmp_path / 'manifest.csv'}+silence={tmp_path / 'noise'}"
    assert any(c.label == "_silence_" for c in resolve_labelled(spec, "train"))
    assert [c.label for c in distillation_clips(spec, "train")] == ["no", "yes", "no", "yes"]


def test_default_workers_share_the_cores_on_a_gpu_and_stay_in_the_loop_on_a_cpu(monkeypatch):
    from edgedistill.data.unlabelled import default_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert default_workers(1, gpu=True) == 8 and default_workers(4, gpu=True) == 3
    assert default_workers(1, gpu=False) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0}, raising=False)
    assert default_workers(1, gpu=True) == 0
