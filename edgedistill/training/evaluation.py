"""Evaluate a multi-task model on labelled clips: KWS accuracy / confusion / FRR at 1% FAR,
and SV EER / minDCF over same/different-speaker trials drawn from the clips' speakers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgedistill.data.labelled import IGNORE, LabelledAudio, collate_labelled
from edgedistill.data.manifest import Clip
from edgedistill.evaluation.scores import task_metrics

ARRAYS = ("probs", "embeddings", "trial_scores", "trial_targets")  # left out of the PyTorch report


@torch.no_grad()
def embed_clips(model, clips: list[Clip], num_samples: int = 16_000, batch_size: int = 32,
                device: str | torch.device = "cpu", progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """-> (KWS probabilities [n, classes], L2-normalised embeddings [n, emb_dim])."""
    ds = LabelledAudio(clips, [IGNORE] * len(clips), [IGNORE] * len(clips), num_samples)
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=collate_labelled)
    was_training = model.training
    model.eval()
    probs, embs = [], []
    it = loader
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(loader, desc="evaluate", unit="batch", leave=False)
    for wave, _, _ in it:
        out = model(wave.to(device))
        probs.append(torch.softmax(out["kws_logits"].float(), -1).cpu())
        embs.append(torch.nn.functional.normalize(out["embedding"].float(), dim=-1).cpu())
    model.train(was_training)
    return torch.cat(probs).numpy(), torch.cat(embs).numpy()


def evaluate_model(model, clips: list[Clip], num_samples: int = 16_000, batch_size: int = 32,
                   num_trials: int = 20_000, seed: int = 0, device="cpu", progress: bool = False,
                   trials: np.ndarray | None = None) -> dict:
    """KWS and SV metrics of a PyTorch `MultiTaskModel` on `clips`: the same as the ONNX
    evaluation (`evaluation.scores.task_metrics`, without its arrays), with PyTorch outputs."""
    probs, emb = embed_clips(model, clips, num_samples, batch_size, device, progress)
    report = task_metrics(probs, emb, clips, model.labels, trials, num_trials, seed,
                          sv_threshold=model.spec.get("sv_threshold"))
    return {k: v for k, v in report.items() if k not in ARRAYS}
