import hashlib
import json

import pytest
import torch

from edgedistill.config import ConfigError, load_config, non_default
from edgedistill.models.teacher import (embedded_teacher_path, embedded_teacher_recipe, embedded_teacher_reference,
                                        load_teacher)
from edgedistill.recipes.embedded_teacher import FILES, build_embedded_teacher, ensure_embedded_teacher
from tests.conftest import TINY_EMBEDDED


def test_builds_the_recipe_teacher_into_the_cache_with_its_provenance(embedded_teacher, small_corpus):
    assert embedded_teacher == embedded_teacher_path()
    assert sorted(p.name for p in embedded_teacher.iterdir()) == sorted(["PROVENANCE.json", *FILES])
    prov = json.loads((embedded_teacher / "PROVENANCE.json").read_text())
    # the recipe's early stopping: at least the demo student's steps (2 + 2), then until val stalls
    assert prov["steps_done"] == 6 and prov["best_step"] in (3, 6) and prov["finetune"]["min_steps"] == 4
    assert prov["data"] == str(small_corpus) and prov["torch_threads"] == 1
    sha = hashlib.sha256((embedded_teacher / "model.safetensors").read_bytes()).hexdigest()
    assert prov["sha256"] == sha and prov["reference_sha256"] == embedded_teacher_reference()["sha256"]
    assert prov["same_as_reference"] is False  # a tiny build is not the reference
    config = load_teacher("embedded").model.config
    assert (config.num_hidden_layers, config.hidden_size) == (4, 64)
    # the training folder and the half-written copy are gone
    assert [p.name for p in embedded_teacher.parent.glob(embedded_teacher.name + ".*")] == []


def test_a_build_that_is_not_the_reference_says_why(small_corpus, tmp_path, capsys):
    build_embedded_teacher(tmp_path / "t", [*TINY_EMBEDDED, f"data={small_corpus}"])
    out = capsys.readouterr().out
    assert "not the reference's" in out and "built with overrides: teacher_training.layers=4" in out


def test_trains_at_one_thread_and_gives_the_threads_back_when_it_fails(monkeypatch, tmp_path):
    import edgedistill.recipes.run as run_mod

    seen = []

    def fails(teacher):
        seen.append(torch.get_num_threads())
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "train_teacher", fails)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            build_embedded_teacher(tmp_path / "t", TINY_EMBEDDED)
        assert seen == [1] and torch.get_num_threads() == 2 and not (tmp_path / "t").exists()
    finally:
        torch.set_num_threads(before)


def test_refuses_overrides_that_make_it_another_kind_of_teacher(tmp_path):
    with pytest.raises(ConfigError, match="trained on the recipe's `data`"):
        build_embedded_teacher(tmp_path / "t", ["teacher=embedded"])


def test_first_use_builds_it_once_and_other_teachers_never(monkeypatch, tmp_path, embedded_teacher):
    import shutil

    import edgedistill.recipes.embedded_teacher as mod

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))  # a machine that has not built it
    builds = []
    monkeypatch.setattr(mod, "build_embedded_teacher", lambda: builds.append(shutil.copytree(
        embedded_teacher, embedded_teacher_path())))
    ensure_embedded_teacher("builtin:hubert-tiny")
    assert builds == []
    ensure_embedded_teacher("embedded")
    ensure_embedded_teacher("embedded")
    assert builds == [embedded_teacher_path()]
    assert load_teacher("embedded").model.config.num_hidden_layers == 4


def test_the_reference_provenance_is_the_shipped_recipe_s():
    from edgedistill.recipes.run import RunConfig

    ref, recipe = embedded_teacher_reference(), load_config(RunConfig, embedded_teacher_recipe())
    assert ref["data"] == recipe.data and ref["teacher_training"] == non_default(recipe.teacher_training)
    assert ref["torch_threads"] == 1 and len(ref["sha256"]) == 64
    assert ref["val"]["kws_accuracy"] > 0.9  # it learned the keywords: a teacher worth distilling


def test_the_recipes_never_build_it_and_say_which_command_does(monkeypatch, tmp_path):
    """distill(), finetune() and run() load the embedded teacher; only the CLI builds it. Not
    built, each fails at once naming the command, and writes no run folder."""
    import edgedistill.recipes.embedded_teacher as mod
    from edgedistill.models.teacher import TeacherNotFoundError
    from edgedistill.recipes.distill import distill
    from edgedistill.recipes.distill_config import DistillConfig
    from edgedistill.recipes.finetune import FinetuneConfig, finetune
    from edgedistill.recipes.run import RunConfig, run

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))  # a machine that has not built it
    monkeypatch.setattr(mod, "build_embedded_teacher", lambda: pytest.fail("a recipe built the teacher"))
    calls = [lambda: distill(DistillConfig(teacher="embedded", out=str(tmp_path / "d"))),
             lambda: finetune(FinetuneConfig(model="embedded", out=str(tmp_path / "f"))),
             lambda: run(RunConfig(teacher="embedded", out=str(tmp_path / "r")))]
    for call in calls:
        with pytest.raises(TeacherNotFoundError, match="`edgedistill embedded-teacher`"):
            call()
    assert not any((tmp_path / d).exists() for d in ("d", "f", "r"))
