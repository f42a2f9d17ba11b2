import onnx

from edgedistill.data.layouts import resolve_labelled
from edgedistill.deploy.quantize import quantize_config
from edgedistill.deploy.sensitivity import sensitivity_search


def test_sensitivity_search_recovers_int8_accuracy(exported, embedded_corpus, tmp_path):
    """Static int8 convs cost this tiny model accuracy; the search keeps the worst in float."""
    src, _ = exported
    clips = resolve_labelled(str(embedded_corpus), "val")
    cfg = quantize_config("int8", calibration=str(embedded_corpus), calibration_clips=16)
    r = sensitivity_search(src, tmp_path / "s.onnx", cfg, clips, budget=0.02, max_candidates=8,
                           num_trials=1000, progress=False)
    assert r["cost_all_quantized"] > 0.02, "the fixture no longer shows an int8 cost: pick a harder case"
    assert r["kept_float"] and r["cost_final"] < r["cost_all_quantized"]
    assert r["cost_final"] <= 0.02 or len(r["kept_float"]) == sum(g > 0 for g in r["node_gains"].values())
    graph = {n.name: n.op_type for n in onnx.load(str(tmp_path / "s.onnx")).graph.node}
    assert all(graph.get(name) == "Conv" for name in r["kept_float"])  # still float convs
    assert "QLinearConv" in graph.values()                            # the rest is quantized


def test_a_missed_sensitivity_budget_is_said_in_words(exported, embedded_corpus, tmp_path, capsys, monkeypatch):
    """Defect: a budget of 0.01 ended at a cost of 0.0687, shown only in the JSON."""
    import json

    import edgedistill.runtime.evaluate as oe
    import edgedistill.deploy.sensitivity as q
    from edgedistill.cli import main

    real = oe.compare
    monkeypatch.setattr(oe, "compare", lambda a, b: {**real(a, b), "cost": 0.05})  # every variant costs 0.05
    monkeypatch.setattr(q, "quantizable_nodes", lambda path, mode: ["node_a", "node_b"])
    assert main(["quantize", "--model", str(exported[0]), "--out", str(tmp_path), "--quantize", "int8-dynamic",
                 "--eval-data", str(embedded_corpus), "--sensitivity", "0.01"]) == 0
    assert "BUDGET MISSED: cost 0.0500 > budget 0.0100" in capsys.readouterr().out
    report = json.loads((tmp_path / "model.int8-dynamic.json").read_text())
    assert report["budget_met"] is False and report["cost_final"] > report["budget"]
