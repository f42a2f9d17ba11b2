import json
from tests.benchmarks import load_benchmark


def test_one_iteration_smoke_on_the_embedded_corpus(tmp_path):
    from edgedistill.data.corpus import build_corpus

    data = build_corpus(root=tmp_path / "c").parent
    mod = load_benchmark("arabic_kws_sv")
    out = tmp_path / "res"
    args = ["--data", str(data), "--teacher-layers", "2", "--teacher-hidden", "64", "--teacher-cnn", "32",
            "--teacher-steps", "2", "--distill-steps", "2", "--student-steps", "2", "--batch-size", "4",
            "--trials", "200", "--work", str(tmp_path / "w"), "--out", str(out)]
    res = mod.main(args)
    names = [r["model"] for r in res["results"]]
    assert names == ["teacher", "distilhubert (distilled)", "distilhubert (no distillation)",
                     "distilhubert (distilled), ONNX fp32", "distilhubert (distilled), ONNX int8-dynamic",
                     "distilhubert (distilled), ONNX int8"]
    t, s, b = res["results"][:3]
    onnx_rows = res["results"][3:]
    assert onnx_rows[1]["file_bytes"] < onnx_rows[0]["file_bytes"]
    assert s["backbone_params"] == b["backbone_params"] < t["backbone_params"]
    assert all(0 <= r["sv_eer"] <= 1 and r["speakers"] == 4 for r in res["results"])
    assert json.loads(out.with_suffix(".json").read_text())["command"].startswith("python")
    again = mod.main(args)   # every stage is found done and skipped
    assert again["stage_seconds"] == {}
