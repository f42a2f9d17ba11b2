"""Builds the embedded teacher (`teacher: embedded`, the demo's) and checks it against the reference.

    python benchmarks/embedded_teacher.py                    # about 5 minutes on 2 cores (training: 1 torch thread)
    python benchmarks/embedded_teacher.py --set-reference    # ... and make this build the reference
    python benchmarks/embedded_teacher.py --dest /tmp/t out=/tmp/run teacher_training.steps=100

A wrapper of `edgedistill.recipes.embedded_teacher.build_embedded_teacher`: trains the teacher
stage of `configs/embedded_teacher.yaml` (resumable) into `--dest` (default: this machine's cache,
where `teacher: embedded` finds it) and prints whether its weights are the reference's, byte for
byte (the sha256 in edgedistill/assets/embedded_teacher/PROVENANCE.json, behind the README's
demo numbers). `--set-reference` writes this build's PROVENANCE.json there instead: do it only
when the recipe or the trainer changed on purpose, then regenerate the README's demo table.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "edgedistill" / "assets" / "embedded_teacher" / "PROVENANCE.json"


def main(argv=None) -> dict:
    from edgedistill.recipes.embedded_teacher import build_embedded_teacher

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dest", help="folder the teacher is written to (default: the cache's, found by teacher: embedded)")
    p.add_argument("--set-reference", action="store_true", help="make this build's PROVENANCE.json the reference")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe (e.g. out=runs/t)")
    args = p.parse_args(argv)
    command = " ".join(["python", "benchmarks/embedded_teacher.py", *(argv if argv is not None else sys.argv[1:])])
    provenance = build_embedded_teacher(args.dest, args.overrides, command=command)
    if args.set_reference:
        from edgedistill.models.teacher import embedded_teacher_path

        shutil.copy2(Path(args.dest or embedded_teacher_path()) / "PROVENANCE.json", REFERENCE)
        print(f"reference: {REFERENCE}")
    return provenance


if __name__ == "__main__":
    main()
