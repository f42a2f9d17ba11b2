"""Recipe: ONNX export of a fine-tuned model, its quantized variants and the device kit.

    edgedistill export --model runs/demo/finetune --out deploy --quantize int8 --calibration DATA
    edgedistill quantize --model deploy/model.fp32.onnx --quantize int8-dynamic --eval-data DATA

The float export is parity-checked against PyTorch; a quantized variant can be scored against
it on labelled clips (`eval_data`), or searched node by node until it costs at most a budget
(`sensitivity`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.config import BOOKKEEPING, ConfigError
from edgedistill.data.layouts import resolve_labelled
from edgedistill.deploy.kit import write_device_kit
from edgedistill.deploy.onnx import claim_export_folder, export_onnx
from edgedistill.deploy.quantize import MODES, QuantScheme, quantize_model, scheme_with_calibration
from edgedistill.deploy.search_memo import cache_folder
from edgedistill.deploy.sensitivity import sensitivity_search
from edgedistill.deploy.trained_ranges import RANGES_FILE


@dataclass
class ExportStage:
    """The export stage of `edgedistill run`: the student in fp32 and each quantized mode."""

    quantize: list[str] = field(default_factory=lambda: ["int8"], metadata={
        "help": f"quantized variants of the student, among {', '.join(MODES)}"})
    calibration_clips: int = field(default=64, metadata={"help": "calibration clips from the train split"})
    kws_budget: float | None = field(default=None, metadata={
        "help": "KWS accuracy a quantized student may lose against its fp32 export on the fine-tuning's "
                "validation split (0.001 = 0.1 points): nodes are kept in float until it holds (sensitivity "
                "search, with eer_budget); null: plain post-training quantization"})
    eer_budget: float | None = field(default=None, metadata={
        "help": "SV EER a quantized student may gain against fp32 (0.005 = 0.5 points), with kws_budget"})
    quantize_teacher: bool = field(default=True, metadata={
        "help": "also quantize the teacher with every mode: the 'teacher int8' rows, what a user gets "
                "without distilling"})
    teacher_budget: bool = field(default=True, metadata={
        "help": "the teacher's quantized files get the student's sensitivity search too (the same "
                "quantization and budget, where kws_budget / eer_budget are set); false: plain "
                "post-training, every node quantized"})
    search_cache: bool = field(default=True, metadata={"resume": BOOKKEEPING,
        "help": "keep the sensitivity search's measurements in the cache folder ($EDGEDISTILL_CACHE/search, "
                "by float file, scheme, clips, trials and seed): runs that search the same teacher measure it "
                "once, and runs side by side share the work; false: in the stage folder until the search ends"})

    def __post_init__(self):
        unknown = [m for m in self.quantize if m not in MODES]
        if unknown:
            raise ValueError(f"export.quantize {unknown}: choose among {sorted(MODES)} (or [] for fp32 only)")
        if len(set(self.quantize)) != len(self.quantize):
            raise ValueError(f"export.quantize {self.quantize} names a mode twice")
        if self.calibration_clips < 1:
            raise ValueError("export.calibration_clips must be >= 1")
        for name in ("kws_budget", "eer_budget"):
            if getattr(self, name) is not None and not 0 < getattr(self, name) < 1:
                raise ValueError(f"export.{name} is a fraction in (0, 1), e.g. 0.001 for 0.1 points")

    def searched(self) -> bool:
        """Whether quantized files go through the sensitivity search (a budget is set)."""
        return self.kws_budget is not None or self.eer_budget is not None

    def scheme(self, mode: str, calibration: str, calibration_split: str) -> QuantScheme:
        """The quantization scheme of `mode` as this stage runs it (calibrated on `calibration_clips`
        clips of `calibration_split` where the mode calibrates)."""
        return scheme_with_calibration(mode, calibration=calibration, calibration_split=calibration_split,
                                       calibration_clips=self.calibration_clips)


def export(model: str, out: str | Path, *, hidden_states: bool = False, overwrite: bool = False,
           quantize: QuantScheme | None = None, eval_data: str | None = None, eval_split: str = "val",
           sensitivity: float | None = None) -> dict:
    """Exports `model` (a finetune folder or a backbone) to `out`/model.fp32.onnx, optionally a
    quantized variant, and the device kit. Returns {"fp32": export summary, "quantized": ...}."""
    out = Path(out)
    claim_export_folder(model, out, overwrite=overwrite)
    r = export_onnx(model, out / "model.fp32.onnx", hidden_states=hidden_states)
    print(f"exported {r['path']} ({r['file_bytes'] / 1e6:.2f} MB, parity with PyTorch "
          f"{r['parity_max_abs_diff']:.1e})")
    result = {"fp32": r}
    if quantize is not None:
        quantize = with_trained_ranges(quantize, model)
        result["quantized"] = quantize_file(r["path"], out, quantize, eval_data, eval_split, sensitivity)
    write_device_kit(out)
    best = Path(result.get("quantized", r)["path"])
    print(f"device kit in {out}: copy the folder to the device, then `cd {out.name} && "
          f"python infer.py {best.name} clip.wav`")
    return result


def with_trained_ranges(scheme: QuantScheme, model: str | Path) -> QuantScheme:
    """`scheme` with a quantization-aware model's trained conv ranges (its `qat_ranges.json`)
    where the scheme takes them (`int8`) and names none: its int8 file then rounds as it trained."""
    from edgedistill.models.multitask import find_multitask_folder

    folder = find_multitask_folder(model, required=False)
    if folder is None or not (folder / RANGES_FILE).is_file() or not hasattr(scheme, "ranges") or scheme.ranges:
        return scheme
    return dataclasses.replace(scheme, ranges=str(folder / RANGES_FILE))


def quantize_file(float_path: str | Path, out_dir: str | Path, cfg: QuantScheme, eval_data: str | None = None,
                  eval_split: str = "val", sensitivity: float | None = None) -> dict:
    """Quantizes an exported float model into `out_dir`/NAME.MODE.onnx (+ NAME.MODE.json with
    the summary); with `eval_data`, the float and quantized task metrics side by side; with
    `sensitivity` (a budget on accuracy lost + EER gained), nodes kept in float until it is met
    (each measurement kept in the cache folder: see `sensitivity_search`'s `shared`)."""
    from edgedistill.evaluation.scores import compare, evaluate_onnx

    name = Path(float_path).stem.replace(".fp32", "")
    dst = Path(out_dir) / f"{name}.{cfg.mode}.onnx"
    clips = resolve_labelled(eval_data, eval_split) if eval_data else None
    if sensitivity is not None:
        if clips is None:
            raise ConfigError("--sensitivity needs --eval-data to measure the accuracy cost")
        result = sensitivity_search(float_path, dst, cfg, clips, budget=sensitivity,
                                    shared=cache_folder())  # a stopped search resumes
        print(sensitivity_sentence(result))
    else:
        result = quantize_model(float_path, dst, cfg)
    if clips is not None:
        base, quant = evaluate_onnx(float_path, clips), evaluate_onnx(dst, clips)
        result["evaluation"] = {"data": eval_data, "split": eval_split, "float": _scalars(base),
                                "quantized": _scalars(quant), "change": compare(base, quant)}
    print(f"{result['mode']} ({result['target']}): {dst}, {result['file_bytes'] / 1e6:.2f} MB "
          f"({100 * result['file_bytes'] / result['float_file_bytes']:.0f}% of fp32)")
    if "evaluation" in result:
        ev = result["evaluation"]
        print(f"  KWS accuracy {100 * ev['float'].get('kws_accuracy', float('nan')):.2f}% -> "
              f"{100 * ev['quantized'].get('kws_accuracy', float('nan')):.2f}%, SV EER "
              f"{100 * ev['float'].get('sv_eer', float('nan')):.2f}% -> "
              f"{100 * ev['quantized'].get('sv_eer', float('nan')):.2f}%, "
              f"top-1 agreement {100 * ev['change']['top1_agreement']:.2f}%")
    (Path(out_dir) / f"{name}.{cfg.mode}.json").write_text(json.dumps(result, indent=1, default=float))
    return result


def sensitivity_sentence(result: dict) -> str:
    """What a sensitivity search found, in words (console and reports)."""
    kept = f"{len(result['kept_float'])} node(s) kept in float" + float_words(result)
    if result.get("kws_budget") is not None or result.get("eer_budget") is not None:
        change = (f"KWS {100 * result['kws_accuracy_change']:+.2f} points, EER {100 * result['sv_eer_change']:+.2f} "
                  "points vs fp32")
        return (f"sensitivity: {'within budget' if result['budget_met'] else 'BUDGET MISSED'}: {change}, {kept}")
    if result["budget_met"]:
        return (f"sensitivity: cost {100 * result['cost_final']:.2f} points within budget "
                f"{100 * result['budget']:.2f}, {kept}")
    return (f"sensitivity: BUDGET MISSED: cost {100 * result['cost_final']:.2f} points > budget "
            f"{100 * result['budget']:.2f} "
            f"with {kept} (every helpful node excluded): the quantized model loses more than asked; "
            "keep the float model, raise the budget, or fine-tune with quantization in mind")


def export_variants(model: str, folder: Path, stage: ExportStage, calibration: str, calibration_split: str,
                    eval_split: str, name: str = "student", seed: int = 0, num_trials: int = 20_000,
                    budget: bool = True, reference: str | None = None, against: str = "fp32") -> dict:
    """A run's export of one model: fp32 and every mode of `stage.quantize` in `folder` as
    model.fp32.onnx / model.MODE.onnx (NAME.* for another name than student). With the stage's budgets (and `budget`), each mode runs
    the sensitivity search on `eval_split` of the data. Returns {"NAME-fp32": path,
    "NAME-MODE": path, ..., "sensitivity": {MODE: what the search found}}. `reference`: the float
    file the budgets are held against where not this model's own fp32 export (`against` names it
    in the report: a quantization-aware student's int8 against the plain student's fp32)."""
    stem = "model" if name == "student" else name  # the deployed files keep the kit's names
    files = {f"{name}-fp32": export_onnx(model, folder / f"{stem}.fp32.onnx")["path"]}
    searched = budget and stage.searched()
    clips = resolve_labelled(calibration, eval_split) if searched else None
    found = {}
    for mode in stage.quantize:
        q = with_trained_ranges(stage.scheme(mode, calibration, calibration_split), model)
        dst = folder / f"{stem}.{mode}.onnx"
        if searched:
            r = sensitivity_search(files[f"{name}-fp32"], dst, q, clips, kws_budget=stage.kws_budget,
                                   eer_budget=stage.eer_budget, num_trials=num_trials, seed=seed,
                                   memo=folder / f"{stem}.{mode}.search.json",  # a stopped run resumes it
                                   shared=cache_folder() if stage.search_cache else None,
                                   reference=reference)
            found[mode] = {k: r[k] for k in ("budget_met", "kws_budget", "eer_budget", "kws_accuracy_change",
                                             "sv_eer_change", "cost_all_quantized", "cost_final", "kept_float",
                                             "float_latency")}
            found[mode]["split"] = eval_split
            found[mode]["against"] = against
            print(f"[export] {name} {mode}: " + sensitivity_sentence(r))
        else:
            r = quantize_model(files[f"{name}-fp32"], dst, q)
        files[f"{name}-{mode}"] = r["path"]
    return {**files, "sensitivity": found} if found else files


def float_words(r: dict) -> str:
    """The nodes a search kept in float and what they cost in latency, in words ('' for none)."""
    if not r.get("kept_float"):
        return ""
    t = r.get("float_latency")
    cost = (f": {t['cost_ms']:+.2f} ms p50 ({t['p50_ms']:.2f} against {t['all_int8_p50_ms']:.2f} with every node "
            f"in int8; {t['seconds']:g} s of audio, {t['threads']} thread, timed side by side)") if t else ""
    return f" ({', '.join(r['kept_float'])}{cost})"


PTQ_MISSED = "post-training quantization cannot meet it for this model"
QAT_MISSED = "quantization-aware training, with any of its nodes in float, did not meet it for this model"


def budget_notes(sensitivity: dict) -> list[str]:
    """The export stage's sensitivity results in words, for the run report ({MODE: result} for the
    student, {"teacher MODE": result} for the teacher, {"qat MODE": result} for the quantization-aware
    student, whose misses are not post-training quantization's)."""
    lines = []
    for mode, r in sensitivity.items():
        change = (f"KWS accuracy {100 * r['kws_accuracy_change']:+.2f} points, EER {100 * r['sv_eer_change']:+.2f} "
                  f"points against {r.get('against', 'fp32')} on '{r['split']}'")
        kept = f"{len(r['kept_float'])} node(s) kept in float" + float_words(r)
        limits = ", ".join(f"{what} {100 * r[key]:.2f} points" for what, key in (("KWS", "kws_budget"),
                                                                                  ("EER", "eer_budget")) if r[key])
        who = mode if mode.startswith("teacher ") else f"student {mode}"
        if r["budget_met"]:
            lines.append(f"- {who}: within the budget ({limits}): {change}; {kept}.")
        else:
            how = QAT_MISSED if mode.startswith("qat ") else PTQ_MISSED
            lines.append(f"- {who}: **budget missed** ({limits}): {change} with {kept}, every node "
                         f"that helped; every candidate node in float missed it too: {how}.")
    return lines


def _scalars(report: dict) -> dict:
    return {k: v for k, v in report.items() if not isinstance(v, (np.ndarray, list))}
