import json
from tests.benchmarks import load_benchmark


def test_one_iteration_smoke(tmp_path):
    out = tmp_path / "tp"
    res = load_benchmark("distill_throughput").main(["--teacher", "builtin:hubert-tiny", "--steps", "1", "--warmup", "1",
                        "--batch-size", "2", "--seconds", "1", "--out", str(out)])
    assert [r["reuse_teacher_cnn"] for r in res["results"]] == [False, True]
    assert all(r["audio_s_per_s"] > 0 and r["audio_s_per_step"] == 2.0 for r in res["results"])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["machine"]["versions"]["torch"] and "| student CNN |" in out.with_suffix(".md").read_text()
