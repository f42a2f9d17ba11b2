"""Checks a built docs site as a reader meets it: every page of the nav opens from the index
page's navigation, and the API page lists every name of `edgedistill.__all__` with the first
line of its docstring.

    python docs/check_site.py site
"""

from __future__ import annotations

import ast
import html
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hooks import ROOT, public_api  # noqa: E402


def first_docstring_line(module: str, name: str) -> str:
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return (ast.get_docstring(node) or "").split("\n")[0]
    raise SystemExit(f"{name} is not defined at the top of {module}")


def main(site: str) -> int:
    site = Path(site)
    index = (site / "index.html").read_text()
    hrefs = set(re.findall(r'href="([^"#]+)"', index))
    pages = [p for p in site.rglob("*.html") if p != site / "index.html" and p.name != "404.html"
             and "search" not in p.parts]
    missing = [str(p.relative_to(site)) for p in pages if str(p.relative_to(site)) not in hrefs]
    problems = [f"page not reachable from the index's navigation: {m}" for m in missing]
    api = html.unescape(re.sub(r"<[^>]+>", " ", (site / "api.html").read_text()))
    api = " ".join(api.split())
    for name, module in public_api().items():
        line = " ".join(html.unescape(first_docstring_line(module, name)).replace("`", "").split())
        if name not in api:
            problems.append(f"API page lacks {name}")
        elif line and line[:40] not in api:
            problems.append(f"API page lacks the docstring of {name}: {line[:40]!r}")
    for p in problems:
        print(p)
    print(f"{len(pages) + 1} pages, {len(public_api())} public names: "
          + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "site"))
