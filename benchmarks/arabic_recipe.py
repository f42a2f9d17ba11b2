"""The Arabic Speech Commands recipe for three student shapes, side by side.

    python benchmarks/arabic_recipe.py                    # every preset, 3 seeds for distilhubert and edge
    python benchmarks/arabic_recipe.py --presets edge --seeds 0   # one run (one core each: resumable)
    python benchmarks/arabic_recipe.py --gather           # only the report, from the finished runs

Runs `edgedistill run configs/arabic_speech_commands.yaml` once per student preset and seed
(out=runs/arabic_PRESET[_sSEED], distill.student.preset=PRESET, distill.seed=finetune.seed=SEED;
the teacher has its own seed, so every run shares one teacher). The first run trains the teacher; the
others reuse it: a finished teacher stage of a sibling run is copied, and `run` skips it when
its config hash is the same (it is retrained otherwise). `--baseline-for` (distilhubert) also
gets the from-scratch baseline (`baseline=true`): the same shape from random weights,
fine-tuned the same way. Each run is resumable (interrupt and run again), and presets can run
in separate processes (`--presets wide` on another core); a last call with all presets only
gathers the finished runs into the report.

With `--recipe configs/arabic_whisper.yaml` (and its own `--work`, `--kept` and `--out`) the teacher is the
pretrained Whisper tiny.en: every run fine-tunes the same pretrained weights as its teacher rows (the first
run's; later runs copy that stage), the students distil from the pretrained weights, runs join a table by
those weights' checksum, and the report adds the pretrained-teacher goals.

Writes benchmarks/results/arabic_recipe.{json,md} (teacher, each student in fp32 and int8,
the baseline; measured on the val speakers) and arabic_recipe_tradeoff.png.

Run folders do not outlive a machine, so each finished run's report is also kept in
benchmarks/results/arabic_runs/KEY.json (a few kB, committed) with a checksum of its teacher's
weights: a later session adds seeds or presets and gathers them with the kept ones. Only runs
whose teacher has the first run's checksum share a table (the teacher is retrained each session;
on the same machine and thread count its training is repeatable); the others are left out and
the report says so.

Data: Arabic Speech Commands (Ghandoura et al. 2021, CC BY 4.0), read in place.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "arabic_speech_commands.yaml"
TEACHER_SPREAD = "teacher fp32 (the one teacher)"  # its seeds row: the same teacher on each seed's draws
KEPT = ROOT / "benchmarks" / "results" / "arabic_runs"


def main(argv=None) -> dict:
    global RECIPE
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="configs/arabic_speech_commands.yaml", help=(
        "the run recipe (configs/arabic_whisper.yaml: the pretrained Whisper teacher; give it its own --work, "
        "--kept and --out)"))
    p.add_argument("--presets", nargs="+", default=["distilhubert", "edge", "deep", "wide"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="distill + fine-tune seeds")
    p.add_argument("--seeded-presets", nargs="+", default=["distilhubert", "edge"],
                   help="presets run with every seed (the others with the first only)")
    p.add_argument("--baseline-for", nargs="+", default=["distilhubert"],
                   help="presets that also get the from-scratch baseline")
    p.add_argument("--baseline-seeds", nargs="+", type=int, default=[0],
                   help="seeds whose runs of --baseline-for presets get it")
    p.add_argument("--work", default="runs", help="run folders go to WORK/arabic_PRESET")
    p.add_argument("--overwrite", action="store_true",
                   help="redo finished stages whose config changed (e.g. the baseline added to a finished run "
                        "redoes its benchmark), as `edgedistill run --overwrite`")
    p.add_argument("--gather", action="store_true",
                   help="only gather the finished runs' report.json files into the report (run nothing)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "arabic_recipe"))
    p.add_argument("--also", nargs="*", default=[], metavar="KEY",
                   help="with --gather: also kept variant runs (KEPT/KEY.json, e.g. edge_hint: an experiment "
                        "run with extra overrides, its own command in its report)")
    p.add_argument("--kept", default=str(KEPT), help="finished runs' reports kept across sessions (KEY.json)")
    p.add_argument("--time", action="store_true",
                   help="with --gather: first time the int8 files of each first-seed run (and the teacher's) side "
                        "by side, interleaved, 1 thread, on 1 s and 4 s of audio, kept in KEPT/side_by_side.json "
                        "for later gathers; run it on an otherwise idle machine")
    p.add_argument("--rounds", type=int, default=50, help="with --time: timed rounds (each runs every file once)")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every run (e.g. distill.steps=100)")
    args = p.parse_args(argv)

    RECIPE = (ROOT / args.recipe) if not Path(args.recipe).is_absolute() else Path(args.recipe)
    from edgedistill.cli import main as cli
    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.reporting.tables import variant_table
    from edgedistill.reporting.plots import plot_tradeoff, plot_training

    work, kept = Path(args.work), Path(args.kept)
    reports, seconds = {}, {}
    runs = [(preset, seed) for preset in args.presets
            for seed in (args.seeds if preset in args.seeded_presets else args.seeds[:1])]
    keys = [(f"{preset}" + (f"_s{seed}" if seed else ""), preset, seed) for preset, seed in runs]
    if (args.also or args.time) and not args.gather:
        raise SystemExit("--also and --time only gather kept runs: add --gather")
    for key, preset, seed in keys + [(k, None, None) for k in args.also]:
        out = work / f"arabic_{key}"
        if args.gather:
            if (out / "report.json").exists():
                reports[key] = keep(out, kept / f"{key}.json")
            elif (kept / f"{key}.json").exists():
                reports[key] = json.loads((kept / f"{key}.json").read_text())
            else:
                print(f"--gather: neither {out}/report.json nor {kept}/{key}.json: that run is left out of the report")
            continue
        done = sorted(work.glob("arabic_*/teacher/stage.json"))
        if done and not (out / "teacher" / "stage.json").exists():
            shutil.rmtree(out / "teacher", ignore_errors=True)
            shutil.copytree(done[0].parent, out / "teacher")
        t = time.perf_counter()
        cmd = ["run", str(RECIPE), f"out={out}", f"distill.student.preset={preset}", f"distill.seed={seed}",
               f"finetune.seed={seed}", f"baseline={'true' if preset in args.baseline_for and seed in args.baseline_seeds else 'false'}",
               *args.overrides]
        print("edgedistill " + " ".join(cmd), flush=True)
        out.mkdir(parents=True, exist_ok=True)
        (out / "command.txt").write_text("edgedistill " + " ".join(cmd) + "\n")
        if cli(cmd + (["--overwrite"] if args.overwrite else [])) != 0:
            raise SystemExit(f"the {key} run failed (the error is above); run this script again to resume it, "
                             "with --overwrite where a finished stage's config changed")
        seconds[key] = time.perf_counter() - t
        reports[key] = keep(out, kept / f"{key}.json")
    if not reports:
        raise SystemExit("no finished run to report")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # the report's folder, new or not
    teacher = next(iter(reports.values()))["teacher_sha256"]
    if args.time:
        time_side_by_side(work, list(reports), kept / "side_by_side.json", teacher, args.rounds, argv, args.overrides)
    sbs = json.loads((kept / "side_by_side.json").read_text()) if (kept / "side_by_side.json").exists() else None
    if sbs and sbs.get("teacher_sha256") != teacher:
        print(f"{kept / 'side_by_side.json'} timed another teacher's runs: left out (gather with --time to redo it)")
        sbs = None
    other = [k for k, r in reports.items() if r["teacher_sha256"] != teacher]
    left_out = [f"Left out: {', '.join(other)} (trained from another teacher, weights {reports[other[0]]['teacher_sha256']}, "
                f"not {teacher}): rerun them in this session's teacher's run folders."] if other else []
    for k in other:
        print(left_out[0])
        del reports[k]

    rows, teacher_by_seed = [], {}
    for i, (key, rep) in enumerate(reports.items()):
        # Each run times its files under its own load: a student's speed is judged against the
        # teacher timed in the same run (`run_teacher_ms`), not the first run's.
        own = {t["variant"].split(" ", 1)[1]: t["latency_ms_p50"] for t in rep["variants"]
               if t["variant"].startswith("teacher") and t.get("latency_ms_p50") is not None}
        for v in rep["variants"]:
            if v["variant"].startswith("teacher"):
                if not i:
                    rows.append(v)  # the same teacher in every run
                if v["variant"] == "teacher fp32":  # scored on the SV trials of the run's seed
                    teacher_by_seed.setdefault(key.partition("_s")[2] or "0", v)
                continue
            name = f"{key} {v['variant'].split(' ', 1)[1]}"
            if v["variant"] == "scratch fp32":
                name = f"{key} from scratch (no distillation) fp32"
            rows.append({**v, "variant": name, "run_teacher_ms": own})
    summary = seed_summary(rows, args.seeds)
    if summary and len(teacher_by_seed) > 1:  # the same teacher on each seed's trials: the EER's own spread
        summary.insert(0, spread(TEACHER_SPREAD, list(teacher_by_seed.values())))
    ref = next(iter(reports.values()))
    stage_s = {key: rep["stage_seconds"] for key, rep in reports.items()}
    command = "python benchmarks/arabic_recipe.py " + " ".join(sys.argv[1:] if argv is None else argv)
    plot = plot_tradeoff(rows, Path(args.out).with_name(Path(args.out).name + "_tradeoff.png"))
    curve = ref.get("teacher_curve") or []
    on = {"train-holdout": "a held-out tenth of the train clips: the train speakers, other recordings"}.get(
        ref.get("teacher_val_split"), f"the '{ref.get('teacher_val_split')}' split")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "teacher.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
        teacher_plot = plot_training({f"teacher (validated on {ref.get('teacher_val_split')})":
                                      Path(tmp) / "teacher.jsonl"},
                                     Path(args.out).with_name(Path(args.out).name + "_teacher.png"))
    result = {"benchmark": "arabic_recipe", "recipe": str(RECIPE.relative_to(ROOT)), "variants": rows,
              "split": ref["split"], "clips": ref["clips"], "threads": ref["threads"],
              "latency_audio_s": ref["latency_audio_s"], "stage_seconds": stage_s, "run_seconds": seconds,
              "seeds": summary, "teacher_sha256": teacher, "left_out": left_out,
              # the machine and date of the runs (their rows' latency), not of the gathering
              "command": command.strip(), "machine": ref.get("machine") or machine_info(),
              "date": ref.get("date") or time.strftime("%Y-%m-%d"), "gathered": time.strftime("%Y-%m-%d"),
              "plot": plot.name, "teacher_plot": teacher_plot.name, "teacher_training": teacher_words(curve, on, ref.get("teacher_summary", {}))}
    m = result["machine"]
    pretrained = load_config_teacher()
    who = ("The teacher is trained by the recipe from random weights (no pretrained model can be downloaded here)."
           if pretrained == "train" else
           f"The teacher is the pretrained `{pretrained}`: the students distil from its pretrained weights, and the "
           "teacher rows are it fine-tuned by the run with the students' heads and recipe, for the steps a student "
           "gets on this data (distillation + fine-tuning), validated on this split every `finetune.eval_every`.")
    md = [f"# Arabic Speech Commands recipe ({result['recipe']}): teacher vs {', '.join(reports)}", "",
          f"`{result['command']}`", "",
          f"Each student: `edgedistill run {result['recipe']} distill.student.preset=PRESET`. Measured on the "
          f"'{ref['split']}' split ({ref['clips']} clips, 6 speakers never seen in training; the dataset's test "
          "speakers are held out and not available). Every fine-tune validates once, at its last step: nothing is "
          f"selected on these speakers. {who} minDCF normalised, P_tar 0.01.", "",
          f"Latency: onnxruntime, {ref['threads']} thread(s), {ref['latency_audio_s']:g} s of audio, p50/p90. "
          f"Machine of the runs: {m['cpu']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
          + f"; {result['date']} (gathered {result['gathered']}). "
          "Each run times its own files in its benchmark stage while other runs (or tests) share the 2 cores, so "
          "latency moves with that load: a seed's rows are the same network as the first seed's, timed under "
          "another load (benchmarks/results/latency.md times every shape alone).", "",
          *variant_table(rows, ("params", "file MB", "KWS accuracy", "KWS retained", "SV EER", "EER / teacher",
                                "minDCF (0.01)", "p50 ms", "p90 ms"))]
    md += ["", "## The teacher", "", result["teacher_training"], "", f"![teacher training]({teacher_plot.name})"]
    if summary:
        md += ["", "## Over seeds (distill and fine-tune seeds; one teacher)", "",
               "Each run's fine-tune seed also draws its SV trials (and the val-split crops), so the one "
               "teacher's EER varies over seeds too: its row shows how much of the students' spread that is.", "",
               "| variant | seeds | KWS accuracy mean +- std | SV EER mean +- std |", "|---|---|---|---|"]
        md += [f"| {s['variant']} | {s['seeds']} | {100 * s['kws_mean']:.2f} +- {100 * s['kws_std']:.2f}% | "
               + (f"{100 * s['eer_mean']:.2f} +- {100 * s['eer_std']:.2f}% |" if s["eer_mean"] is not None else "- |")
               for s in summary]
    val, best = validations(curve)
    capped = bool(val) and not ref.get("teacher_summary", {}).get("stopped_early") and best["step"] == val[-1]["step"]
    if sbs:
        result["side_by_side"] = sbs
        md += ["", "## Latency side by side (int8, timed together, alone on the machine)", "",
               f"`{sbs['command']}`, {sbs['date']}: each first-seed run's int8 file and the teacher's, opened together "
               f"and run in turn, {sbs['rounds']} rounds after {sbs['warmup']} warm-up, onnxruntime {sbs['threads']} "
               "thread, nothing else running: unlike the table above, these times compare.", "",
               *side_by_side_table(sbs)]
        if sbs.get("gelu_unfused"):
            md += ["", f"Exported before the export fused its GELUs (`edgedistill.deploy.fusion`): "
                   f"{', '.join(sbs['gelu_unfused'])}. Such a file runs about a tenth slower than a new export of "
                   "the same model; the others are new exports."]
    searched = {line[len("- teacher "):].split(":")[0] for rep in reports.values() for line in rep.get("notes", [])
                if line.startswith("- teacher ")}  # the teacher's modes quantized with the students' search
    result["goals"] = goals(rows, summary, teacher_capped=capped, side_by_side=sbs, shapes=shape_latency(),
                            teacher_searched=searched, teacher_trained_here=pretrained == "train")
    if pretrained != "train":
        result["goals"] += pretrained_goals(rows, summary)
    md += ["", "## What the numbers say", "", *result["goals"]]
    md += ["", *left_out] if left_out else []
    notes = budget_section(reports, timed_alone=bool(sbs))
    if notes:
        own = any(" qat int8: " in n and " points against fp32 on " in n for n in notes)  # runs from before
        md += ["", *notes, *(["(qat int8 there: against the QAT fine-tune's own fp32 export, in runs "
                              "from before its budget was held against the student's fp32.)"] if own else [])]
    md += ["", "Runs (each run's own command, from its report):", "",
           *[f"- {key}: `{rep.get('run_command') or '(not recorded)'}`" for key, rep in reports.items()]]
    md += ["", "Stage wall times (s): " + "; ".join(f"{pr}: " + ", ".join(f"{k} {v}" for k, v in st.items())
                                                    for pr, st in stage_s.items()), "",
           f"![accuracy vs size and latency]({plot.name})", "",
           "Data: Arabic Speech Commands (A. Ghandoura, F. Hjabo, O. Al Dakkak, 2021; Zenodo "
           "10.5281/zenodo.4662481), CC BY 4.0."]
    write_report(args.out, result, md)
    return result


def goals(rows: list[dict], seeds: list[dict] | None = None, teacher_capped: bool = False,
          side_by_side: dict | None = None, shapes: dict | None = None, teacher_searched=(),
          teacher_trained_here: bool = True) -> list[str]:
    """The issue's goals checked in words, from the first seed's rows: the teacher bounds every
    student (KWS accuracy and EER, fp32; with the seeds' mean and spread where there are several, and
    why: when `teacher_capped`, it stopped at its step cap still improving, else each margin against
    the one teacher's own spread over the seeds, `noise_words`); the edge student is within
    1 point of KWS accuracy and 1 of EER of distilhubert at half its latency (int8; accuracy on the seeds'
    means where both have the same seeds, the first seed's gap shown too); the int8 budget per
    student; which students beat the teacher merely quantized, mode by mode. Speed comes from
    `side_by_side` (files timed together, alone) where it has both files, else from each run's own
    timing relative to the teacher timed in that run; where the edge student is less than twice as
    fast, `shapes` (`shape_latency`) says how fast its shape can be. `teacher_searched`: the teacher's
    modes quantized with the students' sensitivity search (the others: every node quantized)."""
    alone = (side_by_side or {}).get("ms", {}).get("1", {})
    by = {r["variant"]: r for r in rows}
    over = {s["variant"]: s for s in seeds or []}
    teacher = by.get("teacher fp32")
    lines = []
    students = [r for r in rows if r["variant"].endswith(" fp32") and not r["variant"].startswith("teacher")
                and "from scratch" not in r["variant"] and not later_seed(r["variant"])]
    if teacher:
        tk, te = teacher["kws_accuracy"], teacher.get("sv_eer")
        beaten, margins = [], []
        for r in students:
            ek = r["kws_accuracy"] > tk
            ee = r.get("sv_eer") is not None and te is not None and r["sv_eer"] < te
            if not (ek or ee):
                continue
            margins += ([("kws", r["variant"], r["kws_accuracy"] - tk)] if ek else []) + \
                       ([("eer", r["variant"], te - r["sv_eer"])] if ee else [])
            what = ([f"KWS accuracy {100 * r['kws_accuracy']:.2f}% against {100 * tk:.2f}% "
                     f"({100 * (r['kws_accuracy'] - tk):+.2f} points)"] if ek else []) + \
                   ([f"EER {100 * r['sv_eer']:.2f}% against {100 * te:.2f}%"] if ee else [])
            s = over.get(r["variant"])
            if s and ek:
                what[0] += (f"; over {s['seeds']} seeds {100 * s['kws_mean']:.2f} +- {100 * s['kws_std']:.2f}% "
                            f"({100 * (s['kws_mean'] - tk):+.2f} points"
                            + (", within one standard deviation of the teacher)"
                               if abs(s["kws_mean"] - tk) <= s["kws_std"] else ")"))
            if s and ee and s.get("eer_mean") is not None:
                what[-1] += f"; over {s['seeds']} seeds {100 * s['eer_mean']:.2f} +- {100 * s['eer_std']:.2f}%"
            beaten.append(f"{r['variant']} ({', '.join(what)})")
        if beaten:
            cap = ("stopped at its step cap (`teacher_training.steps`, set by the CPU time a session has) while "
                   "still improving on its held-out validation" if teacher_trained_here else
                   "was still improving at the last step of its fine-tuning (a pretrained teacher is fine-tuned for "
                   "the steps the student gets on this data: distillation plus fine-tuning)")
            why = (f" Why: the teacher {cap}, and each student starts from the teacher's weights and trains further "
                   "on the same labelled clips (distillation, then fine-tuning), so the cap, not the compression, is "
                   "what the students pass; more teacher steps are the fix where there is time." if teacher_capped
                   else noise_words(margins, over.get(TEACHER_SPREAD), over))
            lines.append("- Teacher as an upper bound: **broken** by " + "; ".join(beaten) + "." + why)
        else:
            lines.append("- Teacher as an upper bound: held: no student has a higher KWS accuracy or a lower EER "
                         "than teacher fp32.")
    full = by.get("distilhubert int8")
    # The edge preset, and its variant runs (edge_KEY, e.g. edge_hint), first seed only.
    edges = [k for k in by if k.endswith(" int8") and k.split()[0].split("_")[0] == "edge"
             and not later_seed(k)]
    for key in edges if full else []:
        edge = by[key]
        dk = 100 * (edge["kws_accuracy"] - full["kws_accuracy"])
        de = 100 * (edge["sv_eer"] - full["sv_eer"]) if edge.get("sv_eer") is not None and full.get("sv_eer") is not None else None
        # Runs are timed under different loads: where both runs timed their teacher, each latency
        # counts relative to its own run's teacher int8.
        t_full, t_edge = ((r.get("run_teacher_ms") or {}).get("int8") for r in (full, edge))
        together = "distilhubert int8" in alone and key in alone
        relative = bool(t_full and t_edge) and not together
        speed = alone["distilhubert int8"][0] / alone[key][0] if together else \
            (full["latency_ms_p50"] / t_full) / (edge["latency_ms_p50"] / t_edge) if relative else \
            full["latency_ms_p50"] / edge["latency_ms_p50"]
        # With seeds for both, the accuracy goal is judged on their means (one seed's gap is noisy).
        a, b = over.get(key), over.get("distilhubert int8")
        means = bool(a and b and a["seeds"] == b["seeds"])
        mk = 100 * (a["kws_mean"] - b["kws_mean"]) if means else None
        me = 100 * (a["eer_mean"] - b["eer_mean"]) if means and None not in (a["eer_mean"], b["eer_mean"]) else None
        ok_k, ok_e = (mk, me) if means else (dk, de)
        met = ok_k >= -1 and (ok_e is None or ok_e <= 1) and speed >= 2
        who = "Edge student" + (f" ({key.split()[0]})" if key != "edge int8" else "")
        lines.append(f"- {who} (int8) against distilhubert (int8): KWS accuracy {dk:+.2f} points, "
                     + (f"EER {de:+.2f} points, " if de is not None else "")
                     + (f"over {a['seeds']} seeds' means KWS {mk:+.2f}"
                        + (f", EER {me:+.2f}" if me is not None else "") + " points, " if means else "")
                     + f"{speed:.2f}x faster"
                     + (" (timed side by side, alone)" if together else
                        " (each relative to the teacher int8 timed in its own run)" if relative else "")
                     + ": goal (within 1 point of each" + (" on the seeds' means" if means else "")
                     + ", half the latency) " + ("**met**." if met else "**missed**."))
        if speed < 2 and shapes and not any(x.startswith("  Why the speed") for x in lines):
            lines.append("  Why the speed falls short: " + shape_words(shapes))
    def budget(f: dict, q: dict) -> tuple[float, float, bool]:
        dk = 100 * (q["kws_accuracy"] - f["kws_accuracy"])
        de = 100 * (q["sv_eer"] - f["sv_eer"]) if q.get("sv_eer") is not None and f.get("sv_eer") is not None else 0.0
        return dk, de, dk >= -0.1 - 1e-9 and de <= 0.5 + 1e-9

    for r in students:
        name = r["variant"][: -len(" fp32")]
        for mode in ("int8", "qat-int8"):
            q = by.get(f"{name} {mode}")
            seeded = [k.removesuffix(" fp32") for k in by if k.startswith(f"{name}_s") and k.endswith(" fp32")]
            others = [(key.rpartition("_s")[2], budget(by[f"{key} fp32"], by[f"{key} {mode}"]))
                      for key in seeded if f"{key} {mode}" in by]
            if q is None and not others:
                continue
            head = f"- {name} {mode} against {name} fp32: "
            if q is None:  # e.g. QAT run only for the seeds whose post-training int8 missed
                head += f"(no {mode} for the first seed)"
            else:
                dk, de, met = budget(r, q)
                head += (f"KWS accuracy {dk:+.2f} points, EER {de:+.2f} points: int8 budget (at most 0.1 points of "
                         "KWS accuracy lost, 0.5 of EER gained) "
                         + ("**met**." if met else f"**missed** by {max(0.0, -0.1 - dk):.2f} KWS / "
                                                     f"{max(0.0, de - 0.5):.2f} EER points."))
            lines.append(head + "".join(f" Seed {n}: KWS {k:+.2f}, EER {e:+.2f} points: {'met' if m else 'missed'}."
                                        for n, (k, e, m) in others))
    for mode in ("int8-dynamic", "int8"):
        base = by.get(f"teacher {mode}")
        if not base:
            continue
        same = (f" {mode}",) if mode != "int8" else (" int8", " qat-int8")  # the same file format
        def faster(r: dict) -> bool:  # than the teacher's same mode: side by side, else timed in the student's run
            if r["variant"] in alone and f"teacher {mode}" in alone:
                return alone[r["variant"]][0] < alone[f"teacher {mode}"][0]
            return r["latency_ms_p50"] < (r.get("run_teacher_ms") or {}).get(mode, base["latency_ms_p50"])

        better = [r["variant"] for r in rows if r["variant"].endswith(same) and not r["variant"].startswith("teacher")
                  and not later_seed(r["variant"])
                  and r["kws_accuracy"] >= base["kws_accuracy"] and faster(r) and r["file_bytes"] < base["file_bytes"]]
        how = "with the students' sensitivity search" if mode in teacher_searched else "every node quantized"
        lines.append(f"- Against the teacher merely quantized (teacher {mode}, post-training, {how}: "
                     f"{100 * base['kws_accuracy']:.2f}%, {base['file_bytes'] / 1e6:.2f} MB, {base['latency_ms_p50']:.1f} ms; "
                     + ("each student's speed against the teacher timed side by side with it, alone"
                        if f"teacher {mode}" in alone else "each student's speed against the teacher timed in its own run") + "): "
                     + (", ".join(better) + (" is" if len(better) == 1 else " are")
                        + " smaller, faster and at least as accurate." if better else
                        f"no {mode} student is smaller, faster and at least as accurate."))
    return lines


def shape_latency(folder: Path = ROOT / "benchmarks" / "results") -> dict:
    """{shape: {"command", "date", "cpu", "distilhubert", "edge"}}: int8 p50 ms of the two shapes
    (random weights, every node int8, 1 thread, 1 s, timed side by side with `EdgeModel`'s
    settings) from benchmarks/ort_fusions.py's results: `recipe` on this recipe's teacher shape
    (ort_fusions_small.json), `base` on HuBERT Base (ort_fusions.json); shapes without results
    are left out."""
    shapes = {}
    for shape, name in (("recipe", "ort_fusions_small.json"), ("base", "ort_fusions.json")):
        if not (folder / name).is_file():
            continue
        res = json.loads((folder / name).read_text())
        ms = {r["model"].split()[0]: r["fusion_off_ms"] for r in res["models"]
              if r["model"].endswith(" int8") and r["audio_s"] == 1}
        if "distilhubert" in ms and "edge" in ms:
            shapes[shape] = {"command": res["command"], "date": res["date"], "cpu": res["machine"]["cpu"],
                             "distilhubert": ms["distilhubert"], "edge": ms["edge"]}
    if "recipe" in shapes and load_config_teacher() == "train":  # the recipe's teacher and edge student, as built
        from edgedistill.config import load_config
        from edgedistill.models.builders import small_hubert_config
        from edgedistill.models.student import StudentConfig, student_config
        from edgedistill.recipes.run import RunConfig

        tt = load_config(RunConfig, RECIPE, []).teacher_training
        teacher = small_hubert_config(tt.layers, tt.hidden, tt.cnn)
        shapes["recipe"].update(shape=f"{tt.layers} x {tt.hidden}", teacher_cnn=list(teacher.conv_dim),
                                edge_cnn=list(student_config(teacher, StudentConfig(preset="edge")).conv_dim))
    return shapes


def load_config_teacher() -> str:
    """The recipe's `teacher:`."""
    from edgedistill.config import load_config
    from edgedistill.recipes.run import RunConfig

    return load_config(RunConfig, RECIPE, []).teacher


def shape_words(shapes: dict) -> str:
    """Why the edge preset is or is not twice as fast, from `shape_latency`."""
    words = []
    if "recipe" in shapes:
        r = shapes["recipe"]
        cnn = lambda c: "-".join(map(str, c))  # noqa: E731
        words.append(f"this recipe's teacher (`teacher_training`: {r['shape']}, CNN {cnn(r['teacher_cnn'])}) already "
                     f"has a thin CNN, so the edge preset's thinner one ({cnn(r['edge_cnn'])}) saves less, and the two "
                     "transformer layers the presets share weigh more: with every node in int8 and random weights, "
                     f"timed side by side, alone, the edge shape runs {r['distilhubert'] / r['edge']:.2f}x as fast as distilhubert "
                     f"({r['edge']:.2f} against {r['distilhubert']:.2f} ms, 1 s, 1 thread; `{r['command']}`, "
                     f"{r['cpu']}, {r['date']}): the shapes themselves are not 2x apart on this teacher")
    if "base" in shapes:
        b = shapes["base"]
        words.append(f"on HuBERT Base, the shape the preset is made for (a 512-channel CNN), it runs "
                     f"{b['distilhubert'] / b['edge']:.2f}x as fast ({b['edge']:.1f} against {b['distilhubert']:.1f} "
                     f"ms; `{b['command']}`, {b['cpu']}, {b['date']})")
    return "; ".join(words) + "."


def time_side_by_side(work: Path, keys: list[str], path: Path, teacher: str, rounds: int, argv,
                      overrides: list[str] = ()) -> dict:
    """Times the int8 files of the first-seed runs in `keys` and the teacher's (fp32 and int8, from
    the first run that has them) side by side (`time_onnx_side_by_side`), on 1 s and 4 s of audio,
    and what the nodes each keeps in float cost (`float_nodes_cost`, on 1 s); writes the result to
    `path` (atomically) and returns it."""
    from edgedistill.config import load_config
    from edgedistill.deploy.sensitivity import float_nodes_cost
    from edgedistill.recipes.run import RunConfig
    from edgedistill.reporting.machine import machine_info
    from edgedistill.evaluation.latency import time_onnx_side_by_side

    files, searches = {}, {}  # name: file; name: (the stage that searched it, the search's name there)
    for key in keys:
        run = work / f"arabic_{key}"
        for mode in ("fp32", "int8"):
            f = run / "benchmark_models" / f"teacher.{mode}.onnx"
            if f.is_file() and f"teacher {mode}" not in files:
                files[f"teacher {mode}"], searches[f"teacher {mode}"] = f, (run / "export", f"teacher {mode}")
    for key in keys:
        if later_seed(f"{key} "):
            continue
        run = work / f"arabic_{key}"
        for mode, f, search in (("int8", run / "export" / "model.int8.onnx", "int8"),
                                ("qat-int8", run / "qat" / "student-qat.int8.onnx", "qat int8")):
            if f.is_file():
                files[f"{key} {mode}"], searches[f"{key} {mode}"] = f, (f.parent, search)
    if not any(not k.startswith("teacher") for k in files):
        raise SystemExit(f"--time: no int8 file in {work}/arabic_*/export: the run folders are not on this machine")
    @functools.cache
    def scheme(run: Path):  # as the run's export stage quantized: the recipe with the run's own overrides (its data)
        command = run / "command.txt"  # `edgedistill run RECIPE KEY=VALUE ...`, as main() wrote it
        words = shlex.split(command.read_text())[3:] if command.is_file() else []
        cfg = load_config(RunConfig, RECIPE, words + list(overrides))
        return cfg.export.scheme("int8", cfg.data, cfg.finetune.train_split)

    floats = {}
    for name, f in files.items():
        stage, mode = searches[name]
        done = stage / "stage.json"
        found = json.loads(done.read_text())["result"].get("sensitivity", {}).get(mode, {}) if done.is_file() else {}
        if found.get("kept_float"):
            print(f"timing what {name}'s {len(found['kept_float'])} float node(s) cost", flush=True)
            floats[name] = {"kept_float": found["kept_float"],
                            **float_nodes_cost(f.with_name(f.name.replace(".int8.", ".fp32.")), f, scheme(stage.parent),
                                               rounds=rounds)}
    ms = {}
    for seconds in (1, 4):
        print(f"timing {len(files)} files side by side on {seconds} s of audio ({rounds} rounds)", flush=True)
        got = time_onnx_side_by_side(files, seconds=seconds, threads=1, rounds=rounds)
        ms[str(seconds)] = {k: [round(p50, 3), round(p90, 3)] for k, (p50, p90) in got.items()}
    result = {"command": "python benchmarks/arabic_recipe.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "threads": 1, "rounds": rounds,
              "warmup": 3, "teacher_sha256": teacher, "ms": ms,
              "file_bytes": {k: f.stat().st_size for k, f in files.items()},
              "gelu_unfused": [k for k, f in files.items() if not gelu_fused(f)], "float_nodes": floats}
    write_json(path, result)
    return result


def gelu_fused(path: Path) -> bool:
    """Whether an ONNX file was exported with its GELUs fused (`deploy.fusion`, since 2026-11-27):
    an older export still spells them as Erf chains and runs about a tenth slower."""
    import onnx

    return not any(n.op_type == "Erf" for n in onnx.load(str(path)).graph.node)


def side_by_side_table(sbs: dict) -> list[str]:
    """Markdown rows of a side-by-side timing: p50/p90 per audio length, and the speed-up over the
    teacher in the same format (int8 to int8) and over the teacher fp32 file, on 1 s."""
    one = sbs["ms"]["1"]
    t8, t32 = (one.get(f"teacher {m}", [None])[0] for m in ("int8", "fp32"))
    lines = ["| file | MB | p50 ms, 1 s | p90 ms, 1 s | p50 ms, 4 s | x faster than teacher int8 (1 s) "
             "| x faster than teacher fp32 (1 s) | nodes kept in float: ms they cost (1 s) |",
             "|---|---|---|---|---|---|---|---|"]
    unfused = set(sbs.get("gelu_unfused", []))
    floats = sbs.get("float_nodes", {})
    for k, (p50, p90) in one.items():
        four = sbs["ms"].get("4", {}).get(k)
        fl = floats.get(k)
        lines.append(f"| {k}{' (exported before GELU fusion)' if k in unfused else ''} | {sbs['file_bytes'][k] / 1e6:.2f} "
                     f"| {p50:.2f} | {p90:.2f} | " + (f"{four[0]:.2f}" if four else "-") + " | "
                     + (f"{t8 / p50:.2f}" if t8 else "-") + " | " + (f"{t32 / p50:.2f}" if t32 else "-") + " | "
                     + (f"{len(fl['kept_float'])}: {fl['cost_ms']:+.2f} ({fl['p50_ms']:.2f} against "
                        f"{fl['all_int8_p50_ms']:.2f} all int8)" if fl else "-") + " |")
    return lines


def validations(curve: list[dict]) -> tuple[list[dict], dict | None]:
    """The train_log rows that carry a validation, and the best of them (None without any)."""
    val = [r for r in curve if r.get("val_score") is not None]
    return val, max(val, key=lambda r: r["val_score"], default=None)


def teacher_words(curve: list[dict], on: str, summary: dict) -> str:
    """How the teacher's training went, from its train_log rows and fine-tuning summary."""
    val, best = validations(curve)
    if not val:
        return "The teacher's training log is not in the kept reports."
    last = curve[-1]["step"]
    why = ("stopped early: its validation score stalled" if summary.get("stopped_early")
           else "the most the recipe allows (`teacher_training.steps`)")
    return (f"Trained {last:,} steps ({why}); best validation (on {on}) at step {best['step']:,}: KWS accuracy "
            f"{100 * best['val_kws_accuracy']:.2f}%"
            + (f", EER {100 * best['val_sv_eer']:.2f}%" if best.get("val_sv_eer") is not None else "")
            + f"; at the last validation (step {val[-1]['step']:,}) {100 * val[-1]['val_kws_accuracy']:.2f}%. "
            "That model is the teacher of every row.")


def keep(run: Path, path: Path) -> dict:
    """The run's report with its teacher's weight checksum and stage times, written (atomically) to
    `path`, where it outlives the run folder."""
    rep = json.loads((run / "report.json").read_text())

    def digest(folder: Path) -> str:
        h = hashlib.sha256()
        for f in sorted(folder.rglob("*.safetensors")):
            h.update(f.read_bytes())
        return h.hexdigest()[:16]

    rep["teacher_sha256"] = digest(run / "teacher" / "ft" / "model")
    pretrained = load_config_teacher()
    if pretrained != "train" and Path(pretrained).expanduser().is_dir():
        # The students distil from the pretrained weights, the same file on every machine: runs join one
        # table by those; the teacher rows are the first run's fine-tuning of them.
        rep["teacher_ft_sha256"] = rep["teacher_sha256"]
        rep["teacher_sha256"] = digest(Path(pretrained).expanduser())
    rep["stage_seconds"] = {s.parent.name: round(json.loads(s.read_text())["seconds"])
                            for s in sorted(run.glob("*/stage.json"))}
    log = run / "teacher" / "ft" / "train_log.jsonl"
    command = run / "command.txt"
    rep["run_command"] = command.read_text().strip().replace(f"{ROOT}/", "") if command.exists() else None
    rep["teacher_curve"] = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    summary = run / "teacher" / "ft" / "summary.json"
    rep["teacher_summary"] = {k: v for k, v in json.loads(summary.read_text()).items()
                              if k in ("steps_done", "stopped_early", "best_step")} if summary.exists() else {}
    config = run / "teacher" / "ft" / "config.yaml"
    rep["teacher_val_split"] = next((line.split(":", 1)[1].strip() for line in config.read_text().splitlines()
                                     if line.startswith("val_split:")), None) if config.exists() else None
    write_json(path, rep)
    return rep


def write_json(path: Path, obj: dict) -> None:
    """`obj` as JSON at `path`, written under a temporary name and renamed (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


FROM_SCRATCH_TABLE = ROOT / "benchmarks" / "results" / "arabic_recipe.json"


def pretrained_goals(rows: list[dict], seeds: list[dict] | None = None,
                     reference: Path = FROM_SCRATCH_TABLE) -> list[str]:
    """The pretrained-teacher goals in words (issue 37): each int8 student (first seed) reaches at least 97%
    KWS accuracy and keeps at least 98% of the fine-tuned teacher's, with an EER of at most 12%, and
    gains on the same preset's row of the from-scratch-teacher table (`reference`)."""
    by = {r["variant"]: r for r in rows}
    old = {r["variant"]: r for r in json.loads(reference.read_text())["variants"]} if reference.is_file() else {}
    teacher = by.get("teacher fp32")
    lines = []
    for key, r in by.items():
        if not key.endswith(" int8") or key.startswith("teacher") or later_seed(key) or "qat" in key:
            continue
        k, e = r["kws_accuracy"], r.get("sv_eer")
        kept = k / teacher["kws_accuracy"] if teacher else None
        met = k >= 0.97 and (kept is None or kept >= 0.98) and e is not None and e <= 0.12
        words = [f"KWS accuracy {100 * k:.2f}% (goal 97%)"]
        if kept is not None:
            words.append(f"{100 * kept:.1f}% of the fine-tuned teacher's (goal 98%)")
        words.append(f"EER {100 * e:.2f}% (goal 12%)" if e is not None else "EER not scored")
        if key in old:
            words.append(f"against {100 * old[key]['kws_accuracy']:.2f}% / {100 * old[key]['sv_eer']:.2f}% from the "
                         "from-scratch teacher")
        s = next((x for x in seeds or [] if x["variant"] == key), None)
        if s:
            words.append(f"over {s['seeds']} seeds {100 * s['kws_mean']:.2f} +- {100 * s['kws_std']:.2f}%")
        lines.append(f"- Pretrained teacher, {key}: " + ", ".join(words) + ": goal " + ("**met**." if met else "**missed**."))
    return lines


def later_seed(variant: str) -> bool:
    """Whether a row is a later seed's (`P_sS ...`, `V_sS ...`): goals read the first seed's rows."""
    return re.match(r"^[a-z_]+?_s\d+ ", variant) is not None


def seed_summary(rows: list[dict], seeds: list[int]) -> list[dict]:
    """Mean and standard deviation over seeds of each preset's variants (rows `P_sS ...` and `P ...`)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        m = re.match(r"^([a-z_]+?)(?:_s(\d+))? (.+)$", r["variant"])  # P, P_sS, and variant runs V, V_sS
        if m and not r["variant"].startswith("teacher"):
            groups.setdefault(f"{m.group(1)} {m.group(3)}", []).append(r)
    return [spread(name, rs) for name, rs in groups.items()
            if len(rs) > 1 and any(r.get("kws_accuracy") is not None for r in rs)]


def budget_section(reports: dict, timed_alone: bool = False) -> list[str]:
    """The runs' int8 budget notes as one section: each student's lines under its run's key, the
    teacher's once (every run searched the same teacher file: the same nodes and changes, only the
    ms each run timed beside the others differ), then the runs' closing words once."""
    head, lines, tail = {}, {}, {}  # dicts as ordered sets; `lines` keyed by what makes a line the same
    for key, rep in reports.items():
        for line in rep.get("notes", []):
            if line.startswith("- student"):
                line = f"- {key}" + qat_worded(line)[len("- student"):]
                lines[line] = line
            elif line.startswith("- teacher "):  # the same search without its ms: the first run's line
                lines.setdefault(re.sub(r": [+-][\d.]+ ms p50 \(.*?timed side by side\)", "", line), line)
            elif line:
                (head if line.startswith("#") else tail)[line] = None
    if not lines:
        return []
    ms = "The ms in these lines were timed in each run's export stage, beside the other runs" + (
        "; the side-by-side table above times the same files alone." if timed_alone else ".")
    return [*head, "", *lines.values(), "", *tail, ms]


def qat_worded(line: str) -> str:
    """A report's budget line, with a QAT miss put in QAT's words (reports from before said a QAT
    file's miss was post-training quantization's)."""
    from edgedistill.recipes.export import PTQ_MISSED, QAT_MISSED

    return line.replace(PTQ_MISSED, QAT_MISSED) if " qat int8: **budget missed**" in line else line


def noise_words(margins: list[tuple[str, str, float]], teacher_spread: dict | None, seeds: dict | None = None) -> str:
    """Why students beat a teacher that was not capped (it stopped improving before its last step),
    from `margins` ((metric "kws" or "eer", variant, points ahead as a fraction, first seed)), the one
    teacher's own spread over the seeds' evaluation draws (`spread`'s row) and the students' seed
    rows (`seeds`, {variant: row}): a student with seeds is judged on the means, against the larger
    of the two spreads; one with a single seed on its margin, against the teacher's spread alone."""
    if not margins:
        return ""
    if not teacher_spread or teacher_spread.get("seeds", 0) < 2:
        return (" Why: not measured. The teacher was not cut short (its validation stopped improving before its "
                "last step), and with one seed how much of the margin is evaluation noise is unknown.")
    t, seeds, name = teacher_spread, seeds or {}, {"kws": "KWS accuracy", "eer": "EER"}
    within, beyond = [], []
    for m, v, d in margins:
        s, who = seeds.get(v), f"{v.removesuffix(' fp32')}'s {name[m]}"
        if s and s.get(f"{m}_mean") is not None and t.get(f"{m}_mean") is not None:
            ahead = s["kws_mean"] - t["kws_mean"] if m == "kws" else t["eer_mean"] - s["eer_mean"]
            noise = max(t[f"{m}_std"] or 0.0, s[f"{m}_std"] or 0.0)
            what = (f"{who} by {100 * d:.2f} points on the first seed, {100 * ahead:+.2f} on the {s['seeds']} seeds' "
                    f"means (std: teacher {100 * t[f'{m}_std']:.2f}, student {100 * s[f'{m}_std']:.2f})")
        else:
            ahead, noise = d, t.get(f"{m}_std")
            what = (f"{who} by {100 * d:.2f} points (teacher's std {100 * noise:.2f}; one seed of the student: "
                    "its own spread not measured)" if noise is not None else f"{who} by {100 * d:.2f} points")
        (within if noise is not None and ahead <= noise else beyond).append(what)
    words = (" Why: the teacher was not cut short (its validation stopped improving before its last step). Each "
             f"margin is set against the noise: the one teacher scored on each of the {t['seeds']} seeds' "
             "evaluation draws (SV trials, val crops), and the student's own seeds where it has several.")
    if within:
        words += f" Within the noise, so not told apart from the teacher on these 6 speakers: {'; '.join(within)}."
    if beyond:
        words += (f" Beyond it: {'; '.join(beyond)}: there the student, which trains further on the same labelled "
                  "clips (distillation, then fine-tuning), does better on these speakers than its teacher.")
    return words


def spread(name: str, rs: list[dict]) -> dict:
    """Mean and standard deviation of KWS accuracy and EER over rows `rs` (EER only where SV was
    scored in every one)."""
    import numpy as np

    kws = [r["kws_accuracy"] for r in rs if r.get("kws_accuracy") is not None]
    eer = [r["sv_eer"] for r in rs if r.get("sv_eer") is not None]
    full = len(eer) == len(rs)
    return {"variant": name, "seeds": len(rs), "kws_mean": float(np.mean(kws)), "kws_std": float(np.std(kws, ddof=1)),
            "eer_mean": float(np.mean(eer)) if full else None, "eer_std": float(np.std(eer, ddof=1)) if full else None}


if __name__ == "__main__":
    main()
