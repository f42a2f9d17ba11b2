import csv
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from edgedistill.data.corpus import CorpusConfig, build_corpus, make_speakers


def _rows(manifest):
    with open(manifest) as f:
        return list(csv.DictReader(f))


def test_manifest_format_splits_and_counts(small_corpus):
    rows = _rows(small_corpus)
    assert list(rows[0]) == ["path", "label", "speaker", "split", "text"]
    assert len(rows) == 4 * 6 * 2
    by_split = {}
    for r in rows:
        by_split.setdefault(r["split"], set()).add(r["speaker"])
        assert r["text"] == r["label"]
        assert (small_corpus.parent / r["path"]).is_file()
    assert {k: len(v) for k, v in by_split.items()} == {"train": 4, "val": 1, "test": 1}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])


def test_deterministic_and_cached(tmp_path, small_corpus):
    cfg = CorpusConfig(keywords=["yes", "no", "stop", "go"], num_speakers=6, takes=2, splits=(4, 1, 1))
    again = build_corpus(cfg, root=tmp_path)
    assert again != small_corpus
    for r in _rows(small_corpus)[:10]:
        assert (again.parent / r["path"]).read_bytes() == (small_corpus.parent / r["path"]).read_bytes()
    mtime = again.stat().st_mtime_ns
    assert build_corpus(cfg, root=tmp_path) == again and again.stat().st_mtime_ns == mtime


def test_clips_are_one_second_speech_over_noise(small_corpus):
    r = _rows(small_corpus)[0]
    x, sr = sf.read(small_corpus.parent / r["path"])
    assert sr == 16000 and x.shape == (16000,)
    frame_db = 10 * np.log10(np.mean(x.reshape(50, 320) ** 2, axis=1) + 1e-12)
    assert frame_db.max() - np.median(frame_db) > 8      # a word stands out from the noise floor
    assert np.all(frame_db > -90)                        # background noise everywhere


def test_speakers_differ_in_pitch_and_vocal_tract():
    spk = make_speakers(12, seed=0)
    f0 = [s.f0 for s in spk]
    vtl = [s.vtl for s in spk]
    assert max(f0) / min(f0) > 2 and max(vtl) / min(vtl) > 1.3
    assert len({round(s.f0) for s in spk}) == 12


def test_corpus_specs_name_other_corpora_of_the_same_synthesiser(tmp_path, monkeypatch):
    from edgedistill.data.corpus import parse_corpus_spec
    from edgedistill.data.manifest import resolve_audio

    assert parse_corpus_spec("embedded") == CorpusConfig()
    cfg = parse_corpus_spec("embedded:keywords=yes/no,num_speakers=3,splits=1/1/1,takes=1,seed=5,snr_db=20/30")
    assert cfg == CorpusConfig(keywords=["yes", "no"], num_speakers=3, splits=(1, 1, 1), takes=1, seed=5,
                               snr_db=(20.0, 30.0))
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    clips = resolve_audio("embedded:keywords=yes/no,num_speakers=3,splits=1/1/1,takes=1,seed=5", split="train")
    assert sorted(c.label for c in clips) == ["no", "yes"] and len({c.speaker for c in clips}) == 1
    # Another seed: other speakers (their voices), the same words.
    other = resolve_audio("embedded:keywords=yes/no,num_speakers=3,splits=1/1/1,takes=1,seed=6", split="train")
    assert sf.read(other[0].path)[0].tolist() != sf.read(clips[0].path)[0].tolist()
    with pytest.raises(ValueError, match="unknown config key 'speakers'; did you mean 'num_speakers'"):
        parse_corpus_spec("embedded:speakers=3")
    with pytest.raises(ValueError, match="write key=value"):
        parse_corpus_spec("embedded:seed")
    with pytest.raises(ValueError, match="seed must be an integer, got 'x'"):
        parse_corpus_spec("embedded:seed=x")
    with pytest.raises(ValueError, match="also set splits"):
        parse_corpus_spec("embedded:num_speakers=30")
    with pytest.raises(ValueError, match="splits must have 3 items, got 2"):
        parse_corpus_spec("embedded:num_speakers=3,splits=1/1")
    with pytest.raises(ValueError, match="must be 3 non-negative counts summing to num_speakers=3"):
        parse_corpus_spec("embedded:num_speakers=3,splits=1/1/2")


def test_worker_processes_write_the_same_corpus(tmp_path, small_corpus):
    cfg = CorpusConfig(keywords=["yes", "no", "stop", "go"], num_speakers=6, takes=2, splits=(4, 1, 1))
    two = build_corpus(cfg, root=tmp_path, workers=2)
    assert _rows(two) == _rows(small_corpus)
    for r in _rows(small_corpus):
        assert (two.parent / r["path"]).read_bytes() == (small_corpus.parent / r["path"]).read_bytes()


def test_worker_processes_do_not_rerun_the_callers_script(tmp_path):
    # A user's script without `if __name__ == "__main__":` (a spawned multiprocessing child would run it again).
    script = tmp_path / "script.py"
    script.write_text("import sys\nfrom edgedistill.data.corpus import CorpusConfig, build_corpus\n"
                      "print('script body ran', flush=True)\n"
                      "cfg = CorpusConfig(keywords=['yes', 'no'], num_speakers=3, takes=1, splits=(1, 1, 1))\n"
                      "print(build_corpus(cfg, root=sys.argv[1], workers=2))\n")
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("script body ran") == 1
    assert len(list((tmp_path / "cache").glob("corpus-*/audio/*/*.wav"))) == 6


def test_a_failing_worker_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the workers import this broken numpy first
    (tmp_path / "numpy.py").write_text("raise ImportError('broken numpy')\n")
    cfg = CorpusConfig(keywords=["yes", "no"], num_speakers=3, takes=1, splits=(1, 1, 1))
    with pytest.raises(RuntimeError, match="(?s)synthesis worker failed.*broken numpy"):
        build_corpus(cfg, root=tmp_path / "cache", workers=2)
    assert not list((tmp_path / "cache").iterdir())  # no half corpus left behind
