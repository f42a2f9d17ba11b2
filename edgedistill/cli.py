"""Distil speech SSL models into small keyword-spotting and speaker-verification students.

Commands: `demo`, `run`, `distill`, `finetune`, `evaluate`, `evaluate-stream`, `export`,
`quantize`, `students`, `corpus`. Every stage takes `--config FILE.yaml` and `key=value` overrides (dotted for nested
fields: `student.thin_cnn=true`), before or after the options, in any order.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


from edgedistill.config import ConfigError  # noqa: E402 (torch-free)
from edgedistill.errors import CorruptCheckpointError, ExportError, QuantizeError  # noqa: E402 (torch-free)


def _distill(args) -> int:
    from edgedistill.config import load_config
    from edgedistill.recipes.distill_config import DistillConfig
    from edgedistill.recipes.distill import distill

    values = {"teacher": args.teacher, "data": args.data, "out": args.out, "text_teacher": args.text_teacher}
    if args.student:
        values["student"] = {"preset": args.student}
    cfg = load_config(DistillConfig, args.config, args.overrides, **values)
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
    summary = finetune(cfg, resume=args.resume, stop_after=args.stop_after, overwrite=args.overwrite)
    if not summary.get("main_process", True):
        return 0
    if not summary["finished"]:
        print(f"stopped at step {summary['steps_done']}; continue with the same command and --resume")
        return 0
    val = summary["val"] or {}
    print(f"model saved to {cfg.out}/model (selected at step {summary['best_step']} on "
          f"'{cfg.val_split}' by {cfg.select_metric}): KWS accuracy {val.get('kws_accuracy', float('nan')):.4f}, "
          f"SV EER {val.get('sv_eer', float('nan')):.4f}, minDCF(0.01) {val.get('sv_min_dcf', float('nan')):.4f}")
    return 0


def _evaluate(args) -> int:
    from edgedistill.recipes.evaluate import evaluate

    r = evaluate(args.model, args.data, args.split, args.out, args.trials, args.seed, args.batch_size)
    keys = ("clips", "speakers", "kws_accuracy", "sv_eer", "sv_min_dcf", "sv_min_dcf_p0.05", "trials")
    print(json.dumps({k: r[k] for k in keys if k in r}, indent=1))
    if args.out:
        print(f"full report: {args.out}")
    return 0


def _evaluate_stream(args) -> int:
    from edgedistill.data.layouts import resolve_labelled, stream_noise
    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.reporting.tables import stream_note, stream_table
    from edgedistill.runtime.evaluate import evaluate_stream
    from edgedistill.reporting.plots import plot_stream_det

    if not str(args.model).endswith(".onnx"):
        raise ConfigError(f"--model {args.model}: evaluate-stream runs the exported .onnx file you deploy "
                          "(edgedistill export writes it)")
    targets = [k for k in args.keywords.split(",") if k]
    noise_dir, noise = stream_noise(args.data, args.split, args.noise)
    r = evaluate_stream(args.model, resolve_labelled(args.data, args.split), targets, args.seconds, args.seed,
                        threads=args.threads, snr_db=args.snr_db, noise=noise, enroll_clips=args.enroll_clips)
    r.update(model=str(args.model), data=str(args.data), split=args.split, machine=machine_info(),
             noise=noise_dir, command=" ".join(["edgedistill"] + sys.argv[1:]))
    md = ["# Continuous listening", "", f"`{r['command']}`", "", stream_note(r, args.split, args.data), "",
          *stream_table({Path(args.model).name: r})]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        r["plot"] = str(plot_stream_det({Path(args.model).name: r["curve"]}, out / "frr_vs_fa_per_hour.png"))
        md += ["", f"![FRR vs FA/h]({Path(r['plot']).name})"]
        write_report(out / "stream_report", r, md)
    else:
        print("\n".join(md))
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
    from edgedistill.recipes.run import RunConfig, recipe_path, run

    values = {"out": getattr(args, "out", None), "teacher": getattr(args, "teacher", None)}
    extra = [f"distill.text_teacher={args.text_teacher}"] if args.text_teacher else []
    cfg = load_config(RunConfig, recipe_path(args.recipe), extra + args.overrides, **values)
    report = run(cfg, overwrite=args.overwrite)
    print(f"\nreport: {cfg.out}/report.md, {cfg.out}/report.json; device kit: {cfg.out}/export")
    return 0 if report else 1


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
    from edgedistill.recipes.embedded_teacher import ensure_embedded_teacher

    ensure_embedded_teacher(args.teacher)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgedistill", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("distill", help="layer-wise distillation of a student from a teacher")
    d.add_argument("--config", help="YAML config (a DistillConfig written out)")
    d.add_argument("--teacher", help="HF hub id, local folder, builtin:* or embedded (the demo's, built once into the cache)")
    d.add_argument("--student", help="student preset: distilhubert, edge, deep, wide, custom (edgedistill students)")
    d.add_argument("--data", help="'embedded', a manifest CSV, or a folder")
    d.add_argument("--out", help="output folder")
    d.add_argument("--text-teacher", help="text encoder (HF id, folder, builtin:bert-tiny) for text-informed "
                   "distillation; weights: text_weight=, global_weight=, local_weight=, quantity_weight=, ...")
    d.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    d.add_argument("--stop-after", type=int, help="stop after this many steps (resumable)")
    d.add_argument("--overwrite", action="store_true", help="replace a finished or different run in --out")
    d.add_argument("overrides", nargs="*", help="key=value config overrides")
    d.set_defaults(func=_distill)

    f = sub.add_parser("finetune", help="joint KWS + SV fine-tuning of a student (or teacher)")
    f.add_argument("--config", help="YAML config (a FinetuneConfig written out)")
    f.add_argument("--model", help="distill --out folder, student folder, HF id/path or builtin:*")
    f.add_argument("--data", help="labelled data: 'embedded', manifest, folder, speech_commands:DIR")
    f.add_argument("--sv-data", help="optional speaker data for SV: manifest, folder or voxceleb:DIR")
    f.add_argument("--out", help="output folder")
    f.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    f.add_argument("--stop-after", type=int, help="stop after this many steps (resumable)")
    f.add_argument("--overwrite", action="store_true", help="replace a finished or different run in --out")
    f.add_argument("overrides", nargs="*", help="key=value config overrides")
    f.set_defaults(func=_finetune)

    e = sub.add_parser("evaluate", help="KWS accuracy, SV EER and minDCF of a fine-tuned model")
    e.add_argument("--model", required=True, help="a finetune --out folder (or its model/), or an exported .onnx "
                                                   "(scored with onnxruntime: the file you deploy)")
    e.add_argument("--data", required=True, help="manifest, folder, embedded, speech_commands:DIR, voxceleb:DIR")
    e.add_argument("--split", help="split to evaluate (default: every row)")
    e.add_argument("--out", help="write the full report (JSON) here")
    e.add_argument("--trials", type=int, default=20_000, help="SV trials to draw (half target)")
    e.add_argument("--seed", type=int, default=0, help="seed of the trials")
    e.add_argument("--batch-size", type=int, default=32)
    e.set_defaults(func=_evaluate)

    es = sub.add_parser("evaluate-stream", help="continuous listening: FRR at fixed false alarms per hour")
    es.add_argument("--model", required=True, help="an exported .onnx model (the file you deploy)")
    es.add_argument("--data", required=True, help="labelled clips: manifest, folder, embedded, speech_commands:DIR")
    es.add_argument("--split", default="test", help="split the stream is built from")
    es.add_argument("--keywords", required=True, help="comma-separated target keywords")
    es.add_argument("--seconds", type=float, default=600.0, help="stream length in seconds")
    es.add_argument("--seed", type=int, default=0, help="seed of the stream")
    es.add_argument("--snr-db", type=float, default=20.0, help="background noise level")
    es.add_argument("--noise", help="folder of background recordings under the stream (their part for the split); "
                                    "default: the data's +silence= folder, else synthetic noise")
    es.add_argument("--enroll-clips", type=int, default=3,
                    help="enrol every speaker from this many non-target clips (left out of the stream) and "
                         "report speaker-gating figures; 0: no enrolment")
    es.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    es.add_argument("--out", help="folder for stream_report.json/.md and the FRR vs FA/h plot")
    es.set_defaults(func=_evaluate_stream)

    from edgedistill.deploy.quantize import MODES  # torch-free

    def quant_args(q):
        q.add_argument("--quantize", help=f"{', '.join(MODES)} "
                       "(default: int8 with --calibration, else int8-dynamic)")
        q.add_argument("--target", default="auto", help="auto, x86-avx2, x86-avx512-vnni, arm64")
        q.add_argument("--calibration", help="calibration audio (manifest, folder, embedded) for int8 modes")
        q.add_argument("--eval-data", help="labelled data to compare float and quantized task metrics on")
        q.add_argument("--eval-split", default="val", help="split of --eval-data")
        q.add_argument("--sensitivity", type=float, metavar="BUDGET",
                       help="keep the costliest nodes in float until accuracy lost + EER gained <= BUDGET")
        q.add_argument("overrides", nargs="*", help="key=value settings of the scheme (e.g. calibration_clips=32)")

    x = sub.add_parser("export", help="ONNX export (+ optional quantization) of a fine-tuned model or backbone")
    x.add_argument("--model", required=True, help="finetune --out (or its model/), or a backbone folder")
    x.add_argument("--out", required=True, help="output folder (model.fp32.onnx, model.MODE.onnx)")
    x.add_argument("--hidden-states", action="store_true", help="backbone export: also output all hidden states")
    x.add_argument("--overwrite", action="store_true", help="replace another model's export in --out")
    quant_args(x)
    x.set_defaults(func=_export)

    q = sub.add_parser("quantize", help="quantize an exported ONNX model")
    q.add_argument("--model", required=True, help="a float .onnx file")
    q.add_argument("--out", help="output folder (default: next to the model)")
    quant_args(q)
    q.set_defaults(func=_quantize)

    r = sub.add_parser("run", help="the whole pipeline from a recipe: distill, finetune, export, benchmark")
    r.add_argument("recipe", help="YAML recipe (a RunConfig written out; see configs/), or the name of a shipped "
                                  "one: demo, arabic_speech_commands, hubert_base")
    r.add_argument("--text-teacher", help="text encoder for text-informed distillation (distill.text_teacher)")
    r.add_argument("--overwrite", action="store_true",
                   help="redo finished stages whose config changed, or replace a different run in out=")
    r.add_argument("overrides", nargs="*", help="key=value overrides, e.g. distill.steps=1000")
    r.set_defaults(func=_run)

    dm = sub.add_parser("demo", help="the whole pipeline on the embedded corpus, a few minutes on a CPU")
    dm.add_argument("--teacher", help="a pretrained teacher (HF id or folder) instead of the embedded one")
    dm.add_argument("--out", default="runs/demo", help="run folder")
    dm.add_argument("--text-teacher", help="text encoder for text-informed distillation (distill.text_teacher)")
    dm.add_argument("--overwrite", action="store_true",
                    help="redo finished stages whose config changed, or replace a different run in --out")
    dm.add_argument("overrides", nargs="*", help="key=value overrides")
    dm.set_defaults(func=_run, recipe="demo")

    s = sub.add_parser("students", help="list student presets and their sizes for a teacher")
    s.add_argument("--teacher", default="builtin:hubert-base-random",
                   help="HF id, folder, builtin:* or embedded (default: HuBERT Base's shape)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_students)

    et = sub.add_parser("embedded-teacher", help="build (once) the embedded teacher, the demo's, into the cache")
    et.add_argument("--rebuild", action="store_true", help="build it again even if this machine has it")
    et.set_defaults(func=_embedded_teacher)

    c = sub.add_parser("corpus", help="generate (or find) the embedded corpus; prints its manifest")
    c.add_argument("spec", nargs="?", default="embedded",
                   help="'embedded' (the default corpus) or 'embedded:key=value,...' (another one, e.g. "
                        "embedded:num_speakers=72,splits=64/8/0,seed=1)")
    c.add_argument("--root", help="cache folder (default ~/.cache/edgedistill or $EDGEDISTILL_CACHE)")
    c.set_defaults(func=_corpus)
    return p


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Options and `key=value` overrides in any order: argparse stops taking positionals once an
    option follows them, so the overrides it leaves over are collected here."""
    args, extra = parser.parse_known_args(argv)
    unknown = [x for x in extra if x.startswith("-") or "=" not in x]
    if unknown or (extra and not hasattr(args, "overrides")):
        # the command's own usage, not the top level's; `--key value` on a command of key=value settings
        # is named as the setting it looks like
        sub = next((a.choices[args.command] for a in parser._subparsers._group_actions
                    if getattr(args, "command", None) in (a.choices or {})), parser) if parser._subparsers else parser
        hint = ""
        flags = [x for x in unknown if x.startswith("--")]
        if flags and hasattr(args, "overrides"):
            at = extra.index(flags[0])
            value = extra[at + 1] if at + 1 < len(extra) and not extra[at + 1].startswith("-") else "VALUE"
            hint = (f" ({args.command} takes its settings as key=value: write {flags[0][2:].replace('-', '_')}={value}; "
                    f"`edgedistill {args.command} --help` lists its options)")
        sub.error(f"unrecognized arguments: {' '.join(unknown or extra)}{hint}")
    if extra:
        args.overrides = list(args.overrides or []) + extra
    return args


class _ConsoleHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it may be replaced after set-up)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def setup_logging(verbose: bool) -> None:
    """edgedistill's own messages (INFO and up) reach the console; other libraries speak only
    at WARNING (ERROR for the ONNX exporter's and quantizer's chatter) unless -v is given."""
    handler = _ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _ConsoleHandler)] + [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("edgedistill").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        for name in ("onnx_ir", "onnxscript", "torch.onnx"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # no "Loading weights" / "Writing model shards" bar per model load or save
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.verbose)
    from edgedistill.audio import AudioError
    from edgedistill.data.manifest import ManifestError
    from edgedistill.runtime.metadata import NotAnOnnxModelError

    try:
        return args.func(args)
    except (ConfigError, ManifestError, AudioError, FileNotFoundError, ExportError, QuantizeError,
            CorruptCheckpointError, NotAnOnnxModelError) as exc:
        print(f"edgedistill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
