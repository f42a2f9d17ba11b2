"""The package's house rules: layers import downwards only, and the device side and the
quantizer import without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "edgedistill"

# Lower layers never import higher ones (a module may import its own layer).
LAYERS = {"errors": 0, "config": 0, "audio": 0, "metrics": 0,
          "data": 1, "runtime": 2, "evaluation": 2, "models": 2, "reporting": 2,
          "distill": 3, "training": 3, "deploy": 4, "peers": 4, "recipes": 5, "cli": 6, "__main__": 6}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "edgedistill" else None


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return [n for n in names if n.startswith("edgedistill.")]


MODULES = sorted(p for p in PKG.rglob("*.py") if p.name != "__init__.py" or p.parent != PKG)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_imports_from_a_layer_above_it(path):
    me = "edgedistill." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    mine = _layer(me)
    assert mine is not None, f"{me}: give its package a layer in LAYERS"
    above = sorted({n for n in _imports(path) if (_layer(n) or 0) > mine})
    assert not above, f"{me} (layer {mine}) imports from above: {above}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG).with_suffix("").parts
    return ".".join(("edgedistill",) + (parts[:-1] if parts[-1] == "__init__" else parts))


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at any depth of its code (imports inside
    functions too). `from a.b import c` is an import of `a.b.c` where that is a module, else of
    `a.b`. The top-level `edgedistill/__init__.py` (the public API) is left out."""
    names = {_module_name(p) for p in MODULES}
    graph = {}
    for path in MODULES:
        edges = set()
        for n in _imports(path):
            while n not in names and "." in n:
                n = n.rsplit(".", 1)[0]
            if n in names:
                edges.add(n)
        graph[_module_name(path)] = edges - {_module_name(path)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_even_through_imports_inside_functions():
    cycle = _cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_imports_inside_functions():
    graph = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert _cycle(graph) is None
    graph["c"] = {"a"}  # as an import inside a function of c would
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert "edgedistill.recipes.distill" in _import_graph()["edgedistill.recipes.run"]  # run's are inside functions


def test_no_recipe_function_is_much_over_80_lines():
    """A recipe reads top to bottom: a short entry, then set-up, loop and loss step as functions."""
    long = {}
    for path in sorted((PKG / "recipes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 85:
                long[f"{path.name}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert not long, f"split these recipe functions: {long}"


def test_no_module_is_much_over_400_lines():
    long = {str(p.relative_to(PKG)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"split these modules: {long}"


BLOCKED = ("import sys\nfor m in ('torch', 'transformers', 'accelerate', 'scipy', 'torchaudio'):\n"
           "    sys.modules[m] = None\n")


@pytest.mark.parametrize("module", ["edgedistill.runtime", "edgedistill.runtime.model", "edgedistill.runtime.streaming",
                                    "edgedistill.runtime.metadata", "edgedistill.evaluation.scores",
                                    "edgedistill.evaluation.latency", "edgedistill.deploy.quantize", "edgedistill.deploy.calibration",
                                    "edgedistill.deploy.trained_ranges", "edgedistill.metrics",
                                    "edgedistill.reporting.tables", "edgedistill.reporting.machine"])
def test_device_and_quantization_modules_import_with_torch_blocked(module):
    code = BLOCKED + f"import {module}\nassert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-1500:]


def test_the_quantization_schemes_run_with_torch_blocked(tmp_path):
    """Not only the import: int8-dynamic quantizes a (torch-free) ONNX graph with torch unavailable."""
    code = BLOCKED + f"""
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w")
g = helper.make_graph([helper.make_node("MatMul", ["waveform", "w"], ["y"], name="mm")], "g",
                      [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, 64])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), r"{tmp_path}/f.onnx")
from edgedistill.deploy.quantize import quantize_config, quantize_model
r = quantize_model(r"{tmp_path}/f.onnx", r"{tmp_path}/q.onnx", quantize_config("int8-dynamic"))
assert r["file_bytes"] < r["float_file_bytes"], r
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-1500:]


WEIGHTS = (".safetensors", ".bin", ".onnx", ".pt", ".pth", ".ckpt", ".npz")


def test_no_model_weights_or_large_files_live_in_the_repository():
    """Weights are built or downloaded into the cache, never committed or shipped (the demo's
    teacher was once a 3.4 MB file in the package)."""
    root = PKG.parent
    res = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    files = res.stdout.split() if res.returncode == 0 else [
        str(p.relative_to(root)) for d in ("edgedistill", "configs", "export") for p in (root / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts]
    assert files, "found no files to check"
    weights = [f for f in files if f.endswith(WEIGHTS)]
    large = [f for f in files if (root / f).is_file() and (root / f).stat().st_size > 1_000_000]
    assert not weights and not large, f"weights: {weights}; over 1 MB: {large}"
