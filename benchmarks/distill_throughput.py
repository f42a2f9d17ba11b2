"""Distillation throughput: seconds of audio distilled per second of wall time.

    python benchmarks/distill_throughput.py                     # HuBERT Base shape, CPU, 2 threads
    python benchmarks/distill_throughput.py --device cuda --batch-size 24 --seconds 15.6 --steps 10

Rows, each the real `edgedistill distill` loop (data loading, teacher, student forward and
backward, AdamW) unless named "naive":
- naive HF loop: plain `transformers` HubertModel teacher and 2-layer student, bf16 autocast
  for both (and fp32 on a CPU, where bf16 is emulated), a DataLoader without workers, no
  edgedistill code;
- edgedistill default (loader workers, fp32 teacher, student in `mixed_precision=auto`);
- + reuse_teacher_cnn (the student CNN frozen and fed the teacher's CNN features);
- + bf16 teacher;
- + cached targets (one teacher pass first, timed apart; the student CNN frozen as with reuse);
- + compile (torch.compile of the student's CNN, transformer and heads);
- 2 processes (CPU only: `accelerate launch --multi_gpu --num_processes 2`, one thread each).
Weights are random (speed does not depend on them); the clips are the embedded corpus's
speech, concatenated. The rate is measured from the end of warm-up step `--warmup` to the
last step. Also reported: the cosine between the teacher's fp32 targets and its bf16 and
cached (float16) targets on these clips. Writes JSON and Markdown with the machine, versions,
threads and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = {  # name: (overrides, what it keeps)
    "edgedistill default": ([], "exact"),
    "+ reuse_teacher_cnn": (["reuse_teacher_cnn=true"], "exact (student CNN frozen = teacher's)"),
    "+ bf16 teacher": (["reuse_teacher_cnn=true", "teacher_precision=bf16"], "targets at bf16 cosine"),
    # The cache pass runs the teacher in bf16 on a GPU, in fp32 on a CPU (where bf16 is emulated).
    "+ cached targets": (["freeze_cnn=true", "teacher_precision={tp}", "target_cache={cache}"],
                         "fixed crops; fp16 targets"),
    "+ compile": (["freeze_cnn=true", "teacher_precision={tp}", "target_cache={cache}", "compile=true"],
                  "as above"),
}


def _write_clips(folder: Path, n: int, seconds: float, seed: int = 0) -> Path:
    """n clips of `seconds` of the embedded corpus's speech, concatenated to length."""
    import soundfile as sf

    from edgedistill.data.corpus import CorpusConfig, make_speakers, synth_clip

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


def _overrides(args, manifest: Path, out: Path, extra: list[str]) -> list[str]:
    total = args.warmup + args.steps
    return [f"teacher={args.teacher}", f"data={manifest}", "split=null", f"out={out}",
            f"student.preset={args.student}", f"batch_size={args.batch_size}",
            f"max_samples={int(args.seconds * 16000)}", f"steps={total}", f"log_every={args.warmup}",
            f"save_every={10**9}", f"cpu={str(args.device == 'cpu').lower()}",
            f"mixed_precision={args.precision}", *extra]


def _rate(out: Path) -> dict:
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    a, b = log[0], log[-1]
    rate = (b["audio_s"] - a["audio_s"]) / (b["elapsed_s"] - a["elapsed_s"])
    return {"audio_s_per_s": rate, "step_s": (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]),
            "measured_steps": b["step"] - a["step"]}


def run_row(name: str, manifest: Path, tmp: Path, args) -> dict:
    from edgedistill.config import load_config
    from edgedistill.recipes.distill import DistillConfig, distill

    extra, keeps = ROWS[name]
    extra = [e.format(cache=tmp / "cache", tp="bf16" if args.device == "cuda" else "fp32") for e in extra]
    out = tmp / f"run{len(list(tmp.glob('run*')))}"
    cfg = load_config(DistillConfig, None, _overrides(args, manifest, out, extra))
    cache_s = None
    if cfg.target_cache and not (tmp / "cache" / "manifest.json").exists():
        from edgedistill.distill.cache import cache_identity, write_cache
        from edgedistill.data.layouts import distillation_clips
        from edgedistill.data.unlabelled import CroppedAudio
        from edgedistill.distill.heads import default_targets
        from edgedistill.models.teacher import load_teacher

        teacher = load_teacher(cfg.teacher).to(args.device).set_precision(cfg.teacher_precision)
        dataset = CroppedAudio(distillation_clips(str(manifest), None), cfg.max_samples)
        ident = cache_identity(cfg.teacher, teacher, default_targets(teacher.config.num_hidden_layers),
                               cfg.teacher_precision, dataset, cfg.seed)
        t0 = time.perf_counter()
        write_cache(tmp / "cache", teacher, dataset, ident, args.device, batch_size=args.batch_size)
        _sync(args.device)
        cache_s = sum(dataset.lengths) / 16000 / (time.perf_counter() - t0)
        del teacher
    summary = distill(cfg)
    row = {"row": name, "overrides": extra, "keeps": keeps, "processes": summary["processes"], **_rate(out)}
    if cache_s is not None:
        row["cache_pass_audio_s_per_s"] = cache_s
    return row


def run_two_processes(manifest: Path, tmp: Path, args) -> dict:
    """The default row in 2 CPU processes (gloo), one thread each, through the README's line."""
    out = tmp / "ddp"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    over = _overrides(args, manifest, out, ["num_workers=0"])
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "-m", "edgedistill", "distill", *over]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    processes = json.loads((out / "summary.json").read_text())["processes"]
    return {"row": "edgedistill default, 2 processes x 1 thread", "overrides": ["num_workers=0"], "keeps": "exact",
            "processes": processes, **_rate(out)}


def naive_loop(manifest: Path, args, precision: str) -> dict:
    """The plain Hugging Face loop the issue measures against: no edgedistill code in the loop
    (edgedistill only names the teacher's config and its target layers)."""
    import copy

    import soundfile as sf
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel

    from edgedistill.distill.heads import default_targets
    from edgedistill.models.teacher import find_speech_config

    config = find_speech_config(args.teacher)[2]
    layers, dim = default_targets(config.num_hidden_layers), config.hidden_size
    small = copy.deepcopy(config)
    small.num_hidden_layers = 2
    device = torch.device(args.device)
    torch.manual_seed(0)
    teacher = AutoModel.from_config(config).to(device).eval().requires_grad_(False)
    student = AutoModel.from_config(small).to(device).train()
    heads = torch.nn.Linear(dim, len(layers) * dim).to(device)
    opt = torch.optim.AdamW(list(student.parameters()) + list(heads.parameters()), lr=2e-4)
    files = [manifest.parent / line for line in manifest.read_text().split()[1:]]

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return torch.from_numpy(sf.read(files[i], dtype="float32")[0])

    loader = torch.utils.data.DataLoader(Clips(), batch_size=args.batch_size, shuffle=True,
                                         collate_fn=lambda b: torch.nn.utils.rnn.pad_sequence(b, batch_first=True))
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    t0, audio, marks = time.perf_counter(), 0.0, []
    for step, wave in enumerate(loader, 1):
        wave = wave.to(device)
        with torch.no_grad(), torch.autocast(**amp):
            hs = teacher(wave, output_hidden_states=True).hidden_states
            target = torch.stack([hs[i] for i in layers]).float()
        with torch.autocast(**amp):
            out = student(wave).last_hidden_state
            pred = heads(out).view(*out.shape[:2], len(layers), dim).permute(2, 0, 1, 3).float()
        loss = (pred - target).abs().mean() - F.logsigmoid(F.cosine_similarity(pred, target, dim=-1)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        audio += wave.shape[0] * wave.shape[1] / 16000
        if step == args.warmup or step == args.warmup + args.steps:
            loss.item()  # sync
            marks.append((time.perf_counter() - t0, audio))
        if step == args.warmup + args.steps:
            break
    (ta, aa), (tb, ab) = marks
    return {"row": f"naive HF loop ({precision})", "overrides": [], "keeps": "reference", "processes": 1,
            "audio_s_per_s": (ab - aa) / (tb - ta), "step_s": (tb - ta) / args.steps, "measured_steps": args.steps}


def target_cosines(manifest: Path, args) -> dict:
    """Cosine of the teacher's bf16 (and fp16-stored) targets to its fp32 ones, on its target layers."""
    import soundfile as sf
    import torch

    from edgedistill.distill.heads import default_targets
    from edgedistill.models.teacher import load_teacher

    files = [manifest.parent / line for line in manifest.read_text().split()[1:]][: args.batch_size]
    wave = torch.from_numpy(np.stack([sf.read(f, dtype="float32")[0] for f in files])).to(args.device)
    teacher = load_teacher(args.teacher).to(args.device)
    layers = default_targets(teacher.config.num_hidden_layers)
    ref = torch.stack([teacher(wave)[i] for i in layers]).float()
    cos = lambda x: torch.nn.functional.cosine_similarity(x.float(), ref, dim=-1)  # noqa: E731
    stored = cos(ref.half())
    teacher.set_precision("bf16")
    bf16 = cos(torch.stack([teacher(wave)[i] for i in layers]))
    return {"layers": layers, "bf16_mean": float(bf16.mean()), "bf16_min": float(bf16.min()),
            "bf16_per_layer": bf16.mean(dim=(1, 2)).tolist(),
            "fp16_storage_mean": float(stored.mean()), "fp16_storage_min": float(stored.min())}


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin:hubert-base-random")
    p.add_argument("--student", default="distilhubert")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="auto", help="student's mixed precision: auto, no, bf16, fp16")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0, help="clip length in seconds")
    p.add_argument("--steps", type=int, default=4, help="measured steps")
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the rate")
    p.add_argument("--rows", nargs="+", default=None, choices=["naive", *ROWS, "2 processes"],
                   help=f"subset of: naive, {', '.join(ROWS)}, 2 processes (default: all that apply)")
    p.add_argument("--out", default="benchmarks/results/distill_throughput")
    args = p.parse_args(argv)
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (the rate is measured from the end of a step)")

    import torch

    from edgedistill.reporting.machine import machine_info, write_report

    torch.set_num_threads(args.threads)
    wanted = args.rows or ["naive", *ROWS, "2 processes"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = _write_clips(tmp / "data", args.batch_size * (args.warmup + args.steps), args.seconds)
        cosines = target_cosines(manifest, args)
        if "naive" in wanted:
            for prec in (["bf16", "fp32"] if args.device == "cpu" else ["bf16"]):
                rows.append(naive_loop(manifest, args, prec))
                print(rows[-1], flush=True)
        for name in ROWS:
            if name in wanted:
                rows.append(run_row(name, manifest, tmp, args))
                print(rows[-1], flush=True)
        if "2 processes" in wanted and args.device == "cpu":
            rows.append(run_two_processes(manifest, tmp, args))
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    naive = max([r["audio_s_per_s"] for r in rows if r["row"].startswith("naive")] or [float("nan")])
    for r in rows:
        r["vs_naive"] = None if np.isnan(naive) else r["audio_s_per_s"] / naive
    result = {"benchmark": "distill_throughput", "teacher": args.teacher, "student": args.student,
              "device": device, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "clip_seconds": args.seconds, "precision": args.precision, "warmup": args.warmup,
              "steps": args.steps, "results": rows, "target_cosine_to_fp32": cosines,
              "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
              "machine": machine_info(), "date": time.strftime("%Y-%m-%d")}
    write_report(args.out, result, report_lines(result))
    return result


def report_lines(result: dict) -> list[str]:
    m, c = result["machine"], result["target_cosine_to_fp32"]
    md = [f"# Distillation throughput: {result['student']} from {result['teacher']} on {result['device']}", "",
          f"`{result['command']}`", "",
          f"{result['threads']} torch threads, batch {result['batch_size']} x {result['clip_seconds']} s, student "
          f"precision {result['precision']}, {result['steps']} measured steps after {result['warmup']} warm-up. "
          f"CPU: {m['cpu']} ({m['cores']} cores). "
          f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}. Date {result['date']}.", "",
          "| configuration | audio s / s | s / step | vs the naive loop | processes | keeps |",
          "|---|---|---|---|---|---|"]
    for r in result["results"]:
        md.append(f"| {r['row']} | {r['audio_s_per_s']:.1f} | {r['step_s']:.3f} | {_times(r['vs_naive'])} | "
                  f"{r['processes']} | {r['keeps']} |")
    cache = [r for r in result["results"] if "cache_pass_audio_s_per_s" in r]
    md += ["", "Speed-ups are against the faster naive row. Each row adds its option to the one above "
           "(the cached rows freeze the student CNN instead of reusing the teacher's features: the "
           "teacher does not run)."]
    if cache:
        md.append(f"The cache pass (the teacher once over every clip, {result['batch_size']} clips of equal "
                  f"length per batch) ran at {cache[0]['cache_pass_audio_s_per_s']:.1f} s of audio per second.")
    md += ["", f"Targets (layers {', '.join(map(str, c['layers']))}) against the fp32 teacher's on these clips: bf16 teacher cosine mean "
           f"{c['bf16_mean']:.5f} (min {c['bf16_min']:.4f}); stored as float16 (the cache) mean "
           f"{c['fp16_storage_mean']:.6f} (min {c['fp16_storage_min']:.5f})."]
    return md


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
