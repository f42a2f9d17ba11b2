"""What every training workflow does first: pick the accelerator and claim the run folder;
and what it does at every log step: `TrainLog`."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from edgedistill.config import ConfigError, non_default_field, resumable_fields, save_config, to_dict
from edgedistill.training.checkpoint import Checkpointer


def make_accelerator(mixed_precision: str = "auto", cpu: bool = False, log_with: str | None = None,
                     project_dir: str | Path | None = None):
    """`accelerate.Accelerator`; "auto" = bf16 on a GPU that has it, else fp32. `log_with`
    names an accelerate tracker (e.g. "tensorboard") writing under `project_dir`."""
    from accelerate import Accelerator

    if not cpu and not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Several processes on a machine without a GPU (`accelerate launch --multi_gpu
        # --num_processes N` or `torchrun`): without cpu=True each process believes it is alone.
        cpu = True
    if mixed_precision == "auto":
        mixed_precision = "bf16" if (torch.cuda.is_available() and not cpu
                                     and torch.cuda.is_bf16_supported()) else "no"
    if log_with == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise ConfigError("log_with=tensorboard needs tensorboard or tensorboardX: "
                              "pip install 'edgedistill[tensorboard]'")
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu, log_with=log_with,
                       project_dir=str(project_dir) if project_dir is not None else None)


class TrainLog:
    """`train_log.jsonl` on the main process, plus the accelerator's trackers (TensorBoard...)
    when it has any: every numeric field of a record becomes a scalar (lists: one per index,
    dicts: one per key)."""

    def __init__(self, accelerator, out: Path, name: str, cfg=None):
        self.accelerator = accelerator
        self.file = open(Path(out) / "train_log.jsonl", "a") if accelerator.is_main_process else None
        self.tracking = bool(accelerator.log_with)
        if self.tracking:
            flat = {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                    for k, v in (to_dict(cfg) if cfg is not None else {}).items()}
            accelerator.init_trackers(name, config=flat)

    def write(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.tracking:
            scalars = {}
            for k, v in record.items():
                if k == "step":
                    continue
                items = (v.items() if isinstance(v, dict) else
                         ((str(i), x) for i, x in enumerate(v)) if isinstance(v, list) else [(None, v)])
                for sub, x in items:
                    if isinstance(x, (int, float)) and not isinstance(x, bool):
                        scalars[f"{k}/{sub}" if sub is not None else k] = x
            self.accelerator.log(scalars, step=record["step"])

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tracking:
            self.accelerator.end_training()


# The folder itself may move between a run and its resumption.
_ALWAYS_RESUMABLE = {"out"}
# What a finished or started run leaves in its folder.
_RUN_FILES = ("config.yaml", "checkpoints", "summary.json", "student", "heads", "model", "train_log.jsonl")


def claim_run_folder(accelerator, cfg, out: Path, resume: bool, ckpt: Checkpointer, command: str,
                     overwrite: bool = False) -> None:
    """Refuses to overwrite a run (without --resume) or to resume with a changed config;
    writes `config.yaml`. The fields `resumable_fields(cfg)` names (their metadata says so) and
    `out` (a run folder may be moved) may change between a run and its resumption.

    A folder holding any run (checkpoints, or the results of a finished one whose checkpoints
    were pruned) is only written with `resume` (the same run) or `overwrite` (its old results
    are deleted first, so the folder never mixes two runs).
    """
    if accelerator.is_main_process:
        saved = out / "config.yaml"
        existing = [name for name in _RUN_FILES if (out / name).exists()]
        if overwrite and existing:
            import shutil

            for name in existing:
                target = out / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        elif not resume and existing:
            raise ConfigError(f"'{out}' already holds a run ({', '.join(existing)}): pass --resume to continue "
                              "it, --overwrite to replace it, or choose another --out")
        if resume and saved.exists() and not overwrite:
            import yaml

            before, now = yaml.safe_load(saved.read_text()), to_dict(cfg)
            # a field the saved run predates counts as its default (added later, it left that run alone)
            defaults = {f.name: non_default_field(cfg, f) for f in dataclasses.fields(cfg)}
            changed = [k for k in now if k not in resumable_fields(cfg) | _ALWAYS_RESUMABLE
                       and (before[k] != now[k] if k in before else bool(defaults.get(k)))]
            if changed:
                raise ConfigError(f"cannot resume '{out}': config fields {changed} differ from the "
                                  "saved run; use the saved config.yaml, a new --out, or --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, saved, header=f"{command} --config config.yaml")
    accelerator.wait_for_everyone()


def begin_run(accelerator, name: str, out: Path, ckpt: Checkpointer, resume: bool) -> dict | None:
    """Logs the process count (`accelerate launch` without `--multi_gpu` silently gives one
    process on a CPU machine) and, with `resume`, returns the saved summary of a finished run
    in `out` whose checkpoints are gone (pruned to save space): resuming it must not start again
    from step 0 over its results. None: the run goes ahead."""
    import json
    import logging

    path = Path(out) / "summary.json"
    if resume and ckpt.latest() is None and path.is_file():
        summary = json.loads(path.read_text())
        if summary.get("finished"):
            logging.getLogger(f"edgedistill.{name}").info("'%s' holds this run, finished: nothing to do", out)
            return {**summary, "main_process": accelerator.is_main_process}
    logging.getLogger(f"edgedistill.{name}").info("%s: %d process(es) on %s, mixed precision %s", name,
                                                  accelerator.num_processes, accelerator.device, accelerator.mixed_precision)
    return None
