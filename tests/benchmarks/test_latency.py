import json

import pytest

from tests.benchmarks import load_benchmark


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_one_iteration_smoke(tmp_path, embedded_corpus):
    mod = load_benchmark("latency")
    out = tmp_path / "lat"
    res = mod.main(["--teacher", "builtin:hubert-tiny", "--students", "distilhubert", "--modes", "int8-dynamic,int8",
                    "--threads", "1", "--seconds", "1", "--runs", "1", "--warmup", "1",
                    "--calibration", str(embedded_corpus), "--out", str(out)])
    formats = [(r["model"], r["format"]) for r in res["rows"]]
    fmts = ["torch-fp32", "ort-fp32", "ort-int8-dynamic", "ort-int8"]
    assert formats == [("teacher", f) for f in fmts] + [("distilhubert", f) for f in fmts]
    # speed-ups over the teacher: in PyTorch fp32, and in the same format (int8 to int8)
    rows = {(r["model"], r["format"]): r for r in res["rows"]}
    student, teacher = rows[("distilhubert", "ort-int8")], rows[("teacher", "ort-int8")]
    assert student["x_vs_teacher_same_format"] == teacher["latency_ms_p50"] / student["latency_ms_p50"]
    assert student["x_vs_teacher_torch"] == rows[("teacher", "torch-fp32")]["latency_ms_p50"] / student["latency_ms_p50"]
    assert rows[("teacher", "ort-int8")]["x_vs_teacher_same_format"] == 1
    assert all(r["latency_ms_p50"] > 0 and r["rtf"] > 0 for r in res["rows"])
    sizes = {r["format"]: r["file_bytes"] for r in res["rows"] if r["file_bytes"]}
    assert sizes["ort-int8-dynamic"] < sizes["ort-fp32"]
    assert json.loads(out.with_suffix(".json").read_text())["machine"]["cpu_flags"] is not None
    md = out.with_suffix(".md").read_text()
    assert "| distilhubert | ort-int8 |" in md and "Speed-up over the teacher (1 thread)" in md
