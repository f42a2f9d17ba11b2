"""The commands of `edgedistill`: each turns parsed arguments into a config and calls its recipe.

Heavy imports (torch, transformers) happen inside each command, so `edgedistill --help` and the
torch-free commands start fast.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from edgedistill.config import ConfigError

def _distill(args) -> int:
    from edgedistill.config import load_config
    from edgedistill.recipes.distill_config import DistillConfig
    from edgedistill.recipes.distill import distill

    values = {"teacher": args.teacher, "data": args.data, "out": args.out, "text_teacher": args.text_teacher}
    if args.student:
        values["student"] = {"preset": args.student}
    cfg = load_config(DistillConfig, args.config, args.overrides, **values)
    _build_embedded_teacher_if_named(cfg.teacher)
    summary = distill(cfg, resume=args.resume, stop_after=args.stop_after, overwrite=args.overwrite)
    if not summary.get("main_process", True):  # under several processes only rank 0 reports
        return 0
    if summary.get("finished"):
        print(f"student saved to {cfg.out}/student ({summary['params']:,} parameters, "
              f"{summary['steps_done']} steps); heads in {cfg.out}/heads")
    else:
        print(f"stopped at step {summary['steps_done']}; continue with the same command and --resume")
    return 0


def _finetune(args) -> int:
    from edgedistill.config import load_config
    from edgedistill.recipes.finetune import FinetuneConfig
    from edgedistill.recipes.finetune import finetune

    values = {"model": args.model, "data": args.data, "sv_data": args.sv_data, "out": args.out}
    cfg = load_config(FinetuneConfig, args.config, args.overrides, **values)
    _build_embedded_teacher_if_named(cfg.model)
    summary = finetune(cfg, resume=args.resume, stop_after=args.stop_after, overwrite=args.overwrite)
    if not summary.get("main_process", True):
        return 0
    if not summary["finished"]:
        print(f"stopped at step {summary['steps_done']}; continue with the same command and --resume")
        return 0
    val = summary["val"] or {}
    print(f"model saved to {cfg.out}/model (selected at step {summary['best_step']} on "
          f"'{cfg.val_split}' by {cfg.select_metric}): KWS accuracy {_pct(val.get('kws_accuracy'))}, "
          f"SV EER {_pct(val.get('sv_eer'))}, minDCF(0.01) {val.get('sv_min_dcf', float('nan')):.4f}")
    return 0


def _pct(fraction: float | None) -> str:
    """A fraction as reports print it: 0.7917 -> '79.17%'."""
    return "n/a" if fraction is None else f"{100 * fraction:.2f}%"


def _evaluate(args) -> int:
    from edgedistill.recipes.evaluate import evaluate

    r = evaluate(args.model, args.data, args.split, args.out, args.trials, args.seed, args.batch_size)
    keys = ("clips", "speakers", "kws_accuracy", "sv_eer", "sv_min_dcf", "sv_min_dcf_p0.05", "trials")
    print(json.dumps({k: r[k] for k in keys if k in r}, indent=1))
    if args.out:
        print(f"full report: {args.out}")
    return 0


def _evaluate_stream(args) -> int:
    from edgedistill.data.layouts import check_keywords, resolve_labelled, stream_noise
    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.reporting.tables import detection_note, detection_table, stream_note, stream_table
    from edgedistill.evaluation.scores import evaluate_stream
    from edgedistill.reporting.plots import plot_stream_det

    if not str(args.model).endswith(".onnx"):
        raise ConfigError(f"--model {args.model}: evaluate-stream runs the exported .onnx file you deploy "
                          "(edgedistill export writes it)")
    targets = [k for k in args.keywords.split(",") if k]
    clips = resolve_labelled(args.data, args.split)
    check_keywords(targets, clips, f"the '{args.split}' split of {args.data}")
    noise_dir, noise = stream_noise(args.data, args.split, args.noise)
    r = evaluate_stream(args.model, clips, targets, args.seconds, args.seed,
                        threads=args.threads, snr_db=args.snr_db, noise=noise, enroll_clips=args.enroll_clips,
                        negative_hours=args.negative_hours, windowed=args.windowed,
                        cache=Path(args.out) / "negative_stream" if args.out else None)
    r.update(model=str(args.model), data=str(args.data), split=args.split, machine=machine_info(),
             noise=noise_dir, command=getattr(args, "command_line", "edgedistill " + " ".join(sys.argv[1:])))
    md = ["# Continuous listening", "", f"`{r['command']}`", "", stream_note(r, args.split, args.data), "",
          *stream_table({Path(args.model).name: r})]
    if "detection" in r:
        md += ["", detection_note(r), "", *detection_table({Path(args.model).name: r})]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        plot = plot_stream_det({Path(args.model).name: r["detection"]["curve"] if "detection" in r else r["curve"]},
                               out / "frr_vs_fa_per_hour.png")
        r["plot"] = str(plot) if plot else None
        md += ["", f"![FRR vs FA/h]({plot.name})" if plot else
               "No plot: the model fired above no threshold on the stream (no miss / false-alarm trade-off to draw)."]
        write_report(out / "stream_report", r, md)
    else:
        print("\n".join(md))
    return 0


def _calibrate(args) -> int:
    from edgedistill.recipes.calibrate import calibrate

    targets = [k for k in args.keywords.split(",") if k]
    r = calibrate(args.model, args.data, args.split, targets, args.hours, args.target_fa_per_hour, args.seed,
                  args.threads, args.noise, args.snr_db)
    print(f"{args.model}: thresholds at {r['target_fa_per_hour']:g} false alarms per hour over "
          f"{r['hours']:.2f} h of '{args.split}' without a keyword ({r['false_alarms']} candidate events): "
          + ", ".join(f"{k} {v:.3f}" for k, v in r["thresholds"].items()))
    return 0


def _quantize_config(args):
    from edgedistill.config import load_config
    from edgedistill.deploy.quantize import MODES, CalibratedScheme

    mode = args.quantize or ("int8" if args.calibration else "int8-dynamic")
    if mode not in MODES:
        raise ConfigError(f"--quantize {mode}: choose one of {sorted(MODES)}")
    # Each scheme is its own config class: a setting it does not have is an unknown key. The
    # calibration settings are the exception: one command line may serve every mode.
    overrides, calibration = args.overrides, args.calibration
    if not issubclass(MODES[mode], CalibratedScheme):
        ignored = [o for o in overrides if o.startswith("calibration")] + (["--calibration"] if calibration else [])
        if ignored:
            logging.getLogger("edgedistill.cli").info("%s needs no calibration: %s ignored", mode, ", ".join(ignored))
        overrides, calibration = [o for o in overrides if not o.startswith("calibration")], None
    return load_config(MODES[mode], None, overrides, target=args.target, calibration=calibration)


def _export(args) -> int:
    from edgedistill.recipes.export import export

    quantize = _quantize_config(args) if (args.quantize or args.calibration) else None
    export(args.model, args.out, hidden_states=args.hidden_states, overwrite=args.overwrite, quantize=quantize,
           eval_data=args.eval_data, eval_split=args.eval_split, sensitivity=args.sensitivity)
    return 0


def _quantize(args) -> int:
    from edgedistill.recipes.export import quantize_file

    quantize_file(args.model, Path(args.out or Path(args.model).parent), _quantize_config(args), args.eval_data,
                  args.eval_split, args.sensitivity)
    return 0


def _run(args) -> int:
    from edgedistill.config import load_config
    from edgedistill.recipes.run import RunConfig, check_run, recipe_path, run

    values = {"out": getattr(args, "out", None), "teacher": getattr(args, "teacher", None)}
    extra = [f"distill.text_teacher={args.text_teacher}"] if args.text_teacher else []
    recipe = recipe_path(args.recipe)
    cfg = load_config(RunConfig, recipe, extra + args.overrides, **values)
    check_run(cfg, recipe)
    _build_embedded_teacher_if_named(cfg.teacher)  # after every check: bad settings fail before its first build
    report = run(cfg, overwrite=args.overwrite)
    print(f"\nreport: {cfg.out}/report.md, {cfg.out}/report.json; device kit: {cfg.out}/export")
    return 0 if report else 1


def _build_embedded_teacher_if_named(name: str | None) -> None:
    """The one place a command builds the embedded teacher on first use (the recipes' functions
    only load it, and name this command when it is not built)."""
    from edgedistill.recipes.embedded_teacher import ensure_embedded_teacher

    ensure_embedded_teacher(name)


def _embedded_teacher(args) -> int:
    from edgedistill.models.teacher import EMBEDDED_TEACHER, embedded_teacher_path
    from edgedistill.recipes.embedded_teacher import build_embedded_teacher, ensure_embedded_teacher

    if args.rebuild:
        build_embedded_teacher()
    else:
        ensure_embedded_teacher(EMBEDDED_TEACHER)
    print(embedded_teacher_path())
    return 0


def _students(args) -> int:
    from edgedistill.models.student import PRESET_HELP, preset_table
    from edgedistill.models.teacher import find_speech_config
    _build_embedded_teacher_if_named(args.teacher)
    t_cfg = find_speech_config(args.teacher)[2]  # the same lookup and errors as `distill`
    from transformers import AutoModel
    import torch

    with torch.device("meta"):
        if t_cfg.model_type == "whisper":  # the encoder is the teacher
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            t_params = sum(p.numel() for p in WhisperEncoder(t_cfg).parameters())
        else:
            t_params = sum(p.numel() for p in AutoModel.from_config(t_cfg).parameters())
    rows = preset_table(t_cfg)
    if args.json:
        print(json.dumps({"teacher_params": t_params, "presets": rows}, indent=1))
        return 0
    print(f"teacher {args.teacher}: {t_cfg.num_hidden_layers} x {t_cfg.hidden_size}, "
          f"{t_params:,} parameters")
    print(f"{'preset':<24}{'layers':>7}{'hidden':>8}{'ffn':>7}{'heads':>7}  {'cnn':<30}{'params':>13}{'% teacher':>11}")
    for r in rows:
        print(f"{r['preset']:<24}{r['layers']:>7}{r['hidden']:>8}{r['ffn']:>7}{r['heads']:>7}  "
              f"{r['cnn']:<30}{r['params']:>13,}{100 * r['params'] / t_params:>10.1f}%")
    print("\n" + "\n".join(f"{name:<14}{what}" for name, what in PRESET_HELP.items()))
    print("+thin_cnn: the same shape with a FitHuBERT-style thin CNN (student.thin_cnn=true)")
    return 0


def _corpus(args) -> int:
    from edgedistill.data.corpus import build_corpus, parse_corpus_spec

    try:
        cfg = parse_corpus_spec(args.spec)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    print(build_corpus(cfg, root=args.root, progress=True))
    return 0


_STAGE_CONFIGS = {"run": "edgedistill.recipes.run_config:RunConfig",
                  "distill": "edgedistill.recipes.distill_config:DistillConfig",
                  "finetune": "edgedistill.recipes.finetune_config:FinetuneConfig"}


def _config(args) -> int:
    """Every key of a recipe (or of a stage's --config file) with its value, default and help."""
    import dataclasses
    import importlib

    from edgedistill.config import describe, load_config, to_dict

    if args.recipe in _STAGE_CONFIGS:
        module, name = _STAGE_CONFIGS[args.recipe].split(":")
        cls, path = getattr(importlib.import_module(module), name), None
    else:
        from edgedistill.recipes.run import RunConfig, recipe_path

        cls, path = RunConfig, recipe_path(args.recipe)
    cfg = load_config(cls, path, args.overrides)
    values = _flatten(to_dict(cfg))
    rows = [{"key": k, "value": values.get(k), "default": to_dict(d) if dataclasses.is_dataclass(d) else d,
             "help": h} for k, d, h in describe(cls)]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    print(f"# {path or args.recipe}: every key, its value here and its default (* where they differ). "
          "Set one with key=value after the command.")
    for r in rows:
        changed = "*" if r["value"] != r["default"] else " "
        default = "" if not changed.strip() else f"  (default: {_show(r['default'])})"
        print(f"{changed} {r['key']} = {_show(r['value'])}{default}\n      {r['help']}")
    return 0


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        out[f"{prefix}{k}"] = v
    return out


def _show(value) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)
