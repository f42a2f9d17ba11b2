"""Workflow: one command from a teacher to a benchmarked edge model.

    edgedistill run RECIPE.yaml [key=value ...]      edgedistill demo

Stages, each in its own folder of the run: teacher (only with `teacher: train`: a small
HuBERT-shaped teacher trained here, since nothing can be downloaded offline) -> distill ->
finetune -> export (+ quantize) -> benchmark. A stage that finished with the same config
(and the same upstream stages) is skipped; an interrupted stage resumes from its last
checkpoint; a stage whose config changed is redone, and so is everything after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.config import to_dict
from edgedistill.distill.config import DistillConfig
from edgedistill.finetune.config import FinetuneConfig
from edgedistill.machine import num, pct

log = logging.getLogger("edgedistill.run")


@dataclass
class TeacherTraining:
    """The teacher trained here when `teacher: train` (random init, joint KWS + SV)."""

    layers: int = field(default=8, metadata={"help": "transformer layers"})
    hidden: int = field(default=128, metadata={"help": "width (heads = width / 64)"})
    cnn: int = field(default=64, metadata={"help": "last CNN width (thin CNN: c/4, c/2 x4, c, c)"})
    steps: int = field(default=400, metadata={"help": "joint KWS + SV training steps"})

    def __post_init__(self):
        heads = max(1, self.hidden // 64)
        if self.layers < 1 or self.steps < 1 or self.cnn < 4:
            raise ValueError("teacher_training: layers and steps must be >= 1 and cnn >= 4")
        if self.hidden < 16 or self.hidden % 16 or self.hidden % heads:
            raise ValueError(f"teacher_training.hidden={self.hidden}: use a multiple of 16 (the positional "
                             f"convolution has 16 groups) divisible by its {heads} attention head(s), e.g. 128 or 256")


@dataclass
class ExportStage:
    quantize: list[str] = field(default_factory=lambda: ["int8"], metadata={
        "help": "quantized variants of the student (int8-dynamic, int8, int8-static, int4-weights, fp16)"})
    calibration_clips: int = field(default=64, metadata={"help": "calibration clips from the train split"})

    def __post_init__(self):
        from edgedistill.quantize import MODES

        unknown = [m for m in self.quantize if m not in MODES]
        if unknown:
            raise ValueError(f"export.quantize {unknown}: choose among {sorted(MODES)} (or [] for fp32 only)")
        if len(set(self.quantize)) != len(self.quantize):
            raise ValueError(f"export.quantize {self.quantize} names a mode twice")
        if self.calibration_clips < 1:
            raise ValueError("export.calibration_clips must be >= 1")


@dataclass
class BenchmarkStage:
    split: str = field(default="test", metadata={"help": "split the report is measured on (held-out speakers)"})
    threads: int = field(default=1, metadata={"help": "onnxruntime threads for latency"})
    seconds: float = field(default=1.0, metadata={"help": "audio length for latency (s)"})
    runs: int = field(default=20, metadata={"help": "timed runs after 3 warm-up runs"})
    num_trials: int = field(default=20_000, metadata={"help": "SV trials (half same-speaker)"})

    def __post_init__(self):
        if self.threads < 1 or self.runs < 1 or self.num_trials < 1 or self.seconds <= 0:
            raise ValueError("benchmark: threads, runs and num_trials must be >= 1 and seconds > 0")


@dataclass
class StreamStage:
    """Continuous listening in the benchmark: each exported model runs the streaming detector
    over a long stream built from the benchmark split (`edgedistill.data.streams`)."""

    keywords: list[str] = field(default_factory=list, metadata={
        "help": "target keywords (labels of the data); empty: no streaming benchmark"})
    seconds: float = field(default=600.0, metadata={"help": "stream length in seconds"})
    snr_db: float = field(default=20.0, metadata={"help": "speech-to-background ratio of the stream"})
    noise: str | None = field(default=None, metadata={
        "help": "folder of background recordings under the stream (their part for the split); "
                "null: the data's +silence= folder, else synthetic noise"})
    hop_s: float = field(default=0.1, metadata={"help": "detector hop in seconds"})
    enroll_clips: int = field(default=3, metadata={
        "help": "clips per speaker for enrolment (non-target words, left out of the stream); 0: no speaker figures"})
    seed: int = field(default=0, metadata={"help": "seed of the stream"})

    def __post_init__(self):
        if self.keywords and (self.seconds < 60 or self.hop_s <= 0 or self.enroll_clips < 0):
            raise ValueError("stream: seconds must be >= 60, hop_s > 0 and enroll_clips >= 0")


def _demo_distill() -> DistillConfig:
    return DistillConfig(steps=300, batch_size=16, max_samples=16_000, lr=5e-4, log_every=20, save_every=100)


def _demo_finetune() -> FinetuneConfig:
    return FinetuneConfig(steps=400, batch_size=16, freeze_cnn=False, head_lr=5e-3, backbone_lr=2e-3,
                          eval_every=200, log_every=20, save_every=100, num_trials=4000)


@dataclass
class RunConfig:
    """The whole pipeline. Defaults are the embedded demo (a few minutes on 2 CPU cores)."""

    out: str = field(default="runs/demo", metadata={"help": "run folder"})
    data: str = field(default="embedded", metadata={"help": "labelled data for every stage (manifest, folder, embedded)"})
    distill_data: str | None = field(default=None, metadata={
        "help": "unlabelled audio for distillation (e.g. LibriSpeech); null: `data`"})
    teacher: str = field(default="train", metadata={
        "help": "'train' (train a small teacher here first) or an HF id / folder of a pretrained one"})
    teacher_training: TeacherTraining = field(default_factory=TeacherTraining, metadata={"help": "teacher: train"})
    distill: DistillConfig = field(default_factory=_demo_distill, metadata={"help": "distillation stage"})
    finetune: FinetuneConfig = field(default_factory=_demo_finetune, metadata={"help": "fine-tuning stage"})
    export: ExportStage = field(default_factory=ExportStage, metadata={"help": "export stage"})
    benchmark: BenchmarkStage = field(default_factory=BenchmarkStage, metadata={"help": "benchmark stage"})
    stream: StreamStage = field(default_factory=StreamStage, metadata={
        "help": "streaming benchmark (FRR at fixed false alarms per hour, per-hop cost)"})
    baseline: bool = field(default=False, metadata={
        "help": "also fine-tune a student of the same shape from random weights (no distillation) "
                "and benchmark it as 'scratch fp32': what distillation buys"})


# Config fields that do not change a stage's result: left out of its hash, so turning on
# TensorBoard does not redo finished stages.
_NOT_HASHED = {"log_with"}


def _hash(obj) -> str:
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in _NOT_HASHED}
        return o

    return hashlib.sha256(json.dumps(strip(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stage(name: str, folder: Path, spec: dict, fn, overwrite: bool = False) -> dict:
    """Runs `fn` unless `folder` holds a finished stage of the same `spec`. A stage done (or
    started) with another spec is only deleted and redone with `overwrite`."""
    key = _hash(spec)
    done, pending = folder / "stage.json", folder / "stage.pending"
    if done.exists():
        saved = json.loads(done.read_text())
        if saved["hash"] == key:
            print(f"[{name}] done already ({folder}); skipped")
            return saved["result"]
        _refuse_unless(overwrite, name, folder, "finished")
        print(f"[{name}] config changed: redoing it")
        shutil.rmtree(folder)
    elif pending.exists() and pending.read_text().strip() != key:
        _refuse_unless(overwrite, name, folder, "started")
        print(f"[{name}] config changed since it was interrupted: starting it again")
        shutil.rmtree(folder)
    elif folder.is_dir() and any(folder.iterdir()) and not pending.exists():
        _refuse_unless(overwrite, name, folder, "written by something else")
    folder.mkdir(parents=True, exist_ok=True)
    pending.write_text(key)
    print(f"[{name}] running -> {folder}")
    t = time.perf_counter()
    handler = logging.FileHandler(folder / "stage.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("edgedistill").addHandler(handler)
    try:
        logging.getLogger("edgedistill.run").info("stage %s started (config %s)", name, key)
        result = fn()
        logging.getLogger("edgedistill.run").info("stage %s finished in %.1f s", name, time.perf_counter() - t)
    finally:
        logging.getLogger("edgedistill").removeHandler(handler)
        handler.close()
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"hash": key, "seconds": time.perf_counter() - t, "result": result}, default=float))
    os.replace(tmp, done)
    pending.unlink(missing_ok=True)
    return result


def _refuse_unless(overwrite: bool, name: str, folder: Path, what: str) -> None:
    if not overwrite:
        from edgedistill.config import ConfigError

        raise ConfigError(f"stage '{name}' in '{folder}' was {what} with another config (another recipe, data or "
                          "settings): its results would be deleted. Pass --overwrite to redo it and the stages "
                          "after it, or choose another out=")


def _finetune_teacher(cfg: RunConfig, folder: Path) -> dict:
    """The pretrained teacher fine-tuned with the student's heads and recipe: the report's upper bound."""
    from edgedistill.workflows.finetune import finetune

    ft = dataclasses.replace(cfg.finetune, model=cfg.teacher, data=cfg.data, out=str(folder / "ft"))
    return {"summary": finetune(ft, resume=True), "model": str(folder / "ft" / "model")}


def _train_teacher(cfg: RunConfig, folder: Path) -> dict:
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    from edgedistill.workflows.finetune import finetune

    tt = cfg.teacher_training
    init = folder / "init"
    if not (init / "config.json").exists():
        hcfg = HubertConfig(hidden_size=tt.hidden, num_hidden_layers=tt.layers,
                            num_attention_heads=max(1, tt.hidden // 64), intermediate_size=4 * tt.hidden,
                            conv_dim=[max(1, tt.cnn // 4)] + [max(1, tt.cnn // 2)] * 4 + [tt.cnn, tt.cnn],
                            num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=16, layerdrop=0.0,
                            mask_time_prob=0.0)
        torch.manual_seed(cfg.finetune.seed)
        HubertModel(hcfg).save_pretrained(init)
        Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(init)
    # From random weights the CNN must learn too, whatever the student's fine-tuning does with it.
    ft = dataclasses.replace(cfg.finetune, model=str(init), data=cfg.data, out=str(folder / "ft"), steps=tt.steps,
                             eval_every=tt.steps, freeze_cnn=False, freeze_backbone=False)
    return {"summary": finetune(ft, resume=True), "model": str(folder / "ft" / "model")}


def run(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Runs (or resumes) the pipeline; returns the report dict (also in OUT/report.json).

    With `overwrite`, stages whose config changed are deleted and redone; without it such a
    run folder (e.g. another recipe's finished run) is refused before anything is deleted.
    """
    from edgedistill.workflows.distill import distill
    from edgedistill.workflows.finetune import finetune

    _check_stream_keywords(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    specs: dict[str, dict] = {}
    if cfg.teacher == "train":
        specs["teacher"] = {"data": cfg.data, "train": to_dict(cfg.teacher_training),
                            "finetune": to_dict(cfg.finetune), "cnn": "trained"}  # teachers before this froze it
        teacher = _stage("teacher", out / "teacher", specs["teacher"], lambda: _train_teacher(cfg, out / "teacher"),
                         overwrite)
        teacher_backbone = str(Path(teacher["model"]) / "backbone")
        distill_up = specs["teacher"]
    else:
        # The student distils from the pretrained teacher; the report's teacher row is that
        # teacher fine-tuned with the same heads and recipe as the student.
        distill_up = {"teacher": cfg.teacher}
        specs["teacher"] = {"teacher": cfg.teacher, "data": cfg.data, "finetune": to_dict(cfg.finetune)}
        teacher = _stage("teacher", out / "teacher", specs["teacher"], lambda: _finetune_teacher(cfg, out / "teacher"),
                         overwrite)
        teacher_backbone = cfg.teacher
    teacher_model = teacher["model"]

    dcfg = dataclasses.replace(cfg.distill, teacher=teacher_backbone, data=cfg.distill_data or cfg.data,
                               out=str(out / "distill"))
    specs["distill"] = {"up": distill_up, "cfg": to_dict(dcfg)}
    _stage("distill", out / "distill", specs["distill"], lambda: distill(dcfg, resume=True), overwrite)

    fcfg = dataclasses.replace(cfg.finetune, model=str(out / "distill"), data=cfg.data, out=str(out / "finetune"))
    specs["finetune"] = {"up": specs["distill"], "cfg": to_dict(fcfg)}
    _stage("finetune", out / "finetune", specs["finetune"], lambda: finetune(fcfg, resume=True), overwrite)

    specs["export"] = {"up": specs["finetune"], "cfg": to_dict(cfg.export), "teacher": specs["teacher"]}
    _stage("export", out / "export", specs["export"], lambda: _export(cfg, out, teacher_model), overwrite)

    baseline = None
    if cfg.baseline:
        specs["baseline"] = {"up": distill_up, "student": to_dict(dcfg.student), "cfg": to_dict(fcfg)}
        baseline = _stage("baseline", out / "baseline", specs["baseline"],
                          lambda: _baseline(cfg, out / "baseline", teacher_backbone, fcfg), overwrite)

    specs["benchmark"] = {"up": specs["export"], "cfg": to_dict(cfg.benchmark), "baseline": specs.get("baseline"),
                          "stream": to_dict(cfg.stream)}
    return _stage("benchmark", out / "benchmark", specs["benchmark"],
                  lambda: _benchmark(cfg, out, teacher_model, baseline), overwrite)


def _check_stream_keywords(cfg: RunConfig) -> None:
    """Unknown streaming keywords fail before any training, not in the benchmark an hour later."""
    if not cfg.stream.keywords:
        return
    from edgedistill.config import ConfigError
    from edgedistill.data.layouts import resolve_labelled

    labels = {c.label for c in resolve_labelled(cfg.data, cfg.finetune.train_split)} - {None}
    missing = [k for k in cfg.stream.keywords if k not in labels]
    if missing:
        raise ConfigError(f"stream.keywords {missing} are not labels of {cfg.data}: choose among {sorted(labels)}")
    never = [k for k in cfg.stream.keywords if k.startswith("_")]
    if never:
        raise ConfigError(f"stream.keywords {never} mean 'no keyword' and never fire: leave them out")


def _streams(cfg: RunConfig, clips: list, split: str, variants: list) -> dict[str, dict]:
    """The streaming detector of each exported variant over one stream of `split`."""
    from edgedistill.data.layouts import stream_noise
    from edgedistill.onnx_eval import evaluate_stream

    st = cfg.stream
    noise = stream_noise(cfg.data, split, st.noise)[1]
    rows = {}
    for name, path, _ in variants:
        print(f"[benchmark] streaming: {name} on {st.seconds / 60:.0f} min of '{split}'")
        rows[name] = evaluate_stream(path, clips, st.keywords, st.seconds, st.seed, hop_s=st.hop_s,
                                     threads=cfg.benchmark.threads, noise=noise, snr_db=st.snr_db,
                                     enroll_clips=st.enroll_clips)
    return rows


def _baseline(cfg: RunConfig, folder: Path, teacher_backbone: str, fcfg: FinetuneConfig) -> dict:
    """The distilled student's shape from random weights, fine-tuned exactly as the student."""
    from edgedistill.export import export_onnx
    from edgedistill.models.student import save_scratch_student
    from edgedistill.workflows.finetune import finetune

    init = save_scratch_student(teacher_backbone, cfg.distill.student, folder / "init", cfg.distill.seed)
    ft = dataclasses.replace(fcfg, model=init, out=str(folder / "ft"))
    summary = finetune(ft, resume=True)
    return {"summary": summary, "model": str(folder / "ft" / "model"),
            "onnx": export_onnx(str(folder / "ft" / "model"), folder / "scratch.fp32.onnx")["path"]}


def _export(cfg: RunConfig, out: Path, teacher_model: str | None) -> dict:
    from edgedistill.export import export_onnx, write_device_kit
    from edgedistill.quantize import QuantizeConfig, quantize_model

    folder = out / "export"
    files = {"student-fp32": export_onnx(str(out / "finetune" / "model"), folder / "model.fp32.onnx")["path"]}
    for mode in cfg.export.quantize:
        q = QuantizeConfig(mode=mode, calibration=cfg.data, calibration_split=cfg.finetune.train_split,
                           calibration_clips=cfg.export.calibration_clips)
        files[f"student-{mode}"] = quantize_model(files["student-fp32"], folder / f"model.{mode}.onnx", q)["path"]
    if teacher_model:
        files["teacher-fp32"] = export_onnx(teacher_model, out / "benchmark_models" / "teacher.fp32.onnx")["path"]
    write_device_kit(folder)
    return files


def _benchmark(cfg: RunConfig, out: Path, teacher_model: str | None, baseline: dict | None = None) -> dict:
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.data.manifest import ManifestError
    from edgedistill.latency import time_onnx
    from edgedistill.machine import machine_info, write_report
    from edgedistill.models.multitask import MultiTaskModel
    from edgedistill.models.student import count_parameters
    from edgedistill.onnx_eval import evaluate_onnx

    b = cfg.benchmark
    files = json.loads((out / "export" / "stage.json").read_text())["result"]
    try:
        clips = resolve_labelled(cfg.data, b.split)
        split = b.split
    except ManifestError:
        split = cfg.finetune.val_split
        print(f"[benchmark] no '{b.split}' split in {cfg.data}: measuring on '{split}' (the selection split)")
        clips = resolve_labelled(cfg.data, split)
    clips, trials = _with_sv_data(cfg, clips, split)
    student_params = count_parameters(MultiTaskModel.from_pretrained(out / "finetune" / "model").backbone)
    variants = []
    if teacher_model:
        variants.append(("teacher fp32", files["teacher-fp32"],
                         count_parameters(MultiTaskModel.from_pretrained(teacher_model).backbone)))
    variants += [(f"student {k.split('-', 1)[1]}", v, student_params) for k, v in files.items() if k.startswith("student")]
    if baseline:
        variants.append(("scratch fp32", baseline["onnx"], student_params))
    entries, reps = [], {}
    for name, path, params in variants:
        rep = reps[name] = evaluate_onnx(path, clips, b.num_trials, cfg.finetune.seed, threads=b.threads,
                                         trials=trials)
        p50, p90 = time_onnx(path, b.seconds, b.threads, b.runs)
        entries.append({"variant": name, "params": params, "file_bytes": Path(path).stat().st_size,
                        "kws_accuracy": rep.get("kws_accuracy"), "sv_eer": rep.get("sv_eer"),
                        "sv_min_dcf": rep.get("sv_min_dcf"), "latency_ms_p50": p50, "latency_ms_p90": p90,
                        "rtf": p50 / 1000 / b.seconds, "path": str(path)})
    streams = _streams(cfg, clips, split, variants) if cfg.stream.keywords else {}
    plots = _plots(out, entries, reps, streams)
    import torch

    from edgedistill.data.trials import sv_unscored_reason

    sv_reason = None if trials is not None else sv_unscored_reason(clips, split)
    report = {"variants": entries, "split": split, "clips": len(clips), "data": cfg.data, "plots": plots,
              "threads": b.threads, "latency_audio_s": b.seconds, "machine": machine_info(),
              "train_threads": torch.get_num_threads(), "sv_unscored": sv_reason, "streams": streams,
              "command": " ".join(["edgedistill"] + sys.argv[1:]), "date": time.strftime("%Y-%m-%d")}
    md = ["# edgedistill run report", "", f"`{report['command']}`", "",
          f"Measured on split '{split}' of {cfg.data} ({len(clips)} clips). Latency: onnxruntime, "
          f"{b.threads} thread(s), {b.seconds:g} s of audio, p50/p90 of {b.runs} runs after 3 warm-up. "
          f"CPU {report['machine']['cpu']}; " + ", ".join(f"{k} {v}" for k, v in report["machine"]["versions"].items()), "",
          "| variant | params | file MB | KWS accuracy | SV EER | minDCF (0.01) | p50 ms | p90 ms | RTF |",
          "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        md.append(f"| {e['variant']} | {e['params']:,} | {e['file_bytes'] / 1e6:.2f} | {pct(e['kws_accuracy'])} | "
                  f"{pct(e['sv_eer'])} | {num(e['sv_min_dcf'])} | {e['latency_ms_p50']:.1f} | "
                  f"{e['latency_ms_p90']:.1f} | {e['rtf']:.4f} |")
    if sv_reason:
        md += ["", f"**Speaker verification is not scored:** {sv_reason}."]
    md += _stream_section(streams, split, cfg.data, "##")
    md += ["", f"Training ran on {report['train_threads']} torch thread(s): accuracy and EER of trained models "
           "depend on the thread count (floating-point sums run in another order), latency on the CPU."]
    md += ["", *[f"![{name}]({Path(p).relative_to(out)})" for name, p in plots.items()]]
    write_report(out / "report", report, md)
    _model_card(cfg, out, report)
    return report


def _with_sv_data(cfg: RunConfig, clips: list, split: str):
    """With `finetune.sv_data`, KWS is scored on `data` and SV on `sv_data` (the official trial
    list for a VoxCeleb test split), as in training. Returns (clips, trials or None)."""
    from dataclasses import replace

    from edgedistill.data.layouts import find_trial_list, read_trial_list, resolve_labelled
    from edgedistill.evaluation import trials_from_list

    sv_spec = cfg.finetune.sv_data
    if not sv_spec:
        return clips, None
    sv = [replace(c, label=None) for c in resolve_labelled(sv_spec, split)]
    kws = [replace(c, speaker=None) for c in clips]
    kind, _, root = sv_spec.partition(":")
    if kind == "voxceleb" and split == "test" and find_trial_list(Path(root)):
        local = trials_from_list(sv, read_trial_list(find_trial_list(Path(root))), root)
        return kws + sv, np.c_[local[:, 0] + len(kws), local[:, 1] + len(kws), local[:, 2]]
    return kws + sv, None


def _plots(out: Path, entries: list[dict], reps: dict, streams: dict | None = None) -> dict[str, str]:
    from edgedistill import plots

    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    made = {"trade-off": plots.plot_tradeoff(entries, folder / "tradeoff.png")}
    curves = {n: (r["trial_scores"], r["trial_targets"]) for n, r in reps.items() if "trial_scores" in r}
    if curves:
        made["SV DET curve"] = plots.plot_det(curves, folder / "det.png")
    student = next((n for n in reps if n.startswith("student") and n != "student fp32"), "student fp32")
    if "kws_confusion" in reps.get(student, {}):
        made["KWS confusion"] = plots.plot_confusion(reps[student]["kws_confusion"], reps[student]["kws_labels"],
                                                     folder / "confusion.png", f"KWS confusion: {student}")
    logs = {"teacher": out / "teacher" / "ft" / "train_log.jsonl", "distill": out / "distill" / "train_log.jsonl",
            "finetune": out / "finetune" / "train_log.jsonl", "scratch": out / "baseline" / "ft" / "train_log.jsonl"}
    made["training curves"] = plots.plot_training(logs, folder / "training.png")
    if streams:
        made["streaming FRR vs FA/h"] = plots.plot_stream_det({n: r["curve"] for n, r in streams.items()},
                                                               folder / "stream_det.png")
    return {k: str(v) for k, v in made.items()}


def _stream_section(streams: dict | None, split: str, data: str, heading: str) -> list[str]:
    """Markdown of the streaming rows (report and model card); nothing without streams."""
    from edgedistill.machine import stream_note, stream_table

    if not streams:
        return []
    return ["", f"{heading} Continuous listening", "", stream_note(next(iter(streams.values())), split, data), "",
            *stream_table(streams)]


def _model_card(cfg: RunConfig, out: Path, report: dict) -> None:
    """README.md of the exported folder: Hugging Face model-card metadata + what, how, numbers."""
    from edgedistill import __version__

    students = [e for e in report["variants"] if e["variant"].startswith("student")]
    baseline = [e for e in report["variants"] if e["variant"] == "scratch fp32"]
    best = students[-1]
    meta = ["---", "library_name: onnxruntime", "pipeline_tag: audio-classification",
            "tags: [keyword-spotting, speaker-verification, knowledge-distillation, edgedistill, onnx]",
            "model-index:", "- name: edgedistill student", "  results:"]
    for e in students:  # a task that could not be scored (e.g. one speaker in the split) is left out
        if e["kws_accuracy"] is not None:
            meta += ["  - task: {type: audio-classification, name: keyword spotting}",
                     f"    dataset: {{name: '{cfg.data}', type: custom, split: {report['split']}}}",
                     f"    metrics: [{{type: accuracy, value: {e['kws_accuracy']:.4f}, name: '{e['variant']} KWS accuracy'}}]"]
        if e["sv_eer"] is not None:
            meta += ["  - task: {type: audio-classification, name: speaker verification}",
                     f"    dataset: {{name: '{cfg.data}', type: custom, split: {report['split']}}}",
                     f"    metrics: [{{type: eer, value: {e['sv_eer']:.4f}, name: '{e['variant']} EER'}}]"]
    meta.append("---")
    teacher = ("a HuBERT-shaped teacher trained in this run from random weights "
               f"({cfg.teacher_training.layers} x {cfg.teacher_training.hidden}, {cfg.teacher_training.steps} steps)"
               if cfg.teacher == "train" else f"`{cfg.teacher}`")
    rows = ["| variant | params | file MB | KWS accuracy | SV EER | minDCF (0.01) | p50 ms |", "|---|---|---|---|---|---|---|"]
    rows += [f"| {e['variant']} | {e['params']:,} | {e['file_bytes'] / 1e6:.2f} | {pct(e['kws_accuracy'])} | "
             f"{pct(e['sv_eer'])} | {num(e['sv_min_dcf'])} | {e['latency_ms_p50']:.1f} |" for e in report["variants"]]
    body = ["", "# edgedistill student: keyword spotting + speaker verification", "",
            f"A `{cfg.distill.student.preset}` student (one backbone, a KWS head and a speaker-embedding head) for "
            f"{len(json.loads((out / 'finetune' / 'model' / 'multitask.json').read_text())['labels'])} keywords, "
            "exported to ONNX for onnxruntime on CPUs.", "",
            "## How it was made", "",
            f"1. Teacher: {teacher}.",
            f"2. Layer-wise distillation ({cfg.distill.objective}, L1 + log-sigmoid cosine) for {cfg.distill.steps} steps on "
            f"`{cfg.distill_data or cfg.data}`" + (f", with text-informed distillation from `{cfg.distill.text_teacher}` "
                                                 f"(units: {', '.join(cfg.distill.active_units())})."
                                                 if cfg.distill.text_teacher else "."),
            f"3. Joint KWS + SV fine-tuning for {cfg.finetune.steps} steps (AAM softmax s={cfg.finetune.aam_scale}, "
            f"m={cfg.finetune.aam_margin}), selected on the '{cfg.finetune.val_split}' split.",
            f"4. ONNX export (parity-checked against PyTorch) and quantization: {', '.join(cfg.export.quantize) or 'none'}.",
            *([f"5. Baseline: the same shape from random weights with the same fine-tuning (no distillation): "
               f"KWS {pct(baseline[0]['kws_accuracy'])}, EER {pct(baseline[0]['sv_eer'])} ('scratch fp32')."]
              if baseline else []),
            "", f"## Measured on the '{report['split']}' split ({report['clips']} clips)", "",
            *rows, *_stream_section(report.get("streams"), report["split"], report["data"], "###"), "", f"Latency: onnxruntime, {report['threads']} thread(s), {report['latency_audio_s']:g} s of audio, on "
            f"{report['machine']['cpu']}. Command: `{report['command']}`. edgedistill {__version__}, {report['date']}.", "",
            "## Use", "", "```bash", "pip install -r requirements.txt",
            f"python infer.py {Path(best['path']).name} clip.wav [other.wav]", "```", "",
            "Input: mono 16 kHz audio, at least 25 ms. See DEVICE.md for the Python API.", "",
            "## Limitations", "",
            "Numbers are for the data above only; speakers and recording conditions outside it will differ. "
            "The SV threshold in the metadata was chosen at the validation EER.", ""]
    (out / "export" / "README.md").write_text("\n".join(meta + body))


