import json
from tests.benchmarks import load_benchmark


def test_one_iteration_smoke(tmp_path, embedded_corpus):
    mod = load_benchmark("latency")
    out = tmp_path / "lat"
    res = mod.main(["--teacher", "builtin:hubert-tiny", "--students", "distilhubert", "--modes", "int8-dynamic,int8",
                    "--threads", "1", "--seconds", "1", "--runs", "1", "--warmup", "1",
                    "--calibration", str(embedded_corpus), "--out", str(out)])
    formats = [(r["model"], r["format"]) for r in res["rows"]]
    assert formats == [("teacher", "torch-fp32"), ("distilhubert", "torch-fp32"), ("distilhubert", "ort-fp32"),
                       ("distilhubert", "ort-int8-dynamic"), ("distilhubert", "ort-int8")]
    assert all(r["latency_ms_p50"] > 0 and r["rtf"] > 0 for r in res["rows"])
    sizes = {r["format"]: r["file_bytes"] for r in res["rows"] if r["file_bytes"]}
    assert sizes["ort-int8-dynamic"] < sizes["ort-fp32"]
    assert json.loads(out.with_suffix(".json").read_text())["machine"]["cpu_flags"] is not None
    assert "| distilhubert | ort-int8 |" in out.with_suffix(".md").read_text()
