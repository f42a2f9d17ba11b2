import json

import pytest

from tests.benchmarks import load_benchmark

TINY = ["teacher_training.layers=2", "teacher_training.hidden=64", "teacher_training.cnn=32",
        "teacher_training.steps=2", "teacher_training.val_split=val", "distill.steps=2", "distill.batch_size=4", "finetune.steps=2",
        "finetune.batch_size=4", "finetune.eval_every=2", "finetune.num_trials=200", "finetune.noise=null", "export.quantize=[int8]",
        "export.calibration_clips=4", "benchmark.runs=2", "benchmark.num_trials=200",
        "stream.keywords=[yes,no]", "stream.seconds=60", "stream.enroll_clips=2"]


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_one_iteration_smoke_reports_every_variant_on_one_stream(small_corpus, tmp_path):
    mod = load_benchmark("streaming")
    out = tmp_path / "res"
    args = ["--run", str(tmp_path / "run"), "--out", str(out), "--negative-hours", "0.02", f"data={small_corpus}", *TINY]
    res = mod.main(args)
    assert list(res["streams"]) == ["teacher fp32", "teacher int8", "student fp32", "student int8",
                                    "openWakeWord peer fp32"]
    for r in res["streams"].values():
        assert r["targets"] == ["yes", "no"] and r["seconds"] == 60 and r["hits"] + r["misses"] == r["occurrences"]
        assert 0 < r["core_share"] < 1 and "frr_at_1_fa_per_hour" in r and "speaker_gate" in r
        assert abs(r["detection"]["negative_hours"] - 0.02) < 0.005
    # every row heard the same stream: the peer too (the enrolment cut is made for it as well)
    assert len({r["occurrences"] for r in res["streams"].values()}) == 1
    assert res["streams"]["openWakeWord peer fp32"]["speaker_gate"] == {"unscored": "the model has no speaker output"}
    md = out.with_suffix(".md").read_text()
    assert "| student int8 |" in md and "## Reading" in md and "CC BY 4.0" in md and "measured apart" in md
    assert out.with_name("res_det.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(out.with_suffix(".json").read_text())["curves"]["student fp32"]["frr"]
    # a second call finds every stage done and only gathers
    again = mod.main(args)
    assert json.dumps(again["streams"], sort_keys=True) == json.dumps(res["streams"], sort_keys=True)  # NaN-safe
