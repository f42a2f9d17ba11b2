"""The trained module of a distillation run: the student plus its training-only heads."""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.distill.heads import DistillHeads
from edgedistill.models.teacher import cnn_override


class _GradMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class DistillModel(nn.Module):
    """Student + heads. `forward(wave)` -> predictions [n_targets, batch, frames, d_teacher].

    Args:
        student: a `transformers` speech model.
        heads: the distillation heads.
        feature_grad_mult: scales the gradient flowing into the student CNN (fairseq's
            `feature_grad_mult`): the CNN learns, but ten times more slowly at 0.1.
        freeze_cnn: no gradient at all for the CNN.
    """

    def __init__(self, student: nn.Module, heads: DistillHeads, feature_grad_mult: float = 0.1,
                 freeze_cnn: bool = False):
        super().__init__()
        self.student, self.heads = student, heads
        if freeze_cnn:
            student.feature_extractor.requires_grad_(False)
        elif feature_grad_mult != 1.0:
            student.feature_extractor.register_forward_hook(
                lambda _m, _i, out: _GradMultiply.apply(out, feature_grad_mult))

    def forward(self, wave: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        with cnn_override(self.student, features):
            out = self.student(wave, output_hidden_states=True)
        return self.heads(out.hidden_states)
