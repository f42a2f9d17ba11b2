"""Continuous listening on Arabic Speech Commands: FRR at fixed false alarms per hour, latency,
per-hop cost and speaker gating, for the teacher and the distilled student in fp32 and int8.

    python benchmarks/streaming.py                          # CPU: about 2 h on 2 cores (training)
    python benchmarks/streaming.py --run runs/arabic_distilhubert stream.seconds=600

Runs (or resumes) `edgedistill run configs/arabic_speech_commands.yaml` in `--run` (the recipe
names the target keywords `ok`, `start`, `stop` and a 1-hour stream of the val speakers; its
data adds a `_silence_` class from the dataset's background recordings), then writes the
run's streaming rows to benchmarks/results/streaming.{json,md} with the FRR-vs-FA/h plot.
Every row is trained as a detector of those keywords (the run's default where a recipe names
them), false alarms are counted on `--negative-hours` of a keyword-free stream (cached an hour
at a time, so a stopped measurement resumes), and the
openWakeWord peer (`--no-peer` leaves it out) is trained on the run's fine-tuning batches and
heard on the same streams. Finished stages are skipped, so a second call only gathers.

Data: Arabic Speech Commands (Ghandoura et al. 2021, CC BY 4.0), read in place.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "arabic_speech_commands.yaml"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/arabic_stream", help="the run folder (resumed if it exists)")
    p.add_argument("--recipe", default=str(RECIPE))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "streaming"))
    p.add_argument("--negative-hours", type=float, default=10.0,
                   help="hours of keyword-free stream false alarms are counted on (stream.negative_hours)")
    p.add_argument("--no-peer", dest="peer", action="store_false",
                   help="leave out the openWakeWord row (its head is trained on the run's fine-tuning batches)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe (e.g. stream.seconds=600)")
    args = p.parse_args(argv)
    args.overrides = [f"stream.negative_hours={args.negative_hours:g}", *args.overrides]

    from edgedistill.cli import main as cli
    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.reporting.tables import detection_note, detection_table, pct, stream_note, stream_table

    cmd = ["run", args.recipe, f"out={args.run}", "baseline=false", *args.overrides]
    print("edgedistill " + " ".join(cmd), flush=True)
    if cli(cmd) != 0:
        raise SystemExit("the run failed; run this script again to resume it")
    report = json.loads((Path(args.run) / "report.json").read_text())
    streams = report.get("streams") or {}
    if not streams:
        raise SystemExit(f"{args.run}/report.json has no streaming rows: the recipe names no stream.keywords")
    first = next(iter(streams.values()))
    variants = {v["variant"]: v for v in report["variants"]}
    if args.peer:
        streams[PEER], variants[PEER] = _peer_row(args, report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = out.with_name(out.name + "_det.png")
    from edgedistill.reporting.plots import plot_stream_det

    plot_stream_det({n: r["detection"]["curve"] if "detection" in r else r["curve"] for n, r in streams.items()}, plot)
    command = "python benchmarks/streaming.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"benchmark": "streaming", "recipe": args.recipe, "run": args.run, "split": report["split"],
              "data": report["data"], "streams": {n: {k: v for k, v in r.items() if k != "curve"}
                                                  for n, r in streams.items()},
              "curves": {n: r["curve"] for n, r in streams.items()},
              "clip_metrics": {n: {k: variants[n].get(k) for k in ("kws_accuracy", "sv_eer", "file_bytes")}
                               for n in streams if n in variants},
              "command": command.strip(), "machine": machine_info(), "date": time.strftime("%Y-%m-%d"),
              "plot": plot.name}
    m = result["machine"]
    md = ["# Continuous listening on Arabic Speech Commands", "", f"`{result['command']}`", "",
          stream_note(first, report["split"], report["data"]), "",
          f"Machine: {m['cpu']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
          + f"; {result['date']}. Models: `edgedistill run {Path(args.recipe).name}` in `{args.run}`.", "",
          *stream_table(streams), "",
          *([detection_note(first), "", *detection_table(streams), ""] if "detection" in first else []),
          "| variant | clip KWS accuracy (val, with `_silence_`) | clip SV EER | file MB |", "|---|---|---|---|"]
    for name, c in result["clip_metrics"].items():
        md.append(f"| {name} | {pct(c['kws_accuracy'])} | {pct(c['sv_eer'])} | {c['file_bytes'] / 1e6:.2f} |")
    md += ["", "## Reading", "", *_reading(streams), "", f"![FRR vs false alarms per hour]({plot.name})", "",
           "Data: Arabic Speech Commands (A. Ghandoura, F. Hjabo, O. Al Dakkak, 2021; Zenodo "
           "10.5281/zenodo.4662481), CC BY 4.0."]
    write_report(out, result, md)
    return result


PEER = "openWakeWord peer fp32"


def _peer_row(args, report: dict) -> tuple[dict, dict]:
    """(stream row, clip row) of the openWakeWord peer: its head trained on the batches of the
    run's own fine-tuning config (`edgedistill.recipes.peer`), heard on the very stream the
    run's rows heard (the same clips, seed, enrolment cut, noise, negative hours)."""
    from edgedistill.config import load_config
    from edgedistill.data.layouts import resolve_labelled, stream_noise
    from edgedistill.evaluation.scores import evaluate_onnx, evaluate_stream
    from edgedistill.recipes.finetune_config import FinetuneConfig
    from edgedistill.recipes.peer import train_openwakeword_peer
    from edgedistill.recipes.run_config import RunConfig

    run = Path(args.run)
    st = load_config(RunConfig, args.recipe, [f"out={args.run}", *args.overrides]).stream
    summary = train_openwakeword_peer(load_config(FinetuneConfig, run / "finetune" / "config.yaml", []), run / "peer")
    clips = resolve_labelled(report["data"], report["split"])
    saved = run / "peer" / "stream.json"
    if not saved.is_file():
        print(f"[peer] streaming on {st.seconds / 60:.0f} min of '{report['split']}' and {st.negative_hours:g} h "
              "without a keyword", flush=True)
        r = evaluate_stream(summary["model"], clips, st.keywords, st.seconds, st.seed, hop_s=st.hop_s,
                            noise=stream_noise(report["data"], report["split"], st.noise)[1], snr_db=st.snr_db,
                            enroll_clips=st.enroll_clips, negative_hours=st.negative_hours,
                            cache=run / "peer" / "negative_stream")
        c = evaluate_onnx(summary["model"], clips)
        r["clips"] = {"kws_accuracy": c["kws_accuracy"], "sv_eer": None,
                      "file_bytes": Path(summary["model"]).stat().st_size}
        saved.write_text(json.dumps(r, default=float))
    r = json.loads(saved.read_text())
    return r, {"variant": PEER, **r.pop("clips")}


def _reading(streams: dict[str, dict]) -> list[str]:
    """What the numbers say, in words, from the numbers themselves."""
    from edgedistill.reporting.tables import pct

    lines = []
    for name, r in streams.items():
        gate = r.get("speaker_gate") or {}
        if "detection" in r:
            one, d = r["detection"]["at_1_fa_per_hour"], r["detection"]
            s = (f"- **{name}**: with false alarms counted on {d['negative_hours']:.0f} h without a keyword, at 1 "
                 f"false alarm per hour it misses {pct(one['frr'])} of the {r['occurrences']} target keywords "
                 f"(95% interval {pct(one['frr_ci95'][0])} to {pct(one['frr_ci95'][1])}; at 0.5 FA/h "
                 f"{pct(d['at_0.5_fa_per_hour']['frr'])}); events close ")
        else:
            s = (f"- **{name}**: at 1 false alarm per hour it misses {pct(r['frr_at_1_fa_per_hour'])} of the "
                 f"{r['occurrences']} target keywords (at 2 FA/h {pct(r['frr_at_2_fa_per_hour'])}); events close ")
        s += (f"{r['latency_s_median']:.2f} s after the word ends (p90 {r['latency_s_p90']:.2f} s); one hop costs "
              f"{r['mean_ms']:.1f} ms, {pct(r['core_share'])} of one core at a {r['hop_ms']:.0f} ms hop.")
        if "owner_acceptance" in gate:
            s += (f" With the speaker gate on, its owner's detected keywords pass {pct(gate['owner_acceptance'])} "
                  f"of the time and another enrolled speaker's {pct(gate['impostor_acceptance'])}; end to end the "
                  f"owner loses {pct(gate['owner_frr_end_to_end'])} of their keywords.")
        lines.append(s)
    return lines


if __name__ == "__main__":
    main()
