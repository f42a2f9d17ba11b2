"""Evaluate a multi-task model on labelled clips: KWS accuracy / confusion / FRR at 1% FAR,
and SV EER / minDCF over same/different-speaker trials drawn from the clips' speakers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgedistill.data.labelled import IGNORE, LabelledAudio, collate_labelled
from edgedistill.data.trials import label_index, trials_for_clips
from edgedistill.data.manifest import Clip
from edgedistill.metrics import kws_report, sv_report


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


def trial_scores(emb: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Cosine scores of trials [n, 3] (i, j, target) over normalised embeddings."""
    return np.einsum("nd,nd->n", emb[trials[:, 0]], emb[trials[:, 1]])


def evaluate_model(model, clips: list[Clip], num_samples: int = 16_000, batch_size: int = 32,
                   num_trials: int = 20_000, seed: int = 0, device="cpu", progress: bool = False,
                   trials: np.ndarray | None = None) -> dict:
    """KWS and SV metrics of `model` on `clips`.

    KWS is scored on the clips that have a keyword (all must be among the model's labels),
    SV on the clips that have a speaker (a `_silence_` crop has none), over `trials`
    ([n, 3] rows (i, j, target) into `clips`) or `num_trials` trials drawn with `seed`.

    Returns a dict with `kws_accuracy`, `sv_eer`, `sv_min_dcf` (normalised, P_tar 0.01),
    `sv_min_dcf_p0.05`, trial/speaker/clip counts, the KWS confusion and per-keyword FRR at
    1% FAR, and FAR/FRR at the model's saved SV threshold when it has one.
    """
    kw_idx = np.array([i for i, c in enumerate(clips) if c.label is not None], dtype=np.int64)
    sv_idx = np.array([i for i, c in enumerate(clips) if c.speaker is not None], dtype=np.int64)
    if len(kw_idx):
        targets = np.asarray(label_index([clips[i] for i in kw_idx], model.labels))
    probs, emb = embed_clips(model, clips, num_samples, batch_size, device, progress)
    report = {"clips": len(clips), "speakers": len({clips[i].speaker for i in sv_idx})}
    if len(kw_idx):
        k = kws_report(probs[kw_idx], targets, model.labels)
        report.update(kws_accuracy=k["accuracy"], kws_mean_frr_at_far0_01=k["mean_frr_at_far0.01"],
                      kws_confusion=k["confusion"], kws_labels=k["labels"],
                      kws_frr_at_far0_01=k["frr_at_far0.01"],
                      clips_per_label=dict(Counter(clips[i].label for i in kw_idx)))
    if trials is None and len(sv_idx):
        trials = trials_for_clips(clips, num_trials, seed)
    if trials is not None:
        scores = trial_scores(emb, trials)
        s = sv_report(scores, trials[:, 2])
        report.update(sv_eer=s["eer"], sv_eer_threshold=s["eer_threshold"], sv_min_dcf=s["min_dcf_p0.01"],
                      **{"sv_min_dcf_p0.05": s["min_dcf_p0.05"]}, trials=s["trials"],
                      target_trials=s["target_trials"])
        thr = model.spec.get("sv_threshold")
        if thr is not None:
            y = trials[:, 2].astype(bool)
            report.update(sv_threshold=thr, sv_far_at_threshold=float(np.mean(scores[~y] >= thr)),
                          sv_frr_at_threshold=float(np.mean(scores[y] < thr)))
    return report


def trials_from_list(clips: list[Clip], rows: list[tuple[int, str, str]], root) -> np.ndarray:
    """Official trial-list rows (label, rel_path1, rel_path2) -> [n, 3] indices into `clips`."""
    from pathlib import Path

    root = Path(root)
    base = root / "wav" if (root / "wav").is_dir() else root
    index = {str(c.path.relative_to(base)): i for i, c in enumerate(clips)}
    missing = [p for _, a, b in rows for p in (a, b) if p not in index]
    if missing:
        from edgedistill.data.manifest import ManifestError

        raise ManifestError(f"{len(missing)} trial-list file(s) are not among the clips, e.g. {missing[:3]}")
    return np.array([(index[a], index[b], y) for y, a, b in rows], dtype=np.int64)
