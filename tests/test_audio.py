import numpy as np
import pytest
import soundfile as sf

from edgedistill.audio import AudioError, load_audio, num_frames, receptive_field, resample


def _wav(tmp_path, x, sr=16000, name="a.wav", **kw):
    p = tmp_path / name
    sf.write(p, x, sr, **kw)
    return p


def test_receptive_field_and_frames_of_the_hubert_cnn():
    assert receptive_field() == 400
    assert num_frames(399) == 0 and num_frames(400) == 1 and num_frames(720) == 2
    assert num_frames(16000) == 49


def test_loads_file_as_mono_float32(tmp_path):
    x = (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    y = load_audio(_wav(tmp_path, x, subtype="FLOAT"))
    assert y.dtype == np.float32 and y.shape == (16000,)
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_resampling_is_band_limited():
    sr = 44100
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 1000 * t)           # kept
    alias = np.sin(2 * np.pi * 11000 * t)          # above 8 kHz: must vanish, not fold to 5 kHz
    y = load_audio((0.5 * tone + 0.5 * alias).astype(np.float32), sample_rate=sr)
    assert len(y) == 16000
    spec = np.abs(np.fft.rfft(y[2000:-2000] * np.hanning(12000)))
    freqs = np.fft.rfftfreq(12000, 1 / 16000)
    at = lambda f: spec[np.argmin(np.abs(freqs - f))]
    assert at(1000) > 100 * at(5000)                # 11 kHz did not alias to 16 - 11 = 5 kHz
    np.testing.assert_allclose(np.std(y[2000:-2000]), 0.5 / np.sqrt(2), rtol=0.03)


def test_resample_8k_to_16k_keeps_a_tone():
    x = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32)
    y = resample(x, 8000, 16000)
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.max(np.abs(y[200:-200] - ref[200:-200])) < 0.01


def test_normalisation_is_off_by_default_and_optional():
    x = np.full(1000, 0.01, dtype=np.float32)
    assert np.allclose(load_audio(x, 16000), 0.01)
    assert np.isclose(np.abs(load_audio(x, 16000, normalize="peak")).max(), 1.0)
    assert np.isclose(np.sqrt(np.mean(load_audio(x, 16000, normalize="rms") ** 2)), 0.1, rtol=1e-4)


def test_downmix_only_when_asked(tmp_path):
    stereo = np.stack([np.full(800, 0.2), np.full(800, 0.4)], axis=1).astype(np.float32)
    p = _wav(tmp_path, stereo, subtype="FLOAT")
    with pytest.raises(AudioError, match="2 channels.*downmix=True"):
        load_audio(p)
    assert np.allclose(load_audio(p, downmix=True), 0.3)


@pytest.mark.parametrize("make, match", [
    (lambda tp: tp / "missing.wav", "does not exist"),
])
def test_missing_file(tmp_path, make, match):
    with pytest.raises(FileNotFoundError, match=match):
        load_audio(make(tmp_path))


def test_unreadable_file_names_the_file_and_the_fix(tmp_path):
    p = tmp_path / "junk.wav"
    p.write_bytes(b"not audio at all" * 20)
    with pytest.raises(AudioError, match=r"junk\.wav.*not a readable audio file.*ffmpeg"):
        load_audio(p)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_truncated_file(tmp_path, fmt):
    p = _wav(tmp_path, np.random.default_rng(0).uniform(-.5, .5, 16000).astype(np.float32),
             name=f"full.{fmt}")
    data = p.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"cut\.(wav|flac)"):
        load_audio(cut)


def test_empty_audio(tmp_path):
    with pytest.raises(AudioError, match="empty"):
        load_audio(np.zeros(0, dtype=np.float32), 16000)
    p = _wav(tmp_path, np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="empty|not a readable"):
        load_audio(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(bad):
    x = np.zeros(1000, dtype=np.float32)
    x[10] = bad
    with pytest.raises(AudioError, match="1 NaN/Inf"):
        load_audio(x, 16000)


def test_too_short_for_the_cnn():
    load_audio(np.zeros(400, np.float32), 16000)
    with pytest.raises(AudioError, match=r"399 samples.*at least 400 samples"):
        load_audio(np.zeros(399, np.float32), 16000)
    with pytest.raises(AudioError, match="at least 400"):   # 399 samples after 8k -> 16k
        load_audio(np.zeros(199, np.float32), 8000)


def test_wrong_dtype_and_shape_and_missing_rate():
    with pytest.raises(AudioError, match="int16.*astype"):
        load_audio(np.zeros(1000, np.int16), 16000)
    with pytest.raises(AudioError, match="shape"):
        load_audio(np.zeros((2, 2, 500), np.float32), 16000)
    with pytest.raises(AudioError, match="sample rate"):
        load_audio(np.zeros(1000, np.float32))
    with pytest.raises(AudioError, match="8000 Hz.*16000"):
        load_audio(np.zeros(1000, np.float32), 8000, resample_input=False)


def test_folders_and_unreadable_files_get_the_right_diagnosis(tmp_path, monkeypatch):
    """Defects: a folder was 'Format not recognised'; a permission-denied file was 'not a
    readable audio file, re-encode it'."""
    import os

    with pytest.raises(AudioError, match="is a folder, not an audio file"):
        load_audio(tmp_path)
    sf.write(tmp_path / "a.wav", np.zeros(800, np.float32), 16000)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("a.wav") else real(p, mode))
    with pytest.raises(AudioError, match="permission denied"):
        load_audio(tmp_path / "a.wav")
