"""Training-only distillation heads: DistilHuBERT prediction heads and layer-to-layer projections.

They are saved next to the student (safetensors + JSON) and never exported.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

OBJECTIVES = ("prediction-heads", "layer-to-layer")


def default_targets(teacher_layers: int, reference: tuple[int, ...] = (4, 8, 12)) -> list[int]:
    """DistilHuBERT's 4-8-12 scaled to the teacher's depth (HF indexing, 1..L)."""
    out = sorted({max(1, min(teacher_layers, round(r * teacher_layers / 12))) for r in reference})
    return out


def default_student_layers(targets: list[int], teacher_layers: int, student_layers: int) -> list[int]:
    """For layer-to-layer: student layer round(t * L_s / L_t) predicts teacher layer t."""
    return [max(1, min(student_layers, round(t * student_layers / teacher_layers))) for t in targets]


class PredictionHeads(nn.Module):
    """DistilHuBERT: shared Linear(d_s -> n * d_h) + GELU, then one Linear(d_h -> d_t) per target.

    Input: the student's last hidden state [batch, frames, d_s].
    Output: predictions [n_targets, batch, frames, d_t].
    """

    def __init__(self, student_dim: int, teacher_dim: int, n_targets: int, head_dim: int | None = None):
        super().__init__()
        self.n, self.head_dim = n_targets, head_dim or teacher_dim
        self.shared = nn.Linear(student_dim, n_targets * self.head_dim)
        self.act = nn.GELU()
        self.per_target = nn.ModuleList(nn.Linear(self.head_dim, teacher_dim) for _ in range(n_targets))

    def forward(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        h = self.act(self.shared(hidden_states[-1]))
        chunks = h.split(self.head_dim, dim=-1)
        return torch.stack([lin(c) for lin, c in zip(self.per_target, chunks)])


class LayerToLayer(nn.Module):
    """DPHuBERT / Deep-vs-Wide: student layer s_i -> Linear -> teacher layer t_i.

    Projections start as the identity when widths match.
    Output: [n_targets, batch, frames, d_t].
    """

    def __init__(self, student_dim: int, teacher_dim: int, student_layers: list[int]):
        super().__init__()
        self.student_layers = list(student_layers)
        self.proj = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in student_layers)
        if student_dim == teacher_dim:
            for p in self.proj:
                nn.init.eye_(p.weight)
                nn.init.zeros_(p.bias)

    def forward(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.stack([p(hidden_states[i]) for p, i in zip(self.proj, self.student_layers)])


class SavedHeads(nn.Module):
    """Training-only heads saved as `STEM.safetensors` + `STEM.json` (the constructor's
    arguments, `self.spec`) and rebuilt from them."""

    stem = "heads"
    spec: dict

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / f"{self.stem}.safetensors")
        (folder / f"{self.stem}.json").write_text(json.dumps(self.spec, indent=1))

    @classmethod
    def load(cls, folder: str | Path):
        from safetensors.torch import load_file

        folder = Path(folder)
        heads = cls(**json.loads((folder / f"{cls.stem}.json").read_text()))
        heads.load_state_dict(load_file(folder / f"{cls.stem}.safetensors"))
        return heads


class DistillHeads(SavedHeads):
    """The heads of one objective, with what is needed to rebuild them."""

    stem = "distill_heads"

    def __init__(self, objective: str, student_dim: int, teacher_dim: int, targets: list[int],
                 student_layers: list[int] | None = None, head_dim: int | None = None, cnn_hint: bool = False):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective '{objective}': choose one of {OBJECTIVES}")
        self.spec = dict(objective=objective, student_dim=student_dim, teacher_dim=teacher_dim,
                         targets=list(targets), student_layers=student_layers, head_dim=head_dim, cnn_hint=cnn_hint)
        # FitHuBERT-style hint on the front end: the student's layer-0 hidden state (CNN, feature
        # projection, positional convolution) regresses the teacher's, through a Linear that
        # starts as the identity where the widths match.
        self.hint = None
        if cnn_hint:
            self.hint = nn.Linear(student_dim, teacher_dim)
            if student_dim == teacher_dim:
                nn.init.eye_(self.hint.weight)
                nn.init.zeros_(self.hint.bias)
        if objective == "prediction-heads":
            self.net = PredictionHeads(student_dim, teacher_dim, len(targets), head_dim)
        else:
            if student_layers is None or len(student_layers) != len(targets):
                raise ValueError("layer-to-layer needs one student layer per target layer")
            self.net = LayerToLayer(student_dim, teacher_dim, student_layers)

    @property
    def targets(self) -> list[int]:
        return self.spec["targets"]

    def forward(self, hidden_states):
        return self.net(hidden_states)

    def hint_forward(self, hidden_states) -> torch.Tensor | None:
        """The hint's prediction of the teacher's layer 0 [batch, frames, d_t] (None without a hint)."""
        return self.hint(hidden_states[0]) if self.hint is not None else None
