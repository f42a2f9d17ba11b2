"""The device kit: what `edgedistill export` puts next to the .onnx files so that a device
runs them with numpy, onnxruntime and soundfile alone (infer.py, listen.py, requirements.txt,
DEVICE.md and a copy of the torch-free runtime)."""

from __future__ import annotations

import shutil
from pathlib import Path

import edgedistill

# The runtime modules copied into the kit, relative to the package.
RUNTIME_FILES = ("audio.py", "runtime/__init__.py", "runtime/model.py", "runtime/streaming.py", "runtime/metadata.py",
                 "runtime/frontend.py")


def device_kit_folder() -> Path:
    """Where the device kit's files are: `edgedistill/kit/` in an installed wheel (package
    data), or the source checkout's top-level `export/` (the kit's source, `pip install -e`)."""
    pkg = Path(edgedistill.__file__).parent
    for kit in (pkg / "kit", pkg.parent / "export"):
        if (kit / "infer.py").is_file():
            return kit
    raise FileNotFoundError(f"the device kit (infer.py, requirements.txt, README.md) is missing from the "
                            f"installed package at {pkg}/kit: reinstall edgedistill (pip install --force-reinstall edgedistill)")


def write_device_kit(folder: str | Path) -> None:
    """Copies infer.py, listen.py, requirements.txt, the kit's README (as DEVICE.md; README.md is
    left for a model card) and the torch-free runtime (`RUNTIME_FILES`) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pkg = Path(edgedistill.__file__).parent
    kit = device_kit_folder()
    for name, target in (("infer.py", "infer.py"), ("listen.py", "listen.py"), ("requirements.txt", "requirements.txt"),
                         ("README.md", "DEVICE.md")):
        shutil.copy(kit / name, folder / target)
    rt = folder / "edgedistill"
    (rt / "runtime").mkdir(parents=True, exist_ok=True)
    (rt / "__init__.py").write_text('"""edgedistill device runtime: numpy + onnxruntime + soundfile."""\n')
    for name in RUNTIME_FILES:
        shutil.copy(pkg / name, rt / name)
