"""Text-informed distillation: a frozen text encoder teaches the speech student.

Components: continuous integrate-and-fire (CIF) segmentation, global and local speech-text
alignment losses, a monotonic alignment prior and a token prior (PAD), and `TextHeads`:
hierarchical auxiliary heads at several student depths (Lee & Chang), finer units at shallower
layers and coarser ones deeper, each distilled from the text teacher. Units come at three
granularities (`UNITS`): sub-word tokens, words, the whole utterance; their losses are
combined with weights that adapt during training (learned log-variances, Kendall et al. 2018:
exp(-s_g) * L_g + s_g, so a granularity that stays hard weighs less). All of it is
training-only: the exported student is the same with or without it.

CIF (BLSP-KD; Dong & Xu 2020): each frame gets a weight alpha_t in (0, 1); weights accumulate
and a unit "fires" each time the running sum crosses an integer, as the alpha-weighted sum of
the frames it covers (a boundary frame is split between two units). Here it is written
loop-free: with c_t = alpha_1 + ... + alpha_t, frame t gives unit k the overlap of the interval
[c_{t-1}, c_t] with [k-1, k]. During training the weights are scaled so that they sum to the
number of text tokens N, which makes exactly N units, and a quantity loss |sum(alpha) - N| / N
teaches the unscaled weights the count (divided by N here, so that long transcripts do not
dominate the other losses and the gradient clipping).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.config import ConfigError
from edgedistill.distill.heads import SavedHeads

log = logging.getLogger("edgedistill.distill")

UNITS = ("token", "word", "utterance")  # fine -> coarse


class CIF(nn.Module):
    """Continuous integrate-and-fire over [batch, frames, dim] features.

    Args:
        dim: feature size.
        init_rate: the per-frame weight at the start (about 6 units per second at 50 frames
            per second, rather than sigmoid(0) = 0.5, 25 per second).
        detach: learn the boundaries in the CIF weights alone: the speech model gets gradients
            through the units' contents, not through the quantity loss. Measured on a
            HuBERT-shaped student, the quantity loss's gradient into the student was about 120
            times the layer-wise loss's, and swamped it.
    """

    def __init__(self, dim: int, init_rate: float = 0.12, detach: bool = True):
        super().__init__()
        self.detach = detach
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)   # weights independent of the feature scale
        self.weight = nn.Linear(dim, 1)
        nn.init.constant_(self.weight.bias, float(torch.logit(torch.tensor(init_rate))))

    def alphas(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame weights in (0, 1), [batch, frames]; 0 on padded frames."""
        a = torch.sigmoid(self.weight(self.norm(hidden.detach() if self.detach else hidden)).squeeze(-1))
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
            quantity_loss (mean |sum(alpha) - N| / N, the count error relative to the count, so
            that its scale does not grow with the transcript length; 0 without `num_units`).
        """
        alpha = self.alphas(hidden, mask)
        total = alpha.sum(-1)
        if num_units is None:
            counts = total.round().clamp(min=1)
            quantity = hidden.new_zeros(())
        else:
            counts = num_units.to(alpha.dtype)
            quantity = ((total - counts).abs() / counts.clamp(min=1)).mean()
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


def default_text_layers(units: list[str], student_layers: int) -> list[int]:
    """One student layer per unit, spread evenly from shallow (finest) to the last (coarsest):
    round(L * i / n) for i = 1..n, e.g. 4, 8, 12 for three units on 12 layers."""
    n = len(units)
    return [max(1, min(student_layers, round(student_layers * (i + 1) / n))) for i in range(n)]


class TextHeads(SavedHeads):
    """Auxiliary heads distilled from a text teacher, one per unit granularity.

    Unit g reads student layer `layers[i]` (HF indexing). Token and word units are CIF
    segments of that layer (as many as the transcript has tokens / words), projected to the
    text width and aligned to the token / word embeddings (local alignment); the utterance
    unit is the layer's masked mean, projected and aligned to the sentence embedding (global).

    Args:
        student_dim, text_dim: widths.
        units: granularities, a subset of `UNITS`.
        layers: student layer per unit.
        adaptive: learn the granularity weights (else all 1).
    """

    stem = "text_heads"

    def __init__(self, student_dim: int, text_dim: int, units: list[str], layers: list[int], adaptive: bool = True):
        super().__init__()
        bad = [u for u in units if u not in UNITS]
        if bad or not units:
            raise ValueError(f"text units {list(units)}: choose among {UNITS}")
        if len(layers) != len(units):
            raise ValueError(f"{len(units)} text units need as many student layers, got {list(layers)}")
        self.spec = dict(student_dim=student_dim, text_dim=text_dim, units=list(units), layers=list(layers),
                         adaptive=adaptive)
        self.cif = nn.ModuleDict({u: CIF(student_dim) for u in units if u != "utterance"})
        self.proj = nn.ModuleDict({u: nn.Sequential(nn.Linear(student_dim, student_dim), nn.GELU(),
                                                    nn.Linear(student_dim, text_dim)) for u in units})
        self.log_vars = nn.Parameter(torch.zeros(len(units))) if adaptive else None

    @property
    def units(self) -> list[str]:
        return self.spec["units"]

    def unit_weights(self) -> dict[str, float]:
        """The current adaptive weight exp(-s_g) of each granularity."""
        if self.log_vars is None:
            return {u: 1.0 for u in self.units}
        return {u: float(w) for u, w in zip(self.units, torch.exp(-self.log_vars.detach()))}

    def forward(self, hidden_states: tuple[torch.Tensor, ...], frame_mask: torch.Tensor, text,
                scale: dict[str, float] | None = None, contrastive_weight: float = 0.0,
                slack: float = 0.5) -> dict[str, torch.Tensor]:
        """Raw losses of each unit plus `quantity` and `monotonic` (CIF units), and `adaptive`:
        sum over units of scale_g * (exp(-s_g) * L_g + s_g) (scale_g * L_g when not adaptive).

        Args:
            hidden_states: the student's, HF indexing.
            frame_mask: [batch, frames] True on real frames.
            text: a `TextBatch` of the same batch (clips without text are left out).
            scale: fixed weight of each unit's loss (e.g. global vs local alignment); default 1.
        """
        rows = text.has_text
        if not bool(rows.any()):
            return {}
        text = text.select(rows)
        mask = frame_mask[rows]
        out: dict[str, torch.Tensor] = {}
        quantity, monotonic = [], []
        for unit, layer in zip(self.units, self.spec["layers"]):
            h = hidden_states[layer][rows].float()
            frames = min(h.shape[1], mask.shape[1])
            h, m = h[:, :frames], mask[:, :frames]
            if unit == "utterance":
                pooled = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
                out[unit] = global_alignment_loss(self.proj[unit](pooled), text.sentence, contrastive_weight)
                continue
            targets, t_mask = (text.tokens, text.token_mask) if unit == "token" else (text.words, text.word_mask)
            weights = text.token_weight if unit == "token" else None
            seg = self.cif[unit](h, m, t_mask.sum(-1))
            k = min(seg["units"].shape[1], targets.shape[1])
            units = self.proj[unit](seg["units"][:, :k])
            both = seg["unit_mask"][:, :k] & t_mask[:, :k]
            out[unit] = local_alignment_loss(units, targets[:, :k], both,
                                             weights[:, :k] if weights is not None else None)
            quantity.append(seg["quantity_loss"])
            monotonic.append(monotonic_prior(seg["weights"], seg["unit_mask"], m, slack))
        raw = torch.stack([out[u] for u in self.units])
        lam = raw.new_tensor([(scale or {}).get(u, 1.0) for u in self.units])
        if self.log_vars is not None:
            raw = torch.exp(-self.log_vars) * raw + self.log_vars
        out["adaptive"] = (lam * raw).sum()
        if quantity:
            out["quantity"] = torch.stack(quantity).mean()
            out["monotonic"] = torch.stack(monotonic).mean()
        return out


def text_setup(cfg, clips, s_cfg):
    """(text teacher, one transcript per clip, text heads) for text-informed distillation, from a
    `DistillConfig` (text_* fields), the clips and the student's config."""
    from edgedistill.models.text_teacher import load_text_teacher

    if cfg.text_source == "label":
        transcripts = [c.label.replace("_", " ") if c.label else None for c in clips]
    else:
        transcripts = [c.text for c in clips]
    if not any(transcripts):
        raise ConfigError(f"text_teacher is set but no clip of '{cfg.data}' has a transcript in its "
                          f"'{cfg.text_source}' column: add a 'text' column to the manifest, or set "
                          "text_source=label for keyword data")
    missing = sum(t is None for t in transcripts)
    if missing:
        log.warning("%d of %d clips have no transcript: text losses skip them", missing, len(clips))
    units = cfg.active_units()
    layers = ([l for u, l in zip(cfg.text_units, cfg.text_layers) if u in units] if cfg.text_layers
              else default_text_layers(units, s_cfg.num_hidden_layers))
    if max(layers) > s_cfg.num_hidden_layers or min(layers) < 1:
        raise ConfigError(f"text_layers {layers} outside the student's 1..{s_cfg.num_hidden_layers}")
    text_teacher = load_text_teacher(cfg.text_teacher, seed=cfg.seed)
    torch.manual_seed(cfg.seed + 1)
    heads = TextHeads(s_cfg.hidden_size, text_teacher.dim, units, layers, cfg.adaptive_units)
    log.info("text teacher %s (width %d): units %s at student layers %s", cfg.text_teacher, text_teacher.dim,
             units, layers)
    return text_teacher, transcripts, heads
