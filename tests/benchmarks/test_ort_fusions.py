import pytest

from tests.benchmarks import load_benchmark


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_one_iteration_smoke(tmp_path):
    mod = load_benchmark("ort_fusions")
    res = mod.main(["--teacher", "builtin:hubert-tiny", "--students", "edge", "--rounds", "2", "--op-runs", "3",
                    "--out", str(tmp_path / "fusions")])
    assert len(res["ops"]) == 8 and all(r["fused_us"] > 0 and r["unfused_us"] > 0 for r in res["ops"])
    assert all(r["max_abs_diff"] < 1e-4 for r in res["ops"])  # the same computation, fused or not
    names = {(r["model"], r["audio_s"]) for r in res["models"]}
    assert names == {(f"{m} {q}", s) for m in ("teacher", "edge") for q in ("fp32", "int8") for s in (1, 4)}
    assert res["disabled"] == ["SkipLayerNormFusion"]
    assert (tmp_path / "fusions.md").read_text().count("| teacher fp32 |") == 2
