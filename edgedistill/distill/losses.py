"""Layer-wise distillation loss (DistilHuBERT): L1 + lambda * mean(-log sigmoid(cos))."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_mask(lengths: torch.Tensor, frames: int, conv_kernel, conv_stride) -> torch.Tensor:
    """[batch, frames] bool: True on frames computed from real (not padded) samples."""
    n = lengths.clone()
    for k, s in zip(conv_kernel, conv_stride):
        n = torch.div(n - k, s, rounding_mode="floor") + 1
    n = n.clamp(min=0, max=frames)
    return torch.arange(frames, device=lengths.device)[None, :] < n[:, None]


def layerwise_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                   cos_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DistilHuBERT's loss, averaged over targets (not summed).

    Per target layer: L1 averaged over valid frames and feature dims, plus
    `cos_weight` * mean over valid frames of -log sigmoid(cos(pred, target)).
    Padded frames (mask False) are left out; DistilHuBERT trains on length-sorted buckets,
    so few frames are padding, but none should count.

    Args:
        pred, target: [n_targets, batch, frames, dim].
        mask: [batch, frames] bool, or None for all frames.
        cos_weight: lambda (1 in DistilHuBERT).

    Returns:
        (loss, parts) with parts `l1` and `cos` ([n_targets] each, detached) and `cos_sim`.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    pred, target = pred.float(), target.float()
    if mask is None:
        mask = torch.ones(pred.shape[1:3], dtype=torch.bool, device=pred.device)
    w = mask.to(pred.dtype)
    n_valid = w.sum().clamp(min=1)
    l1 = ((pred - target).abs().mean(dim=-1) * w).sum(dim=(1, 2)) / n_valid        # [n]
    cos = F.cosine_similarity(pred, target, dim=-1)                                 # [n, B, T]
    cos_loss = (-F.logsigmoid(cos) * w).sum(dim=(1, 2)) / n_valid                    # [n]
    loss = (l1 + cos_weight * cos_loss).mean()
    cos_sim = (cos * w).sum(dim=(1, 2)) / n_valid
    return loss, {"l1": l1.detach(), "cos": cos_loss.detach(), "cos_sim": cos_sim.detach()}
