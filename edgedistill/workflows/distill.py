"""Workflow: layer-wise distillation of a student from a frozen teacher.

    edgedistill distill --teacher ID_OR_PATH --student distilhubert --data DIR --out DIR

Plain PyTorch on `accelerate`: the same code runs on one CPU, one GPU, or several processes
(`accelerate launch` / `torchrun`), with mixed precision for the student and an fp32 teacher.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from edgedistill.config import ConfigError
from edgedistill.data.layouts import distillation_clips
from edgedistill.data.unlabelled import BucketBatchSampler, CroppedAudio, collate_padded
from edgedistill.distill.config import DistillConfig
from edgedistill.distill.heads import DistillHeads, default_student_layers, default_targets
from edgedistill.distill.losses import layerwise_loss
from edgedistill.distill.model import DistillModel
from edgedistill.distill.text import token_prior
from edgedistill.models.student import build_student
from edgedistill.models.teacher import load_teacher, prepare_input
from edgedistill.training.checkpoint import Checkpointer, restore_training_state, save_training_state
from edgedistill.training.optim import lr_at, make_adamw, set_lr
from edgedistill.training.run import TrainLog, begin_run, claim_run_folder, make_accelerator

log = logging.getLogger("edgedistill.distill")

# Fields that may change between a run and its resumption without changing the result.
_RESUMABLE = {"log_every", "save_every", "keep_checkpoints", "num_workers", "log_with", "steps"}


def distill(cfg: DistillConfig, resume: bool = False, stop_after: int | None = None,
            overwrite: bool = False) -> dict:
    """Runs (or resumes) a distillation; returns a summary dict.

    Args:
        cfg: the stage's config.
        resume: continue from the newest checkpoint in `cfg.out` (a fresh start if none).
        stop_after: stop (with a checkpoint) once this many steps are done, as if
            interrupted; `resume=True` later continues to `cfg.steps`.
        overwrite: replace whatever run `cfg.out` holds (without it, a folder holding a run is
            refused unless `resume`).

    Writes to `cfg.out`: `student/` (`save_pretrained` + feature-extractor config),
    `heads/` (training-only heads), `checkpoints/`, `config.yaml`, `train_log.jsonl`,
    `summary.json`.
    """
    acc = make_accelerator(cfg.mixed_precision, cfg.cpu, cfg.log_with, Path(cfg.out) / "tensorboard")
    out = Path(cfg.out)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    done = begin_run(acc, "distill", out, ckpt, resume and not overwrite)
    if done is not None:
        return done

    # Teacher (frozen, fp32, eval) and a student initialised from it. Checked before the run
    # folder is claimed: a misspelt teacher writes nothing.
    teacher = load_teacher(cfg.teacher, seed=cfg.seed).to(acc.device)
    student, init = build_student(teacher.model, cfg.student, seed=cfg.seed)
    t_cfg, s_cfg = teacher.config, student.config
    targets = cfg.target_layers or default_targets(t_cfg.num_hidden_layers)
    if max(targets) > t_cfg.num_hidden_layers or min(targets) < 0:
        raise ConfigError(f"target_layers {targets} outside the teacher's 0..{t_cfg.num_hidden_layers}")
    s_layers = None
    if cfg.objective == "layer-to-layer":
        s_layers = cfg.student_layers or default_student_layers(
            targets, t_cfg.num_hidden_layers, s_cfg.num_hidden_layers)
        if max(s_layers) > s_cfg.num_hidden_layers:
            raise ConfigError(f"student_layers {s_layers} outside the student's 0..{s_cfg.num_hidden_layers}")
    heads = (DistillHeads(cfg.objective, s_cfg.hidden_size, t_cfg.hidden_size, targets, s_layers)
             if cfg.layerwise_weight > 0 else None)

    # Data: each rank reads only its own batches (see BucketBatchSampler).
    clips = distillation_clips(cfg.data, cfg.split)
    text_teacher, transcripts, text_heads = None, None, None
    if cfg.text_teacher:
        text_teacher, transcripts, text_heads = _text_setup(cfg, clips, s_cfg)
        text_teacher.to(acc.device)
    claim_run_folder(acc, cfg, out, resume, ckpt, "edgedistill distill", _RESUMABLE, overwrite)
    model = DistillModel(student, heads, cfg.feature_grad_mult,
                         freeze_cnn=cfg.freeze_cnn or cfg.reuse_teacher_cnn, text_heads=text_heads)
    dataset = CroppedAudio(clips, cfg.max_samples, transcripts=transcripts)
    sampler = BucketBatchSampler(dataset.lengths, cfg.batch_size, cfg.seed,
                                 acc.process_index, acc.num_processes)
    # Its own generator: each new iterator draws a seed, which must not move the global RNG
    # (dropout) or a resumed run would diverge from an uninterrupted one.
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_padded,
                        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed))

    optimizer = make_adamw(model.parameters(), cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay)
    step, state = restore_training_state(ckpt, model, optimizer, acc.process_index) if resume else (0, {})
    if step:
        log.info("resumed from %s at step %d", state["checkpoint"], step)
    model, optimizer = acc.prepare(model, optimizer)
    # Clipped as two groups: the training-only text heads' gradients (large while CIF learns
    # the unit count) must not shrink the student's and layer-wise heads' through a shared norm.
    text_ids = {id(p) for p in text_heads.parameters()} if text_heads is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    text_trainable = [p for p in model.parameters() if p.requires_grad and id(p) in text_ids]

    if acc.is_main_process and dataset.skipped:
        (out / "skipped_clips.txt").write_text("".join(f"{p}\t{why}\n" for p, why in dataset.skipped))
    end = min(cfg.steps, stop_after) if stop_after is not None else cfg.steps
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="distill", unit="step",
               disable=not acc.is_main_process, dynamic_ncols=True)
    logf = TrainLog(acc, out, "distill", cfg)
    audio_s, t0, loss_acc, n_acc = 0.0, time.perf_counter(), 0.0, 0
    parts_acc: dict[str, torch.Tensor] = {}
    parts_n: dict[str, int] = {}
    model.train()
    counts = text_teacher.token_counts([t for t in transcripts if t]) if text_teacher and cfg.frequency_prior else None
    text_kw = {"scale": {"utterance": cfg.global_weight, "token": cfg.local_weight, "word": cfg.local_weight},
               "contrastive_weight": cfg.contrastive_weight}
    while step < end:
        sampler.set_epoch(step // len(sampler), start_batch=step % len(sampler))
        for wave, lengths, *texts in loader:
            wave, lengths = wave.to(acc.device), lengths.to(acc.device)
            x = prepare_input(wave, teacher.do_normalize)
            # Teacher: no grad, fp32, eval. With reuse_teacher_cnn its CNN output feeds both.
            feats = teacher.cnn_features(wave) if cfg.reuse_teacher_cnn else None
            tb = None
            if text_teacher is not None:
                tb = text_teacher.encode(texts[0])
                tb.token_weight = token_prior(tb.token_ids, tb.token_mask, counts)
                tb = tb.to(acc.device)
            with acc.autocast():
                res = model(x, lengths, features=feats, text=tb, **text_kw)
            loss, parts = wave.new_zeros(()), {}
            if heads is not None:
                hidden = teacher(wave, features=feats)
                target = torch.stack([hidden[t] for t in targets])
                pred = res["pred"]
                frames = min(pred.shape[2], target.shape[2])
                pred, target = pred[:, :, :frames], target[:, :, :frames]
                mask = res["mask"][:, :frames]  # computed once, in the model
                lw, parts = layerwise_loss(pred, target, mask, cfg.cos_weight)
                loss = loss + cfg.layerwise_weight * lw
                parts["layerwise"] = lw.detach()
            tl = res["text"]
            if tl:
                loss = loss + cfg.text_weight * tl["adaptive"]
                if "quantity" in tl:
                    loss = loss + cfg.quantity_weight * tl["quantity"] + cfg.monotonic_weight * tl["monotonic"]
                parts.update({f"text_{k}": v.detach() for k, v in tl.items()})
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}: lower lr or "
                                         "use mixed_precision=no; the last checkpoint is intact")
            set_lr(optimizer, lr_at(step, cfg.steps, cfg.lr, cfg.warmup_frac))
            if loss.requires_grad:
                acc.backward(loss)
                grad_norm = acc.clip_grad_norm_(trainable, cfg.grad_clip)
                if text_trainable:
                    parts["text_grad_norm"] = acc.clip_grad_norm_(text_trainable, cfg.grad_clip).detach()
                optimizer.step()
            else:  # text losses alone and no clip of this batch has a transcript
                grad_norm = torch.zeros(())
            optimizer.zero_grad(set_to_none=True)
            step += 1
            # One sync per log interval, not per step: .item() waits for the device.
            audio_s += float(lengths.sum()) / 16_000 * acc.num_processes
            loss_acc += loss.detach()
            for k, v in parts.items():  # scalar parts: means over the log interval
                if v.ndim == 0:
                    parts_acc[k] = parts_acc.get(k, 0.0) + v
                    parts_n[k] = parts_n.get(k, 0) + 1
            n_acc += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == end:
                elapsed = time.perf_counter() - t0
                rec = {"step": step, "loss": float(loss_acc) / n_acc, "lr": optimizer.param_groups[0]["lr"],
                       "grad_norm": float(grad_norm), "audio_s": audio_s, "elapsed_s": elapsed,
                       "audio_s_per_s": audio_s / max(elapsed, 1e-9)}
                rec.update({k: parts[k].tolist() for k in ("l1", "cos", "cos_sim") if k in parts})
                rec.update({k: float(v) / parts_n[k] for k, v in parts_acc.items()})  # interval means
                if text_heads is not None:
                    rec["text_unit_weights"] = acc.unwrap_model(model).text_heads.unit_weights()
                parts_acc, parts_n = {}, {}
                bar.set_postfix(loss=f"{rec['loss']:.4f}", audio_x=f"{rec['audio_s_per_s']:.1f}")
                logf.write(rec)
                loss_acc, n_acc = 0.0, 0
            if step % cfg.save_every == 0 or step == end:
                save_training_state(acc, ckpt, model, optimizer, step)
            if step >= end:
                break
    bar.close()
    logf.close()
    in_sync = _ranks_in_sync(acc, model)
    summary = {"steps_done": step, "finished": step >= cfg.steps, "params": init["params"],
               "teacher_init_copied": len(init["copied"]), "targets": targets,
               "ranks_in_sync": in_sync, "layerwise_weight": cfg.layerwise_weight,
               "text_teacher": cfg.text_teacher, "text_units": text_heads.spec if text_heads is not None else None,
               "processes": acc.num_processes, "elapsed_s": time.perf_counter() - t0}
    if acc.is_main_process and step >= cfg.steps:
        _save_final(acc.unwrap_model(model), teacher, out)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    acc.wait_for_everyone()
    return {**summary, "main_process": acc.is_main_process}


def _text_setup(cfg: DistillConfig, clips, s_cfg):
    """(text teacher, one transcript per clip, text heads) for text-informed distillation."""
    from edgedistill.distill.text import TextHeads, default_text_layers
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


def _ranks_in_sync(acc, model) -> bool:
    """All ranks hold the same weights (a cheap checksum, gathered)."""
    with torch.no_grad():
        total = sum(p.double().sum() for p in acc.unwrap_model(model).parameters())
        sums = acc.gather(total.reshape(1).to(acc.device))
    return bool(torch.allclose(sums, sums[0].expand_as(sums), rtol=0, atol=0)) and math.isfinite(float(sums[0]))


def _save_final(model: DistillModel, teacher, out: Path) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    model.student.save_pretrained(out / "student")
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0,
                             do_normalize=teacher.do_normalize,
                             return_attention_mask=False).save_pretrained(out / "student")
    if model.heads is not None:
        model.heads.save(out / "heads")
    if model.text_heads is not None:
        model.text_heads.save(out / "heads")
