import json

from tests.benchmarks import load_benchmark


def test_smoke_naive_default_cached_and_two_processes(tmp_path):
    out = tmp_path / "tp"
    res = load_benchmark("distill_throughput").main([
        "--teacher", "builtin:hubert-tiny", "--steps", "1", "--warmup", "1", "--batch-size", "2", "--seconds", "1",
        "--rows", "naive", "edgedistill default", "+ cached targets", "2 processes", "--out", str(out)])
    rows = {r["row"]: r for r in res["results"]}
    assert list(rows) == ["naive HF loop (bf16)", "naive HF loop (fp32)", "edgedistill default", "+ cached targets",
                          "edgedistill default, 2 processes x 1 thread"]
    assert all(r["audio_s_per_s"] > 0 for r in rows.values())
    assert rows["edgedistill default, 2 processes x 1 thread"]["processes"] == 2  # counted, not assumed
    assert rows["+ cached targets"]["cache_pass_audio_s_per_s"] > 0
    assert 0.99 < res["target_cosine_to_fp32"]["bf16_mean"] <= 1.0001
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["machine"]["versions"]["torch"] and "| configuration |" in out.with_suffix(".md").read_text()
