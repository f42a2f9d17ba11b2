"""Distillation throughput: seconds of audio distilled per second of wall time.

    python benchmarks/distill_throughput.py                     # HuBERT Base shape, CPU
    python benchmarks/distill_throughput.py --device cuda --batch-size 24 --seconds 15.6

Runs the real `edgedistill distill` loop (teacher forward, student forward+backward, AdamW
step, data loading) for the `distilhubert` preset, with and without `reuse_teacher_cnn`
(the student CNN frozen and fed the teacher's CNN features). Weights are random (speed does
not depend on them). The first `--warmup` steps are left out of the rate. Writes JSON and a
Markdown table with the machine, versions, threads and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_clips(folder: Path, n: int, seconds: float, seed: int = 0) -> Path:
    """n clips of `seconds` of the embedded corpus's speech, concatenated to length."""
    import soundfile as sf

    from edgedistill.data.corpus import CorpusConfig, synth_clip, make_speakers

    cfg = CorpusConfig()
    spk = make_speakers(cfg.num_speakers, cfg.seed)
    rng = np.random.default_rng(seed)
    rows = ["path"]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        parts = [synth_clip(cfg.keywords[rng.integers(len(cfg.keywords))], spk[i % len(spk)], rng, cfg)
                 for _ in range(int(np.ceil(seconds)))]
        audio = np.concatenate(parts)[: int(seconds * 16000)]
        sf.write(folder / f"clip{i:04d}.wav", audio, 16000, subtype="PCM_16")
        rows.append(f"clip{i:04d}.wav")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def run_one(teacher: str, manifest: Path, out: Path, reuse_cnn: bool, args) -> dict:
    from edgedistill.config import load_config
    from edgedistill.recipes.distill import DistillConfig
    from edgedistill.recipes.distill import distill

    cfg = load_config(DistillConfig, None, [
        f"teacher={teacher}", f"data={manifest}", "split=null", f"out={out}",
        f"student.preset={args.student}", f"batch_size={args.batch_size}",
        f"max_samples={int(args.seconds * 16000)}", f"steps={args.warmup + args.steps}",
        "log_every=1", f"save_every={10**9}", f"reuse_teacher_cnn={str(reuse_cnn).lower()}",
        f"cpu={str(args.device == 'cpu').lower()}", f"mixed_precision={args.precision}"])
    distill(cfg)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    a, b = log[args.warmup - 1], log[-1]
    rate = (b["audio_s"] - a["audio_s"]) / (b["elapsed_s"] - a["elapsed_s"])
    step_s = (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"])
    return {"reuse_teacher_cnn": reuse_cnn, "audio_s_per_s": rate, "step_s": step_s,
            "audio_s_per_step": (b["audio_s"] - a["audio_s"]) / (b["step"] - a["step"]),
            "measured_steps": b["step"] - a["step"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin:hubert-base-random")
    p.add_argument("--student", default="distilhubert")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="auto", help="auto, no, bf16, fp16")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0, help="clip length in seconds")
    p.add_argument("--steps", type=int, default=5, help="measured steps")
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the rate")
    p.add_argument("--out", default="benchmarks/results/distill_throughput")
    args = p.parse_args(argv)
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (the rate is measured from the end of a step)")

    import torch

    from edgedistill.reporting.machine import machine_info, write_report

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = _write_clips(tmp / "data", args.batch_size * (args.warmup + args.steps), args.seconds)
        rows = [run_one(args.teacher, manifest, tmp / f"run{int(r)}", r, args) for r in (False, True)]
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    result = {"benchmark": "distill_throughput", "teacher": args.teacher, "student": args.student,
              "device": device, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "clip_seconds": args.seconds, "precision": args.precision, "results": rows,
              "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
              "machine": machine_info(), "date": time.strftime("%Y-%m-%d")}
    base = rows[0]["audio_s_per_s"]
    md = [f"# Distillation throughput: {args.student} from {args.teacher}", "",
          f"`{result['command']}`", "",
          f"Device {device}, {result['threads']} torch threads, batch {args.batch_size} x "
          f"{args.seconds} s, precision {args.precision}, {args.steps} measured steps after "
          f"{args.warmup} warm-up. CPU: {result['machine']['cpu']} ({result['machine']['cores']} cores). "
          f"Versions: {', '.join(f'{k} {v}' for k, v in result['machine']['versions'].items())}. "
          f"Date {result['date']}.", "",
          "| student CNN | audio s / s | s / step | speed-up |", "|---|---|---|---|"]
    for r in rows:
        name = "frozen, teacher's features reused" if r["reuse_teacher_cnn"] else "trained (feature_grad_mult 0.1)"
        md.append(f"| {name} | {r['audio_s_per_s']:.2f} | {r['step_s']:.2f} | {r['audio_s_per_s'] / base:.2f}x |")
    write_report(args.out, result, md)
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
