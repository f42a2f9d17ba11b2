import json
import subprocess
import sys
from pathlib import Path

import pytest

import edgedistill
from edgedistill.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_students_lists_presets_with_exact_counts(capsys):
    assert main(["students", "--json"]) == 0
    rows = {r["preset"]: r["params"] for r in json.loads(capsys.readouterr().out)["presets"]}
    assert rows["distilhubert"] == 23_491_200 and rows["deep"] == 26_871_936 and rows["wide"] == 30_579_072
    # the edge preset is distilhubert with the thin CNN, and the listing says so
    assert rows["edge"] == rows["distilhubert+thin_cnn"] < rows["distilhubert"]
    assert main(["students"]) == 0
    assert "edge          distilhubert with a thin CNN" in capsys.readouterr().out


def test_shipped_demo_config_runs_through_the_cli(small_corpus, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["distill", "--config", str(ROOT / "configs" / "demo_distill.yaml"), "--data", str(small_corpus),
            "--out", str(out), "steps=4", "save_every=2"]
    assert main(args + ["--stop-after", "2"]) == 0
    assert "--resume" in capsys.readouterr().out
    assert main(args + ["--resume"]) == 0
    assert "student saved" in capsys.readouterr().out
    assert (out / "student" / "config.json").exists() and (out / "config.yaml").exists()


def test_text_teacher_flag_turns_on_text_informed_distillation(small_corpus, tmp_path, capsys):
    out = tmp_path / "text"
    assert main(["distill", "--data", str(small_corpus), "--out", str(out), "--text-teacher", "builtin:bert-tiny",
                 "steps=2", "batch_size=4", "max_samples=16000", "local_weight=0.5", "log_every=1"]) == 0
    last = json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])
    assert {"text_token", "text_word", "text_utterance", "layerwise"} <= last.keys()
    assert main(["distill", "--out", str(tmp_path / "x"), "--text-teacher", "builtin:nope"]) == 2
    assert "unknown builtin text teacher" in capsys.readouterr().err


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    assert main(["distill", "--out", str(tmp_path), "student.preset=huge"]) == 2
    assert "unknown student preset 'huge'" in capsys.readouterr().err
    assert main(["distill", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == 2
    assert "neither 'embedded'" in capsys.readouterr().err


def test_public_api_is_small_and_lazy():
    assert "distill" in edgedistill.__all__ and "build_student" in edgedistill.__all__
    code = "import sys, edgedistill, edgedistill.audio; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_export_quantize_and_compare_through_the_cli(trained_multitask, embedded_corpus, tmp_path, capsys):
    out = tmp_path / "deploy"
    assert main(["export", "--model", str(trained_multitask), "--out", str(out), "--quantize", "int8-dynamic",
                 "--eval-data", str(embedded_corpus), "--eval-split", "val"]) == 0
    text = capsys.readouterr().out
    assert "parity with PyTorch" in text and "KWS accuracy" in text and "device kit" in text
    assert {"model.fp32.onnx", "model.int8-dynamic.onnx", "infer.py", "requirements.txt"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "model.int8-dynamic.json").read_text())
    ev = report["evaluation"]
    assert ev["float"]["clips"] == 120 and "top1_agreement" in ev["change"]
    # `quantize` on the exported file: calibration given -> int8 by default
    assert main(["quantize", "--model", str(out / "model.fp32.onnx"), "--calibration", str(embedded_corpus),
                 "calibration_clips=4"]) == 0
    assert (out / "model.int8.onnx").exists()
    assert main(["quantize", "--model", str(out / "model.fp32.onnx"), "--quantize", "int8"]) == 2
    assert "calibrates on real audio" in capsys.readouterr().err


def test_options_and_overrides_in_any_order():
    """Defect: `run RECIPE --text-teacher DIR distill.text_source=label` was 'unrecognized arguments'."""
    from edgedistill.cli import build_parser, parse_args

    p = build_parser()
    a = parse_args(p, ["run", "configs/arabic_speech_commands.yaml", "--text-teacher", "DIR", "distill.text_source=label"])
    assert a.recipe == "configs/arabic_speech_commands.yaml" and a.text_teacher == "DIR"
    assert a.overrides == ["distill.text_source=label"]
    a = parse_args(p, ["distill", "steps=3", "--out", "x", "lr=1", "--resume", "batch_size=2"])
    assert a.overrides == ["steps=3", "lr=1", "batch_size=2"] and a.resume and a.out == "x"
    import pytest

    with pytest.raises(SystemExit):
        parse_args(p, ["distill", "--out", "x", "--no-such-flag"])
    assert main(["distill", "--out", "x", "not-an-override"]) == 2


def test_help_reads_as_a_sentence(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert description.rstrip().endswith(".") and not description.rstrip().endswith(",")


def test_package_warnings_reach_the_console(small_corpus, tmp_path, capsys):
    """Defect: the CLI set the root logger to ERROR, so edgedistill's warnings vanished."""
    manifest = tmp_path / "dup.csv"
    lines = small_corpus.read_text().splitlines()
    manifest.write_text("\n".join(lines + lines[1:3]).replace(",", ",", 1) + "\n")
    rows = [r.split(",") for r in manifest.read_text().splitlines()]
    rows = [rows[0]] + [[str(small_corpus.parent / r[0])] + r[1:] for r in rows[1:]]
    manifest.write_text("\n".join(",".join(r) for r in rows) + "\n")
    assert main(["distill", "--data", str(manifest), "--out", str(tmp_path / "run"), "steps=1", "batch_size=2",
                 "max_samples=8000"]) == 0
    err = capsys.readouterr().err
    assert "dropped 2 duplicate row(s)" in err and "1 process(es)" in err


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_a_demo_run_prints_stage_lines_and_the_table_without_third_party_noise(embedded_teacher, small_corpus, tmp_path):
    import subprocess
    import sys

    tiny = ["teacher_training.layers=2", "teacher_training.hidden=64", "teacher_training.cnn=32",
            "teacher_training.steps=2", "distill.steps=2", "distill.batch_size=4", "finetune.steps=2",
            "finetune.batch_size=4", "finetune.eval_every=2", "finetune.num_trials=200",
            "export.quantize=[int8]", "export.calibration_clips=4", "benchmark.runs=1", "benchmark.num_trials=200"]
    res = subprocess.run([sys.executable, "-m", "edgedistill", "demo", "--out", str(tmp_path / "run"),
                          f"data={small_corpus}", *tiny], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    text = res.stdout + res.stderr
    for stage in ("teacher", "distill", "finetune", "export", "benchmark"):
        assert f"[{stage}] running" in text
    assert "| student int8 |" in text   # the final table
    for noise in ("[torch.onnx]", "Loading weights", "Writing model shards", "Collecting tensor data",
                  "making histogram", "torchvision", "Please check if the model is already quantized"):
        assert noise not in text, noise


def test_corpus_command_builds_another_corpus_from_a_spec(tmp_path, capsys):
    spec = "embedded:keywords=yes/no,num_speakers=2,splits=1/1/0,takes=1,seed=3"
    assert main(["corpus", spec, "--root", str(tmp_path)]) == 0
    manifest = capsys.readouterr().out.strip().splitlines()[-1]
    rows = open(manifest).read().splitlines()
    assert rows[0] == "path,label,speaker,split,text" and len(rows) == 1 + 2 * 2
    assert main(["corpus", "embedded:voices=3", "--root", str(tmp_path)]) == 2
    assert "unknown config key 'voices'" in capsys.readouterr().err


def test_embedded_teacher_command_builds_only_when_missing_or_asked(embedded_teacher, monkeypatch, capsys):
    import edgedistill.recipes.embedded_teacher as mod

    builds = []
    monkeypatch.setattr(mod, "build_embedded_teacher", lambda: builds.append("built"))
    assert main(["embedded-teacher"]) == 0
    assert capsys.readouterr().out.strip() == str(embedded_teacher) and builds == []
    assert main(["embedded-teacher", "--rebuild"]) == 0
    assert builds == ["built"]


def test_what_a_newcomer_hit_gets_one_line_that_points_the_right_way(small_corpus, tmp_path, capsys):
    # `--out X` on a command of key=value settings: its own usage and the setting it looks like
    with pytest.raises(SystemExit) as e:
        main(["run", "configs/demo.yaml", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage: edgedistill run" in err and f"write out={tmp_path / 'x'}" in err
    # a misspelt model folder is a path, named with finetune's own flag, before any data is read
    (tmp_path / "runs").mkdir()
    assert main(["finetune", "--model", str(tmp_path / "runs" / "missing"), "--data", str(small_corpus),
                 "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--model" in err and "--teacher" not in err
    assert not (tmp_path / "ft").exists()
    # a text file or a truncated file given as a model: its name and what it is, no traceback
    (tmp_path / "notes.onnx").write_text("not a model")
    assert main(["quantize", "--model", str(tmp_path / "notes.onnx")]) == 2
    err = capsys.readouterr().err
    assert "notes.onnx' is not an ONNX model" in err and "Traceback" not in err


def test_every_path_of_a_run_is_checked_first_and_a_recipe_s_paths_are_its_own(small_corpus, tmp_path, monkeypatch,
                                                                              capsys):
    """Newcomer item 2: a recipe's relative noise folder, run from elsewhere, once failed seconds
    into training without naming its key and left a half-made run folder."""
    from edgedistill.config import load_config
    from edgedistill.recipes.run import RunConfig, check_run

    project = tmp_path / "project"
    (project / "noise").mkdir(parents=True)
    recipe = project / "recipe.yaml"
    recipe.write_text("finetune:\n  noise: noise\n")
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    cfg = load_config(RunConfig, recipe, [f"data={small_corpus}"])
    check_run(cfg, recipe)
    assert cfg.finetune.noise == str(project.resolve() / "noise") and cfg.data == str(small_corpus)
    # a path that is nowhere: one line naming the key, before the run folder exists
    assert main(["run", str(recipe), f"out={tmp_path / 'run'}", f"data={small_corpus}",
                 "finetune.noise=../shared/missing_noise"]) == 2
    err = capsys.readouterr().err
    assert "finetune.noise: '../shared/missing_noise' does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_config_lists_every_key_with_its_default_and_help_and_help_shows_defaults(capsys):
    """Newcomer item 1: finding `export.kws_budget`, `benchmark.num_trials` or `baseline` took
    grepping the package."""
    from edgedistill.config import describe
    from edgedistill.recipes.run import RunConfig

    assert main(["config", "demo", "distill.steps=7"]) == 0
    out = capsys.readouterr().out
    for key, _, help_ in describe(RunConfig):
        assert f" {key} = " in out and help_ in out
    assert "* distill.steps = 7  (default: 200000)" in out
    assert "  baseline = false\n      also fine-tune a student" in out
    assert main(["config", "finetune", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"key": "noise_prob", "value": 0.5, "default": 0.5, "help": "chance a training clip gets noise"} in rows
    with pytest.raises(SystemExit):
        main(["evaluate-stream", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "stream length in seconds (default: 600.0)" in help_text and "(default: 0)" in help_text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "edgedistill config RECIPE" in " ".join(capsys.readouterr().out.split())


def test_finetune_prints_percentages_as_the_reports_do(small_corpus, tmp_path, capsys):
    """Newcomer item 5: fine-tuning printed fractions (0.7917) where reports print percentages."""
    import re

    assert main(["finetune", "--model", "builtin:hubert-tiny", "--data", str(small_corpus), "--out",
                 str(tmp_path / "ft"), "steps=2", "eval_every=2", "batch_size=4", "num_trials=200"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"KWS accuracy \d+\.\d\d%, SV EER (\d+\.\d\d%|n/a)", captured.out), captured.out
    assert re.search(r"val=acc \d+\.\d% ", captured.err), captured.err[-500:]
