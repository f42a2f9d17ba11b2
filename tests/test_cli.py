import json
import subprocess
import sys
from pathlib import Path

import edgedistill
from edgedistill.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_students_lists_presets_with_exact_counts(capsys):
    assert main(["students", "--json"]) == 0
    rows = {r["preset"]: r["params"] for r in json.loads(capsys.readouterr().out)["presets"]}
    assert rows["distilhubert"] == 23_491_200 and rows["deep"] == 26_871_936 and rows["wide"] == 30_579_072


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
