"""What running Whisper's encoder on the clip itself (not padded to 30 s) changes.

    python benchmarks/whisper_padding.py --teacher ~/.cache/edgedistill/whisper-tiny.en

Whisper was trained on 30 s windows: its feature extractor pads every clip with silence to
3,000 mel frames, and its attention then also sees the silence. A Whisper teacher in edgedistill
(`edgedistill.models.whisper.WhisperWave`) runs on the clip's own frames with the first rows of
the position table. For clips of the labelled data (Arabic Speech Commands' val speakers by
default) and the espeak-ng utterance of the tests, this compares each hidden state of the clip's
frames both ways (cosine per frame, relative L2 distance) and the clip's mean over frames (what
the keyword and speaker heads pool), and times both on one thread.

Writes benchmarks/results/whisper_padding.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARABIC = ROOT.parent / "shared" / "data" / "arabic_speech_commands" / "manifest.csv"


def compare(model, wave: np.ndarray, pad_to: int) -> dict:
    """Hidden states of `wave` alone and zero-padded to `pad_to` samples: per layer, the mean and
    lowest cosine over the clip's frames, the relative L2 distance and the cosine of the frame means."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(wave)[None]
    padded = F.pad(x, (0, pad_to - x.shape[1]))
    with torch.no_grad():
        own = model(x, output_hidden_states=True).hidden_states
        full = model(padded, output_hidden_states=True).hidden_states
    rows = []
    for a, b in zip(own, full):
        a, b = a[0], b[0, :a.shape[1]]
        cos = F.cosine_similarity(a, b, dim=-1)
        rows.append({"cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
                     "rel_l2": float((a - b).norm() / b.norm()),
                     "pooled_cos": float(F.cosine_similarity(a.mean(0), b.mean(0), dim=0))})
    return {"frames": int(own[0].shape[1]), "layers": rows}


def time_ms(model, samples: int, rounds: int) -> float:
    import torch

    x = torch.randn(1, samples) * 0.1
    with torch.no_grad():
        model(x)
        t = time.perf_counter()
        for _ in range(rounds):
            model(x)
    return 1000 * (time.perf_counter() - t) / rounds


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="~/.cache/edgedistill/whisper-tiny.en",
                   help="a Whisper folder or hub id (benchmarks/whisper_teacher.py builds tiny.en offline)")
    p.add_argument("--data", default=str(ARABIC), help="labelled clips (manifest)")
    p.add_argument("--split", default="val")
    p.add_argument("--clips", type=int, default=16, help="clips of --data, spread over its labels")
    p.add_argument("--rounds", type=int, default=5, help="timed runs of each input length")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "whisper_padding"))
    args = p.parse_args(argv)
    import torch

    from edgedistill.audio import load_audio
    from edgedistill.data.manifest import read_manifest
    from edgedistill.models.teacher import load_teacher
    from edgedistill.reporting.machine import gives_threads_back, machine_info, write_report

    @gives_threads_back
    def measure():
        torch.set_num_threads(args.threads)
        teacher = load_teacher(os.path.expanduser(args.teacher))
        model = teacher.model
        pad_to = model.max_samples()
        clips = [("espeak-ng: " + "the quick brown fox jumps over the lazy dog",
                  load_audio(ROOT / "tests" / "assets" / "quick_fox.wav"))]
        if Path(args.data).is_file():
            rows = read_manifest(args.data, split=args.split)
            step = max(1, len(rows) // max(1, args.clips))
            for c in rows[::step][:args.clips]:
                clips.append((f"{Path(c.path).parent.name}/{Path(c.path).name}", load_audio(c.path)))
        else:
            print(f"{args.data} is not there: only the espeak-ng clip is compared", file=sys.stderr)
        per_clip = [{"clip": name, "seconds": len(w) / 16_000, **compare(model, w, pad_to)} for name, w in clips]
        n_layers = len(per_clip[0]["layers"])
        layers = [{k: float(np.mean([c["layers"][i][k] for c in per_clip])) for k in per_clip[0]["layers"][i]}
                  for i in range(n_layers)]
        for i, row in enumerate(layers):
            row["cos_min"] = float(min(c["layers"][i]["cos_min"] for c in per_clip))
        timing = {"own_1s_ms": time_ms(model, 16_000, args.rounds), "padded_30s_ms": time_ms(model, pad_to, args.rounds)}
        return per_clip, layers, timing

    per_clip, layers, timing = measure()
    command = "python benchmarks/whisper_padding.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"benchmark": "whisper_padding", "command": command, "date": time.strftime("%Y-%m-%d"),
              "teacher": args.teacher, "data": args.data if Path(args.data).is_file() else None,
              "split": args.split, "threads": args.threads, "clips": per_clip, "layers": layers,
              "timing": timing, "machine": machine_info()}
    m = result["machine"]
    md = ["# Whisper's encoder on the clip alone vs padded to 30 s", "",
          f"`{command}` ({result['date']}; {m['cpu']}, {args.threads} thread(s); torch {m['versions'].get('torch')}, "
          f"transformers {m['versions'].get('transformers')})", "",
          f"{len(per_clip)} clips: the espeak-ng utterance of the tests ({per_clip[0]['seconds']:.1f} s) and "
          f"{len(per_clip) - 1} clips of the '{args.split}' split of `{Path(args.data).parent.name}` (1 s each). "
          "Hidden state i compared on the clip's own frames; means over the clips (lowest: the lowest frame of any clip).",
          "", "| hidden state | mean cosine per frame | lowest cosine | relative L2 | cosine of the frame means |",
          "|---|---|---|---|---|"]
    for i, r in enumerate(layers):
        name = "0 (convolutions + positions)" if i == 0 else (f"{i} (+ final LayerNorm)" if i == len(layers) - 1 else str(i))
        md.append(f"| {name} | {r['cos_mean']:.4f} | {r['cos_min']:.4f} | {r['rel_l2']:.3f} | {r['pooled_cos']:.4f} |")
    md += ["", f"Cost of one call on {args.threads} thread(s): {timing['own_1s_ms']:.1f} ms for a 1 s clip alone, "
               f"{timing['padded_30s_ms']:.0f} ms padded to 30 s ({timing['padded_30s_ms'] / timing['own_1s_ms']:.0f}x)."]
    write_report(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
