import numpy as np
import pytest
import soundfile as sf

from edgedistill.data.manifest import ManifestError, read_manifest, resolve_audio


def _write(tmp_path, text, files=("a.wav",)):
    for f in files:
        sf.write(tmp_path / f, np.zeros(800, np.float32), 16000)
    p = tmp_path / "m.csv"
    p.write_text(text)
    return p


def test_reads_relative_paths_and_filters_split(tmp_path):
    p = _write(tmp_path, "path,label,speaker,split\na.wav,yes,s1,train\nb.wav,no,s2,val\n", ("a.wav", "b.wav"))
    clips = read_manifest(p, split="val")
    assert len(clips) == 1 and clips[0].label == "no" and clips[0].path == tmp_path / "b.wav"


@pytest.mark.parametrize("text, kw, match", [
    ("file,label\na.wav,yes\n", {}, r"lacks column\(s\) \['path'\]"),
    ("path,label,speaker,split\nb.wav,yes,s1,train\n", {}, "1 audio file.*missing.*b.wav"),
    ("path,label,speaker,split\na.wav,yes,s1,train\n", {"split": "test"}, r"no rows of split 'test'.*\['train'\]"),
    ("path,label\na.wav,yes\n", {"split": "train"}, "no 'split' column"),
    ("path,label,speaker,split\na.wav,,s1,train\n", {"required": ("path", "label")}, "row 2: empty 'label'"),
    ("path,label,speaker,split\n", {}, "no rows"),
])
def test_bad_manifests(tmp_path, text, kw, match):
    with pytest.raises(ManifestError, match=match):
        read_manifest(_write(tmp_path, text), **kw)


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "nope.csv")


def test_folder_of_audio_and_folder_with_manifest(tmp_path, small_corpus):
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "x.flac", np.zeros(800, np.float32), 16000)
    sf.write(tmp_path / "y.wav", np.zeros(800, np.float32), 16000)
    assert [c.path.name for c in resolve_audio(tmp_path)] == ["x.flac", "y.wav"]
    assert len(resolve_audio(small_corpus.parent, split="val")) == 4 * 2
    with pytest.raises(FileNotFoundError):
        resolve_audio(tmp_path / "nothing")


def test_excel_utf8_bom_is_read(tmp_path):
    """Defect: Excel's "CSV UTF-8" starts with a byte-order mark; the manifest 'lacked column path'."""
    p = _write(tmp_path, "\ufeffpath,label,speaker,split\na.wav,yes,s1,train\n")
    assert p.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_manifest(p)[0].label == "yes"


def test_duplicate_rows_are_dropped_with_a_warning_and_contradictions_refused(tmp_path, caplog):
    """Defect: a duplicated row paired a file with its own copy in same-speaker trials."""
    from edgedistill.data.trials import trials_for_clips

    rows = "".join(f"{f},yes,{s},val\n" for f, s in (("a.wav", "s1"), ("b.wav", "s1"), ("c.wav", "s2"), ("d.wav", "s2")))
    p = _write(tmp_path, "path,label,speaker,split\n" + rows + "a.wav,yes,s1,val\nc.wav,yes,s2,val\n",
               ("a.wav", "b.wav", "c.wav", "d.wav"))
    with caplog.at_level("WARNING"):
        clips = read_manifest(p)
    assert len(clips) == 4 and "dropped 2 duplicate row(s)" in caplog.text
    trials = trials_for_clips(clips, 100)
    assert all(clips[i].path != clips[j].path for i, j, _ in trials)
    bad = _write(tmp_path, "path,label,speaker,split\na.wav,yes,s1,train\na.wav,no,s1,train\n")
    with pytest.raises(ManifestError, match="lists 'a.wav' twice with different \\['label'\\]"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="is a folder"):
        read_manifest(tmp_path)
