"""Recipe: layer-wise distillation of a student from a frozen teacher.

    edgedistill distill --teacher ID_OR_PATH --student distilhubert --data DIR --out DIR

Plain PyTorch on `accelerate`: the same code runs on one CPU, one GPU, or several processes
(`accelerate launch` / `torchrun`), with mixed precision for the student and an fp32 teacher.

Reading order: `distill` (the entry: set-up, then the loop), `distill_loss` (one batch's loss:
the function to change for another objective), then the set-up helpers. The run folder,
resume, log and checkpoints are `edgedistill.training.session.TrainingRun`'s.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
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
from edgedistill.recipes.distill_config import DistillConfig
from edgedistill.training.optim import lr_at, make_adamw, set_lr
from edgedistill.training.session import TrainingRun

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
    session = TrainingRun("distill", cfg, "edgedistill distill")
    if (done := session.finished_already(resume and not overwrite)) is not None:
        return done
    # Models and data are loaded before the run folder is claimed: a misspelt teacher writes nothing.
    job, init = _set_up(cfg, session.accelerator)
    session.claim(resume, overwrite)
    _set_up_training(cfg, session, job)
    step, _ = session.restore(job.model, job.optimizer, resume)
    job.model, job.optimizer = session.accelerator.prepare(job.model, job.optimizer)
    job.split_parameters()
    if session.is_main and job.dataset.skipped:
        (session.out / "skipped_clips.txt").write_text("".join(f"{p}\t{why}\n" for p, why in job.dataset.skipped))

    t0 = time.perf_counter()
    step = _train(cfg, session, job, step, session.start(step, stop_after), t0)
    session.close()
    summary = {"steps_done": step, "finished": step >= cfg.steps, "params": init["params"],
               "teacher_init_copied": len(init["copied"]), "targets": job.targets.targets,
               "ranks_in_sync": _ranks_in_sync(session.accelerator, job.model),
               "layerwise_weight": cfg.layerwise_weight, "text_teacher": cfg.text_teacher,
               "text_units": job.text_heads.spec if job.text_heads is not None else None,
               "processes": session.accelerator.num_processes, "elapsed_s": time.perf_counter() - t0}
    if session.is_main and step >= cfg.steps:
        _save_final(session.accelerator.unwrap_model(job.model), job.teacher, session.out)
        (session.out / "summary.json").write_text(json.dumps(summary, indent=1))
    session.accelerator.wait_for_everyone()
    return {**summary, "main_process": session.is_main}


@dataclass
class LayerTargets:
    """What the layer-wise loss compares: teacher layers `targets` (HF indexing), the student
    layers that predict them (layer-to-layer only), and the CNN hint's weight (layer 0)."""

    targets: list[int]
    student_layers: list[int] | None
    hint_weight: float

    @property
    def layers(self) -> list[int]:
        """Teacher layers read per step (and cached): the targets, then layer 0 for the hint."""
        return self.targets + ([0] if self.hint_weight > 0 else [])


@dataclass
class _Job:
    """Everything a distillation step reads."""

    teacher: object
    model: DistillModel
    targets: LayerTargets
    heads: DistillHeads | None
    autocast: object = None
    text_teacher: object = None
    text_heads: object = None
    transcripts: list | None = None
    counts: object = None
    dataset: object = None
    sampler: object = None
    loader: object = None
    optimizer: object = None
    trainable: list = field(default_factory=list)
    text_trainable: list = field(default_factory=list)
    normalize: bool = False  # the student's input normalised per clip (`student_normalizes`)

    def split_parameters(self) -> None:
        """Clipped as two groups: the training-only text heads' gradients (large while CIF learns
        the unit count) must not shrink the student's and layer-wise heads' through a shared norm."""
        text_ids = {id(p) for p in self.text_heads.parameters()} if self.text_heads is not None else set()
        self.trainable = [p for p in self.model.parameters() if p.requires_grad and id(p) not in text_ids]
        self.text_trainable = [p for p in self.model.parameters() if p.requires_grad and id(p) in text_ids]


def distill_loss(cfg: DistillConfig, job: _Job, batch, device) -> tuple[torch.Tensor, dict]:
    """One batch's loss and its parts: the student (with its prediction heads) against the
    teacher's layers (DistilHuBERT: L1 - log sigmoid(cos), summed over targets), the CNN hint,
    and the text-informed losses where a text teacher is set. The teacher runs here unless its
    layers come from the target cache."""
    wave, lengths, *rest = batch
    cached = rest.pop() if cfg.target_cache else None
    wave = wave.to(device, non_blocking=True)
    lengths = lengths.to(device, non_blocking=True)
    teacher, t = job.teacher, job.targets
    # Teacher: no grad, eval, in teacher_precision. With reuse_teacher_cnn its CNN output feeds both.
    feats = teacher.cnn_features(wave) if cfg.reuse_teacher_cnn else None
    text_batch = None
    if job.text_teacher is not None:
        text_batch = job.text_teacher.encode(rest[0])
        text_batch.token_weight = token_prior(text_batch.token_ids, text_batch.token_mask, job.counts)
        text_batch = text_batch.to(device)
    text_kw = {"scale": {"utterance": cfg.global_weight, "token": cfg.local_weight, "word": cfg.local_weight},
               "contrastive_weight": cfg.contrastive_weight}
    with job.autocast():
        outputs = job.model(prepare_input(wave, job.normalize), lengths,
                            features=feats, text=text_batch,
                            **text_kw)
    loss, parts = wave.new_zeros(()), {}
    if job.heads is not None:
        if cached is not None:
            target = cached.to(device, non_blocking=True).float()
        else:
            hidden = teacher(wave, features=feats)
            target = torch.stack([hidden[i] for i in t.layers]).float()
        pred = outputs["pred"]
        frames = min(pred.shape[2], target.shape[2])
        pred, target = pred[:, :, :frames], target[:, :, :frames]
        mask = outputs["mask"][:, :frames]  # computed once, in the model
        layer_loss, parts = layerwise_loss(pred, target[:len(t.targets)], mask, cfg.cos_weight)
        loss = loss + cfg.layerwise_weight * layer_loss
        parts["layerwise"] = layer_loss.detach()
        if outputs["hint"] is not None:
            hint_loss, _ = layerwise_loss(outputs["hint"][None, :, :frames], target[len(t.targets):], mask,
                                          cfg.cos_weight)
            loss = loss + t.hint_weight * hint_loss
            parts["cnn_hint"] = hint_loss.detach()
    if text_losses := outputs["text"]:
        loss = loss + cfg.text_weight * text_losses["adaptive"]
        if "quantity" in text_losses:
            loss = loss + cfg.quantity_weight * text_losses["quantity"] + cfg.monotonic_weight * text_losses["monotonic"]
        parts.update({f"text_{k}": v.detach() for k, v in text_losses.items()})
    return loss, parts


def _train(cfg: DistillConfig, session: TrainingRun, job: _Job, step: int, end: int, t0: float) -> int:
    """The loop, from `step` to `end`; returns the step reached. Logs every `log_every` steps,
    checkpoints every `save_every` (and at the end)."""
    accelerator, meter = session.accelerator, _Meter()
    job.model.train()
    while step < end:
        job.sampler.set_epoch(step // len(job.sampler), start_batch=step % len(job.sampler))
        for batch in job.loader:
            # still on the CPU: no device sync
            meter.audio_s += float(batch[1].sum()) / 16_000 * accelerator.num_processes
            loss, parts = distill_loss(cfg, job, batch, accelerator.device)
            set_lr(job.optimizer, lr_at(step, cfg.steps, cfg.lr, cfg.warmup_frac))
            grad_norm = _optimizer_step(cfg, accelerator, job, loss, parts)
            step += 1
            meter.add(loss, parts)
            session.advance()
            saving = step % cfg.save_every == 0 or step == end
            if step % cfg.log_every == 0 or saving:
                meter.check_finite(step)
            if step % cfg.log_every == 0 or step == end:
                rec = meter.record(step, job.optimizer.param_groups[0]["lr"], grad_norm, parts, t0)
                if job.text_heads is not None:
                    rec["text_unit_weights"] = accelerator.unwrap_model(job.model).text_heads.unit_weights()
                session.log(rec, loss=f"{rec['loss']:.4f}", audio_x=f"{rec['audio_s_per_s']:.1f}")
            if saving:
                session.save(job.model, job.optimizer, step)
            if step >= end:
                break
    return step


def _optimizer_step(cfg: DistillConfig, accelerator, job: _Job, loss: torch.Tensor, parts: dict) -> torch.Tensor:
    """Backward, clip (the student's and the text heads' gradients apart), step; the grad norm."""
    if loss.requires_grad:
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(job.trainable, cfg.grad_clip)
        if job.text_trainable:
            parts["text_grad_norm"] = accelerator.clip_grad_norm_(job.text_trainable, cfg.grad_clip).detach()
        job.optimizer.step()
    else:  # text losses alone and no clip of this batch has a transcript
        grad_norm = torch.zeros(())
    job.optimizer.zero_grad(set_to_none=True)
    return grad_norm


class _Meter:
    """Loss and scalar parts summed over a log interval. No device sync per step: the loss stays
    on the device until the log interval or a checkpoint, where it is read once (and a non-finite
    loss stops the run before saving)."""

    def __init__(self):
        self.audio_s = 0.0
        self.reset()

    def reset(self):
        self.loss, self.n, self.sums, self.counts = 0.0, 0, {}, {}

    def add(self, loss: torch.Tensor, parts: dict) -> None:
        self.loss += loss.detach()
        self.n += 1
        for k, v in parts.items():  # scalar parts: means over the log interval
            if v.ndim == 0:
                self.sums[k] = self.sums.get(k, 0.0) + v
                self.counts[k] = self.counts.get(k, 0) + 1

    def check_finite(self, step: int) -> None:
        if not torch.isfinite(torch.as_tensor(self.loss)):
            raise FloatingPointError(f"the loss became {float(self.loss)} within the {self.n} steps before step "
                                     f"{step}: lower lr or use mixed_precision=no; the last checkpoint is intact")

    def record(self, step: int, lr: float, grad_norm, parts: dict, t0: float) -> dict:
        elapsed = time.perf_counter() - t0
        rec = {"step": step, "loss": float(self.loss) / self.n, "lr": lr, "grad_norm": float(grad_norm),
               "audio_s": self.audio_s, "elapsed_s": elapsed, "audio_s_per_s": self.audio_s / max(elapsed, 1e-9)}
        rec.update({k: parts[k].tolist() for k in ("l1", "cos", "cos_sim") if k in parts})
        rec.update({k: float(v) / self.counts[k] for k, v in self.sums.items()})  # interval means
        self.reset()
        return rec


def _set_up(cfg: DistillConfig, accelerator) -> tuple[_Job, dict]:
    """Teacher (frozen, fp32, eval), a student initialised from it, the layer-wise heads and the
    text teacher: (the job so far, the student's init report)."""
    teacher = load_teacher(cfg.teacher, seed=cfg.seed).to(accelerator.device)
    student, init = build_student(teacher.model, cfg.student, seed=cfg.seed)  # from the fp32 weights
    teacher.set_precision(cfg.teacher_precision)
    log.info("teacher %s in %s, %s attention; student %s attention; %s", cfg.teacher, cfg.teacher_precision,
             teacher.config._attn_implementation, student.config._attn_implementation,
             f"targets cached in {cfg.target_cache}" if cfg.target_cache else "teacher runs every step")
    t_cfg, s_cfg = teacher.config, student.config
    targets = layer_targets(cfg, t_cfg.num_hidden_layers, s_cfg.num_hidden_layers, not is_whisper(teacher.model))
    heads = (DistillHeads(cfg.objective, s_cfg.hidden_size, t_cfg.hidden_size, targets.targets,
                          targets.student_layers, cnn_hint=targets.hint_weight > 0)
             if cfg.layerwise_weight > 0 else None)
    clips = distillation_clips(cfg.data, cfg.split)
    text_teacher, transcripts, text_heads = None, None, None
    if cfg.text_teacher:
        text_teacher, transcripts, text_heads = text_setup(cfg, clips, s_cfg)
        text_teacher.to(accelerator.device)
    model = DistillModel(student, heads, cfg.feature_grad_mult,
                         freeze_cnn=cfg.freeze_cnn or cfg.reuse_teacher_cnn, text_heads=text_heads)
    job = _Job(teacher, model, targets, heads, accelerator.autocast, text_teacher, text_heads, transcripts,
               dataset=CroppedAudio(clips, cfg.max_samples, transcripts=transcripts),
               normalize=student_normalizes(teacher, student))
    return job, init


def layer_targets(cfg: DistillConfig, teacher_layers: int, student_layers: int, teacher_has_cnn: bool) -> LayerTargets:
    """The teacher layers to predict, the student layers predicting them and the hint's weight,
    checked against the two models' depths."""
    targets = cfg.target_layers or default_targets(teacher_layers)
    if max(targets) > teacher_layers or min(targets) < 0:
        raise ConfigError(f"target_layers {targets} outside the teacher's 0..{teacher_layers}")
    s_layers = None
    if cfg.objective == "layer-to-layer":
        s_layers = cfg.student_layers or default_student_layers(targets, teacher_layers, student_layers)
        if max(s_layers) > student_layers:
            raise ConfigError(f"student_layers {s_layers} outside the student's 0..{student_layers}")
    return LayerTargets(targets, s_layers, cfg.hint_weight(teacher_has_cnn=teacher_has_cnn))


def _set_up_training(cfg: DistillConfig, session: TrainingRun, job: _Job) -> None:
    """The target cache (written first if missing), the batches, and the optimizer."""
    accelerator = session.accelerator
    collate = collate_padded
    if cfg.target_cache:
        from edgedistill.distill.cache import CachedTargets, collate_targets, prepare_cache

        cache = prepare_cache(cfg.target_cache, accelerator, job.teacher, cfg.teacher, job.targets.layers,
                              cfg.teacher_precision, job.dataset, cfg.seed, cfg.batch_size)
        job.dataset, collate = CachedTargets(job.dataset, cache), collate_targets
    # Each rank reads only its own batches (see BucketBatchSampler).
    job.sampler = BucketBatchSampler(job.dataset.lengths, cfg.batch_size, cfg.seed, accelerator.process_index,
                                     accelerator.num_processes, fixed_crops=cfg.target_cache is not None)
    # Its own generator: each new iterator draws a seed, which must not move the global RNG
    # (dropout) or a resumed run would diverge from an uninterrupted one. Crops come from the
    # sampler's seeds, so the batches do not depend on the number of workers.
    on_gpu = accelerator.device.type == "cuda"
    workers = default_workers(accelerator.num_processes, on_gpu) if cfg.num_workers is None else cfg.num_workers
    job.loader = DataLoader(job.dataset, batch_sampler=job.sampler, collate_fn=collate,
                            generator=torch.Generator().manual_seed(cfg.seed), **loader_options(workers, on_gpu))
    if cfg.compile:
        job.model.compile_parts()
    job.optimizer = make_adamw(job.model.parameters(), cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay)
    if job.text_teacher is not None and cfg.frequency_prior:
        job.counts = job.text_teacher.token_counts([t for t in job.transcripts if t])


def student_normalizes(teacher, student) -> bool:
    """Whether the student's input is normalised per clip as the teacher's: yes, except for a micro
    student, which streams (a stream has no whole clip to normalise; its front end's BatchNorm
    sets the level)."""
    from edgedistill.models.micro import is_micro

    return bool(teacher.do_normalize) and not is_micro(student)


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
                             do_normalize=student_normalizes(teacher, model.student),
                             return_attention_mask=False).save_pretrained(out / "student")
    if model.heads is not None:
        model.heads.save(out / "heads")
    if model.text_heads is not None:
        model.text_heads.save(out / "heads")
