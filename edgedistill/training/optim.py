"""AdamW with linear warm-up and linear decay to zero (DistilHuBERT's schedule)."""

from __future__ import annotations

import torch


def lr_at(step: int, total_steps: int, base_lr: float, warmup_frac: float) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then linear decay to 0."""
    warmup = max(1, int(round(warmup_frac * total_steps)))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    return base_lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def make_adamw(params, lr: float, betas=(0.9, 0.98), eps: float = 1e-6,
               weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW; biases and norm weights (1-D tensors) get no weight decay.

    Args:
        params: parameters, or a list of (parameters, lr_scale) pairs whose groups run at
            `lr * lr_scale` (e.g. a backbone at a tenth of the heads' rate).
    """
    params = list(params)
    if not params or not isinstance(params[0], tuple):
        params = [(params, 1.0)]
    groups = []
    for ps, scale in params:
        ps = [p for p in ps if p.requires_grad]
        for decay, wd in ((True, weight_decay), (False, 0.0)):
            chosen = [p for p in ps if (p.ndim > 1) == decay]
            if chosen:
                groups.append({"params": chosen, "weight_decay": wd, "lr_scale": scale})
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)
