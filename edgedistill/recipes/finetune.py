"""Recipe: joint KWS + SV fine-tuning of one backbone with two heads.

    edgedistill finetune --model runs/distill --data MANIFEST_OR_DIR [--sv-data ...] --out DIR

The model is selected on the validation split (never test) and saved to `out/model`, with
the SV decision threshold set at the validation EER point.

Reading order: `finetune` (the entry: data, model, then the loop), `_train` (the loop and its
loss step), `_validate` (model selection). The run folder, resume, log and checkpoints are
`edgedistill.training.session.TrainingRun`'s.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgedistill.audio import load_audio
from edgedistill.config import ConfigError
from edgedistill.data.labelled import IGNORE, BalancedSampler, LabelledAudio, collate_labelled, label_index
from edgedistill.data.layouts import noise_for_split, resolve_labelled, silence_folder
from edgedistill.data.manifest import AUDIO_EXTENSIONS, Clip, ManifestError
from edgedistill.data.trials import sv_unscored_reason
from edgedistill.data.windows import BACKGROUND, ClipsAndWindows, StreamWindows
from edgedistill.deploy.qat import fold_qat, prepare_qat, qat_ranges
from edgedistill.deploy.trained_ranges import RANGES_FILE
from edgedistill.models.builders import backbone_source, load_backbone
from edgedistill.models.multitask import MultiTaskModel, head_sizes
from edgedistill.models.student import freeze_cnn
from edgedistill.recipes.finetune_config import HOLDOUT, FinetuneConfig
from edgedistill.training.evaluation import evaluate_model
from edgedistill.training.logit_kd import LogitTeacher
from edgedistill.training.mining import HardNegatives, stream_validation
from edgedistill.training.optim import lr_at, make_adamw, set_lr
from edgedistill.training.session import TrainingRun

log = logging.getLogger("edgedistill.finetune")
__all__ = ["FinetuneConfig", "HOLDOUT", "finetune", "held_out"]


def finetune(cfg: FinetuneConfig, resume: bool = False, stop_after: int | None = None,
             overwrite: bool = False) -> dict:
    """Runs (or resumes) joint fine-tuning; returns a summary with the best validation report.

    Writes to `cfg.out`: `model/` (the selected MultiTaskModel), `val_report.json`,
    `checkpoints/`, `config.yaml`, `train_log.jsonl`, `summary.json`. A folder holding another
    run is refused unless `overwrite` (or `resume`, for the same run).
    """
    session = TrainingRun("finetune", cfg, "edgedistill finetune")
    if (done := session.finished_already(resume and not overwrite)) is not None:
        return done
    backbone_source(cfg.model)  # a missing model fails before the data is read
    data = _data(cfg)
    teacher = (LogitTeacher(cfg.kd_teacher, data.labels, cfg.kd_temperature, session.accelerator.device)
               if cfg.kd_teacher else None)  # a wrong teacher fails before the run folder is claimed
    backbone, do_norm = load_backbone(cfg.model, cfg.seed)
    session.claim(resume, overwrite)
    # Every RNG the step draws from: torch (dropout), numpy (transformers' SpecAugment masks,
    # on in every real checkpoint) and python's. Resumption restores all three.
    rank = session.accelerator.process_index
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    model = _model(cfg, backbone, do_norm, data)
    loader, sampler = _loader(cfg, data, rank)
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    optimizer = make_adamw([(backbone.parameters(), cfg.backbone_lr / cfg.head_lr), (heads, 1.0)],
                           cfg.head_lr, (0.9, 0.98), 1e-6, cfg.weight_decay)
    step, state = session.restore(model, optimizer, resume)
    mining = HardNegatives(loader, sampler, data.kws_train, cfg.detect_keywords if cfg.detect_rounds else [],
                           data.labels, cfg.steps, cfg.detect_rounds, cfg.detect_negative_s,
                           cfg.detect_mining_threshold, cfg.seed, _noise(cfg.noise, cfg.data, cfg.train_split) or None,
                           float(np.mean(cfg.snr_db)))
    mining.restore(state.get("mined"))
    best = state.get("best", {"score": -np.inf, "step": None, "report": None})
    stopped = state.get("stopped")  # the step early stopping ended at (None: still training)
    model, optimizer = session.accelerator.prepare(model, optimizer)
    session.start(step, stop_after)
    step, best, stopped = _train(cfg, session, model, optimizer, loader, sampler, data, step, best, stopped, mining,
                                 teacher)
    session.close()
    finished = step >= cfg.steps or stopped is not None
    summary = {"steps_done": step, "finished": finished, "stopped_early": stopped is not None,
               "labels": data.labels, "train_speakers": len(data.speakers), "train_clips": len(data.clips),
               "val_clips": len(data.val_clips), "best_step": best["step"], "val": best["report"],
               "select_metric": cfg.select_metric, "sv_unscored": data.sv_unscored,
               "processes": session.accelerator.num_processes}
    if session.is_main and finished:
        (session.out / "val_report.json").write_text(json.dumps(best["report"], indent=1))
        (session.out / "summary.json").write_text(json.dumps(summary, indent=1))
    session.accelerator.wait_for_everyone()
    return {**summary, "main_process": session.is_main}


def _train(cfg: FinetuneConfig, session: TrainingRun, model, optimizer, loader, sampler, data: "_Data",
           step: int, best: dict, stopped: int | None, mining: HardNegatives,
           teacher: LogitTeacher | None = None) -> tuple[int, dict, int | None]:
    """The loop: joint loss (with a `teacher`'s soft targets), validation every `eval_every` steps
    (the best model saved), early stopping, hard-negative rounds, checkpoints; returns (step
    reached, best validation, step it stopped early at)."""
    accelerator = session.accelerator
    inner = accelerator.unwrap_model(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    t0, sums, n = time.perf_counter(), {}, 0
    while step < session.end and not stopped:
        sampler.set_epoch(step // len(loader), start=(step % len(loader)) * cfg.batch_size)
        model.train()
        if cfg.freeze_backbone:
            inner.backbone.eval()  # frozen means fixed features: no dropout either
        for wave, kw, spk in loader:
            wave, kw, spk = wave.to(accelerator.device), kw.to(accelerator.device), spk.to(accelerator.device)
            heard, skip = with_context(wave, cfg.context_s)
            with accelerator.autocast():
                outputs = model(heard, skip_frames=skip)
            loss, parts = inner.loss(outputs, kw, spk, cfg.kws_weight, cfg.sv_weight)
            if teacher is not None:  # the teacher hears the item itself, not the context before it
                kd = teacher.loss(outputs["kws_logits"], wave, kw)
                loss, parts["kd"] = loss + cfg.kd_weight * kd, kd.detach()
            set_lr(optimizer, lr_at(step, cfg.steps, cfg.head_lr, cfg.warmup_frac))
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            session.advance()
            for k, v in {"loss": loss.detach(), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            record = None
            if step % cfg.log_every == 0 or step == session.end:
                record = {"step": step, **{k: float(v) / n for k, v in sums.items()},
                          "elapsed_s": time.perf_counter() - t0}
                sums, n = {}, 0
            if step % cfg.eval_every == 0 or step == cfg.steps:
                best, validation = _validate(cfg, session, inner, data.val_clips, step, best)
                if session.is_main:
                    record = {**(record or {"step": step}), **validation}
                if _stalled(cfg, step, best, accelerator):
                    log.info("early stop at step %d: no better validation score since step %d (%d validations)",
                             step, best["step"], cfg.patience)
                    stopped = step
            mined = mining.mine(inner, step, accelerator.device) if mining.due(step) else None
            if mined is not None:
                record = {**(record or {"step": step}), "hard_negatives": len(mined["starts"]),
                          "mining_events": mined["fired"]}
            if record is not None:
                session.log(record, loss=f"{record['loss']:.3f}" if "loss" in record else "-",
                            val=_best_words(best))
            if step % cfg.save_every == 0 or step == session.end or stopped:
                session.save(model, optimizer, step, {"best": best, "stopped": stopped, "mined": mining.state()})
            if step >= session.end or stopped or mined is not None:
                break  # after a round: the sampler draws from the new windows from here on
    return step, best, stopped


def with_context(wave: torch.Tensor, context_s: float) -> tuple[torch.Tensor, int]:
    """`wave` [batch, samples] with the last `context_s` seconds of the batch's previous item before each
    item (the first takes the last's), and the frames (20 ms) of that context, which are heard, not pooled."""
    n = int(round(context_s * 16_000))
    if not n:
        return wave, 0
    before = torch.roll(wave, 1, dims=0)[:, -n:]
    if before.shape[1] < n:
        before = torch.nn.functional.pad(before, (n - before.shape[1], 0))
    return torch.cat([before, wave], dim=1), n // 320


def _validate(cfg: FinetuneConfig, session: TrainingRun, inner: MultiTaskModel, clips: list[Clip], step: int,
              best: dict) -> tuple[dict, dict]:
    """Validation on the main process; a better score saves the model (with the SV threshold at
    the validation EER point). Returns (best so far, this validation's log fields)."""
    fields = {}
    if session.is_main:
        report = evaluate_model(inner, clips, cfg.clip_samples, cfg.batch_size, cfg.num_trials, cfg.seed,
                                session.accelerator.device)
        score = _score(report, cfg.select_metric)
        if cfg.select_metric == "stream":
            report["stream"] = stream_validation(inner, clips, cfg.detect_keywords, cfg.select_stream_s,
                                                 cfg.select_negative_s, cfg.select_fa_per_hour, cfg.seed,
                                                 session.accelerator.device)
            score = -report["stream"]["frr"] + 1e-3 * _score(report, "combined")
        fields = {"val_kws_accuracy": report.get("kws_accuracy"), "val_sv_eer": report.get("sv_eer"),
                  "val_score": score, **({"val_stream_frr": report["stream"]["frr"]} if "stream" in report else {})}
        if score > best["score"]:
            inner.spec["sv_threshold"] = report.get("sv_eer_threshold")
            _save_model_atomic(inner, session.out / "model", cfg.qat)
            best = {"score": score, "step": step, "report": report}
    session.accelerator.wait_for_everyone()
    return best, fields


@dataclass
class _Data:
    """The clips of both tasks, their label and speaker indices, and the validation clips."""

    labels: list[str]
    speakers: list[str]
    kws_train: list[Clip]
    sv_train: list[Clip]
    kw_ids: list[int]
    spk_ids: list[int]
    val_clips: list[Clip]
    sv_unscored: str | None

    @property
    def clips(self) -> list[Clip]:
        return self.kws_train + self.sv_train


def _data(cfg: FinetuneConfig) -> _Data:
    """Keywords from `data`; speakers from `data` too, or from `sv_data` (interleaved). Unknown
    validation keywords and unscorable SV validation are found now, not after training."""
    kws_train, sv_train = _tasks(cfg, cfg.train_split)
    kws_val, sv_val = _tasks(cfg, cfg.val_split)
    labels = sorted({c.label for c in kws_train})
    if cfg.detect_keywords:  # a detector: every window without a whole target word is "no keyword"
        missing = [k for k in cfg.detect_keywords if k not in labels]
        if missing:
            raise ConfigError(f"detect_keywords {missing} are not labels of {cfg.data}: choose among {labels}")
        labels = sorted(set(labels) | {BACKGROUND})
    spk_source = sv_train if cfg.sv_data else kws_train
    speakers = sorted({c.speaker for c in spk_source if c.speaker is not None})
    if cfg.sv_weight and len(speakers) < 2:
        raise ManifestError("SV training needs at least 2 speakers with a 'speaker' column; "
                            "set sv_weight=0 to train KWS only")
    spk_pos = {s: i for i, s in enumerate(speakers)}
    kw_ids = label_index(kws_train, labels) + [IGNORE] * len(sv_train)
    spk_ids = [spk_pos.get(c.speaker, IGNORE) for c in kws_train + sv_train]
    label_index(kws_val, labels)
    sv_unscored = _check_sv_validation(sv_val if cfg.sv_data else kws_val, cfg.val_split, cfg.sv_weight)
    return _Data(labels, speakers, kws_train, sv_train, kw_ids, spk_ids, kws_val + sv_val, sv_unscored)


def _model(cfg: FinetuneConfig, backbone, do_norm: bool, data: _Data) -> MultiTaskModel:
    """The backbone with its two heads, frozen where the config says, fake-quantized for QAT."""
    emb_dim, sv_hidden = head_sizes(backbone, cfg.emb_dim)
    if emb_dim != cfg.emb_dim:
        log.info("speaker embedding of %d dimensions (not emb_dim=%d) on this %d-channel micro student: its heads "
                 "stay smaller than it", emb_dim, cfg.emb_dim, backbone.config.hidden_size)
    model = MultiTaskModel(backbone, data.labels, len(data.speakers), emb_dim, cfg.layer_mode, do_norm,
                           cfg.aam_scale, cfg.aam_margin, sv_hidden=sv_hidden)
    if cfg.freeze_backbone:
        backbone.requires_grad_(False)
    if cfg.freeze_backbone or cfg.freeze_cnn is not False:  # null: frozen
        freeze_cnn(backbone)
    if cfg.qat:  # before the checkpoint is restored: it holds the fake-quantized model's ranges
        prepare_qat(model, cfg.qat_target)
    return model


def _loader(cfg: FinetuneConfig, data: _Data, rank: int) -> tuple[DataLoader, BalancedSampler]:
    """Batches balanced over keywords (or speakers, for SV-only clips), noise mixed in."""
    noise = _noise(cfg.noise, cfg.data, cfg.train_split)
    dataset = LabelledAudio(data.clips, data.kw_ids, data.spk_ids, cfg.clip_samples, noise, cfg.snr_db,
                            cfg.noise_prob if cfg.noise else 0.0)
    balance = [k if k != IGNORE else s for k, s in zip(data.kw_ids, data.spk_ids)]
    sources = [0] * len(data.kws_train) + [1] * len(data.sv_train)
    if cfg.detect_keywords:
        # Windows are a source of their own (half the draws without sv_data), a third each of
        # target windows, background windows and other words' windows: how "no keyword" is weighted.
        windows = StreamWindows(data.kws_train, cfg.detect_keywords, {lab: i for i, lab in enumerate(data.labels)},
                                cfg.clip_samples, seconds=cfg.detect_stream_s / 10, streams=10, seed=cfg.seed,
                                noise=noise, snr_db=cfg.snr_db)
        log.info("detection windows: %d from %.0f s of training stream: %d a target keyword, %d another word, "
                 "%d background", len(windows), cfg.detect_stream_s, *(int((windows.kind == k).sum()) for k in (0, 2, 1)))
        dataset = ClipsAndWindows(dataset, windows)
        balance += [10**6 + int(k) for k in windows.kind]
        sources += [2] * len(windows)
    sampler = BalancedSampler(balance, len(data.clips), seed=cfg.seed * 1009 + rank, source_ids=sources)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_labelled,
                        num_workers=cfg.num_workers, drop_last=True, generator=torch.Generator().manual_seed(cfg.seed))
    if len(loader) == 0:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(data.clips)} training clips")
    return loader, sampler


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


def _best_words(best: dict) -> str:
    """The best validation so far, in percentages (as the reports print them)."""
    if not best["step"]:
        return "-"
    r = best["report"]
    eer = f" EER {100 * r['sv_eer']:.1f}%" if r.get("sv_eer") is not None else ""
    return f"acc {100 * r.get('kws_accuracy', float('nan')):.1f}%{eer} @{best['step']}"


def _score(report: dict, metric: str) -> float:
    accuracy, eer = report.get("kws_accuracy", 0.0), report.get("sv_eer", 0.5)
    return {"combined": accuracy - eer, "kws_accuracy": accuracy, "sv_eer": -eer, "stream": 0.0}[metric]


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
