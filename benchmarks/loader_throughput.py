"""Loader throughput: seconds of audio the distillation loader decodes per second, per worker.

    python benchmarks/loader_throughput.py                   # real speech if the Arabic set is there
    python benchmarks/loader_throughput.py --workers 0 1 2 4 --clips 96

Writes `--clips` clips of `--seconds` (15.6 s, DistilHuBERT's crop) as 16-bit WAV and as FLAC,
made of real speech (Arabic Speech Commands clips, concatenated, when `--arabic` exists; else
the embedded corpus's synthetic speech), then times the real distillation loader
(`CroppedAudio` + `BucketBatchSampler` + `collate_padded`, the DataLoader options `distill`
uses) over them for each worker count. Per worker = rate / workers (the loop itself with 0).

To size `num_workers` for a GPU: workers >= (the GPU's audio s / s in distillation) / (audio s
/ s one worker decodes here), plus one. Writes JSON and Markdown with the machine, versions and
the command.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgedistill.reporting.machine import gives_threads_back

ROOT = Path(__file__).resolve().parents[1]
ARABIC = ROOT.parent / "shared" / "data" / "arabic_speech_commands"


def speech(seconds: float, n: int, arabic: Path, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """n clips of real (or, without the dataset, synthetic) speech of `seconds` each."""
    from edgedistill.audio import load_audio

    rng = np.random.default_rng(seed)
    need = int(seconds * 16000)
    if (arabic / "manifest.csv").is_file():
        with open(arabic / "manifest.csv") as f:
            paths = [arabic / r["path"] for r in csv.DictReader(f)]
        out = []
        for _ in range(n):
            parts, total = [], 0
            while total < need:
                a = load_audio(paths[rng.integers(len(paths))])
                parts.append(a)
                total += len(a)
            out.append(np.concatenate(parts)[:need])
        return out, "Arabic Speech Commands (Ghandoura et al. 2021, CC BY 4.0), 1 s clips concatenated"
    from edgedistill.data.corpus import CorpusConfig, make_speakers, synth_clip

    cfg = CorpusConfig()
    spk = make_speakers(cfg.num_speakers, cfg.seed)
    clips = [np.concatenate([synth_clip(cfg.keywords[rng.integers(len(cfg.keywords))], spk[i % len(spk)], rng, cfg)
                             for _ in range(int(np.ceil(seconds)))])[:need] for i in range(n)]
    return clips, "the embedded corpus's synthetic speech (the Arabic set was not found)"


def time_loader(paths: list[Path], workers: int, batch_size: int, max_samples: int, epochs: int) -> float:
    """Seconds of audio per second through the distillation loader with `workers` workers."""
    import torch
    from torch.utils.data import DataLoader

    from edgedistill.data.manifest import Clip
    from edgedistill.data.unlabelled import BucketBatchSampler, CroppedAudio, collate_padded, loader_options

    dataset = CroppedAudio([Clip(path=p) for p in paths], max_samples)
    sampler = BucketBatchSampler(dataset.lengths, batch_size, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_padded,
                        generator=torch.Generator().manual_seed(0), **loader_options(workers, False))
    it = iter(loader)
    next(it)  # workers started, first batch made: not timed
    audio, t0 = 0.0, time.perf_counter()
    for epoch in range(epochs):
        if epoch:
            sampler.set_epoch(epoch)
            it = iter(loader)
        for _, lengths in it:
            audio += float(lengths.sum()) / 16000
    return audio / (time.perf_counter() - t0)


@gives_threads_back
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=15.6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arabic", default=str(ARABIC))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "loader_throughput"))
    args = p.parse_args(argv)

    import soundfile as sf
    import torch

    from edgedistill.reporting.machine import machine_info, write_report

    torch.set_num_threads(1)
    clips, source = speech(args.seconds, args.clips, Path(args.arabic))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, subtype in (("wav", "PCM_16"), ("flac", "PCM_16")):
            folder = Path(tmp) / fmt
            folder.mkdir()
            paths = []
            for i, a in enumerate(clips):
                paths.append(folder / f"clip{i:04d}.{fmt}")
                sf.write(paths[-1], a, 16000, subtype=subtype)
            mb = sum(q.stat().st_size for q in paths) / 1e6
            for w in args.workers:
                rate = time_loader(paths, w, args.batch_size, int(args.seconds * 16000), args.epochs)
                rows.append({"format": fmt, "workers": w, "audio_s_per_s": rate,
                             "per_worker": rate / max(w, 1), "mb_per_hour": mb / (len(clips) * args.seconds) * 3600})
                print(rows[-1], flush=True)
    result = {"benchmark": "loader_throughput", "source": source, "clips": args.clips, "seconds": args.seconds,
              "batch_size": args.batch_size, "epochs": args.epochs, "results": rows,
              "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
              "machine": machine_info(), "date": time.strftime("%Y-%m-%d")}
    m = result["machine"]
    md = ["# Loader throughput: seconds of audio decoded per second", "", f"`{result['command']}`", "",
          f"{args.clips} clips of {args.seconds} s of {source}, 16 kHz 16-bit, batches of {args.batch_size}, "
          f"{args.epochs} passes (the first batch, which starts the workers, not timed). "
          f"CPU: {m['cpu']} ({m['cores']} cores). "
          f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}. Date {result['date']}.", "",
          "| format | MB per hour | workers | audio s / s | per worker |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['format']} | {r['mb_per_hour']:.0f} | {r['workers']} | {r['audio_s_per_s']:.0f} | "
                  f"{r['per_worker']:.0f} |")
    md += ["", "0 workers: the training process decodes between steps (no inter-process copy, but the GPU "
           "waits). With as many workers as cores, the workers and the loop share the cores and the "
           "per-worker rate falls: the 1-worker row is what a worker on a core of its own decodes. To feed "
           "a GPU that distils R s of audio per second, use about R / (that rate) + 1 workers per GPU; "
           "`num_workers: null` (the default) takes, on a GPU, the process's cores less one, at most 8 "
           "(on a CPU, 0)."]
    write_report(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
