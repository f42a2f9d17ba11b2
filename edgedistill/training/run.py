"""What every training workflow does first: pick the accelerator and claim the run folder."""

from __future__ import annotations

from pathlib import Path

import torch

from edgedistill.config import ConfigError, save_config, to_dict
from edgedistill.training.checkpoint import Checkpointer


def make_accelerator(mixed_precision: str = "auto", cpu: bool = False):
    """`accelerate.Accelerator`; "auto" = bf16 on a GPU that has it, else fp32."""
    from accelerate import Accelerator

    if mixed_precision == "auto":
        mixed_precision = "bf16" if (torch.cuda.is_available() and not cpu
                                     and torch.cuda.is_bf16_supported()) else "no"
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def claim_run_folder(acc, cfg, out: Path, resume: bool, ckpt: Checkpointer, command: str,
                     resumable: set[str]) -> None:
    """Refuses to overwrite a run (without --resume) or to resume with a changed config;
    writes `config.yaml`. Fields in `resumable` may change between a run and its resumption."""
    if acc.is_main_process:
        saved = out / "config.yaml"
        if not resume and ckpt.latest() is not None:
            raise ConfigError(f"'{out}' already holds a run: pass --resume to continue it, "
                              "or choose another --out")
        if resume and saved.exists():
            import yaml

            before, now = yaml.safe_load(saved.read_text()), to_dict(cfg)
            changed = [k for k in now if k not in resumable and before.get(k) != now[k]]
            if changed:
                raise ConfigError(f"cannot resume '{out}': config fields {changed} differ from the "
                                  "saved run; use the saved config.yaml or a new --out")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, saved, header=f"{command} --config config.yaml")
    acc.wait_for_everyone()
