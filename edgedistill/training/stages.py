"""Resumable stages of a multi-stage run (`edgedistill run`).

A stage lives in its own folder. It is skipped when that folder holds a finished stage of the
same spec (a hash of its config and of the stages it depends on); it resumes when it was
interrupted with the same spec; a stage done or started with another spec is deleted and
redone only with `overwrite`. Its log lines (edgedistill's loggers) also go to `stage.log`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from edgedistill.config import ConfigError

log = logging.getLogger(__name__)


def spec_hash(spec) -> str:
    """A short hash of a JSON-able spec (built with `config.stage_spec`, which leaves out the
    fields that do not change a result)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_stage(name: str, folder: Path, spec: dict, fn: Callable[[], dict], overwrite: bool = False) -> dict:
    """Runs `fn` unless `folder` holds a finished stage of the same `spec`; returns its result
    (a JSON-able dict, also kept in `folder/stage.json`)."""
    key = spec_hash(spec)
    done, pending = folder / "stage.json", folder / "stage.pending"
    if done.exists():
        saved = json.loads(done.read_text())
        if saved["hash"] == key:
            print(f"[{name}] done already ({folder}); skipped")
            return saved["result"]
        _refuse_unless(overwrite, name, folder, "finished")
        print(f"[{name}] config changed: redoing it")
        shutil.rmtree(folder)
    elif pending.exists() and pending.read_text().strip() != key:
        _refuse_unless(overwrite, name, folder, "started")
        print(f"[{name}] config changed since it was interrupted: starting it again")
        shutil.rmtree(folder)
    elif folder.is_dir() and any(folder.iterdir()) and not pending.exists():
        _refuse_unless(overwrite, name, folder, "written by something else")
    folder.mkdir(parents=True, exist_ok=True)
    pending.write_text(key)
    print(f"[{name}] running -> {folder}")
    t = time.perf_counter()
    handler = logging.FileHandler(folder / "stage.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("edgedistill").addHandler(handler)
    try:
        log.info("stage %s started (config %s)", name, key)
        result = fn()
        log.info("stage %s finished in %.1f s", name, time.perf_counter() - t)
    finally:
        logging.getLogger("edgedistill").removeHandler(handler)
        handler.close()
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hash": key, "seconds": time.perf_counter() - t, "result": result}, default=float))
    os.replace(tmp, done)
    pending.unlink(missing_ok=True)
    return result


def _refuse_unless(overwrite: bool, name: str, folder: Path, what: str) -> None:
    if not overwrite:
        raise ConfigError(f"stage '{name}' in '{folder}' was {what} with another config (another recipe, data or "
                          "settings): its results would be deleted. Pass --overwrite to redo it and the stages "
                          "after it, or choose another out=")
