import math

import pytest
import torch

from edgedistill.config import ConfigError
from edgedistill.training.logit_kd import LogitTeacher, soft_target_loss


def test_soft_target_loss_is_t2_times_the_kl_of_the_softened_posteriors():
    student = torch.tensor([[0.0, 0.0], [3.0, -1.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [3.0, -1.0]])  # row 0: teacher 3:1, student 1:1 at T=1
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert soft_target_loss(student, teacher, 1.0).item() == pytest.approx(kl / 2, rel=1e-5)
    assert soft_target_loss(student, teacher, 1.0, torch.tensor([True, False])).item() == pytest.approx(kl, rel=1e-5)
    assert soft_target_loss(student, teacher, 1.0, torch.tensor([False, True])).item() == pytest.approx(0, abs=1e-6)
    assert soft_target_loss(student, teacher, 1.0, torch.tensor([False, False])).item() == 0.0
    # softer targets at T = 2: the T^2 factor keeps the loss on the cross-entropy's scale
    assert 0 < soft_target_loss(student, teacher, 2.0).item() < 4 * soft_target_loss(student, teacher, 1.0).item()


def test_a_step_on_the_soft_target_loss_moves_the_student_towards_the_teacher():
    torch.manual_seed(0)
    teacher = torch.randn(8, 5) * 3
    student = torch.zeros(8, 5, requires_grad=True)
    before = soft_target_loss(student, teacher, 2.0)
    before.backward()
    with torch.no_grad():
        moved = student - 1.0 * student.grad
    assert soft_target_loss(moved, teacher, 2.0) < before
    assert (moved.argmax(1) == teacher.argmax(1)).float().mean() > 0.7


def test_a_teacher_with_other_labels_is_refused_with_what_differs(trained_multitask):
    from edgedistill.models.multitask import MultiTaskModel

    labels = MultiTaskModel.from_pretrained(trained_multitask).labels
    assert LogitTeacher(str(trained_multitask), labels).logits(torch.zeros(2, 16_000)).shape == (2, len(labels))
    with pytest.raises(ConfigError, match=r"missing \['_background_'\].*finetune --model TEACHER"):
        LogitTeacher(str(trained_multitask), sorted(labels + ["_background_"]))
    with pytest.raises(ConfigError, match="same set in another order"):
        LogitTeacher(str(trained_multitask), labels[::-1])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LogitTeacher(str(trained_multitask) + "_nowhere", labels)
