import csv
import json
from tests.benchmarks import load_benchmark


def test_one_iteration_smoke_on_the_embedded_corpus(small_corpus, tmp_path):
    mod = load_benchmark("text_scarce_labels")
    out, work = tmp_path / "res", tmp_path / "w"
    args = ["--data", str(small_corpus), "--teacher", "builtin:hubert-tiny", "--text-teacher", "builtin:bert-tiny",
            "--seeds", "0", "1", "--distill-steps", "2", "--finetune-steps", "2", "--batch-size", "4",
            "--label-fraction", "0.5", "--trials", "100", "--work", str(work), "--out", str(out),
            "--variants", "", "text_weight=0.5,quantity_weight=0.1"]
    res = mod.main(args)
    variant = "layer-wise + text (text_weight=0.5, quantity_weight=0.1)"
    assert [(r["seed"], r["condition"]) for r in res["runs"]] == [
        (s, c) for s in (0, 1) for c in ("layer-wise", "layer-wise + text", variant)]
    assert set(res["summary"]["difference"]) == {"layer-wise + text", variant}
    assert res["summary"]["difference"][variant]["seeds"] == 2
    assert (work / "seed1_text_text_weight0.5_quantity_weight0.1" / "distill" / "summary.json").exists()
    assert "text_token" in res["runs"][1]["distill_log_last"] and "text_token" not in res["runs"][0]["distill_log_last"]
    # labelled clips: half of each keyword's train clips, the same ones carry transcripts
    with open(work / "distill_seed0.csv") as f:
        rows = list(csv.DictReader(f))
    with open(work / "labelled_seed0.csv") as f:
        labelled = [r for r in csv.DictReader(f) if r["split"] == "train"]
    assert {r["path"] for r in rows if r["text"]} == {r["path"] for r in labelled}
    assert len(labelled) == len(rows) // 2
    assert "Paired difference" in out.with_suffix(".md").read_text()
    assert json.loads(out.with_suffix(".json").read_text())["command"].startswith("python")
    assert mod.main(args)["runs"] == res["runs"]   # finished runs are read back, not redone
