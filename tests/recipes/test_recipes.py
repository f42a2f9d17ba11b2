"""The shipped recipes: each is its command plus the keys that differ from the defaults, and
every key it sets reaches the stage config that uses it."""

import dataclasses
from pathlib import Path

import pytest

from edgedistill.config import ConfigError, load_config, load_yaml, to_dict
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


def _reached(stages: dict, key: str):
    """Where a recipe key ends up in the run's stage configs (`plan`)."""
    top = {"out": lambda: stages["distill"].out, "data": lambda: stages["finetune"].data,
           "distill_data": lambda: stages["distill"].data, "teacher": lambda: stages["distill"].teacher,
           "baseline": lambda: stages["baseline"] is not None}
    if key in top:
        return top[key]()
    stage, *path = key.split(".")
    if stage == "teacher_training":
        trained = path[0] in ("steps", "eval_every", "patience", "val_split")
        node = stages["teacher"]["finetune"] if trained else stages["teacher"]["init"]
    else:
        node = stages[stage]
    for part in path:
        node = getattr(node, part)
    return node


def test_the_shipped_recipes_are_there_and_open_with_their_command():
    assert {p.name for p in RUN_RECIPES} == {"demo.yaml", "hubert_base.yaml", "arabic_speech_commands.yaml"}
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
