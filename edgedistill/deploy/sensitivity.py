"""Per-node sensitivity search: which nodes to keep in float so that a quantized model costs at
most a budget of task accuracy (accuracy lost + EER gained against the float model)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from edgedistill.deploy.quantize import MODES, QuantScheme, quantize_model

log = logging.getLogger(__name__)


def quantizable_nodes(path: str | Path, mode: str) -> list[str]:
    """Names of the nodes a mode would quantize (candidates for the sensitivity search),
    statically quantized convs first: on these models they are the sensitive ones."""
    import onnx

    types = MODES[mode].node_types
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type in types and n.name]
    return [n.name for n in sorted(nodes, key=lambda n: n.op_type != "Conv")]


def sensitivity_search(src: str | Path, dst: str | Path, cfg: QuantScheme, clips, budget: float = 0.01,
                       num_trials: int = 2_000, max_candidates: int | None = None, progress: bool = True) -> dict:
    """Finds the nodes whose quantization costs the most and keeps them in float until the
    cost (accuracy lost + EER gained, vs the float model) is within `budget`.

    Each candidate node is measured alone (quantize everything but it), then nodes are
    excluded greedily, most helpful first, re-measuring after each.
    """
    from edgedistill.runtime.evaluate import compare, evaluate_onnx

    cache: dict = {}
    base = evaluate_onnx(src, clips, num_trials, cache=cache)

    def cost(exclude: list[str], path: Path) -> float:
        quantize_model(src, path, replace(cfg, exclude_nodes=exclude))
        return compare(base, evaluate_onnx(path, clips, num_trials, cache=cache))["cost"]

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        full = cost(list(cfg.exclude_nodes), probe)
        gains: dict[str, float] = {}
        if full > budget:
            candidates = [n for n in quantizable_nodes(src, cfg.mode) if n not in cfg.exclude_nodes]
            candidates = candidates[:max_candidates] if max_candidates else candidates
            it = candidates
            if progress:
                from tqdm.auto import tqdm
                it = tqdm(candidates, desc="sensitivity", unit="node")
            for node in it:
                gains[node] = full - cost(list(cfg.exclude_nodes) + [node], probe)
        excluded, current = list(cfg.exclude_nodes), full
        for node in sorted(gains, key=gains.get, reverse=True):
            if current <= budget or gains[node] <= 0:
                break
            excluded.append(node)
            current = cost(excluded, probe)
    summary = quantize_model(src, dst, replace(cfg, exclude_nodes=excluded))
    if current > budget:
        log.warning("sensitivity: budget %.4f missed: the quantized model still costs %.4f (accuracy lost + EER "
                    "gained) with %d node(s) in float", budget, current, len(excluded))
    return {**summary, "budget": budget, "budget_met": bool(current <= budget),
            "cost_all_quantized": full, "cost_final": current,
            "kept_float": excluded, "node_gains": dict(sorted(gains.items(), key=lambda kv: -kv[1]))}
