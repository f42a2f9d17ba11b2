import json

import pytest

from edgedistill.recipes.export import ExportStage, budget_notes, export_variants


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_the_export_stage_keeps_nodes_in_float_until_the_int8_budget_holds(trained_multitask, embedded_corpus,
                                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    stage = ExportStage(quantize=["int8"], calibration_clips=16, kws_budget=0.001, eer_budget=0.005)
    files = export_variants(str(trained_multitask), tmp_path, stage, str(embedded_corpus), "train", "val",
                            num_trials=1000)
    assert (tmp_path / "model.fp32.onnx").exists() and (tmp_path / "model.int8.onnx").exists()
    found = files["sensitivity"]["int8"]
    json.dumps(files)  # a stage result: JSON as it is
    within = -found["kws_accuracy_change"] <= 0.001 + 1e-9 and found["sv_eer_change"] <= 0.005 + 1e-9
    assert found["budget_met"] == within
    # A node stays in float only where it lowered the cost (the search itself: tests/deploy/test_sensitivity.py);
    # where quantizing everything was within budget, nothing was searched.
    assert found["cost_final"] <= found["cost_all_quantized"]
    assert bool(found["kept_float"]) == (found["cost_final"] < found["cost_all_quantized"])
    if found["cost_all_quantized"] <= 1:
        assert found["kept_float"] == [] and found["budget_met"]
    note = budget_notes(files["sensitivity"])[0]
    assert note.startswith("- student int8: ") and ("within the budget" in note) == within
    assert ("budget missed" in note) == (not within)
    if found["kept_float"]:  # which nodes, and what they cost in latency against every node in int8
        assert all(name in note for name in found["kept_float"]) and " ms p50 (" in note
        assert found["float_latency"]["p50_ms"] > 0
    # without budgets: plain post-training quantization, no search
    plain = export_variants(str(trained_multitask), tmp_path / "plain", ExportStage(quantize=["int8-dynamic"]),
                            str(embedded_corpus), "train", "val", name="teacher")
    assert set(plain) == {"teacher-fp32", "teacher-int8-dynamic"}
    assert (tmp_path / "plain" / "teacher.int8-dynamic.onnx").exists()
    # the teacher's search, in the report's words: a line of its own, not the student's
    assert budget_notes({"teacher int8": found})[0].startswith("- teacher int8: ")
    # the measurements stay in the cache (not in the device kit): another run's search of the same
    # file takes them and finds the same
    assert not list(tmp_path.glob("*.search.json")) and len(list((tmp_path / "cache" / "search").glob("*.json"))) == 1
    again = export_variants(str(trained_multitask), tmp_path / "again", stage, str(embedded_corpus), "train", "val",
                            num_trials=1000)["sensitivity"]["int8"]
    assert {k: v for k, v in again.items() if k != "float_latency"} == {
        k: v for k, v in found.items() if k != "float_latency"}


def test_bad_export_stage_settings_are_refused_with_what_to_write():
    import pytest

    with pytest.raises(ValueError, match=r"export.kws_budget is a fraction in \(0, 1\), e.g. 0.001 for 0.1 points"):
        ExportStage(kws_budget=1.5)
    with pytest.raises(ValueError, match="export.eer_budget is a fraction"):
        ExportStage(eer_budget=0)
    with pytest.raises(ValueError, match=r"export.quantize \['int9'\]: choose among"):
        ExportStage(quantize=["int9"])


def test_a_missed_budget_names_the_quantization_that_missed_it():
    missed = {"budget_met": False, "kws_budget": 0.001, "eer_budget": 0.005, "kws_accuracy_change": 0.0004,
              "sv_eer_change": 0.0057, "kept_float": ["node_Conv_359"], "split": "val", "against": "student fp32"}
    post, qat = budget_notes({"int8": missed, "qat int8": missed})
    assert post.startswith("- student int8: **budget missed**") and "post-training quantization cannot meet" in post
    assert qat.startswith("- student qat int8: **budget missed**") and "post-training" not in qat
    assert "quantization-aware training, with any of its nodes in float, did not meet it" in qat
    assert "EER +0.57 points against student fp32 on 'val'" in qat
