"""The openWakeWord peer on the project's streaming benchmark: its frozen speech embedding with a
head trained on the same batches as a student (`edgedistill.recipes.peer`), judged on the same
clips and the same stream, with the same `Detector` and metric code.

    pip install --no-deps openwakeword==0.5.1      # its two feature graphs; benchmarks only
    python benchmarks/openwakeword_peer.py --config runs/whisper/arabic_edge/finetune/config.yaml \\
        --work runs/peer --out benchmarks/results/openwakeword_peer detect_keywords=[ok,start,stop] batch_size=64

Stages (each skipped where its output exists, so a stopped call resumes): the head's training
(`--work/model.fp32.onnx`), the clip metrics of the split, the stream (`edgedistill
evaluate-stream`, run as written, into `--work/stream`). Then writes `--out`.{json,md}.

Data: Arabic Speech Commands (Ghandoura et al. 2021, CC BY 4.0), read in place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="a student's fine-tuning config.yaml (data, windows, batches)")
    p.add_argument("--work", default="runs/peer", help="folder of the peer's model and reports (resumed)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "openwakeword_peer"))
    p.add_argument("--steps", type=int, help="head training steps (default: the config's)")
    p.add_argument("--split", default="val", help="split of the clip metrics and the stream")
    p.add_argument("--keywords", default="ok,start,stop", help="the stream's target keywords")
    p.add_argument("--seconds", type=float, default=3600.0, help="keyword stream length")
    p.add_argument("--negative-hours", type=float, default=10.0, help="hours of keyword-free stream for false alarms")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the config (as for finetune)")
    args = p.parse_args(argv)

    from edgedistill.cli import main as cli
    from edgedistill.config import load_config
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.evaluation.scores import evaluate_onnx
    from edgedistill.recipes.finetune_config import FinetuneConfig
    from edgedistill.recipes.peer import train_openwakeword_peer
    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.reporting.tables import detection_note, detection_table, pct, stream_table

    cfg = load_config(FinetuneConfig, args.config, args.overrides)
    work = Path(args.work)
    summary = train_openwakeword_peer(cfg, work, steps=args.steps)
    model = work / "model.fp32.onnx"
    clips_file = work / f"clips_{args.split}.json"
    if not clips_file.is_file():
        r = evaluate_onnx(model, resolve_labelled(cfg.data, args.split))
        clips_file.write_text(json.dumps({k: r[k] for k in ("clips", "speakers", "kws_accuracy")}, indent=1))
    clip_metrics = json.loads(clips_file.read_text())
    stream_dir = work / "stream"
    report_file = stream_dir / "stream_report.json"
    if not report_file.is_file() or "detection" not in json.loads(report_file.read_text()):
        cmd = ["evaluate-stream", "--model", str(model), "--data", cfg.data, "--split", args.split,
               "--keywords", args.keywords, "--seconds", f"{args.seconds:g}",
               "--negative-hours", f"{args.negative_hours:g}", "--out", str(stream_dir)]
        print("edgedistill " + " ".join(cmd), flush=True)
        if cli(cmd) != 0:
            raise SystemExit("evaluate-stream failed; run this script again to resume")
    stream = json.loads((stream_dir / "stream_report.json").read_text())
    command = "python benchmarks/openwakeword_peer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"benchmark": "openwakeword_peer", "config": args.config, "overrides": args.overrides,
              "training": summary, "clip_metrics": clip_metrics,
              "stream": {k: v for k, v in stream.items() if k not in ("curve", "machine")},
              "curve": stream.get("curve"), "machine": machine_info(), "command": command}
    md = ["# The openWakeWord peer on the streaming benchmark", "",
          f"openWakeWord's speech embedding ({summary['peer']}, frozen; {summary['embeddings_per_window']} "
          f"embeddings per 1 s window) with a {summary['head_params']:,}-parameter head trained "
          f"{summary['steps']} steps of {summary['batch_size']} on the batches of `{args.config}` "
          f"({' '.join(args.overrides) or 'as saved'}). Clip KWS accuracy on the {args.split} split: "
          f"{pct(clip_metrics['kws_accuracy'])} ({clip_metrics['clips']} clips). No speaker output.", "",
          *stream_table({"openWakeWord peer (fp32)": stream}), "", detection_note(stream), "",
          *detection_table({"openWakeWord peer (fp32)": stream}), "",
          f"Machine: {result['machine'].get('cpu', '?')}; onnxruntime threads: {stream.get('threads')}.", "",
          "Command:", "", f"    {command}"]
    write_report(Path(args.out), result, md)
    return result


if __name__ == "__main__":
    main()
