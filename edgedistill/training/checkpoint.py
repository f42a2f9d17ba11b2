"""Atomic checkpoints: written under a temporary name, then renamed; loaded safely.

A checkpoint folder `step-000120/` holds `model.safetensors` (everything trained),
`optimizer.pt` (loaded with `weights_only=True`), `rng-<rank>.pt` and `state.json`.
`latest` names the newest complete one. A crash mid-write leaves only a `.tmp` folder,
which is ignored and cleaned up.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from edgedistill.errors import CorruptCheckpointError


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Checkpointer:
    """Saves and finds checkpoints under `folder`, keeping the newest `keep`."""

    def __init__(self, folder: str | os.PathLike, keep: int = 2):
        self.folder, self.keep = Path(folder), keep

    def tmp_dir(self, step: int) -> Path:
        return self.folder / f"step-{step:06d}.tmp"

    def begin(self, step: int) -> Path:
        """Creates an empty temporary folder for `step` (main process only)."""
        tmp = self.tmp_dir(step)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    @staticmethod
    def write_rng(tmp: Path, rank: int) -> None:
        import random

        import numpy as np

        # numpy's global RNG too: transformers draws SpecAugment masks from it, so a resumed
        # run of a model with SpecAugment on (every real checkpoint) would otherwise diverge.
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, py_state, py_gauss = random.getstate()
        state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
                 "numpy_pos": pos, "numpy_has_gauss": has_gauss, "numpy_gauss": gauss,
                 "python": torch.tensor(py_state, dtype=torch.int64), "python_version": version,
                 "python_gauss": py_gauss}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state()
        torch.save(state, tmp / f"rng-{rank}.pt")

    def write_main(self, tmp: Path, step: int, tensors: dict[str, torch.Tensor],
                   optimizer: torch.optim.Optimizer, extra: dict) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                  tmp / "model.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **extra}, indent=1))

    def commit(self, step: int) -> Path:
        """Renames the finished temporary folder into place and updates `latest`."""
        final = self.folder / f"step-{step:06d}"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(self.tmp_dir(step), final)
        _write_atomic(self.folder / "latest", final.name)
        done = sorted(p for p in self.folder.glob("step-*") if not p.name.endswith(".tmp"))
        for old in done[: max(0, len(done) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def complete(self) -> list[Path]:
        """Finished checkpoints (with `state.json`), newest first."""
        done = [p for p in self.folder.glob("step-*") if not p.name.endswith(".tmp") and (p / "state.json").exists()]
        return sorted(done, reverse=True)

    def latest(self) -> Path | None:
        pointer = self.folder / "latest"
        if pointer.exists():
            p = self.folder / pointer.read_text().strip()
            if (p / "state.json").exists():
                return p
        done = sorted(p for p in self.folder.glob("step-*")
                      if not p.name.endswith(".tmp") and (p / "state.json").exists())
        return done[-1] if done else None

    @staticmethod
    def load(path: Path, rank: int) -> tuple[dict, dict, dict, dict | None]:
        """(tensors, optimizer state, state.json, rng state of `rank` or None).

        Raises:
            CorruptCheckpointError: naming the file that cannot be read.
        """
        from safetensors.torch import load_file

        def read(name, fn):
            try:
                return fn(path / name)
            except Exception as exc:  # safetensors, pickle, zip and JSON each raise their own
                raise CorruptCheckpointError(f"'{path / name}' cannot be read ({type(exc).__name__}: "
                                             f"{str(exc).splitlines()[0][:120] if str(exc) else 'truncated'})") from exc

        tensors = read("model.safetensors", load_file)
        optim = read("optimizer.pt", lambda p: torch.load(p, weights_only=True, map_location="cpu"))
        state = read("state.json", lambda p: json.loads(p.read_text()))
        rng_file = path / f"rng-{rank}.pt"
        rng = read(rng_file.name, lambda p: torch.load(p, weights_only=True)) if rng_file.exists() else None
        return tensors, optim, state, rng

    @staticmethod
    def restore_rng(rng: dict | None) -> None:
        if rng is None:
            return
        import random

        import numpy as np

        torch.set_rng_state(rng["torch"])
        if "numpy_keys" in rng:
            np.random.set_state(("MT19937", rng["numpy_keys"].numpy().astype(np.uint32), int(rng["numpy_pos"]),
                                 int(rng["numpy_has_gauss"]), float(rng["numpy_gauss"])))
            random.setstate((rng["python_version"], tuple(int(x) for x in rng["python"]), rng["python_gauss"]))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])


def save_training_state(accelerator, ckpt: Checkpointer, model, optimizer, step: int, extra: dict | None = None) -> None:
    """Checkpoints a run under `accelerate`: every rank adds its RNG state to the temporary
    folder; the main process adds weights and optimizer, then renames it into place."""
    if accelerator.is_main_process:
        ckpt.begin(step)
    accelerator.wait_for_everyone()
    Checkpointer.write_rng(ckpt.tmp_dir(step), accelerator.process_index)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ckpt.write_main(ckpt.tmp_dir(step), step, accelerator.unwrap_model(model).state_dict(), optimizer, extra or {})
        ckpt.commit(step)
    accelerator.wait_for_everyone()


def restore_training_state(ckpt: Checkpointer, model, optimizer, rank: int) -> tuple[int, dict]:
    """Loads the newest intact checkpoint into (unwrapped) `model` and `optimizer`;
    (step, state.json). A damaged newest checkpoint (e.g. a truncated file after a full disk)
    is skipped with a warning naming the bad file, and the previous one is used.

    Raises:
        CorruptCheckpointError: every checkpoint is damaged (the message names each bad file).
    """
    import logging

    errors = []
    for path in ckpt.complete():
        try:
            tensors, opt_state, state, rng = Checkpointer.load(path, rank)
        except CorruptCheckpointError as exc:
            errors.append(str(exc))
            logging.getLogger(__name__).warning("%s: skipping checkpoint %s, trying the one before it", exc, path.name)
            continue
        if errors:
            logging.getLogger(__name__).warning("resuming from %s instead of the damaged newer checkpoint", path)
        model.load_state_dict(tensors)
        optimizer.load_state_dict(opt_state)
        Checkpointer.restore_rng(rng)
        return state["step"], {**state, "checkpoint": str(path)}
    if errors:
        raise CorruptCheckpointError(f"no intact checkpoint in '{ckpt.folder}': {'; '.join(errors)}. Delete the "
                                     "checkpoints folder to start again, or restore it from a backup")
    return 0, {}
