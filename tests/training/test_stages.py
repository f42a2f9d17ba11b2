import json

import pytest

from edgedistill.config import ConfigError
from edgedistill.training.stages import run_stage, spec_hash


def test_a_stage_made_with_another_config_is_redone_only_with_overwrite(tmp_path):
    folder = tmp_path / "stage"
    assert run_stage("x", folder, {"a": 1}, lambda: {"v": 1}) == {"v": 1}
    assert run_stage("x", folder, {"a": 1}, lambda: {"v": 2}) == {"v": 1}        # skipped
    with pytest.raises(ConfigError, match="--overwrite"):
        run_stage("x", folder, {"a": 2}, lambda: {"v": 3})
    assert run_stage("x", folder, {"a": 2}, lambda: {"v": 3}, overwrite=True) == {"v": 3}
    assert json.loads((folder / "stage.json").read_text())["result"] == {"v": 3}


def test_an_interrupted_stage_resumes_with_its_spec_and_logs_to_stage_log(tmp_path):
    import logging

    folder = tmp_path / "stage"

    def crash():
        logging.getLogger("edgedistill.somewhere").warning("a package warning")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage("x", folder, {"a": 1}, crash)
    assert (folder / "stage.pending").read_text() == spec_hash({"a": 1})
    assert "WARNING edgedistill.somewhere: a package warning" in (folder / "stage.log").read_text()
    assert run_stage("x", folder, {"a": 1}, lambda: {"v": 1}) == {"v": 1}   # same spec: carries on
    assert not (folder / "stage.pending").exists()


def test_settings_that_do_not_change_results_are_not_hashed():
    """One declaration (field metadata) serves the stage hash and the resume check."""
    from edgedistill.config import resumable_fields, stage_spec
    from edgedistill.recipes.distill_config import DistillConfig
    from edgedistill.recipes.export import ExportStage
    from edgedistill.recipes.finetune import FinetuneConfig

    def h(cfg):
        return spec_hash({"up": {"cfg": stage_spec(cfg)}})

    assert h(FinetuneConfig(steps=3)) == h(FinetuneConfig(steps=3, log_with="tensorboard"))
    assert h(FinetuneConfig(steps=3)) != h(FinetuneConfig(steps=4))
    # Checkpointing more often to resume a long run closer to where it stopped: the teacher stage
    # holds the student's fine-tuning settings, so these once refused a finished teacher.
    assert h(FinetuneConfig(steps=3, save_every=250, log_every=5, keep_checkpoints=1)) == h(FinetuneConfig(steps=3))
    assert h(DistillConfig(save_every=7, num_workers=3)) == h(DistillConfig())
    # where the sensitivity search keeps its measurements: the same search finds the same
    assert h(ExportStage(kws_budget=0.001, search_cache=False)) == h(ExportStage(kws_budget=0.001))
    # what a resumed run may change: the bookkeeping, and the step count (it trains on to it)
    assert {"save_every", "log_with", "steps"} <= resumable_fields(DistillConfig())
    assert "steps" not in resumable_fields(FinetuneConfig()) and "lr" not in resumable_fields(DistillConfig())
    assert h(DistillConfig(steps=10)) != h(DistillConfig(steps=20))
