"""What a measurement ran on (CPU, ISA flags, versions; no torch import) and its report files."""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(packages=("torch", "transformers", "accelerate", "onnxruntime", "onnx", "numpy")) -> dict:
    """CPU model, selected ISA flags, core count, OS, Python and package versions."""
    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "fma")
    return {"cpu": cpu_model(), "cpu_flags": sorted(f for f in wanted if f in flags),
            "cores": os.cpu_count(), "machine": platform.machine(), "os": platform.platform(),
            "python": sys.version.split()[0], "versions": versions}


def write_report(out: str | Path, result: dict, markdown: list[str]) -> None:
    """Writes `out`.json (the result) and `out`.md (the table), and prints the table."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    out.with_suffix(".md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))


def gives_threads_back(main):
    """Decorator for a benchmark's `main`, which may pin torch's thread count: the caller gets
    its own back (a test suite that runs the smoke tests keeps its threads; torch is imported
    only when the benchmark runs)."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        import torch

        before = torch.get_num_threads()
        try:
            return main(*args, **kwargs)
        finally:
            torch.set_num_threads(before)
    return wrapper
