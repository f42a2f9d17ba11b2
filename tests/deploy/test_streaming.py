"""The streaming export of a micro student: parity with PyTorch, chunk-size invariance, state
reset, agreement with the same model run on whole windows, int8, torch-free use."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edgedistill.runtime import Detector, EdgeModel
from edgedistill.runtime.model import softmax

KEYWORDS = ["yes", "stop", "off"]
NO_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; sys.modules['scipy'] = None\n"


@pytest.fixture(scope="module")
def stream(embedded_corpus):
    from edgedistill.data.manifest import read_manifest
    from edgedistill.data.streams import build_stream

    audio, truth = build_stream(read_manifest(embedded_corpus, split="val"), KEYWORDS, 120, seed=0)
    return audio, truth


def test_the_export_is_a_stream_that_equals_pytorch(micro_exported):
    path, summary = micro_exported
    assert summary["parity_max_abs_diff"] < 1e-3  # one call and 100 ms chunks, checked at export
    m = EdgeModel(path)
    assert m.streaming["window_frames"] == 50 and m.frame_samples == 320 and m.min_samples == 320
    assert m.outputs[:2] == ["keyword_logits", "speaker_embedding"]
    assert m.embed(np.zeros(16_000, np.float32)).shape == (m.session.get_outputs()[1].shape[1],)


def test_a_stream_in_any_chunks_gives_the_same_scores_and_events(micro_exported, stream):
    m = EdgeModel(micro_exported[0])
    audio = stream[0][:16_000 * 20]
    results = []
    for chunk in (320, 1_600, 16_000):
        state, logits = m.start_stream(), []
        for i in range(0, len(audio), chunk):
            out, state = m.step(audio[None, i:i + chunk], state)
            logits.append(out["keyword_logits"][0])
        results.append(logits[-1])
    np.testing.assert_allclose(results[0], results[1], atol=1e-4)
    np.testing.assert_allclose(results[0], results[2], atol=1e-4)
    events = []
    for chunk in (160, 1_000, 16_000):  # the Detector's hops sit at fixed positions of the stream
        det = Detector(m, keywords=KEYWORDS, threshold=0.3)
        got = [e for i in range(0, len(stream[0]), chunk) for e in det.push(stream[0][i:i + chunk])] + det.flush()
        events.append([(e.keyword, e.end_s, round(e.score, 4)) for e in got])
    assert events[0] and events[0] == events[1] == events[2]


def test_reset_forgets_the_stream(micro_exported, stream):
    m = EdgeModel(micro_exported[0])
    det = Detector(m, keywords=KEYWORDS, threshold=0.3)
    first = det.push(stream[0]) + det.flush()
    det.push(stream[0][:16_000 * 7])  # heard half a word stream, then reset
    det.reset()
    again = det.push(stream[0]) + det.flush()
    assert first and [(e.keyword, e.end_s) for e in first] == [(e.keyword, e.end_s) for e in again]
    state = m.start_stream()
    assert all(not t.any() for t in state["tensors"]) and not state["audio"].any()


def test_the_stream_agrees_with_the_same_model_on_whole_windows(micro_exported, stream):
    """Tolerance stated in docs/streaming.md: a stream also hears what came before the window, so
    its scores differ a little from the model's on each window alone (heard from silence): here
    top-1 agreement >= 90% of hops, mean |probability difference| <= 0.02, and each one's events found
    in the other (the same keyword, end times within two hops) but for at most 15% of them (or one)."""
    m = EdgeModel(micro_exported[0])
    audio = stream[0]
    state, streamed, windowed = m.start_stream(), [], []
    for end in range(1_600, len(audio) + 1, 1_600):
        out, state = m.step(audio[None, end - 1_600:end], state)
        if end >= 16_000:
            streamed.append(softmax(out["keyword_logits"][0]))
            windowed.append(softmax(m.run(audio[end - 16_000:end])["keyword_logits"][0]))
    streamed, windowed = np.array(streamed), np.array(windowed)
    assert (streamed.argmax(1) == windowed.argmax(1)).mean() >= 0.9
    assert np.abs(streamed - windowed).mean() <= 0.02
    got = {}
    for windowed_run in (False, True):
        det = Detector(m, keywords=KEYWORDS, threshold=0.3, windowed=windowed_run)
        got[windowed_run] = det.push(audio) + det.flush()

    def unmatched(a, b):  # a's events that b lacks: the same keyword, ends within two hops
        return sum(not any(f.keyword == e.keyword and abs(f.end_s - e.end_s) <= 0.2 + 1e-9 for f in b) for e in a)

    assert len(got[True]) >= 5
    for a, b in ((got[True], got[False]), (got[False], got[True])):
        assert unmatched(a, b) <= max(1, 0.15 * len(a)), (a, b)


def test_detector_settings_a_stream_cannot_take_are_refused(micro_exported):
    m = EdgeModel(micro_exported[0])
    with pytest.raises(ValueError, match="window_s=1"):
        Detector(m, keywords=KEYWORDS, window_s=1.5)
    with pytest.raises(ValueError, match="whole number of the model's 20 ms frames"):
        Detector(m, keywords=KEYWORDS, hop_s=0.05)
    with pytest.raises(Exception, match="multiple of 320"):
        m.step(np.zeros((1, 1_000), np.float32), m.start_stream())
    with pytest.raises(ValueError, match="not a streaming export"):
        EdgeModel.start_stream(type("W", (), {"streaming": None, "_need_streaming": EdgeModel._need_streaming})())


def test_int8_streaming_file_is_smaller_and_agrees(micro_exported, embedded_corpus, tmp_path):
    from edgedistill.data.manifest import load_clip, read_manifest
    from edgedistill.deploy.quantize import quantize_config, quantize_model

    path = micro_exported[0]
    dst = tmp_path / "model.int8.onnx"
    quantize_model(path, dst, quantize_config("int8", calibration=str(embedded_corpus), calibration_clips=16))
    assert dst.stat().st_size < 0.5 * path.stat().st_size
    fp32, int8 = EdgeModel(path), EdgeModel(dst)
    assert int8.streaming == fp32.streaming
    clips = [load_clip(c) for c in read_manifest(embedded_corpus, split="val")[:40]]
    agree = np.mean([fp32.keyword(a)[0] == int8.keyword(a)[0] for a in clips])
    assert agree >= 0.85, agree


def test_a_micro_backbone_alone_is_not_exported(micro_trained, tmp_path):
    from edgedistill.deploy.onnx import export_onnx
    from edgedistill.errors import ExportError

    with pytest.raises(ExportError, match="fine-tune it"):
        export_onnx(micro_trained[0], tmp_path / "b.onnx")


def test_the_streaming_file_runs_without_torch(micro_exported, stream, tmp_path):
    audio = tmp_path / "stream.npy"
    np.save(audio, stream[0][:16_000 * 30])
    code = NO_TORCH + (
        "import json, numpy as np\nfrom edgedistill.runtime import EdgeModel, Detector\n"
        f"m = EdgeModel({str(micro_exported[0])!r})\nx = np.load({str(audio)!r})\n"
        f"d = Detector(m, keywords={KEYWORDS!r}, threshold=0.3)\n"
        "ev = d.push(x) + d.flush()\n"
        "print(json.dumps({'label': m.keyword(x[:16000])[0], 'events': len(ev), 'hops': d.stats()['hops'], "
        "'torch': sys.modules.get('torch') is not None}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["hops"] == 300 and res["torch"] is False and res["label"] in EdgeModel(micro_exported[0]).labels


def test_evaluate_stream_hears_a_micro_student_stepping_or_window_by_window(micro_exported, embedded_corpus, tmp_path):
    from edgedistill.cli import main

    reports = {}
    for how in ("stream", "windowed"):
        out = tmp_path / how
        assert main(["evaluate-stream", "--model", str(micro_exported[0]), "--data", str(embedded_corpus), "--split",
                     "val", "--keywords", "yes,stop", "--seconds", "120", "--enroll-clips", "0", "--out", str(out)]
                    + (["--windowed"] if how == "windowed" else [])) == 0
        reports[how] = json.loads((out / "stream_report.json").read_text())
    assert reports["stream"]["occurrences"] == reports["windowed"]["occurrences"] > 0
    assert "--windowed" in reports["windowed"]["command"] and "--windowed" not in reports["stream"]["command"]


def test_the_detectors_bound_stepper_gives_the_steps_outputs(micro_exported, stream):
    from edgedistill.runtime.model import HopStepper

    m = EdgeModel(micro_exported[0])
    stepper, state = HopStepper(m, 1_600), m.start_stream()
    audio = stream[0][:16_000 * 5]
    for twice in range(2):
        for i in range(0, len(audio), 1_600):
            out, state = m.step(audio[None, i:i + 1_600], state)
            got = stepper(audio[i:i + 1_600])
            for name in ("keyword_logits", "speaker_embedding"):
                np.testing.assert_allclose(got[name], out[name], atol=1e-5)
        stepper.reset()
        state = m.start_stream()
    with pytest.raises(ValueError, match="whole number"):
        HopStepper(m, 1_000)
