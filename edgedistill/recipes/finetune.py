"""Recipe: joint KWS + SV fine-tuning of one backbone with two heads.

    edgedistill finetune --model runs/distill --data MANIFEST_OR_DIR [--sv-data ...] --out DIR

The model is selected on the validation split (never test) and saved to `out/model`, with
the SV decision threshold set at the validation EER point.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
import zlib
from dataclasses import replace
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgedistill.audio import load_audio
from edgedistill.config import MIXED_PRECISIONS, ConfigError
from edgedistill.data.labelled import IGNORE, BalancedSampler, LabelledAudio, collate_labelled, label_index
from edgedistill.data.layouts import noise_for_split, resolve_labelled, silence_folder
from edgedistill.data.trials import sv_unscored_reason
from edgedistill.data.manifest import AUDIO_EXTENSIONS, Clip, ManifestError
from edgedistill.deploy.qat import fold_qat, prepare_qat, qat_ranges
from edgedistill.deploy.trained_ranges import RANGES_FILE
from edgedistill.deploy.quantize import TARGETS
from edgedistill.training.evaluation import evaluate_model
from edgedistill.models.multitask import MultiTaskModel
from edgedistill.models.builders import backbone_source, load_backbone
from edgedistill.models.student import freeze_cnn
from edgedistill.recipes.embedded_teacher import ensure_embedded_teacher
from edgedistill.training.checkpoint import Checkpointer, restore_training_state, save_training_state
from edgedistill.training.optim import lr_at, make_adamw, set_lr
from edgedistill.training.accelerator import TrainLog, begin_run, claim_run_folder, make_accelerator

log = logging.getLogger("edgedistill.finetune")
_RESUMABLE = {"log_every", "save_every", "keep_checkpoints", "num_workers", "log_with"}


_SELECT = ("combined", "kws_accuracy", "sv_eer")
HOLDOUT = "train-holdout"  # val_split: a fixed tenth of the train split's clips


@dataclass
class FinetuneConfig:
    """Joint keyword spotting + speaker verification on one backbone (Kerpicci et al. 2022)."""

    model: str = field(default="runs/demo_distill", metadata={
        "help": "backbone: a distill --out folder, a student folder, an HF id/path (e.g. the "
                "teacher itself, for the teacher baseline) or builtin:*"})
    data: str = field(default="embedded", metadata={
        "help": "labelled data: 'embedded', a manifest, a folder with manifest.csv, or "
                "speech_commands:DIR (SUPERB 12 classes) / speech_commands35:DIR"})
    sv_data: str | None = field(default=None, metadata={
        "help": "optional second dataset for SV (manifest, folder or voxceleb:DIR); then `data` "
                "trains KWS only and batches interleave the two"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    val_split: str = field(default="val", metadata={
        "help": f"split for model selection (never test); '{HOLDOUT}': a fixed tenth of the train split's "
                "clips, left out of training (the same speakers, other recordings)"})
    out: str = field(default="runs/finetune", metadata={"help": "output folder"})
    layer_mode: str = field(default="weighted", metadata={
        "help": "'weighted' (SUPERB learnable sum of all layers) or 'last'"})
    emb_dim: int = field(default=192, metadata={"help": "speaker-embedding size"})
    aam_scale: float = field(default=30.0, metadata={"help": "AAM softmax scale s"})
    aam_margin: float = field(default=0.2, metadata={"help": "AAM softmax margin m (radians)"})
    kws_weight: float = field(default=1.0, metadata={"help": "weight of the KWS loss"})
    sv_weight: float = field(default=1.0, metadata={"help": "weight of the SV (AAM) loss"})
    freeze_backbone: bool = field(default=False, metadata={
        "help": "train the heads only (fine-tuning the backbone is better: Kerpicci et al.)"})
    freeze_cnn: bool | None = field(default=None, metadata={
        "help": "keep the backbone's CNN frozen (null: frozen, except that `edgedistill run` trains a student CNN "
                "that is not the teacher's: thin_cnn, cnn_channels, the edge preset, init_from_teacher=false)"})
    qat: bool = field(default=False, metadata={
        "help": "quantization-aware training for the `int8` export: every conv and Linear trains with the "
                "export's int8 rounding (fake quantization, straight-through gradients) and the saved weights "
                "are the rounded ones (edgedistill.deploy.qat)"})
    qat_target: str = field(default="auto", metadata={
        "help": "the int8 target QAT rounds for (auto: this machine's, as `int8` export does)"})
    backbone_lr: float = field(default=5e-5, metadata={"help": "peak learning rate of the backbone"})
    head_lr: float = field(default=1e-3, metadata={"help": "peak learning rate of the heads"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_frac: float = field(default=0.1, metadata={"help": "fraction of steps for warm-up"})
    grad_clip: float = field(default=5.0, metadata={"help": "gradient-norm clip"})
    steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "clips per step per process"})
    clip_samples: int = field(default=16_000, metadata={"help": "training crop/pad length (samples)"})
    noise: str | None = field(default=None, metadata={
        "help": "folder of background-noise audio to mix in while training"})
    noise_prob: float = field(default=0.5, metadata={"help": "chance a training clip gets noise"})
    snr_db: tuple[float, float] = field(default=(5.0, 20.0), metadata={"help": "noise SNR range in dB"})
    eval_every: int = field(default=200, metadata={"help": "steps between validations"})
    patience: int = field(default=0, metadata={
        "help": "early stopping: stop when the validation score has not improved for this many validations "
                "(0: train all `steps`); the best model is kept"})
    min_steps: int = field(default=0, metadata={"help": "early stopping never stops before this step"})
    select_metric: str = field(default="combined", metadata={
        "help": f"validation metric that picks the saved model: {_SELECT} (combined = accuracy - EER)"})
    num_trials: int = field(default=20_000, metadata={"help": "validation SV trials (half target)"})
    mixed_precision: str = field(default="auto", metadata={
        "help": f"one of {MIXED_PRECISIONS}; auto = bf16 on a GPU that has it, else fp32"})
    cpu: bool = field(default=False, metadata={"help": "train on the CPU even if a GPU is there"})
    num_workers: int = field(default=0, metadata={"help": "data-loader worker processes"})
    seed: int = field(default=0, metadata={"help": "seed of heads, sampling, crops and trials"})
    log_with: str | None = field(default=None, metadata={
        "help": "also log to an accelerate tracker: 'tensorboard' (in OUT/tensorboard), 'wandb', ..."})
    log_every: int = field(default=20, metadata={"help": "steps between log lines"})
    save_every: int = field(default=500, metadata={"help": "steps between checkpoints"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept on disk"})

    def __post_init__(self):
        if self.select_metric not in _SELECT:
            raise ValueError(f"select_metric '{self.select_metric}': choose one of {_SELECT}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision '{self.mixed_precision}': choose one of {MIXED_PRECISIONS}")
        if self.qat_target != "auto" and self.qat_target not in TARGETS:
            raise ValueError(f"qat_target '{self.qat_target}': choose auto or one of {sorted(TARGETS)}")
        if self.layer_mode not in ("weighted", "last"):
            raise ValueError(f"layer_mode '{self.layer_mode}': use 'weighted' or 'last'")
        if self.kws_weight < 0 or self.sv_weight < 0 or self.kws_weight + self.sv_weight == 0:
            raise ValueError("kws_weight and sv_weight must be >= 0 and not both 0")
        if self.freeze_backbone and self.freeze_cnn is False:
            raise ValueError("freeze_backbone=true freezes the CNN too: drop freeze_cnn=false")
        if self.train_split == self.val_split:
            raise ValueError("train_split and val_split must differ: model selection needs held-out data")
        if self.val_split == "test":
            raise ValueError("select models on a validation split, never on test: set val_split=val")
        for name in ("steps", "batch_size", "eval_every", "log_every", "save_every", "emb_dim", "num_trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.clip_samples < 400:
            raise ValueError("clip_samples must be >= 400 (one frame of the HuBERT CNN)")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError("noise_prob must be in [0, 1]")
        if self.patience < 0 or self.min_steps < 0:
            raise ValueError("patience and min_steps must be >= 0")
        if self.min_steps > self.steps:
            raise ValueError(f"min_steps {self.min_steps} > steps {self.steps}: raise steps (the most it may train)")


def held_out(clip: Clip) -> bool:
    """Whether a train clip is in the `train-holdout` tenth (a hash of its path and segment:
    the same on every machine and run, whatever the order of the manifest)."""
    return zlib.crc32(f"{clip.path.name}:{clip.offset}".encode()) % 10 == 0


def _tasks(cfg: FinetuneConfig, split: str) -> tuple[list[Clip], list[Clip]]:
    """(KWS clips, SV-only clips) of a split; the second is empty without sv_data. With
    val_split=train-holdout, the train split loses its held-out tenth and that tenth is the
    validation split."""
    if cfg.val_split == HOLDOUT and split in (HOLDOUT, cfg.train_split):
        kws, sv = _tasks(replace(cfg, val_split="val"), cfg.train_split)
        keep = split == HOLDOUT
        kws, sv = [c for c in kws if held_out(c) == keep], [c for c in sv if held_out(c) == keep]
        if keep and not kws + sv:
            raise ManifestError(f"val_split={HOLDOUT}: the held-out tenth of the '{cfg.train_split}' split is "
                                "empty (too few clips): validate on a split of its own (e.g. val_split=val)")
        return kws, sv
    kws = resolve_labelled(cfg.data, split)
    sv = resolve_labelled(cfg.sv_data, split) if cfg.sv_data else []
    if sv:  # each dataset serves one task: its other column is ignored in training and scoring
        kws = [replace(c, speaker=None) for c in kws]
        sv = [replace(c, label=None) for c in sv]
    if any(c.label is None for c in kws):
        raise ManifestError(f"data '{cfg.data}' has clips without a keyword label: KWS needs the "
                            "'label' column (use sv_data for speaker-only data)")
    return kws, sv


def _noise(folder: str | None, data: str = "", split: str = "train") -> list[np.ndarray]:
    """Background recordings mixed into training clips. When they are also the data's
    `+silence=` recordings, only their `split` part is used, so evaluation streams and
    `_silence_` crops of the other splits stay noise the model has not heard."""
    if folder is None:
        return []
    same = silence_folder(data)
    if same is not None and Path(same).resolve() == Path(folder).resolve():
        return noise_for_split(folder, split)
    files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"noise folder '{folder}' holds no audio files")
    return [load_audio(f, downmix=True) for f in files]


def _score(report: dict, metric: str) -> float:
    accuracy, eer = report.get("kws_accuracy", 0.0), report.get("sv_eer", 0.5)
    return {"combined": accuracy - eer, "kws_accuracy": accuracy, "sv_eer": -eer}[metric]


def _stalled(cfg: FinetuneConfig, step: int, best: dict, accelerator) -> bool:
    """Early stopping: `patience` validations without a better score, past `min_steps`. Decided
    from `best` (in every checkpoint), so a resumed run stops where an unbroken one would; the
    main process decides (it validates) and the others follow."""
    stall = (cfg.patience > 0 and step >= cfg.min_steps and best["step"] is not None
             and step - best["step"] >= cfg.patience * cfg.eval_every)
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        stall = broadcast_object_list([stall])[0]
    return bool(stall)


def _save_model_atomic(model: MultiTaskModel, folder: Path, qat: bool = False) -> None:
    """Saves `model` (a `prepare_qat` one folded, with its trained ranges, where `qat`)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (fold_qat(model) if qat else model).save_pretrained(tmp)
    if qat:
        (tmp / RANGES_FILE).write_text(json.dumps(qat_ranges(model), indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _check_sv_validation(clips: list[Clip], split: str, sv_weight: float) -> str | None:
    """Before training (not at the first validation, after it): why SV cannot be scored on the
    validation clips (warned: the model is then selected on KWS alone and saves no SV
    threshold), or None. Speakers with a single clip are warned about: they enter only
    different-speaker trials."""
    from collections import Counter

    reason = sv_unscored_reason(clips, split)
    if reason is not None:
        reason += (": SV is not scored, the model is selected on KWS alone and saves no SV threshold "
                   "(EdgeModel.verify will need threshold=...). Add speakers or clips to the split to score SV")
        if sv_weight:
            log.warning(reason)
        return reason
    counts = Counter(c.speaker for c in clips if c.speaker is not None)
    lonely = sorted(s for s, n in counts.items() if n < 2)
    if lonely:
        log.warning("%d speaker(s) of the '%s' split have a single clip (e.g. %s): they enter only "
                    "different-speaker trials", len(lonely), split, lonely[:3])
    return None


def finetune(cfg: FinetuneConfig, resume: bool = False, stop_after: int | None = None,
             overwrite: bool = False) -> dict:
    """Runs (or resumes) joint fine-tuning; returns a summary with the best validation report.

    Writes to `cfg.out`: `model/` (the selected MultiTaskModel), `val_report.json`,
    `checkpoints/`, `config.yaml`, `train_log.jsonl`, `summary.json`. A folder holding another
    run is refused unless `overwrite` (or `resume`, for the same run).
    """
    accelerator = make_accelerator(cfg.mixed_precision, cfg.cpu, cfg.log_with, Path(cfg.out) / "tensorboard")
    out = Path(cfg.out)
    with accelerator.main_process_first():  # one process builds, the others then find it
        ensure_embedded_teacher(cfg.model)
    ckpt = Checkpointer(out / "checkpoints", keep=cfg.keep_checkpoints)
    done = begin_run(accelerator, "finetune", out, ckpt, resume and not overwrite)
    if done is not None:
        return done

    backbone_source(cfg.model)  # a missing model fails before the data is read
    # Data: keywords from `data`; speakers from `data` too, or from `sv_data` (interleaved).
    kws_train, sv_train = _tasks(cfg, cfg.train_split)
    kws_val, sv_val = _tasks(cfg, cfg.val_split)
    labels = sorted({c.label for c in kws_train})
    spk_source = sv_train if cfg.sv_data else kws_train
    speakers = sorted({c.speaker for c in spk_source if c.speaker is not None})
    if cfg.sv_weight and len(speakers) < 2:
        raise ManifestError("SV training needs at least 2 speakers with a 'speaker' column; "
                            "set sv_weight=0 to train KWS only")
    spk_pos = {s: i for i, s in enumerate(speakers)}
    clips = kws_train + sv_train
    kw_ids = label_index(kws_train, labels) + [IGNORE] * len(sv_train)
    spk_ids = [spk_pos.get(c.speaker, IGNORE) for c in clips]
    label_index(kws_val, labels)  # unknown validation keywords fail now, not after training
    sv_unscored = _check_sv_validation(sv_val if cfg.sv_data else kws_val, cfg.val_split, cfg.sv_weight)

    backbone, do_norm = load_backbone(cfg.model, cfg.seed)
    claim_run_folder(accelerator, cfg, out, resume, ckpt, "edgedistill finetune", _RESUMABLE, overwrite)
    # Every RNG the step draws from: torch (dropout), numpy (transformers' SpecAugment masks,
    # on in every real checkpoint) and python's. Resumption restores all three.
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed + accelerator.process_index)
    random.seed(cfg.seed + accelerator.process_index)
    model = MultiTaskModel(backbone, labels, len(speakers), cfg.emb_dim, cfg.layer_mode, do_norm,
                           cfg.aam_scale, cfg.aam_margin)
    if cfg.freeze_backbone:
        backbone.requires_grad_(False)
    if cfg.freeze_backbone or cfg.freeze_cnn is not False:  # null: frozen
        freeze_cnn(backbone)
    if cfg.qat:  # before the checkpoint is restored: it holds the fake-quantized model's ranges
        prepare_qat(model, cfg.qat_target)

    noise = _noise(cfg.noise, cfg.data, cfg.train_split)
    dataset = LabelledAudio(clips, kw_ids, spk_ids, cfg.clip_samples, noise, cfg.snr_db,
                            cfg.noise_prob if cfg.noise else 0.0)
    balance = [k if k != IGNORE else s for k, s in zip(kw_ids, spk_ids)]
    sources = [0] * len(kws_train) + [1] * len(sv_train)
    sampler = BalancedSampler(balance, len(clips), seed=cfg.seed * 1009 + accelerator.process_index, source_ids=sources)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_labelled,
                        num_workers=cfg.num_workers, drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    if len(loader) == 0:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(clips)} training clips")

    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    optimizer = make_adamw([(backbone.parameters(), cfg.backbone_lr / cfg.head_lr), (heads, 1.0)],
                           cfg.head_lr, (0.9, 0.98), 1e-6, cfg.weight_decay)
    step, state = restore_training_state(ckpt, model, optimizer, accelerator.process_index) if resume else (0, {})
    if step:
        log.info("resumed from %s at step %d", state["checkpoint"], step)
    best = state.get("best", {"score": -np.inf, "step": None, "report": None})
    stopped = state.get("stopped")  # the step early stopping ended at (None: still training)
    model, optimizer = accelerator.prepare(model, optimizer)
    inner = accelerator.unwrap_model(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    val_clips = kws_val + sv_val

    from tqdm.auto import tqdm

    end = min(cfg.steps, stop_after) if stop_after is not None else cfg.steps
    bar = tqdm(total=cfg.steps, initial=step, desc="finetune", unit="step",
               disable=not accelerator.is_main_process, dynamic_ncols=True)
    logf = TrainLog(accelerator, out, "finetune", cfg)
    t0, sums, n = time.perf_counter(), {}, 0
    while step < end and not stopped:
        sampler.set_epoch(step // len(loader), start=(step % len(loader)) * cfg.batch_size)
        model.train()
        if cfg.freeze_backbone:
            inner.backbone.eval()  # frozen means fixed features: no dropout either
        for wave, kw, spk in loader:
            wave, kw, spk = wave.to(accelerator.device), kw.to(accelerator.device), spk.to(accelerator.device)
            with accelerator.autocast():
                out_ = model(wave)
            loss, parts = inner.loss(out_, kw, spk, cfg.kws_weight, cfg.sv_weight)
            set_lr(optimizer, lr_at(step, cfg.steps, cfg.head_lr, cfg.warmup_frac))
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            for k, v in {"loss": loss.detach(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            record = None
            if step % cfg.log_every == 0 or step == end:
                record = {"step": step, **{k: float(v) / n for k, v in sums.items()},
                          "elapsed_s": time.perf_counter() - t0}
                sums, n = {}, 0
            if step % cfg.eval_every == 0 or step == cfg.steps:
                if accelerator.is_main_process:
                    report = evaluate_model(inner, val_clips, cfg.clip_samples, cfg.batch_size,
                                            cfg.num_trials, cfg.seed, accelerator.device)
                    score = _score(report, cfg.select_metric)
                    record = {**(record or {"step": step}), "val_kws_accuracy": report.get("kws_accuracy"),
                              "val_sv_eer": report.get("sv_eer"), "val_score": score}
                    if score > best["score"]:
                        inner.spec["sv_threshold"] = report.get("sv_eer_threshold")
                        _save_model_atomic(inner, out / "model", cfg.qat)
                        best = {"score": score, "step": step, "report": report}
                accelerator.wait_for_everyone()
                if _stalled(cfg, step, best, accelerator):
                    log.info("early stop at step %d: no better validation score since step %d (%d validations)",
                             step, best["step"], cfg.patience)
                    stopped = step
            if record is not None:
                bar.set_postfix(loss=f"{record['loss']:.3f}" if "loss" in record else "-",
                                val=f"{best['score']:.3f}" if best["step"] else "-")
                logf.write(record)
            if step % cfg.save_every == 0 or step == end or stopped:
                save_training_state(accelerator, ckpt, model, optimizer, step, {"best": best, "stopped": stopped})
            if step >= end or stopped:
                break
        if stopped:
            break
    bar.close()
    logf.close()
    finished = step >= cfg.steps or stopped is not None
    summary = {"steps_done": step, "finished": finished, "stopped_early": stopped is not None, "labels": labels,
               "train_speakers": len(speakers), "train_clips": len(clips), "val_clips": len(val_clips),
               "best_step": best["step"], "val": best["report"], "select_metric": cfg.select_metric,
               "sv_unscored": sv_unscored, "processes": accelerator.num_processes}
    if accelerator.is_main_process and finished:
        (out / "val_report.json").write_text(json.dumps(best["report"], indent=1))
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    return {**summary, "main_process": accelerator.is_main_process}
