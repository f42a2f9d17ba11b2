"""Real-speech benchmark: KWS accuracy, SV EER and minDCF on Arabic Speech Commands,
teacher vs distilled student vs a student trained without distillation.

    python benchmarks/arabic_kws_sv.py                       # CPU, about 40 minutes
    python benchmarks/arabic_kws_sv.py --teacher facebook/hubert-base-ls960 ...

Train speakers train, val speakers evaluate (the dataset's test speakers are held out and
not available). Stages, each skipped when its output exists (an interrupted run resumes):

1. teacher: with `--teacher ID_OR_PATH`, that pretrained model; without one (no hub here),
   a HuBERT-shaped model (`--teacher-layers` x `--teacher-hidden`, FitHuBERT-style thin CNN)
   is randomly initialised and trained by this benchmark with the joint KWS + SV objective on
   the train speakers. Either way it is fine-tuned jointly: that is the teacher's row.
2. distil: a `--student` preset from the pretrained teacher, or from the benchmark-trained
   teacher's fine-tuned backbone, on the train audio (labels unused).
3. fine-tune the distilled student jointly; 4. the same student shape from random weights,
   fine-tuned the same way (what distillation buys); 5. evaluate all on the val speakers.
Every fine-tune validates once, at its last step: no checkpoint is chosen on the val speakers.

Data: Arabic Speech Commands (Ghandoura et al. 2021, CC BY 4.0), read in place.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from edgedistill.models.student import StudentConfig, save_scratch_student

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "arabic_speech_commands"


def _stage(folder: Path, name: str, fn, timings: dict):
    done = folder / "summary.json"
    if done.exists():
        print(f"[{name}] done already: {folder}")
        return json.loads(done.read_text())
    t = time.perf_counter()
    print(f"[{name}] running -> {folder}")
    out = fn()
    timings[name] = time.perf_counter() - t
    return out


def _random_teacher(folder: Path, layers: int, hidden: int, cnn: int, seed: int) -> str:
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    if not (folder / "config.json").exists():
        cfg = HubertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                           intermediate_size=4 * hidden, conv_dim=[cnn // 4] + [cnn // 2] * 4 + [cnn, cnn],
                           num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16, layerdrop=0.0,
                           mask_time_prob=0.0)
        torch.manual_seed(seed)
        HubertModel(cfg).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(folder)
    return str(folder)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with manifest.csv (train/val splits)")
    p.add_argument("--teacher", help="pretrained teacher (HF id or folder); default: train one here")
    p.add_argument("--teacher-layers", type=int, default=6)
    p.add_argument("--teacher-hidden", type=int, default=256)
    p.add_argument("--teacher-cnn", type=int, default=256, help="last CNN width (thin CNN c/4, c/2 x4, c, c)")
    p.add_argument("--student", default="distilhubert", help="student preset")
    p.add_argument("--teacher-steps", type=int, default=1500)
    p.add_argument("--distill-steps", type=int, default=1000)
    p.add_argument("--student-steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--trials", type=int, default=20_000)
    p.add_argument("--no-baseline", action="store_true", help="skip the from-scratch student")
    p.add_argument("--quantize", default="int8-dynamic,int8", help="quantized formats of the distilled student")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench_arabic", help="stage outputs (resumable)")
    p.add_argument("--out", default="benchmarks/results/arabic_kws_sv")
    args = p.parse_args(argv)

    import torch

    from edgedistill.config import load_config
    from edgedistill.distill.config import DistillConfig
    from edgedistill.finetune.config import FinetuneConfig
    from edgedistill.machine import machine_info, write_report
    from edgedistill.models.student import count_parameters
    from edgedistill.workflows.distill import distill
    from edgedistill.workflows.evaluate import evaluate
    from edgedistill.workflows.finetune import finetune

    torch.set_num_threads(args.threads)
    data, work = Path(args.data), Path(args.work)
    manifest = data / "manifest.csv"
    noise = data / "background_noise"
    timings: dict[str, float] = {}

    def ft(model: str, out: Path, steps: int):
        overrides = [f"model={model}", f"data={manifest}", f"out={out}", f"steps={steps}",
                     f"batch_size={args.batch_size}", f"eval_every={steps}", f"num_trials={args.trials}",
                     "freeze_cnn=false", "head_lr=2e-3", "backbone_lr=1e-3", "cpu=true", f"seed={args.seed}",
                     "log_every=50", "save_every=250"]
        if noise.is_dir():
            overrides += [f"noise={noise}", "noise_prob=0.5"]
        return finetune(load_config(FinetuneConfig, None, overrides), resume=True)

    teacher_src = args.teacher or _random_teacher(work / "teacher_init", args.teacher_layers,
                                                  args.teacher_hidden, args.teacher_cnn, args.seed)
    _stage(work / "teacher_ft", "teacher fine-tune", lambda: ft(teacher_src, work / "teacher_ft", args.teacher_steps), timings)
    distill_from = args.teacher or str(work / "teacher_ft" / "model" / "backbone")
    dcfg = load_config(DistillConfig, None, [
        f"teacher={distill_from}", f"data={manifest}", "split=train", f"out={work / 'distill'}",
        f"student.preset={args.student}", f"steps={args.distill_steps}", f"batch_size={args.batch_size}",
        "max_samples=16000", "lr=5e-4", "cpu=true", "log_every=50", "save_every=250", f"seed={args.seed}"])
    _stage(work / "distill", "distil", lambda: distill(dcfg, resume=True), timings)
    _stage(work / "student_ft", "student fine-tune",
           lambda: ft(str(work / "distill"), work / "student_ft", args.student_steps), timings)
    rows = [("teacher", work / "teacher_ft"), (f"{args.student} (distilled)", work / "student_ft")]
    if not args.no_baseline:
        scratch = save_scratch_student(distill_from, StudentConfig(preset=args.student), work / "scratch_init", args.seed)
        _stage(work / "scratch_ft", "scratch student fine-tune",
               lambda: ft(scratch, work / "scratch_ft", args.student_steps), timings)
        rows.append((f"{args.student} (no distillation)", work / "scratch_ft"))

    results = []
    for name, folder in rows:
        rep = evaluate(str(folder / "model"), str(manifest), "val", str(folder / "val_eval.json"),
                       args.trials, args.seed, progress=False)
        from edgedistill.models.multitask import MultiTaskModel

        params = count_parameters(MultiTaskModel.from_pretrained(folder / "model").backbone)
        results.append({"model": name, "backbone_params": params, "kws_accuracy": rep["kws_accuracy"],
                        "sv_eer": rep["sv_eer"], "sv_min_dcf": rep["sv_min_dcf"],
                        "sv_min_dcf_p0.05": rep["sv_min_dcf_p0.05"], "trials": rep["trials"],
                        "speakers": rep["speakers"], "clips": rep["clips"]})
    # The distilled student as deployed: ONNX fp32 and quantized, scored with onnxruntime alone.
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.export import export_onnx
    from edgedistill.latency import time_onnx
    from edgedistill.onnx_eval import evaluate_onnx
    from edgedistill.quantize import QuantizeConfig, quantize_model

    deploy = work / "deploy"
    fp32 = deploy / "model.fp32.onnx"
    if not fp32.exists():
        export_onnx(str(work / "student_ft" / "model"), fp32)
    val = resolve_labelled(str(manifest), "val")
    student_params = results[1]["backbone_params"]
    for fmt in ["fp32"] + [m for m in args.quantize.split(",") if m]:
        path = deploy / f"model.{fmt}.onnx"
        if not path.exists():
            quantize_model(fp32, path, QuantizeConfig(mode=fmt, calibration=str(manifest), calibration_clips=64))
        rep = evaluate_onnx(path, val, args.trials, args.seed)
        p50, p90 = time_onnx(path, seconds=1.0, threads=1)
        results.append({"model": f"{args.student} (distilled), ONNX {fmt}", "backbone_params": student_params,
                        "file_bytes": path.stat().st_size, "latency_ms_p50": p50, "latency_ms_p90": p90,
                        "kws_accuracy": rep["kws_accuracy"],
                        "sv_eer": rep["sv_eer"], "sv_min_dcf": rep["sv_min_dcf"], "sv_min_dcf_p0.05": rep["sv_min_dcf_p0.05"],
                        "trials": rep["trials"], "speakers": results[0]["speakers"], "clips": rep["clips"]})
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    result = {"benchmark": "arabic_kws_sv", "data": str(data), "split": "val (speakers unseen in training)",
              "teacher": args.teacher or (f"trained here: HuBERT-shaped {args.teacher_layers} x {args.teacher_hidden}, "
                                          f"thin CNN up to {args.teacher_cnn} ch, {args.teacher_steps} joint KWS+SV steps "
                                          "from random init"),
              "steps": {"teacher": args.teacher_steps, "distill": args.distill_steps, "student": args.student_steps},
              "batch_size": args.batch_size, "threads": args.threads, "results": results,
              "stage_seconds": timings, "command": command, "machine": machine_info(),
              "date": time.strftime("%Y-%m-%d")}
    md = ["# Arabic Speech Commands: KWS + SV, teacher vs students", "", f"`{command}`", "",
          f"Evaluated on the {results[0]['speakers']} val speakers ({results[0]['clips']} clips, 40 keywords, "
          f"{results[0]['trials']} SV trials, half same-speaker); trained on the 18 train speakers. "
          f"Teacher: {result['teacher']}. Steps: {result['steps']}, batch {args.batch_size}. "
          "minDCF is normalised (C_miss = C_fa = 1). No checkpoint selection: each row is the model at its "
          "last step, validated once, so the val speakers are never used to choose anything.", "",
          f"Machine: {result['machine']['cpu']}, {args.threads} threads; "
          f"{', '.join(f'{k} {v}' for k, v in result['machine']['versions'].items())}; {result['date']}.", "",
          "| model | backbone params | file MB | ORT 1-thread p50 ms (1 s audio) | KWS accuracy | SV EER | minDCF (0.01) | minDCF (0.05) |",
          "|---|---|---|---|---|---|---|---|"]
    for r in results:
        size = f"{r['file_bytes'] / 1e6:.2f}" if r.get("file_bytes") else "-"
        dcf5 = f"{r['sv_min_dcf_p0.05']:.3f}" if r.get("sv_min_dcf_p0.05") is not None else "-"
        lat = f"{r['latency_ms_p50']:.1f}" if r.get("latency_ms_p50") else "-"
        md.append(f"| {r['model']} | {r['backbone_params']:,} | {size} | {lat} | {100 * r['kws_accuracy']:.2f}% | "
                  f"{100 * r['sv_eer']:.2f}% | {r['sv_min_dcf']:.3f} | {dcf5} |")
    md += ["", "Data: Arabic Speech Commands (A. Ghandoura, F. Hjabo, O. Al Dakkak, 2021; Zenodo "
           "10.5281/zenodo.4662481), CC BY 4.0."]
    write_report(args.out, result, md)
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
