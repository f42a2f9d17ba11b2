"""One backbone, two heads: keyword spotting (KWS) and speaker verification (SV).

backbone (any HF speech model) -> learnable softmax-weighted sum of its hidden states
(SUPERB) or the last layer -> KWS head (mean pooling + linear) and SV head (attentive
statistics pooling -> 192-d embedding), trained with cross-entropy and additive angular
margin softmax (AAM, s=30, m=0.2).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.models.teacher import prepare_input

from edgedistill.data.trials import IGNORE  # noqa: E402


class AttentiveStatsPooling(nn.Module):
    """Attention-weighted mean and standard deviation over frames (per channel).

    [batch, frames, dim] -> [batch, 2 * dim].
    """

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.attn = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.attn(h), dim=1)
        mean = (w * h).sum(dim=1)
        var = (w * h * h).sum(dim=1) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-6))], dim=-1)


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace): logit_y = s * cos(theta_y + m)."""

    def __init__(self, dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_normal_(self.weight)
        self.scale, self.margin = scale, margin

    def forward(self, emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(emb.float()), F.normalize(self.weight.float())).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cos)
        one_hot = F.one_hot(target, cos.shape[1]).bool()
        # Past theta + m > pi the margin would raise the logit again: keep it monotonic.
        target_logit = torch.where(theta + self.margin < torch.pi, torch.cos(theta + self.margin),
                                   cos - self.margin * math.sin(self.margin))
        logits = self.scale * torch.where(one_hot, target_logit, cos)
        return F.cross_entropy(logits, target)


def head_sizes(backbone: nn.Module, emb_dim: int) -> tuple[int, int]:
    """(speaker-embedding size, attention width) of the heads on `backbone`: `emb_dim` and 128, except
    on a micro student, whose heads must not outweigh it: at most half its width, and a quarter."""
    from edgedistill.models.micro import is_micro

    if is_micro(backbone):
        d = backbone.config.hidden_size
        return min(emb_dim, max(8, d // 2)), max(8, d // 4)
    return emb_dim, 128


class MultiTaskModel(nn.Module):
    """Backbone + KWS head + SV head.

    Args:
        backbone: a `transformers` speech model.
        labels: keyword names (KWS classes).
        num_speakers: training speakers (AAM classes); 0 disables the SV head's training loss.
        emb_dim: speaker-embedding size.
        layer_mode: "weighted" (softmax-weighted sum of all hidden states) or "last".
        do_normalize: per-utterance waveform normalisation expected by the backbone.
        sv_hidden: width of the attentive pooling's attention (`head_sizes` picks it for a backbone).
    """

    def __init__(self, backbone: nn.Module, labels: list[str], num_speakers: int, emb_dim: int = 192,
                 layer_mode: str = "weighted", do_normalize: bool = False, aam_scale: float = 30.0,
                 aam_margin: float = 0.2, sv_threshold: float | None = None, sv_hidden: int = 128):
        super().__init__()
        if layer_mode not in ("weighted", "last"):
            raise ValueError(f"layer_mode '{layer_mode}': use 'weighted' or 'last'")
        self.backbone = backbone
        if layer_mode == "weighted" and getattr(backbone.config, "layerdrop", 0.0) > 0:
            # A layer skipped by LayerDrop adds no hidden state, so the weighted sum would see
            # a different number of layers at each step (HF's default layerdrop is 0.1 for
            # HuBERT, wav2vec 2.0, WavLM, data2vec-audio). Every layer is kept, as in SUPERB.
            logging.getLogger(__name__).info("layerdrop %.2f of the backbone turned off: the weighted layer "
                                             "sum needs every layer", backbone.config.layerdrop)
            backbone.config.layerdrop = 0.0
        d = backbone.config.hidden_size
        n_layers = backbone.config.num_hidden_layers + 1
        self.spec = dict(labels=list(labels), num_speakers=num_speakers, emb_dim=emb_dim,
                         layer_mode=layer_mode, do_normalize=do_normalize, aam_scale=aam_scale,
                         aam_margin=aam_margin, sv_threshold=sv_threshold, sv_hidden=sv_hidden)
        self.layer_weights = nn.Parameter(torch.zeros(n_layers)) if layer_mode == "weighted" else None
        self.kws_head = nn.Linear(d, len(labels))
        self.sv_pool = AttentiveStatsPooling(d, sv_hidden)
        self.sv_embed = nn.Linear(2 * d, emb_dim)
        self.aam = AAMSoftmax(emb_dim, max(1, num_speakers), aam_scale, aam_margin)

    @property
    def labels(self) -> list[str]:
        return self.spec["labels"]

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> [batch, frames, dim] (weighted layer sum or last layer)."""
        x = prepare_input(wave, self.spec["do_normalize"])
        if self.layer_weights is None:
            return self.backbone(x).last_hidden_state
        hs = torch.stack(self.backbone(x, output_hidden_states=True).hidden_states)
        w = torch.softmax(self.layer_weights, dim=0)
        return (w[:, None, None, None] * hs).sum(0)

    def forward(self, wave: torch.Tensor, skip_frames: int = 0) -> dict[str, torch.Tensor]:
        """-> {"kws_logits": [batch, classes], "embedding": [batch, emb_dim] (not normalised)}, pooled over the
        frames after the first `skip_frames` (heard, as context, but not pooled)."""
        h = self.features(wave)[:, skip_frames:]
        return {"kws_logits": self.kws_head(h.mean(dim=1)), "embedding": self.sv_embed(self.sv_pool(h))}

    def loss(self, out: dict, keyword: torch.Tensor, speaker: torch.Tensor,
             kws_weight: float = 1.0, sv_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """Weighted sum of the KWS cross-entropy and the AAM loss; IGNORE (-1) labels skipped."""
        parts, total = {}, out["kws_logits"].new_zeros(())
        if kws_weight and (keyword != IGNORE).any():
            parts["kws"] = F.cross_entropy(out["kws_logits"].float(), keyword, ignore_index=IGNORE)
            total = total + kws_weight * parts["kws"]
        has_spk = speaker != IGNORE
        if sv_weight and self.spec["num_speakers"] > 0 and has_spk.any():
            parts["sv"] = self.aam(out["embedding"][has_spk], speaker[has_spk])
            total = total + sv_weight * parts["sv"]
        return total, {k: v.detach() for k, v in parts.items()}

    def save_pretrained(self, folder: str | Path) -> None:
        """`backbone/` (plain HF, loads with AutoModel), `heads.safetensors`, `multitask.json`."""
        from safetensors.torch import save_file
        from transformers import Wav2Vec2FeatureExtractor

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder / "backbone")
        if self.backbone.config.model_type != "whisper":  # a WhisperWave writes its own
            Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0,
                                     do_normalize=self.spec["do_normalize"],
                                     return_attention_mask=False).save_pretrained(folder / "backbone")
        heads = {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("backbone.")}
        save_file(heads, folder / "heads.safetensors")
        (folder / "multitask.json").write_text(json.dumps(self.spec, indent=1))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "MultiTaskModel":
        """Reloads a saved model with its label list and SV threshold."""
        from safetensors.torch import load_file

        from edgedistill.models.teacher import load_speech_model

        folder = find_multitask_folder(folder)
        spec = json.loads((folder / "multitask.json").read_text())
        backbone = load_speech_model(folder / "backbone")
        model = cls(backbone, **spec)
        missing, unexpected = model.load_state_dict(load_file(folder / "heads.safetensors"), strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise ValueError(f"'{folder}/heads.safetensors' does not match multitask.json: "
                             f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        return model.eval()


def find_multitask_folder(path: str | Path, required: bool = True) -> Path | None:
    """The saved multi-task model behind `path`: the folder itself, or the `model/` inside a
    `finetune --out` folder (both are accepted everywhere).

    Raises:
        FileNotFoundError: (with `required`) neither holds `multitask.json`; None without it.
    """
    p = Path(path)
    for folder in (p, p / "model"):
        if (folder / "multitask.json").is_file():
            return folder
    if not required:
        return None
    if not p.exists():
        raise FileNotFoundError(f"model folder '{p}' does not exist")
    if p.is_file():
        raise FileNotFoundError(f"'{p}' is a file: pass the folder written by `edgedistill finetune --out` "
                                "(or its model/ folder)")
    raise FileNotFoundError(f"'{p}' is not a saved multi-task model (no multitask.json in it or in "
                            f"'{p / 'model'}'): pass the --out folder of `edgedistill finetune` or its model/")
