"""Recipe: layer-wise distillation of a student from a frozen teacher.

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
from edgedistill.data.unlabelled import (BucketBatchSampler, CroppedAudio, collate_padded, default_workers,
                                         loader_options)
from edgedistill.distill.heads import DistillHeads, default_student_layers, default_targets
from edgedistill.distill.losses import layerwise_loss
from edgedistill.distill.model import DistillModel
from edgedistill.distill.text import text_setup, token_prior
from edgedistill.models.student import build_student
from edgedistill.models.teacher import is_whisper, load_teacher, prepare_input
from edgedistill.recipes.distill_config import _RESUMABLE, DistillConfig
from edgedistill.recipes.embedded_teacher import ensure_embedded_teacher
from edgedistill.training.checkpoint import Checkpointer, restore_training_state, save_training_state
from edgedistill.training.optim import lr_at, make_adamw, set_lr
from edgedistill.training.accelerator import TrainLog, begin_run, claim_run_folder, make_accelerator

log = logging.getLogger("edgedistill.distill")


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
    accelerator = make_accelerator(cfg.mixed_precision, cfg.cpu, cfg.log_with, Path(cfg.out) / "tensorboard")
    out = Path(cfg.out)
    with accelerator.main_process_first():  # one process builds, the others then find it
        ensure_embedded_teacher(cfg.teacher)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    done = begin_run(accelerator, "distill", out, ckpt, resume and not overwrite)
    if done is not None:
        return done

    # Teacher (frozen, fp32, eval) and a student initialised from it. Checked before the run
    # folder is claimed: a misspelt teacher writes nothing.
    teacher = load_teacher(cfg.teacher, seed=cfg.seed).to(accelerator.device)
    student, init = build_student(teacher.model, cfg.student, seed=cfg.seed)  # from the fp32 weights
    teacher.set_precision(cfg.teacher_precision)
    log.info("teacher %s in %s, %s attention; student %s attention; %s", cfg.teacher, cfg.teacher_precision,
             teacher.config._attn_implementation, student.config._attn_implementation,
             f"targets cached in {cfg.target_cache}" if cfg.target_cache else "teacher runs every step")
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
    hint_weight = cfg.hint_weight(teacher_has_cnn=not is_whisper(teacher.model))
    heads = (DistillHeads(cfg.objective, s_cfg.hidden_size, t_cfg.hidden_size, targets, s_layers,
                          cnn_hint=hint_weight > 0) if cfg.layerwise_weight > 0 else None)
    # Teacher layers read per step (and cached): the targets, then layer 0 for the CNN hint.
    layers = targets + ([0] if hint_weight > 0 else [])

    # Data: each rank reads only its own batches (see BucketBatchSampler).
    clips = distillation_clips(cfg.data, cfg.split)
    text_teacher, transcripts, text_heads = None, None, None
    if cfg.text_teacher:
        text_teacher, transcripts, text_heads = text_setup(cfg, clips, s_cfg)
        text_teacher.to(accelerator.device)
    claim_run_folder(accelerator, cfg, out, resume, ckpt, "edgedistill distill", _RESUMABLE, overwrite)
    model = DistillModel(student, heads, cfg.feature_grad_mult,
                         freeze_cnn=cfg.freeze_cnn or cfg.reuse_teacher_cnn, text_heads=text_heads)
    dataset = CroppedAudio(clips, cfg.max_samples, transcripts=transcripts)
    collate = collate_padded
    if cfg.target_cache:
        from edgedistill.distill.cache import CachedTargets, collate_targets, prepare_cache

        cache = prepare_cache(cfg.target_cache, accelerator, teacher, cfg.teacher, layers,
                              cfg.teacher_precision, dataset, cfg.seed, cfg.batch_size)
        dataset, collate = CachedTargets(dataset, cache), collate_targets
    sampler = BucketBatchSampler(dataset.lengths, cfg.batch_size, cfg.seed, accelerator.process_index,
                                 accelerator.num_processes, fixed_crops=cfg.target_cache is not None)
    # Its own generator: each new iterator draws a seed, which must not move the global RNG
    # (dropout) or a resumed run would diverge from an uninterrupted one. Crops come from the
    # sampler's seeds, so the batches do not depend on the number of workers.
    on_gpu = accelerator.device.type == "cuda"
    workers = default_workers(accelerator.num_processes, on_gpu) if cfg.num_workers is None else cfg.num_workers
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                        generator=torch.Generator().manual_seed(cfg.seed),
                        **loader_options(workers, on_gpu))
    if cfg.compile:
        model.compile_parts()

    optimizer = make_adamw(model.parameters(), cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay)
    step, state = restore_training_state(ckpt, model, optimizer, accelerator.process_index) if resume else (0, {})
    if step:
        log.info("resumed from %s at step %d", state["checkpoint"], step)
    model, optimizer = accelerator.prepare(model, optimizer)
    # Clipped as two groups: the training-only text heads' gradients (large while CIF learns
    # the unit count) must not shrink the student's and layer-wise heads' through a shared norm.
    text_ids = {id(p) for p in text_heads.parameters()} if text_heads is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    text_trainable = [p for p in model.parameters() if p.requires_grad and id(p) in text_ids]

    if accelerator.is_main_process and dataset.skipped:
        (out / "skipped_clips.txt").write_text("".join(f"{p}\t{why}\n" for p, why in dataset.skipped))
    end = min(cfg.steps, stop_after) if stop_after is not None else cfg.steps
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="distill", unit="step",
               disable=not accelerator.is_main_process, dynamic_ncols=True)
    logf = TrainLog(accelerator, out, "distill", cfg)
    audio_s, t0, loss_sum, n_sum = 0.0, time.perf_counter(), 0.0, 0
    parts_sum: dict[str, torch.Tensor] = {}
    parts_n: dict[str, int] = {}
    model.train()
    counts = text_teacher.token_counts([t for t in transcripts if t]) if text_teacher and cfg.frequency_prior else None
    text_kw = {"scale": {"utterance": cfg.global_weight, "token": cfg.local_weight, "word": cfg.local_weight},
               "contrastive_weight": cfg.contrastive_weight}
    while step < end:
        sampler.set_epoch(step // len(sampler), start_batch=step % len(sampler))
        for wave, lengths, *rest in loader:
            audio_s += float(lengths.sum()) / 16_000 * accelerator.num_processes  # still on the CPU: no device sync
            cached = rest.pop() if cfg.target_cache else None
            texts = rest
            wave = wave.to(accelerator.device, non_blocking=True)
            lengths = lengths.to(accelerator.device, non_blocking=True)
            x = prepare_input(wave, teacher.do_normalize)
            # Teacher: no grad, eval, in teacher_precision. With reuse_teacher_cnn its CNN output feeds both.
            feats = teacher.cnn_features(wave) if cfg.reuse_teacher_cnn else None
            text_batch = None
            if text_teacher is not None:
                text_batch = text_teacher.encode(texts[0])
                text_batch.token_weight = token_prior(text_batch.token_ids, text_batch.token_mask, counts)
                text_batch = text_batch.to(accelerator.device)
            with accelerator.autocast():
                outputs = model(x, lengths, features=feats, text=text_batch, **text_kw)
            loss, parts = wave.new_zeros(()), {}
            if heads is not None:
                if cached is not None:
                    target = cached.to(accelerator.device, non_blocking=True).float()
                else:
                    hidden = teacher(wave, features=feats)
                    target = torch.stack([hidden[t] for t in layers]).float()
                pred = outputs["pred"]
                frames = min(pred.shape[2], target.shape[2])
                pred, target = pred[:, :, :frames], target[:, :, :frames]
                mask = outputs["mask"][:, :frames]  # computed once, in the model
                layer_loss, parts = layerwise_loss(pred, target[:len(targets)], mask, cfg.cos_weight)
                loss = loss + cfg.layerwise_weight * layer_loss
                parts["layerwise"] = layer_loss.detach()
                if outputs["hint"] is not None:
                    hint_loss, _ = layerwise_loss(outputs["hint"][None, :, :frames], target[len(targets):], mask,
                                                  cfg.cos_weight)
                    loss = loss + hint_weight * hint_loss
                    parts["cnn_hint"] = hint_loss.detach()
            text_losses = outputs["text"]
            if text_losses:
                loss = loss + cfg.text_weight * text_losses["adaptive"]
                if "quantity" in text_losses:
                    loss = loss + cfg.quantity_weight * text_losses["quantity"] + cfg.monotonic_weight * text_losses["monotonic"]
                parts.update({f"text_{k}": v.detach() for k, v in text_losses.items()})
            set_lr(optimizer, lr_at(step, cfg.steps, cfg.lr, cfg.warmup_frac))
            if loss.requires_grad:
                accelerator.backward(loss)
                grad_norm = accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
                if text_trainable:
                    parts["text_grad_norm"] = accelerator.clip_grad_norm_(text_trainable, cfg.grad_clip).detach()
                optimizer.step()
            else:  # text losses alone and no clip of this batch has a transcript
                grad_norm = torch.zeros(())
            optimizer.zero_grad(set_to_none=True)
            step += 1
            # No device sync per step: the loss stays on the device until the log interval or a
            # checkpoint, where it is read once (and a non-finite loss stops the run before saving).
            loss_sum += loss.detach()
            for k, v in parts.items():  # scalar parts: means over the log interval
                if v.ndim == 0:
                    parts_sum[k] = parts_sum.get(k, 0.0) + v
                    parts_n[k] = parts_n.get(k, 0) + 1
            n_sum += 1
            bar.update(1)
            saving = step % cfg.save_every == 0 or step == end
            if (step % cfg.log_every == 0 or saving) and not torch.isfinite(loss_sum):
                raise FloatingPointError(f"the loss became {float(loss_sum)} within the {n_sum} steps before step "
                                         f"{step}: lower lr or use mixed_precision=no; the last checkpoint is intact")
            if step % cfg.log_every == 0 or step == end:
                elapsed = time.perf_counter() - t0
                rec = {"step": step, "loss": float(loss_sum) / n_sum, "lr": optimizer.param_groups[0]["lr"],
                       "grad_norm": float(grad_norm), "audio_s": audio_s, "elapsed_s": elapsed,
                       "audio_s_per_s": audio_s / max(elapsed, 1e-9)}
                rec.update({k: parts[k].tolist() for k in ("l1", "cos", "cos_sim") if k in parts})
                rec.update({k: float(v) / parts_n[k] for k, v in parts_sum.items()})  # interval means
                if text_heads is not None:
                    rec["text_unit_weights"] = accelerator.unwrap_model(model).text_heads.unit_weights()
                parts_sum, parts_n = {}, {}
                bar.set_postfix(loss=f"{rec['loss']:.4f}", audio_x=f"{rec['audio_s_per_s']:.1f}")
                logf.write(rec)
                loss_sum, n_sum = 0.0, 0
            if saving:
                save_training_state(accelerator, ckpt, model, optimizer, step)
            if step >= end:
                break
    bar.close()
    logf.close()
    in_sync = _ranks_in_sync(accelerator, model)
    summary = {"steps_done": step, "finished": step >= cfg.steps, "params": init["params"],
               "teacher_init_copied": len(init["copied"]), "targets": targets,
               "ranks_in_sync": in_sync, "layerwise_weight": cfg.layerwise_weight,
               "text_teacher": cfg.text_teacher, "text_units": text_heads.spec if text_heads is not None else None,
               "processes": accelerator.num_processes, "elapsed_s": time.perf_counter() - t0}
    if accelerator.is_main_process and step >= cfg.steps:
        _save_final(accelerator.unwrap_model(model), teacher, out)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    return {**summary, "main_process": accelerator.is_main_process}


def _ranks_in_sync(accelerator, model) -> bool:
    """All ranks hold the same weights (a cheap checksum, gathered)."""
    with torch.no_grad():
        total = sum(p.double().sum() for p in accelerator.unwrap_model(model).parameters())
        sums = accelerator.gather(total.reshape(1).to(accelerator.device))
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
