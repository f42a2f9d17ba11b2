"""The trained module of a distillation run: the student plus its training-only heads."""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.distill.heads import DistillHeads
from edgedistill.distill.losses import frame_mask
from edgedistill.distill.text import TextHeads
from edgedistill.models.student import freeze_cnn as freeze_speech_cnn
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
    """Student + training-only heads; every trained parameter is used inside `forward` (DDP).

    Args:
        student: a `transformers` speech model.
        heads: the layer-wise distillation heads (None: no layer-wise loss).
        text_heads: the text-informed auxiliary heads (None: no text teacher).
        feature_grad_mult: scales the gradient flowing into the student CNN (fairseq's
            `feature_grad_mult`): the CNN learns, but ten times more slowly at 0.1.
        freeze_cnn: no gradient at all for the CNN.
    """

    def __init__(self, student: nn.Module, heads: DistillHeads | None, feature_grad_mult: float = 0.1,
                 freeze_cnn: bool = False, text_heads: TextHeads | None = None):
        super().__init__()
        self.student, self.heads, self.text_heads = student, heads, text_heads
        if freeze_cnn:
            freeze_speech_cnn(student)
        elif feature_grad_mult != 1.0:
            student.feature_extractor.register_forward_hook(
                lambda _m, _i, out: _GradMultiply.apply(out, feature_grad_mult))

    def compile_parts(self) -> None:
        """`torch.compile`s, in place (parameter names unchanged), the student's CNN and
        transformer and the heads: the parts whose shapes do not change with `cnn_override`."""
        for part in (self.student.feature_extractor, self.student.encoder, self.heads):
            if part is not None:
                part.compile(dynamic=True)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None, features: torch.Tensor | None = None,
                text=None, **text_kw) -> dict:
        """Returns `pred` (layer-wise predictions [n_targets, batch, frames, d_teacher], or None),
        `hint` (the CNN hint's prediction of the teacher's layer 0 [batch, frames, d_teacher], or
        None), `mask` ([batch, frames] real frames) and `text` (the text heads' losses, or {}).

        Args:
            wave: [batch, samples]; lengths: [batch] real samples (None: all real).
            features: precomputed CNN output (reuse_teacher_cnn).
            text: a `TextBatch` for the text heads; text_kw: passed to `TextHeads.forward`.
        """
        with cnn_override(self.student, features):
            out = self.student(wave, output_hidden_states=True)
        hs = out.hidden_states
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[-1], device=wave.device)
        c = self.student.config
        mask = frame_mask(lengths, hs[-1].shape[1], c.conv_kernel, c.conv_stride)
        pred = self.heads(hs) if self.heads is not None else None
        hint = self.heads.hint_forward(hs) if self.heads is not None else None
        losses = self.text_heads(hs, mask, text, **text_kw) if self.text_heads is not None and text is not None else {}
        return {"pred": pred, "hint": hint, "mask": mask, "text": losses}
