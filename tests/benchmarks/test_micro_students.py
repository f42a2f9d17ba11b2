import json

from tests.benchmarks import load_benchmark


def _report(acc, misses, scratch_acc, scratch_misses, int8_bytes=140_000, command="edgedistill run ..."):
    def stream(m):
        return {"mean_ms": 0.3, "core_share": 0.003,
                "detection": {"negative_hours": 10.0, "at_0.5_fa_per_hour": {"frr": m + 0.02},
                              "at_1_fa_per_hour": {"frr": m, "frr_ci95": [m - 0.05, m + 0.05]}}}

    variants = [{"variant": "student fp32", "kws_accuracy": acc, "sv_eer": 0.2, "file_bytes": 460_000, "params": 100_208},
                {"variant": "student int8", "kws_accuracy": acc, "sv_eer": 0.2, "file_bytes": int8_bytes, "params": 100_208},
                {"variant": "scratch fp32", "kws_accuracy": scratch_acc, "sv_eer": 0.3, "file_bytes": 460_000,
                 "params": 100_208}]
    return {"variants": variants, "run_command": command,
            "streams": {"student fp32": stream(misses), "student int8": stream(misses),
                        "scratch fp32": stream(scratch_misses)}}


def test_the_table_and_goals_come_from_the_kept_runs(tmp_path):
    mod = load_benchmark("micro_students")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "micro100k.json").write_text(json.dumps(_report(0.80, 0.30, 0.76, 0.40)))
    (kept / "micro100k_s1.json").write_text(json.dumps(_report(0.82, 0.34, 0.77, 0.42)))
    (kept / "distilhubert.json").write_text(json.dumps(_report(0.845, 0.2, 0.7, 0.5)))
    res = mod.main(["--kept", str(kept), "--hops", str(tmp_path / "none.json"), "--out", str(tmp_path / "m")])
    rows = {(r["preset"], r["row"]): r for r in res["rows"]}
    assert rows[("micro100k", "distilled fp32")]["seeds"] == [0, 1]
    assert abs(rows[("micro100k", "distilled fp32")]["misses_1"][0] - 0.32) < 1e-9
    goals = "\n".join(res["goals"])
    assert "140.0 / 140.0 KB, goal at most 150 KB: **met**" in goals
    assert "+22.0% relative fewer; goal at least 20% (LiteFEW): **met**" in goals  # (0.41 - 0.32) / 0.41
    assert "+4.50 points; goal at least +2: **met**" in goals
    assert "+3.50 points: **missed**" not in goals and "distilhubert" in goals
    md = (tmp_path / "m.md").read_text()
    assert "| micro100k | from scratch fp32 | 2 | 100,208 |" in md
    (kept / "micro100k_s1.json").write_text(json.dumps(_report(0.76, 0.40, 0.77, 0.42, int8_bytes=160_000)))
    goals = "\n".join(mod.main(["--kept", str(kept), "--hops", str(tmp_path / "none.json"),
                                "--out", str(tmp_path / "m")])["goals"])
    assert "goal at least 20% (LiteFEW): **missed**" in goals and "goal at least +2: **missed**" in goals
