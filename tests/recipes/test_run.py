import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from edgedistill.cli import main
from edgedistill.config import load_yaml

TINY = ["distill.steps=10", "distill.batch_size=8", "finetune.steps=40", "finetune.batch_size=8",
        "finetune.eval_every=40", "finetune.save_every=5", "finetune.num_trials=500",
        "export.quantize=[int8-dynamic]", "export.calibration_clips=4", "benchmark.runs=2",
        "benchmark.num_trials=500"]
# A teacher trained in the run (teacher: train), at a tiny size.
TRAIN = ["teacher=train", "teacher_training.layers=4", "teacher_training.hidden=64", "teacher_training.cnn=32",
         "teacher_training.steps=20"]


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_demo_recipe_end_to_end_at_a_tiny_size(embedded_teacher, embedded_corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    stream = ["stream.keywords=[yes,stop]", "stream.seconds=60", "stream.enroll_clips=2"]
    assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, "baseline=true", "qat=true",
                 "finetune.freeze_cnn=null", *stream]) == 0
    report = json.loads((out / "report.json").read_text())
    names = [v["variant"] for v in report["variants"]]
    assert names == ["teacher fp32", "teacher int8-dynamic", "student fp32", "student int8-dynamic",
                     "student qat-int8", "scratch fp32"]
    teacher, teacher_q, student, quant, qat, scratch = report["variants"]
    # quantization-aware training: its own fine-tuning of the distilled student, exported in int8
    assert qat["params"] == student["params"] and qat["path"].endswith("student-qat.int8.onnx")
    assert (out / "qat" / "ft" / "model" / "multitask.json").exists()
    assert (out / "qat" / "ft" / "model" / "qat_ranges.json").exists()  # its int8 file rounds with them
    # the teacher merely quantized is a row of its own, and every row says what it retains of the teacher
    assert teacher_q["params"] == teacher["params"] and teacher_q["file_bytes"] < teacher["file_bytes"]
    assert teacher["kws_retained"] == 1 and student["kws_retained"] == student["kws_accuracy"] / teacher["kws_accuracy"]
    assert "| KWS retained | EER / teacher |" in (out / "report.md").read_text()
    assert student["params"] < teacher["params"] and quant["file_bytes"] < student["file_bytes"]
    # the baseline has the student's shape but its own (random-init) weights
    assert scratch["params"] == student["params"] and scratch["path"] != student["path"]
    assert "from random weights" in (out / "export" / "README.md").read_text()
    # the demo's teacher is the embedded one, built once into the cache (a stand-in for a pretrained
    # model): the student distils from it as built, and the teacher row is it fine-tuned on the
    # run's data with the student's recipe, for the steps the student gets there (10 + 40)
    from safetensors.torch import load_file

    def conv(folder):
        return load_file(folder / "model.safetensors")["feature_extractor.conv_layers.1.conv.weight"]

    config = load_yaml((out / "teacher" / "ft" / "config.yaml").read_text())
    assert config["model"] == "embedded" and config["data"] == str(embedded_corpus)
    assert json.loads((out / "teacher" / "ft" / "summary.json").read_text())["steps_done"] == 50
    assert load_yaml((out / "distill" / "config.yaml").read_text())["teacher"] == "embedded"
    assert "`embedded` (a 4 x 64 HuBERT built by edgedistill from its recipe" in (out / "export" / "README.md").read_text()
    # the student's fine-tuning freezes the CNN here (finetune.freeze_cnn=null): it stays as distilled,
    # while the teacher's own fine-tuning (the student's recipe) leaves the built weights untouched
    assert torch.equal(conv(out / "distill" / "student"), conv(out / "finetune" / "model" / "backbone"))
    assert json.loads((embedded_teacher / "PROVENANCE.json").read_text())["sha256"] == \
        __import__("hashlib").sha256((embedded_teacher / "model.safetensors").read_bytes()).hexdigest()
    # ... and the from-scratch baseline's, which is random, trains
    assert not torch.equal(conv(out / "baseline" / "init"), conv(out / "baseline" / "ft" / "model" / "backbone"))
    for v in report["variants"]:
        assert {"params", "file_bytes", "kws_accuracy", "sv_eer", "sv_min_dcf", "latency_ms_p50",
                "latency_ms_p90", "rtf"} <= v.keys()
    assert report["split"] == "test" and report["machine"]["versions"]["onnxruntime"]
    assert "| student int8-dynamic |" in (out / "report.md").read_text()
    assert (out / "export" / "infer.py").exists() and (out / "export" / "model.int8-dynamic.onnx").exists()
    assert set(report["plots"]) == {"trade-off", "SV DET curve", "KWS confusion", "training curves",
                                    "streaming FRR vs FA/h"}
    # continuous listening: every exported variant on the same 60 s stream of the test split
    assert list(report["streams"]) == names
    for r in report["streams"].values():
        assert r["seconds"] == 60 and r["targets"] == ["yes", "stop"] and r["hits"] + r["misses"] == r["occurrences"]
        assert 0 < r["core_share"] < 1 and r["enrolled_speakers"] == 4
    assert len({r["occurrences"] for r in report["streams"].values()}) == 1  # one stream for all
    assert "## Continuous listening" in (out / "report.md").read_text()
    assert "### Continuous listening" in (out / "export" / "README.md").read_text()
    for png in report["plots"].values():
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    card = (out / "export" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: onnxruntime") and "## How it was made" in card
    assert f"{100 * student['kws_accuracy']:.2f}%" in card and (out / "export" / "DEVICE.md").exists()
    # everything done: a second run skips every stage
    marks = {p: p.stat().st_mtime_ns for p in out.glob("*/stage.json")}
    assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, "baseline=true", "qat=true",
                 "finetune.freeze_cnn=null", *stream]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/stage.json")} == marks
    # another release's embedded teacher (other weights) is another teacher: the run is refused, not reused
    import edgedistill.models.teacher as teacher_mod

    prov = teacher_mod.embedded_teacher_provenance()
    monkeypatch.setattr(teacher_mod, "embedded_teacher_provenance", lambda: {**prov, "sha256": "0" * 64})
    assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, "baseline=true", "qat=true",
                 "finetune.freeze_cnn=null", *stream]) == 2
    assert "stage 'teacher'" in capsys.readouterr().err


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_with_an_int8_budget_the_teacher_is_quantized_as_its_student_is(embedded_teacher, embedded_corpus, tmp_path):
    """The 'teacher int8' row is what a user gets without distilling: with the export stage's
    budgets it gets the student's sensitivity search too (same quantization), and says what it found."""
    out = tmp_path / "run"
    budget = ["export.quantize=[int8]", "export.kws_budget=0.001", "export.eer_budget=0.005"]
    assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, *budget, "qat=true"]) == 0
    found = json.loads((out / "export" / "stage.json").read_text())["result"]["sensitivity"]
    assert set(found) == {"int8", "teacher int8"}
    for r in found.values():
        assert r["cost_final"] <= r["cost_all_quantized"] and r["split"] == "val" and r["against"] == "fp32"
    md = (out / "report.md").read_text()
    assert "\n- student int8: " in md and "\n- teacher int8: " in md
    # a quantization-aware student's own fp32 export is not what it trained: its int8 budget is held
    # against the plain student's fp32, as the report's goal compares them
    qat = json.loads((out / "qat" / "stage.json").read_text())["result"]["sensitivity"]["qat int8"]
    assert qat["against"] == "student fp32" and " points against student fp32 on 'val'" in md.split(
        "\n- student qat int8: ")[1].splitlines()[0]
    assert ("within the budget" in md.split("- teacher int8: ")[1].splitlines()[0]) == found["teacher int8"]["budget_met"]


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_a_teacher_trained_in_the_run_on_a_corpus_of_its_own(embedded_corpus, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, *TRAIN, "finetune.freeze_cnn=null",
                 f"teacher_training.data={small_corpus}", "teacher_training.val_split=val", "teacher_training.cycles=2",
                 "teacher_training.cycle_steps=10",
                 "export.quantize=[]"]) == 0
    from safetensors.torch import load_file

    def conv(folder):
        return load_file(folder / "model.safetensors")["feature_extractor.conv_layers.1.conv.weight"]

    # trained here from random weights, the teacher trains its CNN even when the student's
    # fine-tuning freezes it (finetune.freeze_cnn=null)
    assert not torch.equal(conv(out / "teacher" / "init"), conv(out / "teacher" / "cycle1" / "model" / "backbone"))
    # two cycles on its own corpus (the second fine-tunes the first's backbone with new heads), then,
    # as a pretrained teacher, fine-tuned on the run's data for the student's steps there (10 + 40);
    # the student distils from it before that fine-tuning
    pretrain = out / "teacher" / "pretrain"
    config = load_yaml((pretrain / "config.yaml").read_text())
    assert config["model"] == f"{out}/teacher/cycle1/model/backbone" and config["data"] == str(small_corpus)
    assert json.loads((pretrain / "summary.json").read_text())["steps_done"] == 10
    assert not torch.equal(conv(out / "teacher" / "cycle1" / "model" / "backbone"), conv(pretrain / "model" / "backbone"))
    config = load_yaml((out / "teacher" / "ft" / "config.yaml").read_text())
    assert config["model"] == f"{pretrain}/model/backbone" and config["data"] == str(embedded_corpus)
    assert json.loads((out / "teacher" / "ft" / "summary.json").read_text())["steps_done"] == 50
    assert load_yaml((out / "distill" / "config.yaml").read_text())["teacher"] == f"{pretrain}/model/backbone"
    assert str(small_corpus) in (out / "export" / "README.md").read_text()


def test_unknown_stream_keywords_are_refused_before_any_training(embedded_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, "stream.keywords=[yes,maybe]"]) == 2
    err = capsys.readouterr().err
    assert "stream.keywords ['maybe'] are not labels" in err and "'yes'" in err
    assert not (out / "teacher").exists()


def test_bad_stage_settings_fail_before_any_training(embedded_teacher, embedded_corpus, tmp_path, capsys):
    bad = {"export.quantize=[int9]": "export.quantize ['int9']: choose among",
           "teacher_training.hidden=100": "teacher_training.hidden=100: use a multiple of 16",
           "finetune.mixed_precision=fp8": "mixed_precision 'fp8'",
           "benchmark.runs=0": "benchmark: threads, runs",
           "teacher_training.cycles=0": "teacher_training: cycles=0, cycle_steps=None: cycles must be >= 1"}
    for override, message in bad.items():
        out = tmp_path / "run"
        assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, override]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_a_teacher_trained_on_its_own_data_stands_in_for_a_pretrained_model(small_corpus):
    from edgedistill.config import load_config
    from edgedistill.recipes.run import RunConfig, plan

    # the teacher's own (larger) corpus trains the teacher; its last fine-tuning (the teacher row)
    # and every student stage read the run's data, and the student distils from the pretrained model
    cfg = load_config(RunConfig, "configs/demo.yaml", ["teacher=train", f"teacher_training.data={small_corpus}"])
    p = plan(cfg)
    assert [c.data for c in p.teacher.cycles] == [str(small_corpus), cfg.data]
    assert p.distill.data == p.finetune.data == cfg.data
    assert p.distill.teacher == f"{p.teacher.cycles[0].out}/model/backbone"
    assert p.teacher.cycles[1].model == p.distill.teacher
    assert p.teacher.names == ["teacher pretraining", "teacher fine-tuning"]  # the training plot's curves
    # an upper bound: on the run's data the teacher gets the student's steps there, validated more often
    ft = p.teacher.cycles[1]
    assert ft.steps == cfg.distill.steps + cfg.finetune.steps and ft.eval_every == cfg.teacher_training.eval_every
    assert (ft.backbone_lr, ft.head_lr, ft.batch_size) == (cfg.finetune.backbone_lr, cfg.finetune.head_lr,
                                                           cfg.finetune.batch_size)
    # so does a pretrained teacher (the demo's embedded one, a hub model) with the student's recipe,
    # validated as the student is; where the student distils on other audio, only its fine-tuning counts
    for teacher in ("embedded", "org/hub-model"):
        hub = load_config(RunConfig, "configs/demo.yaml", [f"teacher={teacher}"])
        assert plan(hub).teacher.finetune == dataclasses.replace(
            cfg.finetune, model=teacher, data=cfg.data, out="runs/demo/teacher/ft",
            steps=cfg.distill.steps + cfg.finetune.steps, detect_keywords=["yes", "stop"])
        assert plan(hub).teacher.cycles == [plan(hub).teacher.finetune]
        assert plan(hub).distill.teacher == teacher and plan(hub).teacher.init is None
    # the recipe names stream keywords: every row is trained as their detector, unless told not to
    p = plan(cfg)
    assert p.finetune.detect_keywords == p.teacher.finetune.detect_keywords == ["yes", "stop"]
    assert not plan(load_config(RunConfig, "configs/demo.yaml", ["stream.detector=false"])).finetune.detect_keywords
    assert not plan(load_config(RunConfig, "configs/demo.yaml", ["stream.keywords=[]"])).finetune.detect_keywords
    assert plan(load_config(RunConfig, "configs/demo.yaml", ["finetune.detect_keywords=[go]"])).finetune.detect_keywords == ["go"]
    other = load_config(RunConfig, "configs/demo.yaml", [f"distill_data={small_corpus}"])
    assert plan(other).teacher.finetune.steps == cfg.finetune.steps
    # without its own data, the teacher trains on the run's data and is distilled as trained
    p = plan(load_config(RunConfig, "configs/demo.yaml", ["teacher=train"]))
    assert [c.data for c in p.teacher.cycles] == [cfg.data]
    assert p.distill.teacher == f"{p.teacher.finetune.out}/model/backbone"
    assert p.teacher.names == ["teacher"]
    p = plan(load_config(RunConfig, "configs/demo.yaml", ["teacher=train", "teacher_training.cycles=2",
                                                          f"teacher_training.data={small_corpus}"]))
    assert p.teacher.names == ["teacher pretraining cycle 1", "teacher pretraining cycle 2", "teacher fine-tuning"]
    assert len(p.teacher.cycles) == 3
    # soft targets: the students (QAT too) learn from the fine-tuned teacher, the scratch baseline does not
    p = plan(load_config(RunConfig, "configs/demo.yaml", ["soft_targets=true", "baseline=true", "qat=true"]))
    assert p.finetune.kd_teacher == p.teacher.model == p.qat.kd_teacher and p.baseline.kd_teacher is None
    assert p.teacher.finetune.kd_teacher is None and plan(cfg).finetune.kd_teacher is None
    with pytest.raises(ValueError, match="teacher_rows=false skips"):
        load_config(RunConfig, "configs/demo.yaml", ["soft_targets=true", "teacher_rows=false"])
    with pytest.raises(ValueError, match="set soft_targets=true"):
        load_config(RunConfig, "configs/demo.yaml", ["finetune.kd_teacher=runs/x"])


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_soft_targets_come_from_the_run_s_own_fine_tuned_teacher(embedded_teacher, embedded_corpus, tmp_path):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), f"data={embedded_corpus}", *TINY, "soft_targets=true",
                 "baseline=true"]) == 0
    config = (out / "finetune" / "config.yaml").read_text()
    assert f"kd_teacher: {out / 'teacher' / 'ft' / 'model'}" in config
    logged = lambda folder: [json.loads(x) for x in (out / folder / "train_log.jsonl").read_text().splitlines()]
    assert any("kd" in r for r in logged("finetune")) and not any("kd" in r for r in logged("baseline/ft"))
    assert "student fp32" in (out / "report.md").read_text()


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_killed_in_finetuning_resumes_without_redoing_distillation(embedded_teacher, embedded_corpus, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edgedistill", "demo", "--out", str(out), f"data={embedded_corpus}", *TINY, *TRAIN,
           "finetune.steps=400"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    latest = out / "finetune" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert latest.exists(), "fine-tuning never checkpointed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "finetune" / "stage.json").exists()
    distilled = (out / "distill" / "stage.json").stat().st_mtime_ns
    steps_before = [json.loads(x)["step"] for x in (out / "finetune" / "train_log.jsonl").read_text().splitlines()
                    if "loss" in x]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "[distill] done already" in res.stdout and "[teacher] done already" in res.stdout
    assert (out / "distill" / "stage.json").stat().st_mtime_ns == distilled
    log = [json.loads(x) for x in (out / "finetune" / "train_log.jsonl").read_text().splitlines()]
    resumed = [r["step"] for r in log if "loss" in r][len(steps_before):]
    assert resumed and resumed[0] > 5, "fine-tuning restarted from scratch instead of its checkpoint"
    assert json.loads((out / "report.json").read_text())["variants"]


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_sv_from_a_second_dataset_is_scored_on_that_dataset(embedded_teacher, small_corpus, embedded_corpus, tmp_path):
    import csv

    sv_only = tmp_path / "sv.csv"
    with open(embedded_corpus) as f, open(sv_only, "w", newline="") as g:
        w = csv.DictWriter(g, fieldnames=["path", "speaker", "split"])
        w.writeheader()
        w.writerows({"path": str(embedded_corpus.parent / r["path"]), "speaker": r["speaker"], "split": r["split"]}
                    for r in csv.DictReader(f))
    out = tmp_path / "run"
    # KWS from the small corpus (4 keywords, 1 test speaker), SV from the embedded corpus (4 test speakers)
    assert main(["demo", "--out", str(out), f"data={small_corpus}", f"finetune.sv_data={sv_only}", *TINY]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["clips"] == 4 * 2 + 120                   # both test splits
    assert all(v["sv_eer"] is not None for v in report["variants"])


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_pretrained_teacher_row_unscored_sv_and_a_different_run_refused(small_corpus, tiny_hubert, tmp_path, capsys):
    """Defects: with a pretrained teacher the report had no teacher row; a split with one speaker
    left SV unscored without a word; `run out=D` over a different finished run deleted it."""
    teacher = tmp_path / "pretrained"
    tiny_hubert.save_pretrained(teacher)
    out = tmp_path / "run"
    args = ["demo", "--teacher", str(teacher), "--out", str(out), f"data={small_corpus}", *TINY,
            "teacher_training.steps=5"]
    assert main(args) == 0
    assert "teacher_training is not used: the teacher is the pretrained" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    names = [v["variant"] for v in report["variants"]]
    assert names[0] == "teacher fp32" and "student fp32" in names
    assert report["variants"][0]["params"] == sum(p.numel() for p in tiny_hubert.parameters())
    # the small corpus has one test speaker: the report says why SV is not scored
    assert all(v["sv_eer"] is None for v in report["variants"])
    md = (out / "report.md").read_text()
    assert "Speaker verification is not scored:** the 'test' split has 1 speaker(s)" in md
    assert report["train_threads"] == torch.get_num_threads() and "thread count" in md
    # a different recipe pointed at this finished run: refused, nothing deleted
    stamp = (out / "distill" / "stage.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["distill.student.preset=deep"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "distill" / "stage.json").stat().st_mtime_ns == stamp


def test_a_whisper_teachers_students_get_the_cnn_hint_and_a_trained_cnn(tmp_path, tiny_hubert):
    from transformers import WhisperForConditionalGeneration

    from edgedistill.config import load_config
    from edgedistill.models.whisper import tiny_whisper_config
    from edgedistill.recipes.run import RunConfig, plan

    WhisperForConditionalGeneration(tiny_whisper_config()).save_pretrained(tmp_path / "whisper")
    tiny_hubert.save_pretrained(tmp_path / "hubert")
    whisper = plan(load_config(RunConfig, None, [f"teacher={tmp_path / 'whisper'}", f"out={tmp_path / 'a'}"]))
    hubert = plan(load_config(RunConfig, None, [f"teacher={tmp_path / 'hubert'}", f"out={tmp_path / 'b'}"]))
    # distilhubert copies a HuBERT teacher's CNN, but a Whisper teacher has none to give
    assert whisper.distill.cnn_hint_weight == 1.0 and whisper.finetune.freeze_cnn is False
    assert hubert.distill.cnn_hint_weight is None and hubert.finetune.freeze_cnn is None


@pytest.mark.slow  # the demo as shipped, its teacher built from its recipe first where this machine has none
@pytest.mark.timeout(3600)
def test_the_shipped_demo_trains_a_detector_the_kit_keeps_quiet_in_silences(tmp_path, monkeypatch):
    """Defect (issue 38): the demo's kit, run on 16 of the embedded corpus's test clips with 1 to
    2.5 s of silence between them, gave 36 events, 20 of them in the silences, the first at 0.0 s
    before any speech. Run as a user runs it: `edgedistill demo`, then the kit's `infer.py
    --stream` on the int8 file with its defaults (the calibrated keywords and thresholds)."""
    import numpy as np
    import soundfile as sf

    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.data.manifest import load_clip

    import shutil
    from pathlib import Path

    from edgedistill.models.teacher import embedded_teacher_path

    # A cache of its own: the session's holds the tiny test build of the embedded teacher under
    # the same name. The teacher this machine's `make demo` built already (the same recipe, the
    # same folder name) saves its build; a fresh machine (CI) builds it here, as a first demo does.
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    built = Path.home() / ".cache" / "edgedistill" / embedded_teacher_path().name
    if built.is_dir() and not embedded_teacher_path().exists():
        shutil.copytree(built, embedded_teacher_path())
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    streams = report["streams"]
    assert {"student fp32", "student int8"} <= set(streams)
    assert all("detection" in r and r["detection"]["negative_hours"] > 0.9 for r in streams.values())
    data = load_yaml((out / "finetune" / "config.yaml").read_text())
    assert data["detect_keywords"] == ["yes", "stop"]

    rng = np.random.default_rng(0)
    clips = resolve_labelled(data["data"], "test")
    chosen = [clips[i] for i in rng.choice(len(clips), 16, replace=False)]
    pieces, spans, t = [], [], 0
    for c in chosen:
        gap = np.zeros(int(rng.uniform(1.0, 2.5) * 16_000), np.float32)
        audio = load_clip(c)
        pieces += [gap, audio]
        spans.append((t + len(gap), t + len(gap) + len(audio)))
        t += len(gap) + len(audio)
    pieces.append(np.zeros(16_000, np.float32))
    sf.write(tmp_path / "long.wav", np.concatenate(pieces), 16_000)
    kit = out / "export"
    res = subprocess.run([sys.executable, str(kit / "infer.py"), str(kit / "model.int8.onnx"),
                          "--stream", str(tmp_path / "long.wav")], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    events, summary = lines[:-1], lines[-1]["summary"]
    assert sorted(summary["keywords"]) == ["stop", "yes"]  # the calibrated ones, not every label
    # an event whose 1 s window overlaps no clip heard silence alone
    in_silence = [e for e in events if not any(a / 16_000 < e["end_s"] and b / 16_000 > e["time_s"] for a, b in spans)]
    assert not in_silence, (in_silence, summary)
    said = sum(c.label in ("yes", "stop") for c in chosen)
    assert said == 0 or events, f"{said} target words, no event"


def test_stream_variants_hear_only_the_rows_named(embedded_corpus, monkeypatch):
    """A teacher's rows measured once need not be heard again in every run of a benchmark."""
    from edgedistill.recipes import benchmark

    heard = []
    monkeypatch.setattr(benchmark, "evaluate_stream", lambda path, *a, **k: heard.append(path) or {"curve": []})
    rows = [("teacher fp32", "t.onnx", 1), ("student fp32", "s.onnx", 1), ("student int8", "q.onnx", 1)]
    st = benchmark.StreamStage(keywords=["yes"], variants=["student fp32", "student int8"])
    got = benchmark._streams(st, str(embedded_corpus), [], "val", rows, 1)
    assert list(got) == ["student fp32", "student int8"] and heard == ["s.onnx", "q.onnx"]
    with pytest.raises(ValueError, match="not rows of this run"):
        benchmark._streams(benchmark.StreamStage(keywords=["yes"], variants=["scratch fp32"]), str(embedded_corpus),
                           [], "val", rows, 1)
    with pytest.raises(ValueError, match="teacher\\|student\\|scratch MODE"):
        benchmark.StreamStage(keywords=["yes"], variants=["studnet fp32"])


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_a_micro_students_run_without_teacher_rows_streams_its_int8_file(embedded_teacher, embedded_corpus, tmp_path,
                                                                        monkeypatch):
    """A micro student through the whole run: distilled, fine-tuned, exported as a stream, quantized,
    against the same shape from scratch; the teacher's rows left to another run."""
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # as CI's clone: nothing relative to the checkout
    out = tmp_path / "run"
    recipe = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    assert main(["run", str(recipe), f"out={out}", f"data={embedded_corpus}", *TINY,
                 "distill.student.preset=micro30k", "baseline=true", "teacher_rows=false", "export.quantize=[int8]",
                 "stream.seconds=120", "stream.negative_hours=0.05", "stream.calibrate_hours=0.05",
                 "stream.variants=[student int8]"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [v["variant"] for v in report["variants"]] == ["student fp32", "student int8", "scratch fp32"]
    assert not (out / "teacher").exists() and not (out / "benchmark_models").exists()
    student, quant, scratch = report["variants"]
    assert student["params"] == scratch["params"] == 28_976 and quant["file_bytes"] < 0.5 * student["file_bytes"]
    assert list(report["streams"]) == ["student int8"]
    from edgedistill.runtime import EdgeModel

    m = EdgeModel(quant["path"])
    assert m.streaming and set(m.keyword_thresholds) == {"yes", "stop"}  # calibrated, as every exported file
