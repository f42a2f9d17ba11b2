"""Trains the embedded teacher (`teacher: embedded`, the demo's) and writes it into the package.

    OMP_NUM_THREADS=1 python benchmarks/embedded_teacher.py     # about 8 minutes
    python benchmarks/embedded_teacher.py --dest /tmp/t teacher_training.steps=100

Runs only the teacher stage of `configs/embedded_teacher.yaml` (resumable: interrupt and run
again), then copies the selected backbone to `--dest` (default: edgedistill/assets/embedded_teacher,
replaced whole, never left half written) with PROVENANCE.json: the command, the recipe's
settings, the steps trained and where validation peaked, torch's thread count, the machine and
the weights' sha256. Training is repeatable at a given thread count on a given machine.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def main(argv=None) -> dict:
    from edgedistill.models.teacher import embedded_teacher_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "configs" / "embedded_teacher.yaml"))
    p.add_argument("--dest", default=str(embedded_teacher_path()), help="folder the teacher is written to")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe (e.g. out=runs/t)")
    args = p.parse_args(argv)

    import torch

    from edgedistill.config import load_config, non_default
    from edgedistill.recipes.run import TRAIN_TEACHER, RunConfig, plan, train_teacher
    from edgedistill.reporting.machine import machine_info

    cfg = load_config(RunConfig, args.recipe, args.overrides)
    if cfg.teacher != TRAIN_TEACHER or cfg.teacher_training.data:
        sys.exit(f"{args.recipe}: the embedded teacher is trained here on `data` (teacher: {TRAIN_TEACHER}, "
                 "no teacher_training.data)")
    teacher = plan(cfg)["teacher"]
    summary = train_teacher(teacher)
    src = Path(teacher["finetune"].out) / "model" / "backbone"
    dest = Path(args.dest)
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(src / name, tmp / name)
    provenance = {
        "command": " ".join(["python", "benchmarks/embedded_teacher.py", *(argv if argv is not None else sys.argv[1:])]),
        "recipe": Path(args.recipe).name, "data": cfg.data, "teacher_training": non_default(cfg.teacher_training),
        "finetune": {k: v for k, v in non_default(teacher["finetune"]).items() if k not in ("model", "out")},
        "steps_done": summary["steps_done"], "best_step": summary["best_step"],
        "stopped_early": summary.get("stopped_early"),
        "val": {k: summary["val"].get(k) for k in ("clips", "speakers", "kws_accuracy", "sv_eer")},
        "torch_threads": torch.get_num_threads(), "machine": machine_info(),
        "date": datetime.date.today().isoformat(),
        "sha256": hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest(),
    }
    (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    val = provenance["val"]
    eer = f", EER {val['sv_eer']:.2%}" if val["sv_eer"] is not None else ""
    print(f"embedded teacher: {dest} (best at step {summary['best_step']} of {summary['steps_done']}: "
          f"KWS accuracy {val['kws_accuracy']:.2%}{eer} on {val['speakers']} held-out speakers)")
    return provenance


if __name__ == "__main__":
    main()
