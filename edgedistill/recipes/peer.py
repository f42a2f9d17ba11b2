"""Recipe: the openWakeWord peer, trained on exactly what a student's fine-tuning sees.

    edgedistill peer --config runs/X/finetune/config.yaml --out runs/peer

openWakeWord's frozen speech embedding (`edgedistill.peers.openwakeword`) with a small head
trained on the batches of the student's own fine-tuning config: the same clips, noise, gains
and, with `detect_keywords`, the same detection windows and their balance (`finetune._loader`).
The speaker head has no counterpart (openWakeWord does not verify speakers): only the keyword
labels of a batch train the head. Writes `model.fp32.onnx` (an edgedistill model: the same
`Detector`, `evaluate`, `evaluate-stream` and `calibrate` run it), `head.safetensors` and
`summary.json`; a finished folder is left alone.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edgedistill.data.labelled import IGNORE
from edgedistill.peers.openwakeword import OPENWAKEWORD, FeatureExtractor, make_head, peer_model
from edgedistill.recipes.finetune import _data, _loader
from edgedistill.recipes.finetune_config import FinetuneConfig
from edgedistill.training.optim import lr_at, set_lr

log = logging.getLogger("edgedistill.peer")


def train_openwakeword_peer(cfg: FinetuneConfig, out: str | Path, steps: int | None = None, lr: float = 1e-3,
                            width: int = 128, threads: int = 1) -> dict:
    """Trains the peer's head for `steps` (default the config's) batches of `cfg`; returns the
    summary (also `out/summary.json`)."""
    out = Path(out)
    if (out / "summary.json").is_file():
        log.info("peer: %s is finished already; delete it to train again", out)
        return json.loads((out / "summary.json").read_text())
    torch.manual_seed(cfg.seed)
    data = _data(replace(cfg, sv_data=None))
    loader, sampler = _loader(replace(cfg, sv_data=None, num_workers=0), data, rank=0)
    features = FeatureExtractor(cfg.clip_samples, threads)
    head = make_head(features.n, len(data.labels), width)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    end, losses = steps or cfg.steps, _train(head, optimizer, loader, sampler, features, cfg, steps or cfg.steps, lr)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out / "head.safetensors"))
    model = peer_model(head, data.labels, cfg.clip_samples,
                       {"peer_training": {"config": str(cfg.out), "steps": end, "lr": lr, "width": width}})
    tmp = out / "model.fp32.onnx.tmp"
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, out / "model.fp32.onnx")
    summary = {"peer": OPENWAKEWORD, "steps": end, "batch_size": cfg.batch_size, "labels": data.labels,
               "embeddings_per_window": features.n, "head_params": sum(p.numel() for p in head.parameters()),
               "final_loss": float(np.mean(losses[-50:])), "model": str(out / "model.fp32.onnx")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _train(head, optimizer, loader, sampler, features, cfg: FinetuneConfig, end: int, lr: float) -> list[float]:
    """The loop: frozen features of each batch, cross-entropy over the keyword labels."""
    from tqdm.auto import tqdm

    step, losses = 0, []
    head.train()
    with tqdm(total=end, desc="peer head", unit="step") as bar:
        while step < end:
            sampler.set_epoch(step // len(loader), start=(step % len(loader)) * cfg.batch_size)
            for wave, kw, _ in loader:
                keep = kw != IGNORE
                if not bool(keep.any()):
                    continue
                x = torch.from_numpy(features(wave[keep].numpy()))
                loss = torch.nn.functional.cross_entropy(head(x), kw[keep])
                set_lr(optimizer, lr_at(step, end, lr, cfg.warmup_frac))
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                if step >= end:
                    break
    head.eval()
    return losses
