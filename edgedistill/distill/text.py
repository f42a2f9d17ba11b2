"""Text-informed distillation components (issue 5, in progress): continuous integrate-and-fire
(CIF) segmentation, global and local speech-text alignment losses, and priors.

CIF (BLSP-KD; Dong & Xu 2020): each frame gets a weight alpha_t in (0, 1); weights accumulate
and a unit "fires" each time the running sum crosses an integer, as the alpha-weighted sum of
the frames it covers (a boundary frame is split between two units). Here it is written
loop-free: with c_t = alpha_1 + ... + alpha_t, frame t gives unit k the overlap of the interval
[c_{t-1}, c_t] with [k-1, k]. During training the weights are scaled so that they sum to the
number of text tokens N, which makes exactly N units, and a quantity loss |sum(alpha) - N|
teaches the unscaled weights the count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CIF(nn.Module):
    """Continuous integrate-and-fire over [batch, frames, dim] features.

    Args:
        dim: feature size.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Linear(dim, 1)

    def alphas(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame weights in (0, 1), [batch, frames]; 0 on padded frames."""
        a = torch.sigmoid(self.weight(hidden).squeeze(-1))
        return a * mask.to(a.dtype) if mask is not None else a

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
                num_units: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Segments `hidden` into units.

        Args:
            hidden: [batch, frames, dim].
            mask: [batch, frames] bool, True on real frames.
            num_units: [batch] target counts (text tokens). With them, weights are scaled to
                sum to the count (exactly that many units); without, the count is round(sum).

        Returns:
            units [batch, max_units, dim], unit_mask [batch, max_units], weights (the frame-to-
            unit matrix) [batch, max_units, frames], alphas [batch, frames] (unscaled),
            quantity_loss (mean |sum(alpha) - N|; 0 without `num_units`).
        """
        alpha = self.alphas(hidden, mask)
        total = alpha.sum(-1)
        if num_units is None:
            counts = total.round().clamp(min=1)
            quantity = hidden.new_zeros(())
        else:
            counts = num_units.to(alpha.dtype)
            quantity = (total - counts).abs().mean()
        scaled = alpha * (counts / total.clamp(min=1e-6)).unsqueeze(-1)
        weights, unit_mask = integrate(scaled, int(counts.max().item()))
        units = torch.bmm(weights, hidden)
        return {"units": units, "unit_mask": unit_mask, "weights": weights, "alphas": alpha,
                "quantity_loss": quantity}


def integrate(alpha: torch.Tensor, max_units: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-to-unit weights of CIF: W[b, k, t] = |[c_{t-1}, c_t] intersect [k, k+1]|.

    Returns (W [batch, max_units, frames], unit_mask [batch, max_units]); a unit exists when
    more than half of its unit weight has accumulated.
    """
    c = alpha.cumsum(-1)
    prev = c - alpha
    k = torch.arange(max_units, device=alpha.device, dtype=alpha.dtype).view(1, -1, 1)
    w = (torch.minimum(c.unsqueeze(1), k + 1) - torch.maximum(prev.unsqueeze(1), k)).clamp(min=0)
    return w, w.sum(-1) > 0.5


def global_alignment_loss(speech: torch.Tensor, text: torch.Tensor, contrastive_weight: float = 0.0,
                          temperature: float = 0.1) -> torch.Tensor:
    """Utterance-level metric loss: mean (1 - cos) between pooled speech [batch, dim] and the
    sentence embeddings [batch, dim], plus an optional symmetric InfoNCE term across the batch."""
    s, t = F.normalize(speech.float(), dim=-1), F.normalize(text.float(), dim=-1)
    loss = (1 - (s * t).sum(-1)).mean()
    if contrastive_weight and s.shape[0] > 1:
        logits = s @ t.T / temperature
        target = torch.arange(s.shape[0], device=s.device)
        loss = loss + contrastive_weight * 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return loss


def local_alignment_loss(units: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                         token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Unit-level loss: weighted mean over tokens of (1 - cos(unit_k, token_k)).

    Args:
        units, tokens: [batch, n, dim] (one speech unit per text token).
        mask: [batch, n] bool, True on real tokens.
        token_weights: [batch, n] prior weight of each token (see `token_prior`).
    """
    cos = F.cosine_similarity(units.float(), tokens.float(), dim=-1)
    w = mask.to(cos.dtype) * (token_weights if token_weights is not None else 1.0)
    return ((1 - cos) * w).sum() / w.sum().clamp(min=1e-6)


def monotonic_prior(weights: torch.Tensor, unit_mask: torch.Tensor, frame_mask: torch.Tensor,
                    slack: float = 0.5) -> torch.Tensor:
    """Penalty for alignments far from the diagonal: token k of N should sit in its own slot
    around relative position (k + 0.5) / N of the utterance.

    The penalty of unit k at frame t is relu(|(t + 0.5)/T - (k + 0.5)/N| - (0.5 + slack)/N)^2,
    averaged over each unit's (normalised) frame weights: 0 inside its slot widened by `slack`
    slots on each side, growing quadratically outside it.
    """
    n = unit_mask.sum(-1, keepdim=True).clamp(min=1).to(weights.dtype)               # [B, 1]
    t_len = frame_mask.sum(-1, keepdim=True).clamp(min=1).to(weights.dtype)          # [B, 1]
    k = torch.arange(weights.shape[1], device=weights.device, dtype=weights.dtype)
    t = torch.arange(weights.shape[2], device=weights.device, dtype=weights.dtype)
    expected = ((k + 0.5) / n).unsqueeze(-1)                                        # [B, K, 1]
    where = ((t + 0.5) / t_len).unsqueeze(1)                                        # [B, 1, T]
    cost = F.relu((where - expected).abs() - ((0.5 + slack) / n).unsqueeze(-1)) ** 2
    p = weights / weights.sum(-1, keepdim=True).clamp(min=1e-6)
    per_unit = (p * cost).sum(-1)
    m = unit_mask.to(per_unit.dtype)
    return (per_unit * m).sum() / m.sum().clamp(min=1)


def token_prior(token_ids: torch.Tensor, mask: torch.Tensor, counts: dict[int, int] | None = None,
                special_ids: tuple[int, ...] = ()) -> torch.Tensor:
    """A prior weight per token: 0 for padding and special tokens, and 1 / log(e + count) for
    tokens seen `count` times in the training text, so very frequent tokens weigh less."""
    w = mask.float().clone()
    for sid in special_ids:
        w[token_ids == sid] = 0
    if counts:
        freq = torch.tensor([[counts.get(int(i), 0) for i in row] for row in token_ids.tolist()],
                            dtype=torch.float32, device=w.device)
        w = w / torch.log(torch.e + freq)
    return w
