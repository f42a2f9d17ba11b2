"""`TrainingRun`: what every training recipe does around its loop, written once.

    session = TrainingRun("distill", cfg, "edgedistill distill")
    if (done := session.finished_already(resume and not overwrite)) is not None:
        return done                                  # a finished run whose checkpoints were pruned
    ...load the models and data (a bad setting fails here, before the folder is touched)...
    session.claim(resume, overwrite)                 # refuse another run's folder; write config.yaml
    step, state = session.restore(model, optimizer, resume)
    model, optimizer = session.accelerator.prepare(model, optimizer)
    session.start(step, stop_after)
    while ...:
        ...one step...
        session.advance()
        session.log(record, loss=...)                # train_log.jsonl, trackers, the progress bar
        session.save(model, optimizer, step)         # an atomic checkpoint
    session.close()

The config needs the fields every recipe config has: `out`, `mixed_precision`, `cpu`,
`log_with`, `keep_checkpoints`, `steps`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgedistill.training.accelerator import TrainLog, begin_run, claim_run_folder, make_accelerator
from edgedistill.training.checkpoint import Checkpointer, restore_training_state, save_training_state


class TrainingRun:
    """One run of a training recipe in its folder `cfg.out`: accelerator, checkpoints, claim,
    resume, log and progress bar."""

    def __init__(self, name: str, cfg, command: str):
        self.name, self.cfg, self.command = name, cfg, command
        self.out = Path(cfg.out)
        self.accelerator = make_accelerator(cfg.mixed_precision, cfg.cpu, cfg.log_with, self.out / "tensorboard")
        self.ckpt = Checkpointer(self.out / "checkpoints", keep=cfg.keep_checkpoints)
        self.log_ = logging.getLogger(f"edgedistill.{name}")
        self.bar = self.train_log = None
        self.end = cfg.steps

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def finished_already(self, resume: bool) -> dict | None:
        """With `resume`, the saved summary of a finished run whose checkpoints are gone (None:
        the run goes ahead). Logs the process count either way."""
        return begin_run(self.accelerator, self.name, self.out, self.ckpt, resume)

    def claim(self, resume: bool, overwrite: bool) -> None:
        """Refuses another run's folder (or a resume with a changed config); writes config.yaml."""
        claim_run_folder(self.accelerator, self.cfg, self.out, resume, self.ckpt, self.command, overwrite)

    def restore(self, model, optimizer, resume: bool) -> tuple[int, dict]:
        """(step, saved extras) of the newest checkpoint, loaded into `model` and `optimizer`;
        (0, {}) for a fresh start."""
        if not resume:
            return 0, {}
        step, state = restore_training_state(self.ckpt, model, optimizer, self.accelerator.process_index)
        if step:
            self.log_.info("resumed from %s at step %d", state["checkpoint"], step)
        return step, state

    def start(self, step: int, stop_after: int | None = None) -> int:
        """Opens the progress bar and the log; returns the step to stop at (`stop_after`, as if
        interrupted, or the config's `steps`)."""
        from tqdm.auto import tqdm

        self.end = min(self.cfg.steps, stop_after) if stop_after is not None else self.cfg.steps
        self.bar = tqdm(total=self.cfg.steps, initial=step, desc=self.name, unit="step",
                        disable=not self.is_main, dynamic_ncols=True)
        self.train_log = TrainLog(self.accelerator, self.out, self.name, self.cfg)
        return self.end

    def advance(self) -> None:
        self.bar.update(1)

    def log(self, record: dict, **postfix: str) -> None:
        """One line of `train_log.jsonl` (and the trackers'); `postfix` shows on the bar."""
        self.bar.set_postfix(**postfix)
        self.train_log.write(record)

    def save(self, model, optimizer, step: int, extra: dict | None = None) -> None:
        save_training_state(self.accelerator, self.ckpt, model, optimizer, step, extra)

    def close(self) -> None:
        self.bar.close()
        self.train_log.close()
