"""CPU latency of the teacher and the students: PyTorch fp32, ORT fp32 and every quantization mode.

    python benchmarks/latency.py                       # full-size shapes, about 15 minutes
    python benchmarks/latency.py --teacher builtin:hubert-tiny --modes int8-dynamic --runs 3

Models are the deployable multi-task graph (backbone + KWS head + SV head) with random
weights: speed does not depend on weight values. Each measurement pins the thread count,
warms up, then reports p50/p90 over `--runs` runs and the real-time factor (latency / audio
duration). Writes JSON and a Markdown table with CPU flags, versions and the command.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> dict:
    from edgedistill.deploy.quantize import MODES  # torch-free

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin:hubert-base-random",
                   help="teacher shape (random weights): a builtin name or small:LAYERSxHIDDENxCNN (a recipe's "
                        "trained teacher, e.g. small:6x256x256 for Arabic Speech Commands)")
    p.add_argument("--students", default="distilhubert,edge,deep,wide")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated quantization modes")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seconds", default="1,4", help="audio lengths in seconds")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--calibration", default="embedded", help="calibration audio for int8 / int8-static")
    p.add_argument("--out", default="benchmarks/results/latency")
    args = p.parse_args(argv)

    import torch

    from edgedistill.deploy.onnx import export_onnx
    from edgedistill.evaluation.latency import time_onnx, time_torch
    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.models.multitask import MultiTaskModel
    from edgedistill.models.student import StudentConfig, build_student, count_parameters
    from edgedistill.models.builders import random_teacher
    from edgedistill.deploy.quantize import quantize_model, scheme_with_calibration

    threads = [int(t) for t in args.threads.split(",")]
    lengths = [float(s) for s in args.seconds.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    labels = [f"kw{i}" for i in range(12)]
    torch.manual_seed(0)
    teacher = random_teacher(args.teacher)
    rows = []

    def measure(name: str, fmt: str, run, params: int, file_bytes: int | None):
        for t in threads:
            for s in lengths:
                p50, p90 = run(s, t)
                rows.append({"model": name, "format": fmt, "threads": t, "audio_s": s, "params": params,
                             "file_bytes": file_bytes, "latency_ms_p50": p50, "latency_ms_p90": p90,
                             "rtf": p50 / 1000 / s})
                print(f"{name:<14}{fmt:<14} threads={t} audio={s:>4}s p50={p50:8.1f} ms p90={p90:8.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        models = [("teacher", teacher)]
        models += [(preset, build_student(teacher, StudentConfig(preset=preset))[0])
                   for preset in args.students.split(",") if preset]
        for name, backbone in models:
            model = MultiTaskModel(backbone, labels, 0).eval()
            params = count_parameters(backbone)
            measure(name, "torch-fp32", lambda s, t: time_torch(model, s, t, args.runs, args.warmup), params, None)
            fp32 = tmp / f"{name}.fp32.onnx"
            export_onnx(model, fp32)
            measure(name, "ort-fp32", lambda s, t: time_onnx(fp32, s, t, args.runs, args.warmup), params,
                    fp32.stat().st_size)
            for mode in modes:
                q = tmp / f"{name}.{mode}.onnx"
                quantize_model(fp32, q, scheme_with_calibration(mode, calibration=args.calibration, calibration_clips=8))
                measure(name, f"ort-{mode}", lambda s, t: time_onnx(q, s, t, args.runs, args.warmup), params,
                        q.stat().st_size)
    add_ratios(rows)
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    info = machine_info()
    result = {"benchmark": "latency", "teacher": args.teacher, "runs": args.runs, "warmup": args.warmup,
              "rows": rows, "command": command, "machine": info, "date": time.strftime("%Y-%m-%d"),
              "note": "random weights; batch 1; ORT CPU execution provider, graph optimisation ALL but "
                      "SkipLayerNormFusion (EdgeModel's default, benchmarks/ort_fusions.py), "
                      "inter-op threads 1"}
    md = ["# CPU latency: teacher vs students, every format", "", f"`{command}`", "",
          f"CPU {info['cpu']} ({info['cores']} cores, flags {', '.join(info['cpu_flags'])}); "
          f"{', '.join(f'{k} {v}' for k, v in info['versions'].items())}; Python {info['python']}; "
          f"{result['date']}. Batch 1, {args.warmup} warm-up runs, p50/p90 over {args.runs} runs, random weights. "
          "RTF = p50 latency / audio duration.", ""]
    for t in threads:
        md += [f"## {t} thread{'s' if t > 1 else ''}", "",
               "| model | format | params | file MB | " + " | ".join(f"{s:g} s p50 ms | {s:g} s p90 ms | {s:g} s RTF" for s in lengths) + " |",
               "|---|---|---|---|" + "---|---|---|" * len(lengths)]
        for name, fmt in _pairs(rows, t):
            cells = []
            for s in lengths:
                r = next(r for r in rows if (r["model"], r["format"], r["threads"], r["audio_s"]) == (name, fmt, t, s))
                cells.append(f"{r['latency_ms_p50']:.1f} | {r['latency_ms_p90']:.1f} | {r['rtf']:.3f}")
            r0 = next(r for r in rows if (r["model"], r["format"]) == (name, fmt))
            size = f"{r0['file_bytes'] / 1e6:.1f}" if r0["file_bytes"] else "-"
            md.append(f"| {name} | {fmt} | {r0['params']:,} | {size} | " + " | ".join(cells) + " |")
        md.append("")
        md += ratio_table(rows, t, lengths)
    write_report(args.out, result, md)
    return result


def _pairs(rows: list[dict], threads: int) -> list[tuple[str, str]]:
    """(model, format) of the rows at `threads`, in the order measured."""
    return list(dict.fromkeys((r["model"], r["format"]) for r in rows if r["threads"] == threads))


def add_ratios(rows: list[dict]) -> None:
    """Each row's speed-up over the teacher at the same threads and audio length: against the
    teacher in PyTorch fp32 (`x_vs_teacher_torch`) and in the row's own ONNX format
    (`x_vs_teacher_same_format`: fp32 to fp32, int8 to int8)."""
    teacher = {(r["format"], r["threads"], r["audio_s"]): r["latency_ms_p50"] for r in rows if r["model"] == "teacher"}
    for r in rows:
        torch_ms = teacher.get(("torch-fp32", r["threads"], r["audio_s"]))
        same_ms = teacher.get((r["format"], r["threads"], r["audio_s"]))
        r["x_vs_teacher_torch"] = torch_ms / r["latency_ms_p50"] if torch_ms else None
        r["x_vs_teacher_same_format"] = same_ms / r["latency_ms_p50"] if same_ms else None


def ratio_table(rows: list[dict], threads: int, lengths: list[float]) -> list[str]:
    """Markdown: speed-up of every model and format over the teacher, at `threads` threads."""
    md = [f"Speed-up over the teacher ({threads} thread{'s' if threads > 1 else ''}): teacher latency / this "
          "latency, against the teacher in PyTorch fp32 and in the same format.", "",
          "| model | format | " + " | ".join(f"{s:g} s vs torch fp32 | {s:g} s vs same format" for s in lengths) + " |",
          "|---|---|" + "---|---|" * len(lengths)]
    for name, fmt in _pairs(rows, threads):
        cells = []
        for s in lengths:
            r = next(x for x in rows if (x["model"], x["format"], x["threads"], x["audio_s"]) == (name, fmt, threads, s))
            cells.append(" | ".join(f"{r[k]:.1f}x" if r[k] else "-" for k in ("x_vs_teacher_torch",
                                                                                 "x_vs_teacher_same_format")))
        md.append(f"| {name} | {fmt} | " + " | ".join(cells) + " |")
    return md + [""]


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
