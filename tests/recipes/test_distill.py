import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from edgedistill.config import ConfigError, load_config
from edgedistill.recipes.distill import DistillConfig
from edgedistill.recipes.distill import distill


def _cfg(corpus, out, *overrides):
    return load_config(DistillConfig, None, [
        f"data={corpus}", f"out={out}", "teacher=builtin:hubert-tiny", "batch_size=8",
        "max_samples=8000", "lr=1e-3", "log_every=2", "save_every=4", "cpu=true", *overrides])


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_distillation_lowers_the_loss_and_saves_a_plain_hf_student(small_corpus, tmp_path):
    out = tmp_path / "run"
    summary = distill(_cfg(small_corpus, out, "steps=40"))
    log = _log(out)
    first, last = log[0]["loss"], sum(r["loss"] for r in log[-3:]) / 3
    assert summary["finished"] and last < 0.8 * first, (first, last)
    assert log[-1]["cos_sim"][0] > log[0]["cos_sim"][0]
    from transformers import AutoModel

    student = AutoModel.from_pretrained(out / "student")
    assert student.config.num_hidden_layers == 2
    assert (out / "heads" / "distill_heads.safetensors").exists()
    assert (out / "student" / "preprocessor_config.json").exists()


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(small_corpus, tmp_path):
    extra = ("steps=10", "student.dropout=0.1")  # dropout on: the RNG state must be restored
    distill(_cfg(small_corpus, tmp_path / "full", *extra))
    part = distill(_cfg(small_corpus, tmp_path / "cut", *extra), stop_after=6)
    assert part["steps_done"] == 6 and not part["finished"]
    assert not (tmp_path / "cut" / "student").exists()
    done = distill(_cfg(small_corpus, tmp_path / "cut", *extra), resume=True)
    assert done["finished"]
    a = load_file(tmp_path / "full" / "student" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "student" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_two_loader_workers_is_bit_exact_against_a_run_without_workers(small_corpus, tmp_path):
    extra = ("steps=8", "student.dropout=0.1")
    distill(_cfg(small_corpus, tmp_path / "full", *extra, "num_workers=0"))
    distill(_cfg(small_corpus, tmp_path / "cut", *extra, "num_workers=2"), stop_after=4)
    done = distill(_cfg(small_corpus, tmp_path / "cut", *extra, "num_workers=2"), resume=True)
    assert done["finished"]
    a = load_file(tmp_path / "full" / "student" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "student" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cached_targets_train_like_the_live_teacher_and_a_changed_run_is_refused(small_corpus, tmp_path):
    # Equal-length clips, no padding: cached and live targets differ only by float16 rounding.
    extra = ("steps=6", "max_samples=16000", "target_layers=[2,4]")
    live = distill(_cfg(small_corpus, tmp_path / "live", *extra))
    cached = distill(_cfg(small_corpus, tmp_path / "cached", *extra, f"target_cache={tmp_path / 'cache'}"))
    assert live["finished"] and cached["finished"]
    assert (tmp_path / "cache" / "manifest.json").is_file()
    a, b = _log(tmp_path / "live"), _log(tmp_path / "cached")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert all(abs(x["loss"] - y["loss"]) < 2e-3 * x["loss"] for x, y in zip(a, b)), (a, b)
    again = distill(_cfg(small_corpus, tmp_path / "again", *extra, f"target_cache={tmp_path / 'cache'}"))
    assert _log(tmp_path / "again")[-1]["loss"] == b[-1]["loss"]  # read back, not rewritten
    with pytest.raises(ConfigError, match="made for another run.*layers"):
        distill(_cfg(small_corpus, tmp_path / "other", "steps=2", "max_samples=16000", "target_layers=[1,4]",
                     f"target_cache={tmp_path / 'cache'}"))
    with pytest.raises(ValueError, match="drop reuse_teacher_cnn"):
        _cfg(small_corpus, tmp_path / "x", f"target_cache={tmp_path / 'cache'}", "reuse_teacher_cnn=true")


def test_cnn_hint_trains_a_thin_cnn_towards_the_teachers_front_end(small_corpus, tmp_path):
    # A thin CNN (not the teacher's) gets the hint by default: its loss on layer 0 falls, and it moves
    # the student's own layer 0 closer to the teacher's than the same run with the hint off.
    from transformers import AutoModel

    from edgedistill.models.teacher import load_teacher

    extra = ("steps=30", "student.thin_cnn=true", "max_samples=16000", "feature_grad_mult=1.0")
    assert _cfg(small_corpus, tmp_path / "x", *extra).hint_weight() == 1.0
    hinted = distill(_cfg(small_corpus, tmp_path / "hint", *extra))
    plain = distill(_cfg(small_corpus, tmp_path / "plain", *extra, "cnn_hint_weight=0"))
    assert hinted["finished"] and plain["finished"]
    log = _log(tmp_path / "hint")
    assert log[-1]["cnn_hint"] < 0.8 * log[0]["cnn_hint"], (log[0]["cnn_hint"], log[-1]["cnn_hint"])
    assert "cnn_hint" not in _log(tmp_path / "plain")[0]
    teacher = load_teacher("builtin:hubert-tiny").model.eval()
    torch.manual_seed(0)
    wave = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        target = teacher(wave, output_hidden_states=True).hidden_states[0]
        gaps = {}
        for name in ("hint", "plain"):
            student = AutoModel.from_pretrained(tmp_path / name / "student").eval()
            gaps[name] = float((student(wave, output_hidden_states=True).hidden_states[0] - target).abs().mean())
    assert gaps["hint"] < gaps["plain"], gaps
    # Off by default for the teacher's own CNN, and for a thin one that does not train.
    assert _cfg(small_corpus, tmp_path / "x").hint_weight() == 0.0
    assert _cfg(small_corpus, tmp_path / "x", "student.thin_cnn=true", "freeze_cnn=true").hint_weight() == 0.0
    assert _cfg(small_corpus, tmp_path / "x", "student.init_from_teacher=false").hint_weight() == 1.0
    with pytest.raises(ValueError, match="freeze_cnn / reuse_teacher_cnn"):
        _cfg(small_corpus, tmp_path / "x", "cnn_hint_weight=1.0", "freeze_cnn=true")
    with pytest.raises(ValueError, match="cnn_hint_weight needs the layer-wise loss"):
        _cfg(small_corpus, tmp_path / "x", "cnn_hint_weight=1.0", "layerwise_weight=0",
             "text_teacher=builtin:bert-tiny")


def test_teacher_precision_bf16_runs_on_cpu_and_fp16_or_an_unsupported_one_is_refused(small_corpus, tmp_path,
                                                                                      monkeypatch):
    done = distill(_cfg(small_corpus, tmp_path / "bf16", "steps=2", "teacher_precision=bf16"))
    assert done["finished"] and all(r["loss"] == r["loss"] for r in _log(tmp_path / "bf16"))
    with pytest.raises(ConfigError, match="fp16 runs on GPUs only"):
        distill(_cfg(small_corpus, tmp_path / "fp16", "steps=2", "teacher_precision=fp16"))
    assert not (tmp_path / "fp16").exists()  # refused before the run folder was claimed

    def no_kernel(*a, **k):
        raise RuntimeError('"slow_conv1d" not implemented for \'BFloat16\'')

    monkeypatch.setattr("torch.nn.functional.conv1d", no_kernel)
    with pytest.raises(ConfigError, match="teacher_precision=bf16 is not supported on cpu.*use fp32"):
        distill(_cfg(small_corpus, tmp_path / "nokernel", "steps=2", "teacher_precision=bf16"))


def test_existing_run_is_never_overwritten_and_resume_checks_the_config(small_corpus, tmp_path):
    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=4"))
    with pytest.raises(ConfigError, match="pass --resume"):
        distill(_cfg(small_corpus, out, "steps=4"))
    with pytest.raises(ConfigError, match=r"\[.lr.\] differ"):
        distill(_cfg(small_corpus, out, "steps=4", "lr=0.1"), resume=True)


def test_a_run_saved_before_a_field_existed_resumes_while_that_field_keeps_its_default(small_corpus, tmp_path):
    """Defect: a field added to the config after a run started (detect_keywords) blocked its
    resumption although the resumed run left it at its default."""
    import yaml

    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=2", "save_every=2"))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["seed"]  # as if `seed` had been added to DistillConfig after this run began
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    distill(_cfg(small_corpus, out, "steps=4", "save_every=2"), resume=True)
    assert json.loads((out / "summary.json").read_text())["steps_done"] == 4
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["seed"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match=r"\[.seed.\] differ"):
        distill(_cfg(small_corpus, out, "steps=6", "seed=5"), resume=True)


def test_shared_teacher_cnn_keeps_the_student_cnn_fixed(small_corpus, tmp_path):
    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=4", "reuse_teacher_cnn=true", "objective=layer-to-layer"))
    from edgedistill.models.teacher import load_teacher

    teacher = load_teacher("builtin:hubert-tiny").model.state_dict()
    student = load_file(out / "student" / "model.safetensors")
    cnn = [k for k in student if k.startswith("feature_extractor.")]
    assert cnn and all(torch.equal(student[k], teacher[k]) for k in cnn)
    moved = [k for k in student if k.startswith("encoder.layers.0.") and not torch.equal(student[k], teacher[k])]
    assert moved


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_cpu_with_the_documented_launch_line(small_corpus, tmp_path):
    """Defect: `accelerate launch --num_processes 2` alone runs ONE process on a CPU machine.
    The README's line (`--multi_gpu`) is run as written; the process count is logged and saved."""
    out = tmp_path / "ddp"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", str(_free_port()),
           "-m", "edgedistill", "distill", "--teacher", "builtin:hubert-tiny", "--data", str(small_corpus),
           "--out", str(out), "batch_size=4", "max_samples=8000", "steps=6", "save_every=3", "cpu=true",
           "student.dropout=0.1"]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["ranks_in_sync"] and summary["steps_done"] == 6
    assert "distill: 2 process(es)" in res.stderr
    assert res.stdout.count("student saved") == 1  # only rank 0 reports
    assert (out / "student" / "model.safetensors").exists()
    assert {p.name for p in (out / "checkpoints" / "step-000006").glob("rng-*.pt")} == {"rng-0.pt", "rng-1.pt"}


def test_a_finished_run_is_never_destroyed(small_corpus, tmp_path):
    """Defect: `distill --out D` over a finished run whose checkpoints were pruned overwrote
    student/, heads/ and config.yaml."""
    import shutil

    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=4"))
    shutil.rmtree(out / "checkpoints")
    before = (out / "student" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run.*--overwrite"):
        distill(_cfg(small_corpus, out, "steps=4", "lr=0.1"))
    with pytest.raises(ConfigError, match="already holds a run"):
        distill(_cfg(small_corpus, out, "steps=4"))
    assert distill(_cfg(small_corpus, out, "steps=4"), resume=True)["finished"]  # nothing to do
    assert (out / "student" / "model.safetensors").read_bytes() == before
    distill(_cfg(small_corpus, out, "steps=2"), overwrite=True)
    assert json.loads((out / "summary.json").read_text())["steps_done"] == 2


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(small_corpus, tmp_path, caplog):
    """Defect: a truncated model.safetensors made --resume die with a deserialisation traceback."""
    from edgedistill.errors import CorruptCheckpointError

    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=8", "save_every=2", "keep_checkpoints=2"), stop_after=6)
    bad = out / "checkpoints" / "step-000006" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    with caplog.at_level("INFO"):
        done = distill(_cfg(small_corpus, out, "steps=8", "save_every=2", "keep_checkpoints=2"), resume=True)
    assert done["finished"] and "step-000006/model.safetensors' cannot be read" in caplog.text
    assert "resumed from" in caplog.text and "step-000004" in caplog.text
    # every checkpoint damaged: one clear error naming the files
    distill(_cfg(small_corpus, tmp_path / "b", "steps=8", "save_every=2"), stop_after=4)
    for ck in (tmp_path / "b" / "checkpoints").glob("step-*"):
        (ck / "optimizer.pt").write_bytes(b"junk")
    with pytest.raises(CorruptCheckpointError, match="no intact checkpoint.*optimizer.pt' cannot be read"):
        distill(_cfg(small_corpus, tmp_path / "b", "steps=8", "save_every=2"), resume=True)


def test_a_moved_run_folder_still_resumes(small_corpus, tmp_path):
    """Defect: --resume compared the saved absolute `out` and refused a moved folder."""
    distill(_cfg(small_corpus, tmp_path / "a", "steps=6"), stop_after=4)
    (tmp_path / "a").rename(tmp_path / "b")
    assert distill(_cfg(small_corpus, tmp_path / "b", "steps=6"), resume=True)["finished"]


def _text_log_means(log, key, rows):
    vals = [r[key] for r in rows if key in r]
    return sum(vals) / len(vals)


def test_layerwise_and_text_informed_run_lowers_every_active_loss(embedded_corpus, tmp_path):
    out = tmp_path / "run"
    summary = distill(_cfg(embedded_corpus, out, "steps=100", "max_samples=16000", "log_every=5",
                           "text_teacher=builtin:bert-tiny", "global_weight=0.5"))
    log = _log(out)
    assert summary["finished"] and summary["text_units"]["units"] == ["token", "word", "utterance"]
    # finer units at shallower layers: the 2-layer student gets token @1, word @1, utterance @2
    assert summary["text_units"]["layers"] == [1, 1, 2]
    for key in ("text_token", "text_word", "text_utterance", "text_quantity", "layerwise"):
        first, last = _text_log_means(log, key, log[:2]), _text_log_means(log, key, log[-2:])
        assert last < 0.9 * first, (key, first, last)
    assert log[-1]["text_monotonic"] <= log[0]["text_monotonic"] + 1e-6
    weights = log[-1]["text_unit_weights"]
    assert set(weights) == {"token", "word", "utterance"} and any(abs(w - 1) > 1e-3 for w in weights.values())
    assert (out / "heads" / "text_heads.safetensors").exists()


def test_text_losses_alone_skip_the_layerwise_heads(small_corpus, tmp_path):
    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=6", "text_teacher=builtin:bert-tiny", "layerwise_weight=0",
                 "text_units=[word,utterance]", "max_samples=16000"))
    log = _log(out)
    assert "layerwise" not in log[-1] and "text_word" in log[-1] and "text_token" not in log[-1]
    assert not (out / "heads" / "distill_heads.json").exists() and (out / "heads" / "text_heads.json").exists()


def test_exported_student_is_the_same_with_or_without_text_distillation(small_corpus, tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgedistill.deploy.onnx import export_onnx

    counts = {}
    for name, extra in (("plain", []), ("text", ["text_teacher=builtin:bert-tiny"])):
        out = tmp_path / name
        distill(_cfg(small_corpus, out, "steps=2", "max_samples=16000", *extra))
        onnx_path = export_onnx(str(out), tmp_path / f"{name}.onnx")["path"]
        inits = onnx.load(str(onnx_path)).graph.initializer
        counts[name] = (sum(numpy_helper.to_array(t).size for t in inits),
                        sum(v.numel() for v in load_file(out / "student" / "model.safetensors").values()))
    assert counts["plain"] == counts["text"]


def test_text_distillation_config_errors(small_corpus, tmp_path):
    with pytest.raises(ValueError, match="nothing to learn"):
        _cfg(small_corpus, tmp_path, "layerwise_weight=0")
    with pytest.raises(ValueError, match="text_units"):
        _cfg(small_corpus, tmp_path, "text_units=[phoneme]")
    with pytest.raises(ValueError, match="one layer per text unit"):
        _cfg(small_corpus, tmp_path, "text_layers=[1]")
    with pytest.raises(ValueError, match="no text unit active"):
        _cfg(small_corpus, tmp_path, "text_teacher=builtin:bert-tiny", "global_weight=0", "local_weight=0")
    # a manifest without transcripts: the error names the fix
    import csv

    bare = tmp_path / "bare.csv"
    with open(small_corpus) as f, open(bare, "w", newline="") as g:
        w = csv.DictWriter(g, fieldnames=["path", "label", "speaker", "split"])
        w.writeheader()
        w.writerows({"path": str(small_corpus.parent / r["path"]), "label": r["label"], "speaker": r["speaker"],
                     "split": r["split"]} for r in csv.DictReader(f))
    with pytest.raises(ConfigError, match="text_source=label"):
        distill(_cfg(bare, tmp_path / "a", "steps=2", "text_teacher=builtin:bert-tiny"))
    summary = distill(_cfg(bare, tmp_path / "b", "steps=2", "text_teacher=builtin:bert-tiny", "text_source=label"))
    assert summary["finished"]


def _event_tags(folder):
    """Scalar tags in the TensorBoard event files under `folder` (TFRecord framing parsed by hand)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for f in folder.rglob("events.out.tfevents.*"):
        data = f.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = Event.FromString(data[i + 12:i + 12 + n])
            tags.update(v.tag for v in ev.summary.value)
            i += 12 + n + 4
    return tags


def test_tensorboard_logging_through_accelerate_trackers(small_corpus, tmp_path):
    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=4", "log_with=tensorboard", "text_teacher=builtin:bert-tiny",
                 "max_samples=16000"))
    tags = _event_tags(out / "tensorboard")
    assert {"loss", "layerwise", "text_token", "l1/0", "text_unit_weights/utterance"} <= tags, tags
    # logging is not part of the result: a run may be resumed with it switched off
    distill(_cfg(small_corpus, out, "steps=6", "text_teacher=builtin:bert-tiny", "max_samples=16000"), resume=True)


def test_a_micro_student_distils_from_a_normalising_teacher_on_raw_waveforms(small_corpus, tmp_path, monkeypatch):
    """A stream has no whole clip to normalise: the micro student reads raw samples even where the
    teacher normalises each clip, and says so in its saved preprocessor config."""
    import edgedistill.models.teacher as teacher_mod
    from transformers import AutoModel

    real = teacher_mod.load_teacher

    def normalising(*args, **kwargs):
        t = real(*args, **kwargs)
        t.do_normalize = True
        return t

    monkeypatch.setattr("edgedistill.recipes.distill.load_teacher", normalising)
    out = tmp_path / "run"
    summary = distill(_cfg(small_corpus, out, "steps=30", "student.preset=micro30k", "lr=3e-3"))
    log = _log(out)
    assert summary["finished"] and log[-1]["loss"] < log[0]["loss"]
    assert json.loads((out / "student" / "preprocessor_config.json").read_text())["do_normalize"] is False
    assert AutoModel.from_pretrained(out / "student").config.model_type == "edgedistill-micro"
    with pytest.raises(ValueError, match="micro student .* reads log-mel"):
        _cfg(small_corpus, out, "student.preset=micro30k", "reuse_teacher_cnn=true")
