import numpy as np
import pytest

from edgedistill.data.manifest import load_clip, read_manifest
from edgedistill.data.streams import build_stream, voiced_span


def test_voiced_span_finds_the_word():
    x = np.zeros(16000, np.float32)
    x[4000:9000] = 0.3 * np.sin(np.arange(5000) / 5)
    a, b = voiced_span(x)
    assert abs(a - 4000) <= 320 and abs(b - 9000) <= 320


def test_stream_is_reproducible_and_its_truth_marks_the_targets(embedded_corpus):
    clips = read_manifest(embedded_corpus, split="test")
    x, truth = build_stream(clips, ["yes", "stop"], seconds=120, seed=3, snr_db=30)
    y, again = build_stream(clips, ["yes", "stop"], seconds=120, seed=3, snr_db=30)
    assert np.array_equal(x, y) and truth == again and len(x) == 120 * 16000
    assert truth and {o.keyword for o in truth} <= {"yes", "stop"}
    assert all(0 <= o.t0 < o.t1 <= 120 for o in truth)
    assert all(b.t0 > a.t1 for a, b in zip(truth, truth[1:]))  # in time order, no overlap
    # the stream holds the clip's audio at the stated time (plus 30 dB-down background)
    o = truth[0]
    clip = next(c for c in clips if str(c.path) == o.path)
    audio = load_clip(clip)
    a, b = voiced_span(audio)
    start = round(o.t0 * 16000) - a
    seg = x[start:start + len(audio)]
    assert np.corrcoef(seg, audio)[0, 1] > 0.95
    # background between the words: the SNR says how loud
    quiet = x[: int(0.9 * 16000)]
    assert 0 < np.sqrt(np.mean(quiet ** 2)) < 0.1 * np.sqrt(np.mean(audio[a:b] ** 2))
    with pytest.raises(ValueError, match="no clip has a target keyword"):
        build_stream(clips, ["maybe"], seconds=10)


def test_silence_crops_are_never_placed_as_words(embedded_corpus):
    from dataclasses import replace

    clips = read_manifest(embedded_corpus, split="test")
    silence = [replace(c, label="_silence_", speaker=None) for c in clips if c.label != "yes"]
    words = [c for c in clips if c.label == "yes"][:4]
    # only silence besides the target: every placed clip is a target keyword
    x, truth = build_stream(words + silence, ["yes"], seconds=60, seed=0)
    placed = sum(1 for _ in truth)
    assert placed >= 10 and all(o.keyword == "yes" for o in truth)
