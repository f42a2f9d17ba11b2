"""The streaming detector: chunk-size invariance, peaks and refractory periods, speaker gating,
bounded memory, clear errors, torch-free import and the device kit's --stream.

Most tests drive the detector with a stand-in model whose scores follow the audio exactly
(`Scripted`), so every expected event is known; the chunk test also runs the real export."""

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from edgedistill.audio import AudioError
from edgedistill.runtime.model import EdgeModel
from edgedistill.runtime.streaming import Detector

SR = 16_000


class Scripted:
    """An `EdgeModel` stand-in: "yes" is a burst of +A, "no" of -A; the logit of a keyword is
    10 x the fraction of the window its burst fills; the speaker embedding is [A, 1 - A]."""

    labels = ["_silence_", "yes", "no"]
    outputs = ["keyword_logits", "speaker_embedding"]
    sample_rate, min_samples, max_samples, threshold = SR, 400, 30 * SR, 0.9

    def __init__(self):
        self.speakers, self.session = {}, self

    def _need(self, name):
        pass

    def run(self, _, feeds):
        x = feeds["waveform"][0]
        yes, no = x > 0.1, x < -0.1
        amp = float(np.abs(x[yes | no]).mean()) if (yes | no).any() else 0.0
        logits = np.array([[2.0, 10 * yes.mean(), 10 * no.mean()]], np.float32)
        emb = np.array([[amp, 1 - amp]], np.float32)
        return [logits, emb / np.linalg.norm(emb)]


def _stream(events, seconds, seed=0):
    """Noise with bursts: events are (keyword, start_s, amplitude)."""
    x = (0.001 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)
    for kw, start, amp in events:
        i = int(start * SR)
        x[i:i + int(0.6 * SR)] = amp if kw == "yes" else -amp
    return x


def _feed(det, x, chunk):
    out = []
    for i in range(0, len(x), chunk):
        out += det.push(x[i:i + chunk])
    return out + det.flush()


def test_hits_at_known_times_one_event_per_utterance_and_nothing_in_noise():
    truth = [("yes", 2.0, 0.5), ("no", 5.3, 0.5), ("yes", 9.0, 0.5)]
    events = _feed(Detector(Scripted(), threshold=0.5), _stream(truth, 12), 1600)
    assert [e.keyword for e in events] == ["yes", "no", "yes"]     # one event each: peak + refractory
    for e, (kw, start, _) in zip(events, truth):
        assert e.start_s <= start and start + 0.6 <= e.end_s <= start + 1.0 + 0.1 * 3, (e, start)
    assert _feed(Detector(Scripted(), threshold=0.5), _stream([], 60), 1600) == []


def test_refractory_period_and_smoothing():
    x = _stream([("yes", 2.0, 0.5), ("yes", 4.5, 0.5)], 8)   # two utterances 2.5 s apart
    assert len(_feed(Detector(Scripted(), threshold=0.5, refractory_s=0.5), x, 1600)) == 2
    assert len(_feed(Detector(Scripted(), threshold=0.5, refractory_s=3.5), x, 1600)) == 1
    # a short refractory period alone would fire twice while the window still sees the word:
    # the keyword re-arms only once its score has dropped
    one = _stream([("yes", 2.0, 0.5)], 6)
    assert len(_feed(Detector(Scripted(), threshold=0.5, refractory_s=0.1), one, 1600)) == 1
    # a 60 ms glitch does not fire once posteriors are smoothed over 3 hops
    glitch = _stream([], 4)
    glitch[SR:SR + 960] = 0.5
    assert _feed(Detector(Scripted(), {"yes": 0.5}), glitch, 1600) == []


@pytest.mark.parametrize("model_kind", ["scripted", "onnx"])
def test_events_do_not_depend_on_the_chunk_size(model_kind, request):
    if model_kind == "onnx":
        model = EdgeModel(request.getfixturevalue("exported")[0])
        x = (0.05 * np.random.default_rng(1).standard_normal(20 * SR)).astype(np.float32)
        det = lambda: Detector(model, threshold=0.3)  # noqa: E731
    else:
        x = _stream([("yes", 1.0, 0.5), ("no", 3.05, 0.5), ("yes", 6.5, 0.5)], 9)
        det = lambda: Detector(Scripted(), threshold=0.5)  # noqa: E731
    runs = [[e.as_dict() for e in _feed(det(), x, chunk)] for chunk in (160, 1600, 5328, 16000)]
    assert runs[0] and all(r == runs[0] for r in runs[1:]), runs
    # int16 PCM gives the same events as its float scaling
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
    assert [e.as_dict() for e in _feed(det(), pcm, 1600)] == \
        [e.as_dict() for e in _feed(det(), pcm.astype(np.float32) / 32768, 1600)]


def test_enrolled_speaker_gating():
    model = Scripted()
    model.speakers["me"] = np.array([0.5, 0.5], np.float32) / np.linalg.norm([0.5, 0.5])
    x = _stream([("yes", 2.0, 0.5), ("yes", 6.0, 0.95)], 10)     # me, then someone else
    both = _feed(Detector(model, {"yes": 0.5}), x, 1600)
    assert [(e.speaker, e.accepted) for e in both] == [("me", True), ("me", False)]
    assert both[0].speaker_score > 0.99 > 0.9 > both[1].speaker_score
    mine = _feed(Detector(model, {"yes": 0.5}, only_enrolled=True), x, 1600)
    assert [e.start_s for e in mine] == [both[0].start_s]
    with pytest.raises(ValueError, match="needs enrolled speakers"):
        Detector(Scripted(), only_enrolled=True)


def test_an_hour_of_stream_keeps_memory_bounded():
    det = Detector(Scripted(), threshold=0.5)
    second = _stream([("yes", 0.2, 0.5)], 1)
    tracemalloc.start()
    for i in range(3600):
        det.push(second)
        if i == 60:
            early = tracemalloc.get_traced_memory()[0]
    late, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(det._buf) == SR and len(det._probs) <= 3 and len(det.hop_ms) <= 10_000
    assert late - early < 2_000_000 and peak < 20_000_000, (early, late, peak)
    s = det.stats()
    assert s["hops"] == 10_000 and s["hop_ms"] == 100 and 0 < s["core_share"] < 1


def test_bad_chunks_and_settings_get_clear_errors():
    det = Detector(Scripted())
    with pytest.raises(AudioError, match="8000 Hz"):
        det.push(np.zeros(160, np.float32), sample_rate=8000)
    with pytest.raises(AudioError, match=r"mono 1-D array.*x.mean\(axis=1\)"):
        det.push(np.zeros((160, 2), np.float32))
    with pytest.raises(AudioError, match="dtype int32"):
        det.push(np.zeros(160, np.int32))
    bad = np.zeros(160, np.float32)
    bad[3] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        det.push(bad)
    assert det._total == 0  # nothing of a refused chunk was consumed
    with pytest.raises(ValueError, match="not labels of this model"):
        Detector(Scripted(), ["maybe"])
    with pytest.raises(ValueError, match="never fire"):
        Detector(Scripted(), ["_silence_"])
    with pytest.raises(ValueError, match="thresholds must be in"):
        Detector(Scripted(), {"yes": 1.5})


def test_streaming_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; sys.modules['scipy'] = None\n"
            "import edgedistill.runtime.streaming; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_infer_script_streams_a_long_recording(exported, embedded_corpus, tmp_path):
    from edgedistill.data.manifest import load_clip, read_manifest
    from edgedistill.deploy.kit import write_device_kit

    kit = tmp_path / "kit"
    write_device_kit(kit)
    clips = read_manifest(embedded_corpus, split="test")
    x = np.concatenate([np.concatenate([load_clip(c), np.zeros(SR, np.float32)]) for c in clips[:5]])
    sf.write(tmp_path / "long.wav", x, SR)
    out = subprocess.run([sys.executable, str(kit / "infer.py"), str(exported[0]), "--stream", str(tmp_path / "long.wav"),
                          "--detect-threshold", "0.3", "--enroll", f"me={clips[0].path}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["events"] == len(lines) - 1 >= 1 and summary["hops"] > 0 and 0 < summary["core_share"] < 1
    assert summary["audio_s"] == pytest.approx(len(x) / SR, abs=1e-3)
    first = lines[0]
    assert {"time_s", "end_s", "keyword", "score", "speaker", "accepted"} <= first.keys() and first["best_match"] == "me"
    # a voice the gate rejects is not named as the speaker (newcomer item 5)
    assert all(e["speaker"] == (e["best_match"] if e["accepted"] else None) for e in lines[:-1])
    assert summary["thresholds"] == {k: 0.3 for k in summary["keywords"]} and summary["sv_threshold"] > -1


def test_evaluate_stream_command_writes_the_report_and_plot(exported, embedded_corpus, tmp_path, capsys):
    from edgedistill.cli import main

    out = tmp_path / "stream"
    assert main(["evaluate-stream", "--model", str(exported[0]), "--data", str(embedded_corpus), "--split", "test",
                 "--keywords", "yes,stop", "--seconds", "60", "--out", str(out)]) == 0
    r = json.loads((out / "stream_report.json").read_text())
    assert r["occurrences"] >= 3 and r["seconds"] == 60 and r["targets"] == ["yes", "stop"]
    assert 0 <= r["frr_at_1_fa_per_hour"] <= 1 and r["hits"] + r["misses"] == r["occurrences"]
    assert (out / "frr_vs_fa_per_hour.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "FRR @ 1 FA/h" in (out / "stream_report.md").read_text()
    # every test speaker enrolled from 3 non-target clips that the stream leaves out
    gate = r["speaker_gate"]
    assert r["enrolled_speakers"] == 4 and gate["owner_hits"] >= 1
    assert gate["impostor_pairs"] == 3 * gate["owner_hits"]  # each hit against the 3 other speakers
    assert 0 <= gate["owner_acceptance"] <= 1 and 0 <= gate["impostor_acceptance"] <= 1
    assert "owner accepted" in (out / "stream_report.md").read_text()
    assert main(["evaluate-stream", "--model", str(tmp_path), "--data", str(embedded_corpus), "--keywords", "yes"]) == 2
    assert "runs the exported .onnx file" in capsys.readouterr().err


def test_evaluate_stream_measures_false_alarms_apart_on_a_keyword_free_stream(exported, embedded_corpus, tmp_path):
    from edgedistill.cli import main

    out = tmp_path / "detect"
    assert main(["evaluate-stream", "--model", str(exported[0]), "--data", str(embedded_corpus), "--split", "test",
                 "--keywords", "yes,stop", "--seconds", "60", "--negative-hours", "0.05", "--enroll-clips", "0",
                 "--out", str(out)]) == 0
    r = json.loads((out / "stream_report.json").read_text())
    d = r["detection"]
    assert abs(d["negative_hours"] - 0.05) < 0.01 and d["occurrences"] == r["occurrences"]
    neg = d["negative_stream"]
    assert neg["words"] > 20 and neg["distinct_recordings"] <= neg["words"] and neg["seed"] == 1
    for rate in (0.5, 1, 2):
        a = d[f"at_{rate:g}_fa_per_hour"]
        assert a["frr_ci95"][0] <= a["frr"] <= a["frr_ci95"][1]
        assert a["false_alarms"] <= rate * d["negative_hours"] + 1e-9  # the threshold keeps the rate
    md = (out / "stream_report.md").read_text()
    assert "measured apart" in md and "misses @ 1 FA/h" in md


def test_events_carry_the_score_against_every_enrolled_speaker(exported, embedded_corpus):
    from edgedistill.data.manifest import load_clip, read_manifest

    clips = read_manifest(embedded_corpus, split="test")
    model = EdgeModel(exported[0])
    speakers = sorted({c.speaker for c in clips})[:2]
    for spk in speakers:
        model.enroll(spk, [load_clip(c) for c in clips if c.speaker == spk][:2])
    det = Detector(model, threshold=0.2)
    x = np.concatenate([np.concatenate([load_clip(c), np.zeros(SR // 2, np.float32)]) for c in clips[:6]])
    events = det.push(x) + det.flush()
    assert events
    for e in events:
        assert set(e.speaker_scores) == set(speakers)
        assert e.speaker == max(e.speaker_scores, key=e.speaker_scores.get)
        assert e.speaker_score == e.speaker_scores[e.speaker]


def test_the_kit_takes_stereo_and_44k_files_and_says_what_it_did(exported, embedded_corpus, tmp_path):
    """Newcomer item 4: the kit answered a stereo file with "pass downmix=True" (it has no such
    flag) and a 44.1 kHz file with a resampling that needs scipy, which its requirements lacked."""
    from edgedistill.audio import resample
    from edgedistill.data.manifest import load_clip, read_manifest
    from edgedistill.deploy.kit import write_device_kit

    kit = tmp_path / "kit"
    write_device_kit(kit)
    assert any(line.startswith("scipy") for line in (kit / "requirements.txt").read_text().splitlines())
    clip = read_manifest(embedded_corpus, split="test")[0]
    mono = load_clip(clip)
    sf.write(tmp_path / "mono.wav", mono, SR)
    wide = resample(mono, SR, 44_100)
    sf.write(tmp_path / "stereo44k.wav", np.stack([wide, wide], axis=1), 44_100)

    def infer(*args, block_scipy=False):
        code = ("import runpy, sys\n" + ("sys.modules['scipy'] = None\n" if block_scipy else "")
                + f"sys.argv = {[str(kit / 'infer.py'), *map(str, args)]!r}\n"
                + f"runpy.run_path({str(kit / 'infer.py')!r}, run_name='__main__')")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    one = infer(exported[0], tmp_path / "mono.wav", "--json")
    two = infer(exported[0], tmp_path / "stereo44k.wav", "--json")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert "has 2 channels: averaged into one" in two.stderr and "44100 Hz: resampled to 16000 Hz" in two.stderr
    assert json.loads(two.stdout)["clips"][0]["keyword"] == json.loads(one.stdout)["clips"][0]["keyword"]
    # without scipy: one line saying what to install or how to convert, no traceback
    out = infer(exported[0], tmp_path / "stereo44k.wav", block_scipy=True)
    assert out.returncode == 2 and "needs scipy (pip install scipy)" in out.stderr and "Traceback" not in out.stderr


def test_evaluate_stream_answers_a_keyword_typo_in_one_line(exported, embedded_corpus, capsys):
    """Newcomer item 4: `--keywords yes,stopp` ended in a 16-line traceback."""
    from edgedistill.cli import main

    assert main(["evaluate-stream", "--model", str(exported[0]), "--data", str(embedded_corpus), "--split", "test",
                 "--keywords", "yes,stopp", "--seconds", "60"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stopp" in err and "did you mean 'stop'?" in err


def test_calibrated_thresholds_travel_in_the_file_and_are_the_detector_s_defaults(exported, embedded_corpus, tmp_path):
    import shutil

    from edgedistill.deploy.kit import write_device_kit
    from edgedistill.deploy.onnx import set_keyword_thresholds
    from edgedistill.errors import ExportError

    path = tmp_path / "model.onnx"
    shutil.copy(exported[0], path)
    assert EdgeModel(path).keyword_thresholds == {}
    meta = set_keyword_thresholds(path, {"yes": 0.6}, target_fa_per_hour=0.5, hours=10.0)
    assert meta["keyword_thresholds_at"] == {"target_fa_per_hour": 0.5, "hours": 10.0}
    model = EdgeModel(path)
    assert model.keyword_thresholds == {"yes": 0.6} and model.labels  # the rest of the metadata is kept
    assert [(k, t) for _, k, t in Detector(model).targets] == [("yes", 0.6)]
    assert [(k, t) for _, k, t in Detector(model, ["yes", "stop"]).targets] == [("yes", 0.6), ("stop", 0.8)]
    assert [(k, t) for _, k, t in Detector(model, ["yes"], threshold=0.3).targets] == [("yes", 0.3)]
    with pytest.raises(ExportError, match="not labels"):
        set_keyword_thresholds(path, {"yess": 0.5})
    # the kit uses them without being told
    kit = tmp_path / "kit"
    write_device_kit(kit)
    from edgedistill.data.manifest import load_clip, read_manifest

    clips = read_manifest(embedded_corpus, split="test")[:3]
    sf.write(tmp_path / "long.wav", np.concatenate([load_clip(c) for c in clips]), SR)
    out = subprocess.run([sys.executable, str(kit / "infer.py"), str(path), "--stream", str(tmp_path / "long.wav")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["summary"]["thresholds"] == {"yes": 0.6}


def test_a_long_negative_stream_is_heard_in_pieces_and_resumes_from_its_cache(exported, embedded_corpus, tmp_path,
                                                                                monkeypatch):
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.evaluation import scores

    clips = resolve_labelled(str(embedded_corpus), "test")
    events, hours, made_of = scores.false_alarms(exported[0], clips, ["yes"], 150, piece_s=60, cache=tmp_path / "c")
    assert made_of["pieces"] == 3 and len(list((tmp_path / "c").glob("negative_*.json"))) == 3
    assert abs(hours - 150 / 3600) < 1e-3 and made_of["words"] > made_of["distinct_recordings"] > 0
    # every piece is cached: a second call hears nothing and gives the same answer
    monkeypatch.setattr(scores, "run_detector", lambda *a: (_ for _ in ()).throw(AssertionError("heard again")))
    assert scores.false_alarms(exported[0], clips, ["yes"], 150, piece_s=60, cache=tmp_path / "c") == \
        (events, hours, made_of)
    # another setting is another measurement
    with pytest.raises(AssertionError, match="heard again"):
        scores.false_alarms(exported[0], clips, ["yes"], 150, piece_s=60, cache=tmp_path / "c", snr_db=10.0)


def test_deciding_on_logits_computed_elsewhere_gives_the_detectors_own_events(exported, embedded_corpus):
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.data.streams import build_stream
    from edgedistill.data.windows import window_starts
    from edgedistill.evaluation.scores import run_detector
    from edgedistill.runtime.streaming import detect_on_logits

    model = EdgeModel(exported[0])
    audio, _ = build_stream(resolve_labelled(str(embedded_corpus), "test"), ["yes", "stop"], 40, seed=2)
    keywords = {"yes": 0.2, "stop": 0.2}
    heard = run_detector(Detector(model, keywords), audio)
    starts = window_starts(len(audio), SR, SR // 10)
    logits = np.concatenate([model.run(np.stack([audio[s:s + SR] for s in starts[i:i + 32]]))["keyword_logits"]
                             for i in range(0, len(starts), 32)])
    decided = detect_on_logits(logits, model.labels, keywords)
    assert heard, "a stream with no event at 0.2 checks nothing"
    assert [(e.keyword, e.end_s) for e in decided] == [(e.keyword, e.end_s) for e in heard]
    assert np.allclose([e.score for e in decided], [e.score for e in heard], atol=1e-4)
