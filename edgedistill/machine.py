"""Benchmark bookkeeping: what it ran on (CPU, flags, versions; no torch import) and its report files."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(packages=("torch", "transformers", "accelerate", "onnxruntime", "onnx", "numpy")) -> dict:
    """CPU model, selected ISA flags, core count, OS, Python and package versions."""
    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "fma")
    return {"cpu": cpu_model(), "cpu_flags": sorted(f for f in wanted if f in flags),
            "cores": os.cpu_count(), "machine": platform.machine(), "os": platform.platform(),
            "python": sys.version.split()[0], "versions": versions}


def write_report(out: str | Path, result: dict, markdown: list[str]) -> None:
    """Writes `out`.json (the result) and `out`.md (the table), and prints the table."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=float))
    out.with_suffix(".md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))


def pct(x) -> str:
    """A fraction as a percentage for report tables ('-' when not measured)."""
    return f"{100 * x:.2f}%" if x is not None else "-"


def num(x) -> str:
    """A number with three decimals for report tables ('-' when not measured)."""
    return f"{x:.3f}" if x is not None else "-"


def stream_table(rows: dict[str, dict]) -> list[str]:
    """Markdown rows of streaming results ({variant: `onnx_eval.evaluate_stream` report})."""
    md = ["| variant | FRR @ 0.5 FA/h | FRR @ 1 FA/h | FRR @ 2 FA/h | latency median / p90 s | ms / hop (p99) "
          "| core share | owner accepted | impostor accepted |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        gate = r.get("speaker_gate") or {}
        md.append(f"| {name} | {pct(r['frr_at_0.5_fa_per_hour'])} | {pct(r['frr_at_1_fa_per_hour'])} | "
                  f"{pct(r['frr_at_2_fa_per_hour'])} | {r['latency_s_median']:.2f} / {r['latency_s_p90']:.2f} | "
                  f"{r['mean_ms']:.1f} ({r['p99_ms']:.1f}) | {pct(r['core_share'])} | "
                  f"{pct(gate.get('owner_acceptance'))} | {pct(gate.get('impostor_acceptance'))} |")
    return md


def stream_note(r: dict, split: str, data: str) -> str:
    """One sentence saying what the streaming rows were measured on."""
    gate = r.get("speaker_gate") or {}
    note = (f"Streaming: a {r['seconds'] / 60:.0f} min stream from split '{split}' of {data} (seed {r['seed']}, "
            f"background at {r['snr_db']:g} dB SNR), targets {', '.join(r['targets'])}: {r['occurrences']} "
            f"occurrences among the other words; detector hop {r['hop_ms']:.0f} ms, onnxruntime {r['threads']} "
            "thread(s). FRR at a fixed number of false alarms per hour; latency from the end of the word.")
    if "owner_acceptance" in gate:
        note += (f" Speaker gating: each of the {r['enrolled_speakers']} speakers enrolled from a few non-target "
                 "clips left out of the stream; 'owner accepted' = keyword hits (at the 1 FA/h threshold) accepted "
                 "for their own speaker, 'impostor accepted' = accepted for another enrolled speaker, at the "
                 f"model's SV threshold {gate['sv_threshold']:.3f}.")
    return note
