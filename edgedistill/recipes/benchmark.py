"""Recipe: the benchmark stage of a run: every exported variant scored the same way.

For each variant (teacher, students, baseline): parameters, file size, KWS accuracy, SV EER
and minDCF on held-out speakers (onnxruntime, the files you deploy), latency p50/p90; with
`stream.keywords`, the streaming detector over one long stream (FRR at fixed false alarms per
hour, per-hop cost, speaker gating). Writes OUT/report.{json,md} and OUT/plots/.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgedistill.data.layouts import resolve_labelled, stream_noise
from edgedistill.data.manifest import ManifestError
from edgedistill.data.trials import official_trials, sv_unscored_reason
from edgedistill.reporting import plots
from edgedistill.reporting.machine import machine_info, write_report
from edgedistill.reporting.tables import stream_section, variant_table
from edgedistill.evaluation.scores import evaluate_onnx, evaluate_stream
from edgedistill.evaluation.latency import time_onnx


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
    negative_hours: float = field(default=0.0, metadata={
        "help": "also count false alarms on this many hours of a keyword-free stream of the split and report misses "
                "at fixed FA/h with 95% intervals (10 gives figures worth comparing; 0: the keyword stream alone)"})
    detector: bool = field(default=True, metadata={
        "help": "train the run's models as detectors of `keywords` (finetune.detect_keywords where it is empty); "
                "false: on clips only"})
    calibrate_hours: float = field(default=1.0, metadata={
        "help": "hours of keyword-free stream of the validation split on which the exported files' keyword "
                "thresholds are calibrated (written into them; the kit's detector uses them); 0: none"})
    target_fa_per_hour: float = field(default=0.5, metadata={
        "help": "false alarms per hour (all keywords) the calibrated thresholds aim at"})
    variants: list[str] = field(default_factory=list, metadata={
        "help": "rows that get the streaming benchmark, e.g. ['student fp32', 'student int8'] (a teacher's rows "
                "measured once elsewhere need not be heard again in every run); empty: every row"})

    def __post_init__(self):
        if self.keywords and (self.seconds < 60 or self.hop_s <= 0 or self.enroll_clips < 0):
            raise ValueError("stream: seconds must be >= 60, hop_s > 0 and enroll_clips >= 0")
        if self.negative_hours < 0 or self.calibrate_hours < 0 or self.target_fa_per_hour <= 0:
            raise ValueError("stream: negative_hours and calibrate_hours must be >= 0, target_fa_per_hour > 0")
        odd = [v for v in self.variants if v.split(" ")[0] not in ("teacher", "student", "scratch")]
        if odd:
            raise ValueError(f"stream.variants {odd}: rows are named 'teacher|student|scratch MODE', e.g. 'student int8'")
        never = [k for k in self.keywords if k.startswith("_")]
        if never:
            raise ValueError(f"stream.keywords {never} mean 'no keyword' and never fire: leave them out")


def benchmark(variants: list[tuple[str, str, int]], out: Path, data: str, stage: BenchmarkStage,
              stream: StreamStage, *, fallback_split: str = "val", sv_data: str | None = None, seed: int = 0,
              training_logs: dict[str, Path] | None = None, notes: list[str] | None = None,
              reference: str = "teacher fp32") -> dict:
    """Scores every (name, .onnx path, parameter count) of `variants` on `stage.split` of
    `data` (or `fallback_split` where the data has no such split); writes `out`/report.json,
    report.md and plots; returns the report. Each entry also gets `kws_retained` (its KWS
    accuracy / the `reference` variant's) and `eer_ratio` (its EER / the reference's); `notes`
    (Markdown lines) go into the report after the table."""
    try:
        clips, split = resolve_labelled(data, stage.split), stage.split
    except ManifestError:
        split = fallback_split
        print(f"[benchmark] no '{stage.split}' split in {data}: measuring on '{split}' (the selection split)")
        clips = resolve_labelled(data, split)
    clips, trials = _with_sv_data(sv_data, clips, split)
    entries, reps = [], {}
    for name, path, params in variants:
        rep = reps[name] = evaluate_onnx(path, clips, stage.num_trials, seed, threads=stage.threads, trials=trials)
        p50, p90 = time_onnx(path, stage.seconds, stage.threads, stage.runs)
        entries.append({"variant": name, "params": params, "file_bytes": Path(path).stat().st_size,
                        "kws_accuracy": rep.get("kws_accuracy"), "sv_eer": rep.get("sv_eer"),
                        "sv_min_dcf": rep.get("sv_min_dcf"), "latency_ms_p50": p50, "latency_ms_p90": p90,
                        "rtf": p50 / 1000 / stage.seconds, "path": str(path)})
    add_retained(entries, reference)
    streams = _streams(stream, data, clips, split, variants, stage.threads) if stream.keywords else {}
    made = _plots(out, entries, reps, streams, training_logs or {})
    import torch

    sv_reason = None if trials is not None else sv_unscored_reason(clips, split)
    report = {"variants": entries, "split": split, "clips": len(clips), "data": data, "plots": made,
              "threads": stage.threads, "latency_audio_s": stage.seconds, "machine": machine_info(),
              "train_threads": torch.get_num_threads(), "sv_unscored": sv_reason, "streams": streams,
              "notes": list(notes or []),
              "command": " ".join(["edgedistill"] + sys.argv[1:]), "date": time.strftime("%Y-%m-%d")}
    md = ["# edgedistill run report", "", f"`{report['command']}`", "",
          f"Measured on split '{split}' of {data} ({len(clips)} clips). Latency: onnxruntime, "
          f"{stage.threads} thread(s), {stage.seconds:g} s of audio, p50/p90 of {stage.runs} runs after 3 warm-up. "
          f"CPU {report['machine']['cpu']}; " + ", ".join(f"{k} {v}" for k, v in report["machine"]["versions"].items()),
          "", *variant_table(entries)]
    if any("kws_retained" in e for e in entries):
        md += ["", f"Retained: KWS accuracy / {reference}'s; EER / teacher: EER / {reference}'s (below 1 is better)."]
    if sv_reason:
        md += ["", f"**Speaker verification is not scored:** {sv_reason}."]
    md += ["", *notes] if notes else []
    md += stream_section(streams, split, data, "##")
    md += ["", f"Training ran on {report['train_threads']} torch thread(s): accuracy and EER of trained models "
           "depend on the thread count (floating-point sums run in another order), latency on the CPU."]
    md += ["", *[f"![{name}]({Path(p).relative_to(out)})" for name, p in made.items()]]
    md += [x for w in unplotted(made, training_logs or {}, streams) for x in ("", w)]
    write_report(out / "report", report, md)
    return report


def add_retained(entries: list[dict], reference: str = "teacher fp32") -> None:
    """Adds `kws_retained` and `eer_ratio` against the `reference` entry (when it is there)."""
    ref = next((e for e in entries if e["variant"] == reference), None)
    for e in entries if ref else []:
        if e.get("kws_accuracy") is not None and ref.get("kws_accuracy"):
            e["kws_retained"] = e["kws_accuracy"] / ref["kws_accuracy"]
        if e.get("sv_eer") is not None and ref.get("sv_eer"):
            e["eer_ratio"] = e["sv_eer"] / ref["sv_eer"]


def _with_sv_data(sv_data: str | None, clips: list, split: str):
    """With `sv_data`, KWS is scored on the data's clips and SV on `sv_data`'s (the official
    trial list for a VoxCeleb test split), as in training. Returns (clips, trials or None)."""
    if not sv_data:
        return clips, None
    sv = [replace(c, label=None) for c in resolve_labelled(sv_data, split)]
    kws = [replace(c, speaker=None) for c in clips]
    local = official_trials(sv_data, sv, split)
    if local is None:
        return kws + sv, None
    return kws + sv, np.c_[local[:, 0] + len(kws), local[:, 1] + len(kws), local[:, 2]]


def _streams(st: StreamStage, data: str, clips: list, split: str, variants: list, threads: int) -> dict[str, dict]:
    """The streaming detector of each exported variant over one stream of `split`."""
    noise = stream_noise(data, split, st.noise)[1]
    rows = {}
    unknown = sorted(set(st.variants) - {name for name, _, _ in variants})
    if unknown:
        raise ValueError(f"stream.variants {unknown} are not rows of this run ({[n for n, _, _ in variants]})")
    for name, path, _ in variants:
        if st.variants and name not in st.variants:
            continue
        print(f"[benchmark] streaming: {name} on {st.seconds / 60:.0f} min of '{split}'"
              + (f" and {st.negative_hours:g} h without a keyword" if st.negative_hours else ""))
        rows[name] = evaluate_stream(path, clips, st.keywords, st.seconds, st.seed, hop_s=st.hop_s, threads=threads,
                                     noise=noise, snr_db=st.snr_db, enroll_clips=st.enroll_clips,
                                     negative_hours=st.negative_hours)
    return rows


def _plots(out: Path, entries: list[dict], reps: dict, streams: dict, logs: dict[str, Path]) -> dict[str, str]:
    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made = {"trade-off": plots.plot_tradeoff(entries, folder / "tradeoff.png")}
    curves = {n: (r["trial_scores"], r["trial_targets"]) for n, r in reps.items() if "trial_scores" in r}
    if curves:
        made["SV DET curve"] = plots.plot_det(curves, folder / "det.png")
    student = next((n for n in reps if n.startswith("student") and n != "student fp32"), "student fp32")
    if "kws_confusion" in reps.get(student, {}):
        made["KWS confusion"] = plots.plot_confusion(reps[student]["kws_confusion"], reps[student]["kws_labels"],
                                                     folder / "confusion.png", f"KWS confusion: {student}")
    if logs:
        made["training curves"] = plots.plot_training(logs, folder / "training.png")
    if streams:
        made["streaming FRR vs FA/h"] = plots.plot_stream_det(
            {n: r["detection"]["curve"] if "detection" in r else r["curve"] for n, r in streams.items()},
            folder / "stream_det.png")
    return {k: str(v) for k, v in made.items() if v is not None}


def unplotted(made: dict, logs: dict, streams: dict) -> list[str]:
    """What the report has no plot of, and why, in words."""
    why = []
    if logs and "training curves" not in made:
        why.append("No training curves: no stage logged a loss (a run shorter than `log_every` steps logs none).")
    if streams and "streaming FRR vs FA/h" not in made:
        why.append("No streaming plot: no variant fired above any threshold on the stream, so there is no "
                   "miss / false-alarm trade-off to draw.")
    return why
