"""Logit distillation in fine-tuning: a fine-tuned teacher's keyword posteriors as soft targets.

The student is trained on the same batches (clips and detection windows) with the usual
cross-entropy plus `weight * T^2 * KL(teacher || student)` on the keyword logits softened by the
temperature T (Hinton et al. 2015, "Distilling the knowledge in a neural network"). The teacher
is a model written by `edgedistill finetune` (the pretrained teacher fine-tuned on the same data,
as a detector where the student is one): it hears each item's own audio, without the context the
student may get before it, and is never trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.config import ConfigError
from edgedistill.data.labelled import IGNORE
from edgedistill.models.multitask import MultiTaskModel, find_multitask_folder

__all__ = ["LogitTeacher", "soft_target_loss"]


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                     keep: torch.Tensor | None = None) -> torch.Tensor:
    """`T^2 * KL(softmax(teacher / T) || softmax(student / T))`, averaged over the rows `keep`
    (all rows when None); the T^2 keeps its gradients on the cross-entropy's scale."""
    if keep is not None:
        student_logits, teacher_logits = student_logits[keep], teacher_logits[keep]
    if student_logits.shape[0] == 0:
        return student_logits.new_zeros(())
    log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_q = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=-1)
    return kl.mean() * temperature ** 2


class LogitTeacher:
    """A frozen fine-tuned model whose keyword logits are the soft targets.

    Args:
        folder: a `finetune --out` folder or its `model/`.
        labels: the student's keyword labels; the teacher's must be the same list in the same order
            (a detector student needs a detector teacher: both have `_background_`).
        temperature: softening of both distributions (> 0).
        device: where the teacher runs (the student's device).

    Raises:
        FileNotFoundError: `folder` holds no fine-tuned model.
        ConfigError: the labels differ (the message names both lists' differences).
    """

    def __init__(self, folder: str, labels: list[str], temperature: float = 2.0, device="cpu"):
        model = MultiTaskModel.from_pretrained(find_multitask_folder(folder))
        if model.labels != list(labels):
            missing = sorted(set(labels) - set(model.labels))
            extra = sorted(set(model.labels) - set(labels))
            raise ConfigError(
                f"kd_teacher '{folder}' has other keyword labels than the student's data "
                f"(missing {missing[:5]}, extra {extra[:5]}{', same set in another order' if not missing + extra else ''}):"
                " fine-tune the teacher on the same data and detect_keywords (`edgedistill finetune --model TEACHER "
                "... detect_keywords=[...]`) and pass that folder")
        model.requires_grad_(False)
        self.model = model.to(device).eval()
        self.temperature = temperature

    @torch.no_grad()
    def logits(self, wave: torch.Tensor) -> torch.Tensor:
        """The teacher's keyword logits [batch, labels] of `wave` [batch, samples]."""
        return self.model(wave)["kws_logits"].float()

    def loss(self, student_logits: torch.Tensor, wave: torch.Tensor, keyword: torch.Tensor) -> torch.Tensor:
        """The soft-target loss of the items with a keyword label (speaker-only clips are left out:
        the teacher hears only the others)."""
        keep = keyword != IGNORE
        if not keep.any():
            return student_logits.new_zeros(())
        return soft_target_loss(student_logits[keep], self.logits(wave[keep]), self.temperature)
