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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from edgedistill.config import MIXED_PRECISIONS, ConfigError
from edgedistill.distill.heads import OBJECTIVES
from edgedistill.distill.text import UNITS
from edgedistill.models.student import StudentConfig
from edgedistill.data.layouts import distillation_clips
from edgedistill.data.unlabelled import (BucketBatchSampler, CroppedAudio, collate_padded, default_workers,
                                         loader_options)
from edgedistill.distill.heads import DistillHeads, default_student_layers, default_targets
from edgedistill.distill.losses import layerwise_loss
from edgedistill.distill.model import DistillModel
from edgedistill.distill.text import text_setup, token_prior
from edgedistill.models.student import build_student
from edgedistill.models.teacher import TEACHER_PRECISIONS, load_teacher, prepare_input
from edgedistill.training.checkpoint import Checkpointer, restore_training_state, save_training_state
from edgedistill.training.optim import lr_at, make_adamw, set_lr
from edgedistill.training.accelerator import TrainLog, begin_run, claim_run_folder, make_accelerator

log = logging.getLogger("edgedistill.distill")

# Fields that may change between a run and its resumption without changing the result.
_RESUMABLE = {"log_every", "save_every", "keep_checkpoints", "num_workers", "log_with", "steps", "compile"}


@dataclass
class DistillConfig:
    """Layer-wise distillation (DistilHuBERT defaults, scaled down where noted)."""

    teacher: str = field(default="builtin:hubert-tiny", metadata={
        "help": "HF hub id, local folder or builtin:* name of the speech SSL teacher"})
    data: str = field(default="embedded", metadata={
        "help": "'embedded', a manifest CSV, a folder with manifest.csv, or a folder of audio"})
    split: str | None = field(default="train", metadata={
        "help": "manifest split to distil on (null: all rows; ignored for plain folders)"})
    out: str = field(default="runs/distill", metadata={"help": "output folder"})
    student: StudentConfig = field(default_factory=StudentConfig, metadata={"help": "student shape"})
    objective: str = field(default="prediction-heads", metadata={"help": f"one of {OBJECTIVES}"})
    target_layers: list[int] | None = field(default=None, metadata={
        "help": "teacher layers to predict (HF indexing); null: 4, 8, 12 scaled to the teacher"})
    student_layers: list[int] | None = field(default=None, metadata={
        "help": "layer-to-layer only: student layer per target (null: proportional)"})
    cos_weight: float = field(default=1.0, metadata={"help": "lambda of the -log sigmoid(cos) term"})
    layerwise_weight: float = field(default=1.0, metadata={
        "help": "weight of the layer-wise loss; 0 = text losses alone (the teacher's forward is skipped)"})
    cnn_hint_weight: float | None = field(default=None, metadata={
        "help": "weight of a FitHuBERT-style hint on the student's front end: its layer-0 hidden state (CNN, "
                "projection, positional conv) regresses the teacher's with the same L1 + cosine loss, through "
                "a Linear (identity where widths match). 0 = off; null: 1.0 where the student's CNN is not the "
                "teacher's and trains (preset edge, thin_cnn, cnn_channels, init_from_teacher=false), else 0"})
    text_teacher: str | None = field(default=None, metadata={
        "help": "text encoder (HF id, folder, builtin:bert-tiny) for text-informed distillation; null: off"})
    text_source: str = field(default="text", metadata={
        "help": "transcript per clip: 'text' (the manifest's text column) or 'label' (the keyword, '_' -> ' ')"})
    text_units: list[str] = field(default_factory=lambda: list(UNITS), metadata={
        "help": f"unit granularities, fine to coarse, among {UNITS}"})
    text_layers: list[int] | None = field(default=None, metadata={
        "help": "student layer of each text unit's auxiliary head (null: spread evenly, finest shallowest)"})
    text_weight: float = field(default=0.1, metadata={
        "help": "weight of the text alignment losses (0.1: per transcribed clip, their gradient into a "
                "HuBERT-shaped student was about 7x the layer-wise loss's at weight 1)"})
    global_weight: float = field(default=1.0, metadata={"help": "utterance (global) alignment weight"})
    local_weight: float = field(default=1.0, metadata={"help": "token / word (local) alignment weight"})
    contrastive_weight: float = field(default=0.0, metadata={
        "help": "in-batch InfoNCE term of the global alignment (0: off; keyword batches repeat words)"})
    adaptive_units: bool = field(default=True, metadata={
        "help": "learn the granularity weights during training (else fixed)"})
    quantity_weight: float = field(default=1.0, metadata={"help": "CIF quantity loss |sum(alpha) - N| weight"})
    monotonic_weight: float = field(default=1.0, metadata={"help": "monotonic alignment prior weight"})
    frequency_prior: bool = field(default=True, metadata={
        "help": "down-weight tokens frequent in the training transcripts (1 / log(e + count))"})
    steps: int = field(default=200_000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=24, metadata={"help": "clips per step per process"})
    max_samples: int = field(default=250_000, metadata={
        "help": "random crop length in samples (250,000 = 15.6 s at 16 kHz)"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    betas: tuple[float, float] = field(default=(0.9, 0.98), metadata={"help": "Adam betas"})
    eps: float = field(default=1e-6, metadata={"help": "Adam epsilon"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_frac: float = field(default=0.07, metadata={"help": "fraction of steps for warm-up"})
    grad_clip: float = field(default=5.0, metadata={"help": "gradient-norm clip"})
    feature_grad_mult: float = field(default=0.1, metadata={
        "help": "gradient scale on the student CNN (0.1 in DistilHuBERT)"})
    freeze_cnn: bool = field(default=False, metadata={"help": "freeze the student CNN"})
    reuse_teacher_cnn: bool = field(default=False, metadata={
        "help": "feed the teacher's CNN features to the student (frozen, identical CNN): "
                "saves the student CNN's forward+backward, about a third of a step"})
    mixed_precision: str = field(default="auto", metadata={
        "help": f"student: one of {MIXED_PRECISIONS}; auto = bf16 on a GPU that has it, else fp32"})
    teacher_precision: str = field(default="fp32", metadata={
        "help": f"teacher: one of {tuple(TEACHER_PRECISIONS)} (fp32 as DistilHuBERT; bf16 halves its cost on a "
                "GPU, its targets' cosine to fp32's: benchmarks/results/distill_throughput.md; fp16: GPUs only)"})
    target_cache: str | None = field(default=None, metadata={
        "help": "folder of cached teacher targets: the first run writes it (one teacher pass, fixed crops), "
                "later epochs and runs read it instead of running the teacher; about 0.83 GB per hour of "
                "audio for 3 HuBERT Base layers. null: the teacher runs every step"})
    compile: bool = field(default=False, metadata={
        "help": "torch.compile the student's CNN, transformer and heads (minutes of compilation first)"})
    cpu: bool = field(default=False, metadata={"help": "train on the CPU even if a GPU is there"})
    num_workers: int | None = field(default=None, metadata={
        "help": "data-loader worker processes per training process; null: on a GPU the process's cores less "
                "one, at most 8, on a CPU 0 (benchmarks/loader_throughput.py measures what one worker decodes)"})
    seed: int = field(default=0, metadata={"help": "seed of init, data order, crops and dropout"})
    log_with: str | None = field(default=None, metadata={
        "help": "also log to an accelerate tracker: 'tensorboard' (in OUT/tensorboard), 'wandb', ..."})
    log_every: int = field(default=10, metadata={"help": "steps between log lines"})
    save_every: int = field(default=1000, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept on disk"})

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective '{self.objective}' unknown: choose one of {OBJECTIVES}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision '{self.mixed_precision}': choose one of {MIXED_PRECISIONS}")
        if self.student_layers is not None and self.objective != "layer-to-layer":
            raise ValueError("student_layers is only used with objective=layer-to-layer")
        if (self.student_layers is not None and self.target_layers is not None
                and len(self.student_layers) != len(self.target_layers)):
            raise ValueError("student_layers and target_layers must have the same length")
        if self.reuse_teacher_cnn:
            if self.student.thin or self.student.cnn_channels:
                raise ValueError("reuse_teacher_cnn needs the teacher's CNN in the student: drop "
                                 "student.thin_cnn / student.cnn_channels / preset=edge, or reuse_teacher_cnn")
            if not self.student.init_from_teacher:
                raise ValueError("reuse_teacher_cnn needs student.init_from_teacher=true "
                                 "(the student CNN must equal the teacher's)")
        if self.teacher_precision not in TEACHER_PRECISIONS:
            raise ValueError(f"teacher_precision '{self.teacher_precision}': choose one of "
                             f"{tuple(TEACHER_PRECISIONS)}")
        if self.target_cache is not None:
            if self.reuse_teacher_cnn:
                raise ValueError("target_cache skips the teacher, so there are no teacher CNN features to "
                                 "reuse: drop reuse_teacher_cnn (freeze_cnn=true keeps the student CNN "
                                 "equal to the teacher's, as reuse does)")
            if self.text_teacher is not None:
                raise ValueError("target_cache does not yet combine with text_teacher: drop one of them")
            if self.layerwise_weight <= 0:
                raise ValueError("target_cache caches the layer-wise targets, but layerwise_weight is 0")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError("num_workers must be >= 0 (null: chosen from the CPU count)")
        if self.text_teacher is None and self.layerwise_weight <= 0:
            raise ValueError("layerwise_weight=0 leaves nothing to learn without a text_teacher: "
                             "set text_teacher or a positive layerwise_weight")
        if self.text_source not in ("text", "label"):
            raise ValueError(f"text_source '{self.text_source}': use 'text' or 'label'")
        bad = [u for u in self.text_units if u not in UNITS]
        if bad or not self.text_units:
            raise ValueError(f"text_units {self.text_units}: choose among {UNITS}")
        if self.text_layers is not None and len(self.text_layers) != len(self.text_units):
            raise ValueError(f"text_layers {self.text_layers} needs one layer per text unit {self.text_units}")
        if self.text_teacher is not None and not self.active_units():
            raise ValueError("global_weight and local_weight leave no text unit active: raise one of them")
        if self.cnn_hint_weight is not None and self.cnn_hint_weight > 0 and self.layerwise_weight <= 0:
            raise ValueError("cnn_hint_weight needs the layer-wise loss (its heads hold the hint): set a positive "
                             "layerwise_weight or cnn_hint_weight=0")
        if self.cnn_hint_weight is not None and self.cnn_hint_weight > 0 and (self.freeze_cnn or self.reuse_teacher_cnn):
            raise ValueError("cnn_hint_weight trains the student's CNN, but freeze_cnn / reuse_teacher_cnn keep it "
                             "fixed: drop one of them")
        for name in ("layerwise_weight", "cnn_hint_weight", "text_weight", "global_weight", "local_weight", "contrastive_weight",
                     "quantity_weight", "monotonic_weight"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("steps", "batch_size", "log_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_samples < 400:
            raise ValueError("max_samples must be >= 400 (one frame of the HuBERT CNN)")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError("warmup_frac must be in [0, 1)")

    def hint_weight(self) -> float:
        """The CNN hint's weight, null resolved: 1.0 for a student CNN that is not the teacher's and
        trains (the Arabic edge student's rows in benchmarks/results/arabic_recipe.md, with and without), else 0."""
        if self.cnn_hint_weight is not None:
            return self.cnn_hint_weight
        trains = not (self.freeze_cnn or self.reuse_teacher_cnn) and self.layerwise_weight > 0
        return 1.0 if trains and not self.student.cnn_from_teacher else 0.0

    def active_units(self) -> list[str]:
        """Text units with a positive weight (utterance: global_weight; token, word: local_weight)."""
        return [u for u in self.text_units
                if (self.global_weight if u == "utterance" else self.local_weight) > 0]


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
    hint_weight = cfg.hint_weight()
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
