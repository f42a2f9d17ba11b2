import time
from pathlib import Path

import onnx

from edgedistill.data.layouts import resolve_labelled
from edgedistill.deploy.quantize import quantize_config, quantize_model
from edgedistill.deploy.sensitivity import sensitivity_search
from edgedistill.evaluation.scores import compare  # the real ones, whatever a test patches


def test_sensitivity_search_recovers_int8_accuracy(exported, embedded_corpus, tmp_path):
    """Static int8 convs cost this tiny model accuracy; the search keeps the worst in float."""
    src, _ = exported
    clips = resolve_labelled(str(embedded_corpus), "val")
    cfg = quantize_config("int8", calibration=str(embedded_corpus), calibration_clips=16)
    r = sensitivity_search(src, tmp_path / "s.onnx", cfg, clips, budget=0.02, max_candidates=8,
                           num_trials=1000, progress=False)
    assert r["cost_all_quantized"] > 0.02, "the fixture no longer shows an int8 cost: pick a harder case"
    assert r["kept_float"] and r["cost_final"] < r["cost_all_quantized"]
    assert r["cost_final"] <= 0.02 or len(r["kept_float"]) <= sum(g > 0 for g in r["node_gains"].values())
    graph = {n.name: n.op_type for n in onnx.load(str(tmp_path / "s.onnx")).graph.node}
    assert all(graph.get(name) == "Conv" for name in r["kept_float"])  # still float convs
    assert "QLinearConv" in graph.values()                            # the rest is quantized
    t = r["float_latency"]  # what the float nodes cost: this file against every node in int8, side by side
    assert t["p50_ms"] > 0 and t["all_int8_p50_ms"] > 0 and t["threads"] == 1 and t["seconds"] == 1.0
    assert abs(t["cost_ms"] - (t["p50_ms"] - t["all_int8_p50_ms"])) < 2e-3


def test_a_missed_sensitivity_budget_is_said_in_words(exported, embedded_corpus, tmp_path, capsys, monkeypatch):
    """Defect: a budget of 0.01 ended at a cost of 0.0687, shown only in the JSON."""
    import json

    import edgedistill.evaluation.scores as oe
    import edgedistill.deploy.sensitivity as q
    from edgedistill.cli import main

    real = oe.compare
    monkeypatch.setattr(oe, "compare", lambda a, b: {**real(a, b), "cost": 0.05})  # every variant costs 0.05
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))  # these made-up costs stay in this test
    monkeypatch.setattr(q, "quantizable_nodes", lambda path, mode: ["node_a", "node_b"])
    assert main(["quantize", "--model", str(exported[0]), "--out", str(tmp_path), "--quantize", "int8-dynamic",
                 "--eval-data", str(embedded_corpus), "--sensitivity", "0.01"]) == 0
    assert "BUDGET MISSED: cost 5.00 points > budget 1.00" in capsys.readouterr().out
    report = json.loads((tmp_path / "model.int8-dynamic.json").read_text())
    assert report["budget_met"] is False and report["cost_final"] > report["budget"]
    kept, = (tmp_path / "cache" / "search").glob("*.json")  # a stopped search resumes from its measurements
    assert sorted(json.loads(kept.read_text())["measured"]) == ["", "node_a", "node_a|node_b", "node_b"]


def _search_over(table: dict, exported, embedded_corpus, tmp_path, monkeypatch, memo=None,
                 stop_at: int = 0, shared=None, reference=None) -> tuple[dict, list]:
    """The search over nodes a, b, c where each set kept in float costs what `table` says (the
    files are real, every node quantized); returns its result and the sets it quantized (a
    `stop_at`-th quantization raises, as a stopped run)."""
    from dataclasses import replace

    import edgedistill.deploy.sensitivity as q
    import edgedistill.evaluation.scores as oe

    seen = []

    def quantize(src, dst, cfg):
        seen.append(tuple(cfg.exclude_nodes))
        if len(seen) == stop_at:
            raise RuntimeError("stopped")
        return quantize_model(src, dst, replace(cfg, exclude_nodes=[]))

    monkeypatch.setattr(q, "quantize_model", quantize)
    monkeypatch.setattr(q, "quantizable_nodes", lambda path, mode: ["a", "b", "c"])
    monkeypatch.setattr(oe, "compare", lambda a, b: {**compare(a, b), "cost": table[seen[-1]]})
    r = q.sensitivity_search(exported[0], tmp_path / "s.onnx", quantize_config("int8-dynamic"),
                             resolve_labelled(str(embedded_corpus), "val"), budget=0.01, num_trials=200, progress=False,
                             memo=memo, shared=shared, reference=reference)
    return r, seen


def test_a_node_that_does_not_help_with_the_others_stays_quantized(exported, embedded_corpus, tmp_path, monkeypatch):
    """Defect: the search kept every node with a gain of its own in float, also where it no longer
    lowered the cost with the others kept (latency for nothing; once, no better than all in int8)."""
    costs = {(): 0.10, ("a",): 0.04, ("b",): 0.06, ("c",): 0.09, ("a", "b"): 0.04, ("a", "c"): 0.03,
             ("a", "c", "b"): 0.02}  # every node in float misses too: the greedy's nodes stay
    r, _ = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch)
    assert list(r["node_gains"]) == ["a", "b", "c"]  # most helpful alone first
    assert r["kept_float"] == ["a", "c"] and abs(r["cost_final"] - 0.03) < 1e-12 and not r["budget_met"]


def test_a_node_made_unneeded_by_later_ones_goes_back_to_int8(exported, embedded_corpus, tmp_path, monkeypatch,
                                                              caplog):
    """The greedy order keeps a, b, then c to meet the budget; {a, c} meets it too, so b costs
    latency for nothing and is quantized again (where {a, c} misses, all three stay)."""
    costs = {(): 0.10, ("a",): 0.03, ("b",): 0.05, ("c",): 0.06, ("a", "b"): 0.02, ("a", "b", "c"): 0.008,
             ("a", "c"): 0.02, ("b", "c"): 0.03}
    for table, kept, final in [(costs, ["a", "b", "c"], 0.008), ({**costs, ("a", "c"): 0.009}, ["a", "c"], 0.009)]:
        with caplog.at_level("INFO", logger="edgedistill"):
            r, seen = _search_over(table, exported, embedded_corpus, tmp_path, monkeypatch)
        assert r["kept_float"] == kept and abs(r["cost_final"] - final) < 1e-12 and r["budget_met"]
        assert seen[-2:] == [tuple(kept), ()]  # the file written is the one measured, then every node in int8
        assert r["float_latency"]["p50_ms"] > 0 and r["float_latency"]["all_int8_p50_ms"] > 0  # timed side by side
    assert "c in float too: cost 0.0080 against 0.0200 (budget 0.0100): kept in float" in caplog.text  # said as it goes
    assert "b back in int8: cost 0.0090 (budget 0.0100): given back" in caplog.text


def test_nodes_that_mask_each_other_are_kept_in_float_together(exported, embedded_corpus, tmp_path, monkeypatch):
    """Defect: b and c each cost the whole budget, so keeping either in float alone gained
    nothing, and the search stopped with every node in int8 ("budget missed", the Arabic teacher
    5 KWS points over, where int8-dynamic, its convs all float, was within). Every candidate is
    then tried in float, and the ones the budget does not need go back to int8."""
    costs = {(): 0.10, ("a",): 0.10, ("b",): 0.10, ("c",): 0.10, ("a", "b", "c"): 0.0, ("b", "c"): 0.005}
    r, seen = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch)
    assert r["budget_met"] and r["kept_float"] == ["b", "c"] and abs(r["cost_final"] - 0.005) < 1e-12
    assert ("a", "b", "c") in seen and r["cost_all_quantized"] == 0.10


def test_a_stopped_search_resumes_from_its_measurements(exported, embedded_corpus, tmp_path, monkeypatch):
    """The Arabic teacher's search takes most of an hour on one core: a run stopped in it (a
    session's end) measures again only what it had not measured."""
    import json

    import pytest

    costs = {(): 0.10, ("a",): 0.10, ("b",): 0.10, ("c",): 0.10, ("a", "b", "c"): 0.0, ("b", "c"): 0.005}
    memo = tmp_path / "model.int8.search.json"
    with pytest.raises(RuntimeError, match="stopped"):
        _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, memo=memo, stop_at=4)
    assert sorted(json.loads(memo.read_text())["measured"]) == ["", "a", "b"]  # all in int8, a alone, b alone
    r, seen = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, memo=memo)
    assert r["kept_float"] == ["b", "c"] and r["budget_met"]
    assert ("a",) not in seen and ("b",) not in seen and seen[0] == ("c",)  # resumed at c alone
    assert not memo.exists()  # removed once done: the export folder is the device kit


def test_a_search_kept_in_the_cache_is_not_measured_again(exported, embedded_corpus, tmp_path, monkeypatch):
    """Every run of a recipe searches the same teacher (most of an hour on one core): with the
    measurements kept by the search's key, the second run measures nothing again."""
    costs = {(): 0.10, ("a",): 0.10, ("b",): 0.10, ("c",): 0.10, ("a", "b", "c"): 0.0, ("b", "c"): 0.005}
    first, seen = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache")
    assert ("a",) in seen and len(list((tmp_path / "cache").glob("*.json"))) == 1
    again, seen = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache")
    assert seen == [("b", "c"), ()]  # the file written and every node in int8 (its latency); nothing measured
    assert again["kept_float"] == first["kept_float"] == ["b", "c"] and again["node_gains"] == first["node_gains"]


def test_searches_side_by_side_split_the_nodes(exported, embedded_corpus, tmp_path, monkeypatch):
    """Two presets of one recipe run side by side and reach the teacher's search together: a node
    another process is measuring is left to it, and its measurement is taken from the cache."""
    import subprocess
    import sys
    import threading

    import edgedistill.deploy.search_memo as sm
    from edgedistill.deploy.sensitivity import memo_key

    monkeypatch.setattr(sm, "POLL_S", 0.05)
    costs = {(): 0.10, ("a",): 0.04, ("b",): 0.06, ("c",): 0.09, ("a", "b"): 0.04, ("a", "c"): 0.03,
             ("a", "c", "b"): 0.02}
    key = memo_key(exported[0], quantize_config("int8-dynamic"), resolve_labelled(str(embedded_corpus), "val"), 200, 0)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = sm.SearchMemo(key, shared=tmp_path, owner={"host": sm.this_process()["host"], "pid": proc.pid,
                                                           "started": sm._started(proc.pid)})
        assert theirs.claim(["a"])

        def measure_a_after_c():  # the other process ends its measurement of a after this one's of c
            while theirs.get(["c"]) is None:
                time.sleep(0.02)
            theirs.put(["a"], {**theirs.get([]), "cost": costs[("a",)]})

        threading.Thread(target=measure_a_after_c, daemon=True).start()
        r, seen = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert seen[:3] == [(), ("b",), ("c",)] and ("a",) not in seen  # a: measured by the other process
    assert list(r["node_gains"]) == ["a", "b", "c"] and r["kept_float"] == ["a", "c"]


def test_searches_side_by_side_measure_ahead_while_they_wait(exported, embedded_corpus, tmp_path, monkeypatch):
    """After the per-node pass the search goes one set at a time: where another process measures
    the set it needs, it measures the one it needs next (either way), not nothing; the result is
    the one the search finds alone."""
    import subprocess
    import sys
    import threading

    import edgedistill.deploy.search_memo as sm
    from edgedistill.deploy.sensitivity import memo_key

    monkeypatch.setattr(sm, "POLL_S", 0.05)
    costs = {(): 0.10, ("a",): 0.03, ("b",): 0.05, ("c",): 0.06, ("a", "b"): 0.02, ("a", "b", "c"): 0.008,
             ("a", "c"): 0.02, ("b", "c"): 0.03}  # kept: a, b, c; given back in turn: c, b, a (each misses)
    key = memo_key(exported[0], quantize_config("int8-dynamic"), resolve_labelled(str(embedded_corpus), "val"), 200, 0)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = sm.SearchMemo(key, shared=tmp_path, owner={"host": sm.this_process()["host"], "pid": proc.pid,
                                                           "started": sm._started(proc.pid)})
        assert theirs.claim(["a", "c"])  # b's give-back

        def give_back_b_after_a():  # the other process ends it after this one measured a's (either way)
            while theirs.get(["b", "c"]) is None:
                time.sleep(0.02)
            theirs.put(["a", "c"], {**theirs.get(["b", "c"]), "cost": costs[("a", "c")]})

        threading.Thread(target=give_back_b_after_a, daemon=True).start()
        r, seen = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert ("a", "c") not in seen and seen.count(("b", "c")) == 1  # (c): measured in the per-node pass
    assert seen[-2:] == [("a", "b", "c"), ()] and ("b", "c") in seen[:-2]  # then the final file, timed
    assert r["kept_float"] == ["a", "b", "c"] and abs(r["cost_final"] - 0.008) < 1e-12


def test_a_budget_is_held_against_the_reference_float_file(exported, embedded_corpus, tmp_path, monkeypatch):
    """A quantization-aware model's int8 file is held against the plain student's fp32, not its own
    fp32 export (not the function it trained): the search's baseline is that file."""
    import shutil
    from pathlib import Path

    import edgedistill.evaluation.scores as oe

    evaluated, real = [], oe.evaluate_onnx
    monkeypatch.setattr(oe, "evaluate_onnx", lambda path, *a, **k: evaluated.append(Path(path)) or real(path, *a, **k))
    reference = tmp_path / "student.fp32.onnx"
    shutil.copy(exported[0], reference)
    costs = {(): 0.10, ("a",): 0.005, ("b",): 0.10, ("c",): 0.10}
    r, _ = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache",
                        reference=reference)
    assert evaluated[0] == reference and Path(exported[0]) not in evaluated and r["kept_float"] == ["a"]
    _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache")
    assert Path(exported[0]) in evaluated  # against itself: a search of its own, kept apart
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_a_clip_edited_in_place_is_measured_again_and_the_same_audio_copied_anew_is_not(
        exported, embedded_corpus, tmp_path, monkeypatch):
    """The cache outlives the search: audio changed under the same path is another search; the same
    bytes with new modification times (a session's fresh copy of the data) are the same search."""
    import os

    costs = {(): 0.005}  # within budget: one measurement, every node in int8
    _, seen = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache")
    _, again = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache")
    assert seen == [(), ()] and again == [()]  # measured, then only the file written
    clip = Path(resolve_labelled(str(embedded_corpus), "val")[0].path)
    st, audio = os.stat(clip), clip.read_bytes()
    try:
        os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        _, touched = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache")
        clip.write_bytes(audio[:-2] + bytes([audio[-2] ^ 1, audio[-1]]))  # the last sample, one bit off
        _, edited = _search_over(costs, exported, embedded_corpus, tmp_path, monkeypatch, shared=tmp_path / "cache")
    finally:
        clip.write_bytes(audio)
        os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert touched == [()] and edited == [(), ()] and len(list((tmp_path / "cache").glob("*.json"))) == 2
