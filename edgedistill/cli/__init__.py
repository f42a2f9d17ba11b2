"""Distil speech SSL models into small keyword-spotting and speaker-verification students.

Commands: `demo`, `run`, `distill`, `finetune`, `evaluate`, `evaluate-stream`, `export`,
`quantize`, `calibrate`, `students`, `corpus`, `config`, `embedded-teacher`. Every stage takes `--config FILE.yaml` and `key=value` overrides (dotted for nested
fields: `student.thin_cnn=true`), before or after the options, in any order.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


from edgedistill.config import ConfigError  # noqa: E402 (torch-free)
from edgedistill.errors import CorruptCheckpointError, ExportError, QuantizeError  # noqa: E402 (torch-free)
from edgedistill.cli import commands  # noqa: E402


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" not in text and action.default is not None and action.default is not argparse.SUPPRESS \
                and action.option_strings and not isinstance(action.default, bool):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgedistill", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add(*a, formatter_class=_HelpFormatter, **kw)
    settings = "`edgedistill config {}` lists every key with its default and help"

    cf = sub.add_parser("config", help="every key of a recipe (or of a stage) with its value, default and help")
    cf.add_argument("recipe", help="a recipe file or shipped name (demo, arabic_speech_commands, ...), or a stage: "
                                   f"{', '.join(commands._STAGE_CONFIGS)} (the keys of its --config file)")
    cf.add_argument("--json", action="store_true", help="print JSON")
    cf.add_argument("overrides", nargs="*", help="key=value overrides, shown resolved")
    cf.set_defaults(func=commands._config)

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
    d.add_argument("overrides", nargs="*", help="key=value config overrides; " + settings.format("distill"))
    d.set_defaults(func=commands._distill)

    f = sub.add_parser("finetune", help="joint KWS + SV fine-tuning of a student (or teacher)")
    f.add_argument("--config", help="YAML config (a FinetuneConfig written out)")
    f.add_argument("--model", help="distill --out folder, student folder, HF id/path or builtin:*")
    f.add_argument("--data", help="labelled data: 'embedded', manifest, folder, speech_commands:DIR")
    f.add_argument("--sv-data", help="optional speaker data for SV: manifest, folder or voxceleb:DIR")
    f.add_argument("--out", help="output folder")
    f.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    f.add_argument("--stop-after", type=int, help="stop after this many steps (resumable)")
    f.add_argument("--overwrite", action="store_true", help="replace a finished or different run in --out")
    f.add_argument("overrides", nargs="*", help="key=value config overrides; " + settings.format("finetune"))
    f.set_defaults(func=commands._finetune)

    e = sub.add_parser("evaluate", help="KWS accuracy, SV EER and minDCF of a fine-tuned model")
    e.add_argument("--model", required=True, help="a finetune --out folder (or its model/), or an exported .onnx "
                                                   "(scored with onnxruntime: the file you deploy)")
    e.add_argument("--data", required=True, help="manifest, folder, embedded, speech_commands:DIR, voxceleb:DIR")
    e.add_argument("--split", help="split to evaluate (default: every row)")
    e.add_argument("--out", help="write the full report (JSON) here")
    e.add_argument("--trials", type=int, default=20_000, help="SV trials to draw (half target)")
    e.add_argument("--seed", type=int, default=0, help="seed of the trials")
    e.add_argument("--batch-size", type=int, default=32)
    e.set_defaults(func=commands._evaluate)

    def stream_args(q, split: str, split_help: str, model_help: str):
        """The options of a command that builds a stream from labelled clips and runs a model over it."""
        q.add_argument("--model", required=True, help=model_help)
        q.add_argument("--data", required=True, help="labelled clips: manifest, folder, embedded, speech_commands:DIR")
        q.add_argument("--split", default=split, help=split_help)
        q.add_argument("--keywords", required=True, help="comma-separated target keywords")
        q.add_argument("--seed", type=int, default=0, help="seed of the stream")
        q.add_argument("--snr-db", type=float, default=20.0, help="background noise level")
        q.add_argument("--noise", help="folder of background recordings under the stream (their part for the split); "
                                       "default: the data's +silence= folder, else synthetic noise")
        q.add_argument("--threads", type=int, default=1, help="onnxruntime threads")

    es = sub.add_parser("evaluate-stream", help="continuous listening: FRR at fixed false alarms per hour")
    stream_args(es, "test", "split the stream is built from", "an exported .onnx model (the file you deploy)")
    es.add_argument("--seconds", type=float, default=600.0, help="stream length in seconds")
    es.add_argument("--enroll-clips", type=int, default=3,
                    help="enrol every speaker from this many non-target clips (left out of the stream) and "
                         "report speaker-gating figures; 0: no enrolment")
    es.add_argument("--negative-hours", type=float, default=0.0,
                    help="also count false alarms on this many hours of a second stream with no target word and "
                         "report misses at fixed FA/h with 95%% intervals (10 h gives figures worth comparing); "
                         "0: the keyword stream alone")
    es.add_argument("--windowed", action="store_true",
                    help="a streaming model (a micro student's) runs on each whole 1 s window from silence, as the "
                         "other models do, instead of stepping through the stream: what hearing the stream changes")
    es.add_argument("--out", help="folder for stream_report.json/.md and the FRR vs FA/h plot")
    es.set_defaults(func=commands._evaluate_stream)

    cal = sub.add_parser("calibrate", help="keyword thresholds at a target false-alarm rate, written into the .onnx")
    stream_args(cal, "val", "split the keyword-free stream is built from (not the report's)",
                "an exported .onnx model (rewritten with the thresholds)")
    cal.add_argument("--hours", type=float, default=10.0, help="hours of keyword-free stream")
    cal.add_argument("--target-fa-per-hour", type=float, default=0.5, help="false alarms per hour, all keywords")
    cal.set_defaults(func=commands._calibrate)

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
    x.set_defaults(func=commands._export)

    q = sub.add_parser("quantize", help="quantize an exported ONNX model")
    q.add_argument("--model", required=True, help="a float .onnx file")
    q.add_argument("--out", help="output folder (default: next to the model)")
    quant_args(q)
    q.set_defaults(func=commands._quantize)

    r = sub.add_parser("run", help="the whole pipeline from a recipe: distill, finetune, export, benchmark")
    r.add_argument("recipe", help="YAML recipe (a RunConfig written out; see configs/), or the name of a shipped "
                                  "one: demo, arabic_speech_commands, hubert_base")
    r.add_argument("--text-teacher", help="text encoder for text-informed distillation (distill.text_teacher)")
    r.add_argument("--overwrite", action="store_true",
                   help="redo finished stages whose config changed, or replace a different run in out=")
    r.add_argument("overrides", nargs="*", help="key=value overrides, e.g. distill.steps=1000; "
                   + settings.format("RECIPE"))
    r.set_defaults(func=commands._run)

    dm = sub.add_parser("demo", help="the whole pipeline on the embedded corpus, a few minutes on a CPU")
    dm.add_argument("--teacher", help="a pretrained teacher (HF id or folder) instead of the embedded one")
    dm.add_argument("--out", default="runs/demo", help="run folder")
    dm.add_argument("--text-teacher", help="text encoder for text-informed distillation (distill.text_teacher)")
    dm.add_argument("--overwrite", action="store_true",
                    help="redo finished stages whose config changed, or replace a different run in --out")
    dm.add_argument("overrides", nargs="*", help="key=value overrides; " + settings.format("demo"))
    dm.set_defaults(func=commands._run, recipe="demo")

    s = sub.add_parser("students", help="list student presets and their sizes for a teacher")
    s.add_argument("--teacher", default="builtin:hubert-base-random",
                   help="HF id, folder, builtin:* or embedded (default: HuBERT Base's shape)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=commands._students)

    et = sub.add_parser("embedded-teacher", help="build (once) the embedded teacher, the demo's, into the cache")
    et.add_argument("--rebuild", action="store_true", help="build it again even if this machine has it")
    et.set_defaults(func=commands._embedded_teacher)

    c = sub.add_parser("corpus", help="generate (or find) the embedded corpus; prints its manifest")
    c.add_argument("spec", nargs="?", default="embedded",
                   help="'embedded' (the default corpus) or 'embedded:key=value,...' (another one, e.g. "
                        "embedded:num_speakers=72,splits=64/8/0,seed=1)")
    c.add_argument("--root", help="cache folder (default ~/.cache/edgedistill or $EDGEDISTILL_CACHE)")
    c.set_defaults(func=commands._corpus)
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
    # the command as given (a script calling main(argv) is not its own command line)
    args.command_line = " ".join(["edgedistill", *(sys.argv[1:] if argv is None else argv)])
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
