"""Recipe: one command from a teacher to a benchmarked edge model.

    edgedistill run RECIPE.yaml [key=value ...]      edgedistill demo

Stages, each in its own folder of the run: teacher -> distill -> finetune -> export (+
quantize) [-> qat: quantization-aware fine-tuning, int8] [-> baseline] -> benchmark. With
`teacher: train` the teacher is a small HuBERT-shaped model trained here from random weights
(nothing can be downloaded offline); with a pretrained teacher, the teacher stage fine-tunes it
with the student's heads and recipe (the report's upper bound). Finished stages with the same
config are skipped, interrupted ones resume (`edgedistill.training.stages`).

Reading order: `run` (the stages in order), `stage_specs` (what each stage's hash is taken of),
then one function per stage. The config is `run_config.RunConfig`; what each stage gets is
`plan.plan(cfg)`. A recipe says only what differs from the stage defaults; the run sets each
stage's teacher, data and output folder itself, so a recipe that sets them is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import edgedistill
from edgedistill.config import ConfigError, stage_spec, to_dict
from edgedistill.recipes.plan import RunPlan, TeacherPlan, plan, teacher_has_cnn
from edgedistill.recipes.run_config import RUN_SETS, TRAIN_TEACHER, RunConfig, TeacherTraining, recipe_path

log = logging.getLogger(__name__)
__all__ = ["PATH_KEYS", "RUN_SETS", "TRAIN_TEACHER", "RunConfig", "RunPlan", "TeacherPlan", "TeacherTraining", "check_run",
           "plan", "recipe_path", "resolve_paths", "run", "teacher_has_cnn", "train_teacher"]


def run(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Runs (or resumes) the pipeline; returns the report dict (also in OUT/report.json).

    With `overwrite`, stages whose config changed are deleted and redone; without it such a
    run folder (e.g. another recipe's finished run) is refused before anything is deleted.
    The embedded teacher must be built already (`edgedistill embedded-teacher`; the CLI does it).
    """
    from edgedistill.recipes.distill import distill
    from edgedistill.recipes.finetune import finetune
    from edgedistill.training.stages import run_stage

    check_run(cfg)
    _check_teacher_is_there(cfg.teacher)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    p = plan(cfg)
    specs = stage_specs(cfg, p)

    def stage(name: str, fn, folder: str | None = None) -> dict:
        return run_stage(name, out / (folder or name), specs[name], fn, overwrite)

    if cfg.teacher_rows:
        stage("teacher", lambda: {"summary": train_teacher(p.teacher), "model": p.teacher.model})
    stage("distill", lambda: distill(p.distill, resume=True))
    stage("finetune", lambda: finetune(p.finetune, resume=True))
    files = stage("export", lambda: export_stage(cfg, p))
    if p.qat is not None:
        qat = stage("qat", lambda: qat_stage(cfg, p, files["student-fp32"]))
        files = {**files, "student-qat-int8": qat["student-qat-int8"],
                 "sensitivity": {**files.get("sensitivity", {}), **qat["sensitivity"]}}
    baseline = stage("baseline", lambda: baseline_stage(cfg, p)) if p.baseline is not None else None
    return stage("benchmark", lambda: benchmark_stage(cfg, p, files, baseline))


# Recipe keys that name files or folders to read (data specs: their paths), checked before any stage.
PATH_KEYS = ("data", "distill_data", "finetune.noise", "finetune.sv_data", "stream.noise")


def check_run(cfg: RunConfig, recipe: str | Path | None = None) -> None:
    """What can be checked before any stage starts (the CLI calls it before it builds anything):
    every path the run will read (`PATH_KEYS`; a relative one is looked up next to the `recipe`
    file first, then in the working directory), and the streaming keywords."""
    resolve_paths(cfg, recipe)
    _check_stream_keywords(cfg)
    if cfg.teacher != TRAIN_TEACHER and cfg.teacher_training != TeacherTraining():
        log.warning("teacher_training is not used: the teacher is the pretrained '%s' (it applies only with "
                    "teacher: %s)", cfg.teacher, TRAIN_TEACHER)


def stage_specs(cfg: RunConfig, p: RunPlan) -> dict[str, dict]:
    """What each stage's hash is taken of: its own settings (those that change a result, and only
    where they differ from the defaults: a field added later leaves finished stages alone) and
    the specs of the stages it reads."""
    from edgedistill.models.teacher import EMBEDDED_TEACHER, embedded_teacher_provenance

    # The teacher's own fine-tuning config (not the student's: student seeds share one teacher),
    # without its folders (a finished teacher stage copied into another run is reused).
    teacher_ft = {k: v for k, v in stage_spec(p.teacher.finetune).items() if k not in ("model", "out")}
    if cfg.teacher == TRAIN_TEACHER:
        teacher = {"data": cfg.data, "train": stage_spec(cfg.teacher_training), "finetune": teacher_ft}
        upstream = teacher
    else:
        # The embedded teacher by its weights too: another release's is another teacher.
        upstream = {"teacher": cfg.teacher, **({"sha256": embedded_teacher_provenance()["sha256"]}
                                               if cfg.teacher == EMBEDDED_TEACHER else {})}
        teacher = {**upstream, "data": cfg.data, "finetune": teacher_ft}
    specs = {"teacher": teacher, "distill": {"up": upstream, "cfg": stage_spec(p.distill)}}
    specs["finetune"] = {"up": specs["distill"], "cfg": stage_spec(p.finetune),
                         **({"soft_targets": teacher} if cfg.soft_targets else {})}
    searched = cfg.export.teacher_budget and cfg.export.quantize_teacher and cfg.export.searched()
    # The teacher's search is in the hash where it runs, and so is the search's version where one
    # runs (an export from before either is redone: v2 tries masked nodes together).
    search = {"search": 2} if cfg.export.searched() else {}
    st = cfg.stream
    calibrated = ({"calibrate": {"keywords": st.keywords, "hours": st.calibrate_hours, "seed": st.seed,
                                 "target": st.target_fa_per_hour, "snr_db": st.snr_db, "noise": st.noise}}
                  if st.keywords and st.calibrate_hours else {})
    specs["export"] = {"up": specs["finetune"], "cfg": stage_spec(cfg.export),
                       **({"teacher": teacher} if cfg.teacher_rows else {"teacher_rows": False}),
                       **({"teacher_searched": True} if searched else {}), **search, **calibrated}
    if p.qat is not None:
        # Its int8 file takes the trained conv ranges, and its budget is held against the student's
        # fp32 export, not its own (a qat stage from before either is redone).
        specs["qat"] = {"up": specs["distill"], "cfg": stage_spec(p.qat), "export": stage_spec(cfg.export),
                        "int8_ranges": "trained", **search, **calibrated,
                        **({"budget_against": "student fp32", "student": specs["finetune"]} if search else {})}
    if p.baseline is not None:
        specs["baseline"] = {"up": upstream, "student": stage_spec(cfg.distill.student),
                             "cfg": stage_spec(p.finetune), **calibrated}
    specs["benchmark"] = {"up": specs["export"], "cfg": stage_spec(cfg.benchmark), "baseline": specs.get("baseline"),
                          "stream": stage_spec(cfg.stream), **({"qat": specs["qat"]} if "qat" in specs else {})}
    return specs


def train_teacher(teacher: TeacherPlan) -> dict:
    """Trains (or resumes) the teacher of a plan (`plan(cfg).teacher`): a seeded random init
    where it is trained here, then each of its fine-tunings in turn; returns the last's summary."""
    from edgedistill.models.builders import save_small_hubert
    from edgedistill.recipes.finetune import finetune

    if (tt := teacher.init) is not None:
        save_small_hubert(teacher.cycles[0].model, tt.layers, tt.hidden, tt.cnn, seed=tt.seed)
    for c in teacher.cycles:
        summary = finetune(c, resume=True)
    return summary


def export_stage(cfg: RunConfig, p: RunPlan) -> dict:
    """The student's ONNX files (fp32 and each quantization, budgets searched) and device kit,
    and the teacher's files for its rows."""
    from edgedistill.deploy.kit import write_device_kit
    from edgedistill.recipes.export import export_variants

    out, e, ft = Path(cfg.out), cfg.export, cfg.finetune
    files = export_variants(str(out / "finetune" / "model"), out / "export", e, cfg.data, ft.train_split,
                            ft.val_split, seed=ft.seed, num_trials=cfg.benchmark.num_trials)
    write_device_kit(out / "export")
    if not cfg.teacher_rows:
        _calibrate_files(cfg, files)
        return files
    teacher_modes = dataclasses.replace(e, quantize=e.quantize if e.quantize_teacher else [])
    # searched with the teacher's own seed (its SV trials): student seeds that share one teacher
    # share its int8 file, and its search is measured once (the cache)
    teacher = export_variants(p.teacher.model, out / "benchmark_models", teacher_modes, cfg.data, ft.train_split,
                              ft.val_split, name="teacher", budget=e.teacher_budget, seed=p.teacher.finetune.seed,
                              num_trials=cfg.benchmark.num_trials)
    found = {f"teacher {mode}": r for mode, r in teacher.pop("sensitivity", {}).items()}
    files = {**files, **teacher, **({"sensitivity": {**files.get("sensitivity", {}), **found}} if found else {})}
    _calibrate_files(cfg, files)
    return files


def _calibrate_files(cfg: RunConfig, files: dict) -> None:
    """With `stream.keywords`, each exported file gets keyword thresholds calibrated on a
    keyword-free stream of the validation split (never the report's), at
    `stream.target_fa_per_hour`: the detector, `infer.py --stream` and `listen.py` use them."""
    from edgedistill.recipes.calibrate import calibrate

    st = cfg.stream
    if not st.keywords or not st.calibrate_hours:
        return
    for name, path in files.items():
        if isinstance(path, str) and path.endswith(".onnx"):
            print(f"[export] calibrating {name}: {', '.join(st.keywords)} on {st.calibrate_hours:g} h of "
                  f"'{cfg.finetune.val_split}' at {st.target_fa_per_hour:g} FA/h")
            calibrate(path, cfg.data, cfg.finetune.val_split, st.keywords, st.calibrate_hours, st.target_fa_per_hour,
                      seed=st.seed, noise=st.noise, snr_db=st.snr_db)


def qat_stage(cfg: RunConfig, p: RunPlan, student_fp32: str) -> dict:
    """Quantization-aware fine-tuning of the distilled student, exported in int8 (its budget held
    against the student's fp32 file)."""
    from edgedistill.recipes.export import export_variants
    from edgedistill.recipes.finetune import finetune

    out = Path(cfg.out)
    finetune(p.qat, resume=True)
    files = export_variants(str(out / "qat" / "ft" / "model"), out / "qat", dataclasses.replace(
        cfg.export, quantize=["int8"]), cfg.data, cfg.finetune.train_split, cfg.finetune.val_split,
        name="student-qat", seed=cfg.finetune.seed, num_trials=cfg.benchmark.num_trials,
        reference=student_fp32, against="student fp32")
    found = {f"qat {mode}": r for mode, r in files.get("sensitivity", {}).items()}
    _calibrate_files(cfg, {"student-qat-int8": files["student-qat-int8"]})
    return {"student-qat-int8": files["student-qat-int8"], "sensitivity": found}


def baseline_stage(cfg: RunConfig, p: RunPlan) -> dict:
    """The same student shape fine-tuned from random weights (no distillation): 'scratch fp32'."""
    from edgedistill.deploy.onnx import export_onnx
    from edgedistill.models.student import save_scratch_student
    from edgedistill.recipes.finetune import finetune

    out = Path(cfg.out)
    save_scratch_student(p.distill.teacher, cfg.distill.student, out / "baseline" / "init", cfg.distill.seed)
    summary = finetune(p.baseline, resume=True)
    model = str(out / "baseline" / "ft" / "model")
    onnx = export_onnx(model, out / "baseline" / "scratch.fp32.onnx")["path"]
    _calibrate_files(cfg, {"scratch-fp32": onnx})
    return {"summary": summary, "model": model, "onnx": onnx}


def benchmark_stage(cfg: RunConfig, p: RunPlan, files: dict, baseline: dict | None) -> dict:
    """Every file side by side on the benchmark split (and the stream), the report and plots,
    and the model card in the device kit."""
    from edgedistill.models.multitask import MultiTaskModel
    from edgedistill.models.student import count_parameters
    from edgedistill.models.teacher import EMBEDDED_TEACHER, embedded_teacher_summary
    from edgedistill.recipes.benchmark import benchmark
    from edgedistill.recipes.export import budget_notes
    from edgedistill.reporting.card import model_card

    out, student_model = Path(cfg.out), str(Path(cfg.out) / "finetune" / "model")
    models = (p.teacher.model, student_model) if cfg.teacher_rows else (student_model,)
    params = {m: count_parameters(MultiTaskModel.from_pretrained(m).backbone) for m in models}
    variants = [(k.replace("-", " ", 1), v, params[p.teacher.model]) for k, v in files.items() if k.startswith("teacher")]
    variants += [(k.replace("-", " ", 1), v, params[student_model]) for k, v in files.items() if k.startswith("student")]
    if baseline:
        variants.append(("scratch fp32", baseline["onnx"], params[student_model]))
    logs = {name: Path(c.out) / "train_log.jsonl" for name, c in zip(p.teacher.names, p.teacher.cycles)
            if cfg.teacher_rows}
    logs |= {"distill": out / "distill" / "train_log.jsonl", "finetune": out / "finetune" / "train_log.jsonl",
             "scratch": out / "baseline" / "ft" / "train_log.jsonl"}
    notes = budget_notes(files.get("sensitivity", {}))
    if notes:
        notes = ["## int8 budget (sensitivity search in the export stage)", "", *notes, "",
                 f"The search measures on the '{cfg.finetune.val_split}' split"
                 + (", the same speakers as this report: the budget is met on them by construction."
                    if cfg.finetune.val_split == cfg.benchmark.split else ".")]
    report = benchmark(variants, out, cfg.data, cfg.benchmark, cfg.stream, fallback_split=cfg.finetune.val_split,
                       sv_data=cfg.finetune.sv_data, seed=cfg.finetune.seed, training_logs=logs, notes=notes)
    labels = json.loads((Path(student_model) / "multitask.json").read_text())["labels"]
    (out / "export" / "README.md").write_text(model_card(
        report, to_dict(cfg), len(labels), edgedistill.__version__, p.teacher.finetune.steps,
        embedded_teacher_summary() if cfg.teacher == EMBEDDED_TEACHER else None))
    return report


def resolve_paths(cfg: RunConfig, recipe: str | Path | None = None) -> None:
    """Each path of `PATH_KEYS` (and a teacher folder) made to point where it exists: a relative
    path next to the recipe file if it is there, else as given (the working directory). A path
    that is nowhere is a `ConfigError` naming its key, before anything is written."""
    from edgedistill.data.layouts import rebase_spec, spec_paths

    base = Path(recipe).resolve().parent if recipe is not None else None
    for key in PATH_KEYS + ("teacher",):
        owner, name = _owner(cfg, key)
        value = getattr(owner, name)
        if value is None:
            continue
        paths = [value] if key == "teacher" else spec_paths(value)
        relative = [q for q in paths if not Path(q).is_absolute()]
        if base is not None and relative and all((base / q).exists() for q in relative):
            if any((base / q).resolve() != Path(q).resolve() for q in relative):  # else: as given (same hash)
                setattr(owner, name, str(base / value) if key == "teacher" else rebase_spec(value, base))
                paths = spec_paths(getattr(owner, name))
        elif key == "teacher":  # a hub id, 'train', 'embedded': found (or not) by its own stage
            continue
        missing = [q for q in (paths if key != "teacher" else []) if not Path(q).exists()]
        if missing:
            where = f" (looked next to the recipe, {base}, and in the working directory, {Path.cwd()})" if base \
                else f" (relative to the working directory, {Path.cwd()})"
            raise ConfigError(f"{key}: '{missing[0]}' does not exist{where}: fix the path in the recipe or "
                              f"override it ({key}=PATH)")


def _owner(cfg: RunConfig, key: str):
    *stages, name = key.split(".")
    owner = cfg
    for s in stages:
        owner = getattr(owner, s)
    return owner, name


def _check_teacher_is_there(teacher: str) -> None:
    """The embedded teacher not built on this machine: the error names the command that builds it."""
    from edgedistill.models.teacher import EMBEDDED_TEACHER, find_speech_config

    if teacher == EMBEDDED_TEACHER:
        find_speech_config(teacher, flag="teacher")


def _check_stream_keywords(cfg: RunConfig) -> None:
    """Unknown streaming keywords fail before any training, not in the benchmark an hour later."""
    if not cfg.stream.keywords:
        return
    from edgedistill.data.layouts import resolve_labelled

    labels = {c.label for c in resolve_labelled(cfg.data, cfg.finetune.train_split)} - {None}
    missing = [k for k in cfg.stream.keywords if k not in labels]
    if missing:
        raise ConfigError(f"stream.keywords {missing} are not labels of {cfg.data}: choose among {sorted(labels)}")
