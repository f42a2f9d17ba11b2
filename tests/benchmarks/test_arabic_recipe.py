import json
from tests.benchmarks import load_benchmark

TINY = ["teacher_training.layers=2", "teacher_training.hidden=64", "teacher_training.cnn=32",
        "teacher_training.steps=2", "teacher_training.val_split=val", "distill.steps=2", "distill.batch_size=4", "finetune.steps=2",
        "finetune.batch_size=4", "finetune.eval_every=2", "finetune.num_trials=200", "finetune.noise=null",
        "export.quantize=[int8]", "export.calibration_clips=4", "benchmark.runs=2", "benchmark.num_trials=200",
        "stream.keywords=[]"]


def test_one_iteration_smoke_shares_the_teacher_across_students(small_corpus, tmp_path):
    mod = load_benchmark("arabic_recipe")
    out = tmp_path / "res"
    res = mod.main(["--presets", "distilhubert", "deep", "--seeds", "0", "1", "--seeded-presets", "distilhubert",
                    "--work", str(tmp_path / "w"), "--out", str(out), f"data={small_corpus}", *TINY])
    names = [v["variant"] for v in res["variants"]]
    assert names == ["teacher fp32", "teacher int8", "distilhubert fp32", "distilhubert int8",
                     "distilhubert from scratch (no distillation) fp32", "distilhubert_s1 fp32",
                     "distilhubert_s1 int8", "deep fp32", "deep int8"]
    assert [s["variant"] for s in res["seeds"]] == ["distilhubert fp32", "distilhubert int8"]
    assert all(s["seeds"] == 2 for s in res["seeds"])
    first = json.loads((tmp_path / "w" / "arabic_distilhubert" / "teacher" / "stage.json").read_text())
    second = json.loads((tmp_path / "w" / "arabic_deep" / "teacher" / "stage.json").read_text())
    assert first == second   # trained once, skipped in the second run
    assert "| deep int8 |" in out.with_suffix(".md").read_text()
    assert "## Over seeds" in out.with_suffix(".md").read_text()
    assert open(out.with_name("res_tradeoff.png"), "rb").read(4) == b"\x89PNG"
