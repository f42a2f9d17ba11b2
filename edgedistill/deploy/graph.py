"""Tidying an exported graph's file without changing what it computes: the exporter's debug
information, and (for the smallest models, where they weigh as much as the weights) long names."""

from __future__ import annotations

import numpy as np


def strip_debug_info(proto) -> int:
    """Drops the exporter's per-node debug metadata (stack traces, source names, doc strings):
    a large part of a small model's file, and nothing the runtime reads. Returns the nodes touched."""
    n = 0

    def graph_nodes(graph):
        for node in graph.node:
            yield node
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from graph_nodes(g)

    nodes = list(graph_nodes(proto.graph)) + [x for f in proto.functions for x in f.node]
    for node in nodes:
        if len(node.metadata_props) or node.doc_string:
            del node.metadata_props[:]
            node.doc_string = ""
            n += 1
    for info in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output):
        if hasattr(info, "metadata_props"):
            del info.metadata_props[:]
        info.doc_string = ""
    for init in proto.graph.initializer:
        if hasattr(init, "metadata_props"):
            del init.metadata_props[:]
    proto.graph.doc_string = ""
    # the exporter's own notes on the graph (its signature: about 15 kB on a micro student)
    keep = [m for m in proto.graph.metadata_props if not m.key.startswith("pkg.torch.")]
    del proto.graph.metadata_props[:]
    proto.graph.metadata_props.extend(keep)
    return n


def compact_graph(proto, keep_node_names: bool = True) -> int:
    """Shrinks a small model's file without changing what it computes: every tensor that is not a
    graph input or output gets a short name, the optional shape annotations (value_info) go, and,
    unless `keep_node_names` (the sensitivity search names nodes), so do node names. On a 100k
    parameter student the names are a third of the int8 file. Returns the bytes saved."""
    before = proto.ByteSize()
    graph = proto.graph
    if any(a.HasField("g") or len(a.graphs) for n in graph.node for a in n.attribute):
        return 0  # subgraphs share names with the outer graph: left as they are
    keep = {v.name for v in list(graph.input) + list(graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = np.base_repr(len(names), 36)
        return names[name]

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
        if not keep_node_names:
            node.name = ""
    del graph.value_info[:]
    return before - proto.ByteSize()


def save_checked(proto, tmp, out, parity, what: str = "graph") -> float:
    """`onnx.checker` on `proto`, saved to `tmp`, `parity(tmp)` (its largest difference from PyTorch;
    it raises beyond its tolerance), then renamed to `out`: a kill or a failed check never leaves a
    valid-looking file at `out`. Returns the parity difference."""
    import os

    import onnx

    from edgedistill.errors import ExportError

    try:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"exported {what} fails onnx.checker: {exc}") from exc
        onnx.save(proto, str(tmp))
        diff = parity(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return diff
