"""Graph fusions onnxruntime does not find in what torch.onnx's exporter writes.

The dynamo exporter spells the exact (erf) GELU as x * ((erf(x / sqrt 2) + 1) * 0.5): five
elementwise passes over the tensor, in an order onnxruntime's own GeluFusion does not match, so
they run one by one (about a tenth of a HuBERT-shaped int8 model's CPU time, most of it in the
CNN). `fuse_gelu` rewrites each such chain into one `com.microsoft.Gelu` node, the op that
onnxruntime's fusion would have made: the same erf formula, in one pass, in every onnxruntime
build that runs contrib ops (the standard CPU packages do)."""

from __future__ import annotations

SQRT2 = 2 ** 0.5


def _scalar(name: str, initializers: dict, constants: dict) -> float | None:
    from onnx import numpy_helper

    if name in initializers:
        a = numpy_helper.to_array(initializers[name])
    elif name in constants:
        a = numpy_helper.to_array(constants[name])
    else:
        return None
    return float(a.reshape(-1)[0]) if a.size == 1 else None


def fuse_gelu(proto) -> int:
    """Rewrites every erf-GELU chain of `proto` (an onnx.ModelProto, in place) into one
    com.microsoft Gelu node. Matches x/sqrt2 (or x*(1/sqrt2)) -> Erf -> +1, then *0.5 and *x in
    either order, or (0.5*x) * (erf+1), where every intermediate has no other reader. Returns the
    number of chains fused (0 leaves the model as it was)."""
    from onnx import helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: a.t for n in g.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def only_reader(tensor: str):
        r = readers.get(tensor, [])
        return r[0] if len(r) == 1 and tensor not in outputs else None

    def other(node, tensor: str) -> str | None:
        if len(node.input) != 2 or tensor not in node.input:
            return None
        return node.input[1] if node.input[0] == tensor else node.input[0]

    def is_const(name: str | None, value: float) -> bool:
        v = None if name is None else _scalar(name, inits, consts)
        return v is not None and abs(v - value) < 1e-4

    def chain_from(erf) -> tuple[str, list] | None:
        scale = producer.get(erf.input[0])
        if scale is None or scale.op_type not in ("Div", "Mul") or only_reader(scale.output[0]) is not erf:
            return None
        if scale.op_type == "Div" and is_const(scale.input[1], SQRT2):
            x = scale.input[0]
        elif scale.op_type == "Mul" and is_const(scale.input[1], 1 / SQRT2):
            x = scale.input[0]
        elif scale.op_type == "Mul" and is_const(scale.input[0], 1 / SQRT2):
            x = scale.input[1]
        else:
            return None
        plus = only_reader(erf.output[0])
        if plus is None or plus.op_type != "Add" or not is_const(other(plus, erf.output[0]), 1.0):
            return None
        m1 = only_reader(plus.output[0])
        if m1 is None or m1.op_type != "Mul":
            return None
        o1 = other(m1, plus.output[0])
        if is_const(o1, 0.5) or o1 == x:  # ((erf + 1) * 0.5) * x  or  (x * (erf + 1)) * 0.5
            m2 = only_reader(m1.output[0])
            if m2 is None or m2.op_type != "Mul":
                return None
            o2 = other(m2, m1.output[0])
            return (x, [scale, erf, plus, m1, m2]) if (o2 == x if o1 != x else is_const(o2, 0.5)) else None
        half = producer.get(o1)  # (0.5 * x) * (erf + 1)
        if half is not None and half.op_type == "Mul" and only_reader(half.output[0]) is m1 \
                and x in half.input and is_const(other(half, x), 0.5):
            return x, [scale, erf, plus, half, m1]
        return None

    drop, new = set(), {}
    for erf in [n for n in g.node if n.op_type == "Erf"]:
        found = chain_from(erf)
        if found is None:
            continue
        x, chain = found
        drop.update(id(n) for n in chain)
        out = chain[-1].output[0]
        new[id(chain[-1])] = helper.make_node("Gelu", [x], [out], name=f"{erf.name or out}_gelu", domain="com.microsoft")
    if not new:
        return 0
    nodes = [new.get(id(n), n) for n in g.node if id(n) in new or id(n) not in drop]
    used = {i for n in nodes for i in n.input} | outputs
    nodes = [n for n in nodes if n.op_type != "Constant" or n.output[0] in used]  # the chains' constants
    del g.node[:]
    g.node.extend(nodes)
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(new)


def type_fused_outputs(path) -> None:
    """Gives the output of each fused `com.microsoft.Gelu` of the ONNX file at `path` its input's
    type where the quantizer's pre-processing left it untyped: onnxruntime's optimizer renames a
    Gelu's output when it moves transposes across it (the layer-normed CNN of HuBERT / wav2vec 2.0
    Large), ONNX shape inference cannot type contrib ops, and the static quantizer calibrates
    typed tensors only (an untyped one fails the next LayerNorm's bias)."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    typed = {v.name: v for v in list(g.value_info) + list(g.input) + list(g.output)}
    added = 0
    for n in g.node:
        if n.domain == "com.microsoft" and n.op_type == "Gelu" and n.output[0] not in typed and n.input[0] in typed:
            info = onnx.ValueInfoProto()
            info.CopyFrom(typed[n.input[0]])
            info.name = n.output[0]
            g.value_info.append(info)
            typed[info.name] = info
            added += 1
    if added:
        onnx.save(onnx.shape_inference.infer_shapes(model), str(path))

