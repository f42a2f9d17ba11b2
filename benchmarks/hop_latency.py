"""What keyword spotting costs a device every 100 ms hop: exported files timed side by side.

    python benchmarks/hop_latency.py --models edge=runs/x/export/model.int8.onnx micro100k=runs/y/export/model.int8.onnx

A windowed model (every transformer student, the teacher, the openWakeWord peer) runs on a whole
1 s window each hop; a streaming model (a micro student) steps one hop from its state, its numpy
front end included (`edgedistill.evaluation.latency.time_hops_side_by_side`). Each file is timed
alone, one after the other, as a device runs one model (`--interleave`: in turn each round, where
a load comes and goes; a small model then loses its caches to the large ones). Run it on an
otherwise idle machine. Writes JSON and a Markdown table with the machine, versions,
threads, file sizes and the command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, metavar="NAME=PATH", help="exported .onnx files to time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1000, help="timed hops per file")
    p.add_argument("--hop-s", type=float, default=0.1)
    p.add_argument("--interleave", action="store_true", help="run the files in turn each round instead of one by one")
    p.add_argument("--out", default="benchmarks/results/hop_latency")
    args = p.parse_args(argv)

    from edgedistill.evaluation.latency import time_hops_side_by_side
    from edgedistill.reporting.machine import machine_info, write_report

    paths = {}
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--models {spec!r}: give NAME=PATH of an exported .onnx file")
        paths[name] = path
    got = time_hops_side_by_side(paths, hop_s=args.hop_s, threads=args.threads, rounds=args.rounds,
                                 interleave=args.interleave)
    rows = [{"model": name, "path": paths[name], "file_bytes": Path(paths[name]).stat().st_size, **r}
            for name, r in got.items()]
    report = {"rows": rows, "threads": args.threads, "rounds": args.rounds, "interleave": args.interleave,
              "machine": machine_info(),
              "command": " ".join(["python", "benchmarks/hop_latency.py"] + (argv if argv is not None else sys.argv[1:])),
              "date": time.strftime("%Y-%m-%d")}
    m = report["machine"]
    md = ["# Per-hop cost of keyword spotting", "", f"`{report['command']}`", "",
          f"onnxruntime, {args.threads} thread(s), {args.rounds} hops of {1000 * args.hop_s:g} ms per file, "
          + ("interleaved (in turn each round); " if args.interleave else "each file alone, one after the other; ")
          + 
          f"CPU {m['cpu']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
          "| model | how it hears a hop | file KB | mean ms / hop | p50 | p99 | core share |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {'one hop from its state' if r['streaming'] else 'a whole 1 s window'} | "
           f"{r['file_bytes'] / 1000:.1f} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
           f"{100 * r['core_share']:.2f}% |" for r in rows]
    write_report(Path(args.out), report, md)
    return report


if __name__ == "__main__":
    main()
