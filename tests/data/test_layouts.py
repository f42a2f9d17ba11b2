import numpy as np
import pytest
import soundfile as sf

from edgedistill.data.layouts import (SUPERB_LABELS, read_trial_list, resolve_labelled,
                                      speech_commands_clips, voxceleb_clips)
from edgedistill.data.manifest import ManifestError
from edgedistill.data.trials import trials_from_list


def _wav(path, n=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(n, np.float32), 16000)


@pytest.fixture
def sc_tree(tmp_path):
    """Speech Commands laid out as released: word folders, noise, split lists."""
    for word in ("yes", "no", "cat", "dog"):
        for spk in ("aaa", "bbb", "ccc"):
            _wav(tmp_path / word / f"{spk}_nohash_0.wav")
    _wav(tmp_path / "_background_noise_" / "white.wav", 16000 * 30)
    _wav(tmp_path / "_background_noise_" / "pink.wav", 16000 * 20)
    words = ("yes", "no", "cat", "dog")
    (tmp_path / "validation_list.txt").write_text("".join(f"{w}/bbb_nohash_0.wav\n" for w in words))
    (tmp_path / "testing_list.txt").write_text("".join(f"{w}/ccc_nohash_0.wav\n" for w in words))
    return tmp_path


def test_superb_12_class_mapping_and_splits(sc_tree):
    train = speech_commands_clips(sc_tree, "train")
    words = {(c.text, c.label) for c in train}
    assert ("cat", "_unknown_") in words and ("dog", "_unknown_") in words and ("yes", "yes") in words
    assert {c.label for c in train} <= set(SUPERB_LABELS)
    assert all(c.speaker == "aaa" for c in train if c.label != "_silence_")
    val = speech_commands_clips(sc_tree, "val")
    assert sorted(c.text for c in val if c.label != "_silence_") == ["cat", "dog", "no", "yes"]
    assert {c.speaker for c in val if c.label != "_silence_"} == {"bbb"}
    test = speech_commands_clips(sc_tree, "test")
    assert {c.speaker for c in test if c.label != "_silence_"} == {"ccc"}
    # _silence_: as many as the average word class (yes, no: 1 clip each)
    assert sum(c.label == "_silence_" for c in train) == 1


def test_silence_crops_are_one_second_of_noise_from_disjoint_parts(sc_tree):
    train = [c for c in speech_commands_clips(sc_tree, "train") if c.label == "_silence_"]
    val = [c for c in speech_commands_clips(sc_tree, "val") if c.label == "_silence_"]
    assert train and val and all(c.frames == 16000 and c.speaker is None for c in train + val)
    for c in train:   # first 80% of each file
        total = 16000 * (30 if c.path.name == "white.wav" else 20)
        assert c.offset + c.frames <= 0.8 * total
    for c in val:     # 80% .. 90%
        total = 16000 * (30 if c.path.name == "white.wav" else 20)
        assert 0.8 * total <= c.offset and c.offset + c.frames <= 0.9 * total


def test_all_words_and_the_test_archive_layout(sc_tree, tmp_path_factory):
    labels = {c.label for c in speech_commands_clips(sc_tree, "train", all_words=True)}
    assert {"cat", "dog", "yes", "no", "_silence_"} == labels
    arch = tmp_path_factory.mktemp("arch")
    for lab in ("yes", "_unknown_", "_silence_"):
        _wav(arch / lab / "x_nohash_0.wav")
    clips = resolve_labelled(f"speech_commands:{arch}", "test")
    assert sorted(c.label for c in clips) == ["_silence_", "_unknown_", "yes"]
    with pytest.raises(ManifestError, match="unknown split"):
        speech_commands_clips(sc_tree, "dev")


def test_voxceleb_layout_and_trial_list(tmp_path):
    for spk in ("id10001", "id10002", "id10003", "id10270", "id10271"):
        for vid in ("vidA", "vidB"):
            _wav(tmp_path / "wav" / spk / vid / "00001.wav", 800)
    (tmp_path / "veri_test2.txt").write_text("1 id10270/vidA/00001.wav id10270/vidB/00001.wav\n"
                                             "0 id10270/vidA/00001.wav id10271/vidA/00001.wav\n")
    test = voxceleb_clips(tmp_path, "test")
    assert {c.speaker for c in test} == {"id10270", "id10271"} and all(c.label is None for c in test)
    train, val = voxceleb_clips(tmp_path, "train"), voxceleb_clips(tmp_path, "val")
    assert {c.speaker for c in train} | {c.speaker for c in val} == {"id10001", "id10002", "id10003"}
    assert len({c.speaker for c in val}) == 1
    rows = read_trial_list(tmp_path / "veri_test2.txt")
    t = trials_from_list(test, rows, tmp_path)
    assert t[:, 2].tolist() == [1, 0] and test[t[0, 0]].speaker == test[t[0, 1]].speaker
    (tmp_path / "bad.txt").write_text("yes a b\n")
    with pytest.raises(ManifestError, match="line 1"):
        read_trial_list(tmp_path / "bad.txt")


def test_silence_suffix_adds_a_silence_class_to_any_data_spec(tmp_path):
    from edgedistill.data.layouts import noise_for_split, silence_folder
    from edgedistill.data.manifest import load_clip

    rows = ["path,label,speaker,split"]
    for split, spk in (("train", "s1"), ("val", "s2")):
        for word in ("yes", "no"):
            for take in range(3):
                _wav(tmp_path / "audio" / f"{word}_{spk}_{take}.wav")
                rows.append(f"audio/{word}_{spk}_{take}.wav,{word},{spk},{split}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hum.flac", 0.1 * np.sin(np.arange(16000 * 40) / 7).astype(np.float32), 16000)
    spec = f"{tmp_path / 'manifest.csv'}+silence={noise}"
    assert silence_folder(spec) == str(noise) and silence_folder(str(tmp_path / "manifest.csv")) is None
    train, val = resolve_labelled(spec, "train"), resolve_labelled(spec, "val")
    sil_train = [c for c in train if c.label == "_silence_"]
    sil_val = [c for c in val if c.label == "_silence_"]
    assert len(sil_train) == 3 and len(sil_val) == 3        # as many as an average word class
    assert all(c.speaker is None and c.frames == 16000 for c in sil_train + sil_val)
    assert max(c.offset + c.frames for c in sil_train) <= 0.8 * 16000 * 40 <= min(c.offset for c in sil_val)
    assert load_clip(sil_val[0]).shape == (16000,) and np.abs(load_clip(sil_val[0])).max() > 0.05
    assert len(resolve_labelled(spec, "train")) == len(train)   # the same crops every call
    (part,) = noise_for_split(noise, "val")
    assert len(part) == 16000 * 4
    with pytest.raises(FileNotFoundError, match="noise folder"):
        resolve_labelled(f"{tmp_path / 'manifest.csv'}+silence={tmp_path / 'nope'}", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no .wav, .flac or .ogg"):
        resolve_labelled(f"{tmp_path / 'manifest.csv'}+silence={tmp_path / 'empty'}", "train")
