"""Per-node sensitivity search: which nodes to keep in float so that a quantized model costs at
most a budget of task accuracy (accuracy lost + EER gained against the float model)."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedistill.deploy.quantize import MODES, QuantScheme, quantize_model
from edgedistill.deploy.search_memo import SearchMemo, node_set_name, search_key

log = logging.getLogger(__name__)


def quantizable_nodes(path: str | Path, mode: str) -> list[str]:
    """Names of the nodes a mode would quantize (candidates for the sensitivity search),
    statically quantized convs first: on these models they are the sensitive ones."""
    import onnx

    types = MODES[mode].node_types
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type in types and n.name]
    return [n.name for n in sorted(nodes, key=lambda n: n.op_type != "Conv")]


def sensitivity_search(src: str | Path, dst: str | Path, cfg: QuantScheme, clips, budget: float = 0.01,
                       num_trials: int = 2_000, max_candidates: int | None = None, progress: bool = True,
                       kws_budget: float | None = None, eer_budget: float | None = None, seed: int = 0,
                       memo: str | Path | None = None, shared: str | Path | None = None,
                       reference: str | Path | None = None) -> dict:
    """Finds the nodes whose quantization costs the most and keeps them in float until the
    quantized model is within budget against the float one on `clips`.

    The budget is either `budget` on the sum (KWS accuracy lost + SV EER gained, fractions), or
    per metric: `kws_budget` on the accuracy lost and `eer_budget` on the EER gained (e.g.
    0.001 and 0.005: 0.1 and 0.5 points), where the cost is the larger of the two ratios and
    the budget is 1. Each candidate node is measured alone (quantize everything but it), then
    nodes are excluded greedily, most helpful first, re-measuring after each; a node that does not
    lower the cost together with those already kept in float is quantized after all (it would
    cost latency for nothing). Where that misses the budget, every candidate is tried in float at
    once: nodes can mask each other (two badly rounded convolutions: keeping either in float
    alone gains nothing; the teacher of the Arabic recipe missed by 5 KWS points that way, with
    int8-dynamic, its convs all float, within budget). Once the budget is met, each node kept in
    float is tried in int8 again, least helpful alone first, and stays in int8 where the budget
    still holds: the greedy order can keep a node that a later one makes unneeded.

    `reference`: the float file the budget is held against (default `src`). A quantization-aware
    model's own float export is not the function it trained (rounded weights, float activations):
    its int8 file is held against the student's plain float export instead, what a user would
    otherwise deploy.

    `memo`: a JSON file that keeps every measurement as it is made (written atomically), so an
    interrupted search resumes where it stopped; it is used only for the same float file, scheme,
    clips, trials and seed, and removed once the search is done. `shared`: a folder where the
    measurements are kept by the search's key instead, for good: a later search of the same float
    file, scheme, clips, trials and seed measures nothing again, and searches side by side split
    the per-node pass; later, where one needs the set the other is measuring, it measures the set
    it needs next (either way that one turns out) while it waits (`edgedistill.deploy.search_memo`).

    Returns the `quantize_model` summary plus `budget_met`, `cost_all_quantized`, `cost_final`,
    `kept_float` (node names), `float_latency` (what they cost: `float_nodes_cost`, None when
    none is kept), `node_gains`, and the final `kws_accuracy_change` / `sv_eer_change`.
    """
    from edgedistill.evaluation.scores import compare, evaluate_onnx

    per_metric = kws_budget is not None or eer_budget is not None
    limit = 1.0 if per_metric else budget

    def cost_of(change: dict) -> float:
        if not per_metric:
            return change["cost"]
        drop = max(0.0, -change["kws_accuracy_change"]) if np.isfinite(change["kws_accuracy_change"]) else 0.0
        rise = max(0.0, change["sv_eer_change"]) if np.isfinite(change["sv_eer_change"]) else 0.0
        return max(drop / kws_budget if kws_budget else 0.0, rise / eer_budget if eer_budget else 0.0)

    cache: dict = {}
    base = evaluate_onnx(reference or src, clips, num_trials, seed, cache=cache)
    changes: dict[tuple, dict] = {}
    key = memo_key(src, cfg, clips, num_trials, seed, reference) if memo or shared else ""
    measured = SearchMemo(key, memo, shared)

    def cost(exclude: list[str], path: Path, ahead: list[list[str]] = ()) -> float:
        """`ahead`: the sets the search needs next, either way this one turns out: measured while
        another process measures this one (searches side by side go on in step, not in turn)."""
        def measure(nodes: list[str]) -> dict:
            quantize_model(src, path, replace(cfg, exclude_nodes=nodes))
            return compare(base, evaluate_onnx(path, clips, num_trials, seed, cache=cache))

        changes[tuple(exclude)] = change = measured.measure(exclude, measure, ahead)
        return cost_of(change)

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        full = cost(list(cfg.exclude_nodes), probe)
        gains: dict[str, float] = {}
        if full > limit:
            candidates = [n for n in quantizable_nodes(src, cfg.mode) if n not in cfg.exclude_nodes]
            candidates = candidates[:max_candidates] if max_candidates else candidates
            bar = None
            if progress:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(candidates), desc="sensitivity", unit="node")
            todo = list(candidates)
            while todo:  # a node another search is measuring now comes last: it will be kept by then
                held = measured.held()
                node = next((n for n in todo if node_set_name([*cfg.exclude_nodes, n]) not in held), todo[0])
                todo.remove(node)
                gains[node] = full - cost(list(cfg.exclude_nodes) + [node], probe)
                if bar:
                    bar.update()
            if bar:
                bar.close()
            gains = {n: gains[n] for n in candidates}  # the candidates' order, whoever measured which
        excluded, current = list(cfg.exclude_nodes), full
        order = [n for n in sorted(gains, key=gains.get, reverse=True) if gains[n] > 0]
        for node, then in zip(order, [*order[1:], None]):
            if current <= limit:
                break
            trial = cost(excluded + [node], probe, [excluded + [node, then], excluded + [then]] if then else [])
            log.info("sensitivity: %s in float too: cost %.4f against %.4f (budget %.4f): %s", node, trial, current,
                     limit, "kept in float" if trial < current else "no help, stays in int8")
            if trial < current:  # a node stays in float only where it helps with the others kept
                excluded, current = excluded + [node], trial
        rest = [n for n in gains if n not in excluded]
        if current > limit and rest:  # masked nodes: each one's rounding hid the others' when measured alone
            trial = cost(excluded + rest, probe)
            log.info("sensitivity: every candidate in float: cost %.4f (budget %.4f)", trial, limit)
            if trial <= limit:  # every candidate in float meets it: the loop below gives back what it can
                excluded, current = excluded + rest, trial
        added = [n for n in excluded if n not in cfg.exclude_nodes]
        if current <= limit and len(added) > 1:  # met: each node the budget holds without goes back to int8
            order = sorted(added, key=gains.get)  # least helpful alone first
            for node, then in zip(order, [*order[1:], None]):
                fewer = [n for n in excluded if n != node]
                trial = cost(fewer, probe, [[n for n in fewer if n != then], [n for n in excluded if n != then]]
                             if then else [])
                log.info("sensitivity: %s back in int8: cost %.4f (budget %.4f): %s", node, trial, limit,
                         "given back" if trial <= limit else "stays in float")
                if trial <= limit:
                    excluded, current = fewer, trial
    summary = quantize_model(src, dst, replace(cfg, exclude_nodes=excluded))
    final = changes[tuple(excluded)]
    latency = float_nodes_cost(src, dst, cfg) if excluded else None
    measured.done()
    if current > limit:
        log.warning("sensitivity: budget missed: the quantized model still costs %.4f (budget %.4f) with %d node(s) "
                    "in float", current, limit, len(excluded))
    return {**summary, "budget": limit, "kws_budget": kws_budget, "eer_budget": eer_budget,
            "budget_met": bool(current <= limit), "cost_all_quantized": full, "cost_final": current,
            "kws_accuracy_change": final["kws_accuracy_change"], "sv_eer_change": final["sv_eer_change"],
            "kept_float": excluded, "float_latency": latency,
            "node_gains": dict(sorted(gains.items(), key=lambda kv: -kv[1]))}


def memo_key(src: str | Path, cfg: QuantScheme, clips, num_trials: int, seed: int,
             reference: str | Path | None = None) -> str:
    """What a search's measurements are kept under: the float file and everything they depend on,
    the audio (evaluation and calibration clips) and a ranges file by their bytes, so that a clip
    edited in place is measured again and the same data copied anew (another session's mount, new
    modification times) is not (hashing the Arabic val split's 2,460 clips takes a fraction of a
    second, against minutes a measurement)."""
    from edgedistill.data.layouts import resolve_labelled

    files = [c.path for c in clips]
    if getattr(cfg, "calibration", None):
        files += [c.path for c in resolve_labelled(cfg.calibration, cfg.calibration_split)]
    files += [cfg.ranges] if getattr(cfg, "ranges", None) else []
    audio = hashlib.sha256()
    for f in files:
        audio.update(str(f).encode() + b"\0" + Path(f).read_bytes())
    against = [search_key(reference, "reference")] if reference else []
    return search_key(src, [repr(cfg), [str(c) for c in clips], num_trials, seed, *against,
                            audio.hexdigest()])


def float_nodes_cost(src: str | Path, dst: str | Path, cfg: QuantScheme, seconds: float = 1.0, rounds: int = 30,
                     threads: int = 1) -> dict:
    """What the nodes a quantized file keeps in float cost in latency: `dst` and `src` quantized
    with `cfg` and every node in int8, timed side by side (batch 1, `seconds` of audio, `threads`).
    Returns {"p50_ms", "all_int8_p50_ms", "cost_ms", "seconds", "threads", "rounds"}."""
    from edgedistill.evaluation.latency import time_onnx_side_by_side

    with tempfile.TemporaryDirectory() as tmp:
        every = Path(tmp) / "every_node_int8.onnx"
        quantize_model(src, every, replace(cfg, exclude_nodes=[]))
        t = time_onnx_side_by_side({"kept": dst, "all": every}, seconds=seconds, threads=threads, rounds=rounds)
    return {"p50_ms": round(t["kept"][0], 3), "all_int8_p50_ms": round(t["all"][0], 3),
            "cost_ms": round(t["kept"][0] - t["all"][0], 3), "seconds": seconds, "threads": threads, "rounds": rounds}
