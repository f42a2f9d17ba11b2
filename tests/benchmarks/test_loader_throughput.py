import json

from tests.benchmarks import load_benchmark


def test_smoke_wav_and_flac_with_and_without_workers(tmp_path):
    out = tmp_path / "lt"
    res = load_benchmark("loader_throughput").main([
        "--workers", "0", "2", "--clips", "4", "--seconds", "2", "--batch-size", "2", "--epochs", "2",
        "--arabic", str(tmp_path / "absent"), "--out", str(out)])
    assert [(r["format"], r["workers"]) for r in res["results"]] == [("wav", 0), ("wav", 2), ("flac", 0), ("flac", 2)]
    assert all(r["audio_s_per_s"] > 0 for r in res["results"])
    wav, flac = res["results"][0]["mb_per_hour"], res["results"][2]["mb_per_hour"]
    assert 100 < wav < 120 and flac < wav  # 16 kHz 16-bit is 115.2 MB per hour; FLAC compresses it
    assert "synthetic" in res["source"]
    assert json.loads(out.with_suffix(".json").read_text())["machine"]["versions"]["torch"]
