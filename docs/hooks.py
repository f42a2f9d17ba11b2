"""MkDocs hooks: the benchmark results pages and the API reference, made at build time.

- `results/NAME.md` (and its figures) are `benchmarks/results/NAME.md` as committed: the docs
  include the results files, they do not copy them.
- `api.md` lists `edgedistill.__all__` (read from the package's source, nothing imported), one
  mkdocstrings block per name at the module that defines it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def public_api() -> dict[str, str]:
    """{name: defining module} of `edgedistill.__all__` (the `_API` table of its __init__)."""
    tree = ast.parse((ROOT / "edgedistill" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_API":
            return ast.literal_eval(node.value)
    raise RuntimeError("edgedistill/__init__.py has no _API table")


def api_page() -> str:
    groups = {"Device (torch-free)": "edgedistill.runtime", "Recipes": "edgedistill.recipes",
              "Models": "edgedistill.models", "Data and audio": "edgedistill."}
    lines = ["# API reference", "",
             "The public API: `edgedistill.__all__`. Every name imports from the package top level "
             "(`from edgedistill import distill, EdgeModel`), lazily: `import edgedistill` does not import torch.", ""]
    api = public_api()
    done = set()
    for title, prefix in groups.items():
        names = sorted(n for n, m in api.items() if m.startswith(prefix) and n not in done)
        if not names:
            continue
        lines += [f"## {title}", ""]
        for name in names:
            lines += [f"::: {api[name]}.{name}", ""]
            done.add(name)
    return "\n".join(lines)


def on_files(files, config):
    for path in sorted(RESULTS.glob("*")):
        if path.suffix in (".md", ".png"):
            files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    files.append(File.generated(config, "api.md", content=api_page()))
    return files
