"""The embedded teacher (`teacher: embedded`, the demo's), built once per machine into the cache.

No pretrained model can be downloaded offline, so edgedistill trains its own stand-in from
`configs/embedded_teacher.yaml`: a 4 x 128 HuBERT on a 200-speaker embedded corpus (192 speakers
to train on, 8 to stop early on, none of them the demo's). The weights are not shipped; the
reference build's PROVENANCE.json is (`edgedistill/assets/embedded_teacher/`). Training runs at
one torch thread, so that it repeats: on the reference machine it gives the reference's weights,
byte for byte, and with them the README's demo numbers.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from edgedistill.config import ConfigError, load_config, non_default

log = logging.getLogger(__name__)
FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def build_embedded_teacher(dest: str | Path | None = None, overrides: list[str] | tuple = (),
                           command: str = "edgedistill embedded-teacher") -> dict:
    """Trains the recipe's teacher stage and writes the selected backbone to `dest` (default:
    `embedded_teacher_path()`), with PROVENANCE.json; returns the provenance.

    Resumable: the training runs in `recipe out` if the overrides set `out`, else in DEST.work
    (removed once the teacher is written). `dest` is replaced whole, never left half written.
    """
    import torch

    from edgedistill.models.teacher import embedded_teacher_path, embedded_teacher_recipe, embedded_teacher_reference
    from edgedistill.recipes.run import TRAIN_TEACHER, RunConfig, plan, train_teacher
    from edgedistill.reporting.machine import machine_info

    dest = Path(dest) if dest is not None else embedded_teacher_path()
    own_work = not any(o.startswith("out=") for o in overrides)
    work = dest.with_name(dest.name + ".work")
    recipe = embedded_teacher_recipe()
    cfg = load_config(RunConfig, recipe, list(overrides), **({"out": str(work)} if own_work else {}))
    if cfg.teacher != TRAIN_TEACHER or cfg.teacher_training.data:
        raise ConfigError(f"the embedded teacher is trained on the recipe's `data` (teacher: {TRAIN_TEACHER}, "
                          "no teacher_training.data); remove those overrides")
    teacher = plan(cfg).teacher
    tt = cfg.teacher_training
    log.info("building the embedded teacher into %s: a %d x %d HuBERT trained on %s at 1 torch thread (repeatable), "
             "interrupted, it resumes", dest, tt.layers, tt.hidden, cfg.data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # repeatable: the same weights at every run on this machine type
    try:
        summary = train_teacher(teacher)
    finally:
        torch.set_num_threads(threads)
    src = Path(teacher.finetune.out) / "model" / "backbone"
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(src / name, tmp / name)
    reference = embedded_teacher_reference()["sha256"]
    sha = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
    provenance = {
        "command": command, "recipe": recipe.name, "data": cfg.data,
        "teacher_training": non_default(cfg.teacher_training),
        "finetune": {k: v for k, v in non_default(teacher.finetune).items() if k not in ("model", "out")},
        "steps_done": summary["steps_done"], "best_step": summary["best_step"],
        "stopped_early": summary.get("stopped_early"),
        "val": {k: summary["val"].get(k) for k in ("clips", "speakers", "kws_accuracy", "sv_eer")},
        "torch_threads": 1, "machine": machine_info(), "date": datetime.date.today().isoformat(),
        "sha256": sha, "reference_sha256": reference, "same_as_reference": sha == reference,
    }
    (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    if own_work:
        shutil.rmtree(work, ignore_errors=True)
    val = provenance["val"]
    eer = f", EER {val['sv_eer']:.2%}" if val["sv_eer"] is not None else ""
    print(f"embedded teacher: {dest} (best at step {summary['best_step']} of {summary['steps_done']}: KWS accuracy "
          f"{val['kws_accuracy']:.2%}{eer} on {val['speakers']} held-out speakers); "
          + ("the reference weights, byte for byte" if sha == reference else
             f"sha256 {sha[:12]}, not the reference's {reference[:12]} ("
             + (f"built with overrides: {' '.join(overrides)}" if overrides else "another CPU or library version")
             + "): the demo's numbers will differ from the README's"))
    return provenance


def ensure_embedded_teacher(name: str | None) -> None:
    """Builds the embedded teacher first if `name` is it and this machine has not built it yet."""
    from edgedistill.models.teacher import EMBEDDED_TEACHER, embedded_teacher_built

    if name != EMBEDDED_TEACHER or embedded_teacher_built():
        return
    import fcntl

    from edgedistill.models.teacher import embedded_teacher_path

    lock_path = embedded_teacher_path().with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:  # processes of one launch, or runs side by side: one builds
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not embedded_teacher_built():
            log.info("the embedded teacher is not built on this machine yet: building it first, once")
            build_embedded_teacher()
