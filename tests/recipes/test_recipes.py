"""The shipped recipes: each is its command plus the keys that differ from the defaults, and
every key it sets reaches the stage config that uses it."""

import dataclasses
from pathlib import Path

import pytest

from edgedistill.config import ConfigError, load_config, load_yaml, non_default, to_dict
from edgedistill.recipes.run import RUN_SETS, RunConfig, plan, recipe_path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUN_RECIPES = sorted(p for p in CONFIGS.glob("*.yaml") if p.read_text().startswith("# edgedistill run "))

# Values a sentinel may take for keys whose strings are enumerations.
ALTERNATIVES = {"preset": ["deep", "wide"], "quantize": [["fp16"]], "keywords": [["ok"], ["yes"]],
                "split": ["dev", None], "teacher": ["some/other-teacher"]}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _sentinel(key: str, value):
    name = key.rsplit(".", 1)[-1]
    if name in ALTERNATIVES:
        return next(a for a in ALTERNATIVES[name] if a != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 16          # keeps widths multiples of 16
    if isinstance(value, float):
        return value / 2 if 0 < value <= 1 else value + 1
    if isinstance(value, str):
        return value + "-sentinel"
    raise AssertionError(f"no sentinel for {key}={value!r}")


def _reached(stages, key: str):
    """Where a recipe key ends up in the run's stage configs (`plan`)."""
    top = {"out": lambda: stages.distill.out, "data": lambda: stages.finetune.data,
           "distill_data": lambda: stages.distill.data, "teacher": lambda: stages.distill.teacher,
           "baseline": lambda: stages.baseline is not None}
    if key in top:
        return top[key]()
    stage, *path = key.split(".")
    if stage == "teacher_training":
        trained = path[0] in ("steps", "eval_every", "patience", "val_split")
        node = stages.teacher.cycles[0] if trained else stages.teacher.init  # its first training
    else:
        node = getattr(stages, stage)
    for part in path:
        node = getattr(node, part)
    return node


def test_the_shipped_recipes_are_there_and_open_with_their_command():
    assert {p.name for p in RUN_RECIPES} == {"demo.yaml", "hubert_base.yaml", "arabic_speech_commands.yaml",
                                         "arabic_whisper.yaml"}
    assert recipe_path("demo") == CONFIGS / "demo.yaml"
    with pytest.raises(FileNotFoundError, match="shipped recipe"):
        recipe_path("nonesuch")


@pytest.mark.parametrize("recipe", RUN_RECIPES, ids=lambda p: p.name)
def test_a_recipe_sets_only_keys_that_differ_from_the_defaults(recipe):
    assert recipe.read_text().startswith(f"# edgedistill run configs/{recipe.name}")
    defaults = _flatten(to_dict(RunConfig()))
    for key, value in _flatten(load_yaml(recipe.read_text())).items():
        assert defaults[key] != value, f"{recipe.name}: {key}={value!r} is the default: leave it out"


@pytest.mark.parametrize("recipe", RUN_RECIPES, ids=lambda p: p.name)
def test_every_key_a_recipe_sets_reaches_the_stage_that_uses_it(recipe):
    keys = _flatten(load_yaml(recipe.read_text()))
    assert keys
    for key, value in keys.items():
        sentinel = _sentinel(key, value)
        text = "null" if sentinel is None else (f"[{', '.join(sentinel)}]" if isinstance(sentinel, list) else str(sentinel))
        cfg = load_config(RunConfig, recipe, [f"{key}={text}"])
        got = _reached(plan(cfg), key)
        if key == "out":
            assert got.startswith(sentinel), (recipe.name, key)
        else:
            assert got == sentinel or got == [*sentinel], (recipe.name, key, got, sentinel)


@pytest.mark.parametrize("key", sorted(RUN_SETS))
def test_a_recipe_that_sets_a_key_the_run_overrides_is_refused(key, tmp_path):
    recipe = tmp_path / "r.yaml"
    stage, name = key.split(".")
    recipe.write_text(f"{stage}:\n  {name}: somewhere/else\n")
    with pytest.raises(ConfigError, match=f"{key} is set by the run") as e:
        load_config(RunConfig, recipe)
    assert RUN_SETS[key].split()[0] in str(e.value)


def test_the_stage_defaults_live_in_the_stage_configs():
    from edgedistill.recipes.distill import DistillConfig
    from edgedistill.recipes.finetune import FinetuneConfig

    run = RunConfig()
    assert run.distill == DistillConfig() and run.finetune == FinetuneConfig()
    demo = load_config(RunConfig, recipe_path("demo"))
    assert demo.distill.steps == 300 and dataclasses.replace(demo.distill, steps=200_000) != DistillConfig()


def test_teacher_cycles_chain_from_backbone_to_backbone_with_fresh_heads_and_end_in_teacher_ft():
    # (on the run's data; with a corpus of its own: tests/recipes/test_run.py)
    cfg = load_config(RunConfig, recipe_path("demo"), ["out=runs/x", "teacher=train", "teacher_training.cycles=3",
                                                       "teacher_training.steps=700", "finetune.steps=250"])
    cycles = plan(cfg).teacher.cycles
    assert [Path(c.out).name for c in cycles] == ["cycle1", "cycle2", "ft"]
    assert plan(cfg).teacher.finetune == cycles[-1] and plan(cfg).distill.teacher == "runs/x/teacher/ft/model/backbone"
    assert cycles[0].model == "runs/x/teacher/init" and cycles[0].steps == 700 and cycles[0].patience == 3
    # each later cycle: the backbone before it (a backbone folder: the multi-task model gets new heads),
    # the student's fine-tuning length, its own seed, one validation at its end
    assert [c.model for c in cycles[1:]] == ["runs/x/teacher/cycle1/model/backbone", "runs/x/teacher/cycle2/model/backbone"]
    assert [(c.steps, c.eval_every, c.patience, c.min_steps) for c in cycles[1:]] == [(250, 250, 0, 0)] * 2
    assert len({c.seed for c in cycles}) == 3 and not any(c.freeze_cnn for c in cycles)
    cfg = load_config(RunConfig, recipe_path("demo"), ["out=runs/x", "teacher=train", "teacher_training.cycles=2",
                                                       "teacher_training.cycle_steps=90"])
    assert plan(cfg).teacher.cycles[1].steps == 90
    one = plan(load_config(RunConfig, recipe_path("demo"), ["out=runs/x", "teacher=train",
                                                            "teacher_training.cycles=1"])).teacher
    assert one.cycles == [one.finetune] and one.finetune.out == "runs/x/teacher/ft"


def test_the_from_scratch_baseline_trains_its_random_cnn_whatever_the_students_fine_tuning_freezes():
    stages = plan(load_config(RunConfig, recipe_path("arabic_speech_commands"), ["out=runs/x"]))
    assert stages.finetune.freeze_cnn is None and stages.baseline.freeze_cnn is False  # None: frozen
    assert stages.baseline.model == "runs/x/baseline/init" and stages.baseline.steps == stages.finetune.steps


@pytest.mark.parametrize("student", ["distill.student.preset=edge", "distill.student.thin_cnn=true",
                                     "distill.student.cnn_channels=[64,64,64,64,64,64,256]",
                                     "distill.student.init_from_teacher=false"])
def test_a_student_cnn_that_is_not_the_teachers_trains_in_fine_tuning_and_gets_the_hint_unless_told(student):
    recipe = recipe_path("arabic_speech_commands")
    stages = plan(load_config(RunConfig, recipe, ["out=runs/x", student, "qat=true"]))
    assert stages.finetune.freeze_cnn is False and stages.qat.freeze_cnn is False
    assert stages.distill.cnn_hint_weight == 1.0  # written in: the distill stage's config says so
    assert plan(load_config(RunConfig, recipe, ["out=runs/x", student, "finetune.freeze_cnn=true"])).finetune.freeze_cnn
    assert plan(load_config(RunConfig, recipe, ["out=runs/x", student, "distill.cnn_hint_weight=0"])
                ).distill.cnn_hint_weight == 0


def test_the_teachers_own_cnn_gets_no_hint_and_its_distill_config_stays_as_before_the_hint():
    stages = plan(load_config(RunConfig, recipe_path("arabic_speech_commands"), ["out=runs/x"]))
    assert stages.distill.cnn_hint_weight is None and stages.distill.hint_weight() == 0
    assert "cnn_hint_weight" not in non_default(stages.distill)  # finished runs' stage hashes unchanged
