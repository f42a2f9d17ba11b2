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
    assert spec_hash({"cfg": {"steps": 3, "log_with": None}}) == spec_hash({"cfg": {"steps": 3, "log_with": "wandb"}})
    assert spec_hash({"cfg": {"steps": 3}}) != spec_hash({"cfg": {"steps": 4}})
    # Checkpointing more often to resume a long run closer to where it stopped: the teacher stage
    # holds the student's fine-tuning settings, so these once refused a finished teacher.
    bookkeeping = {"save_every": 250, "log_every": 5, "keep_checkpoints": 1}
    assert spec_hash({"up": {"cfg": {"steps": 3, **bookkeeping}}}) == spec_hash({"up": {"cfg": {"steps": 3}}})
    # where the sensitivity search keeps its measurements: the same search finds the same
    assert spec_hash({"export": {"kws_budget": 0.001, "search_cache": False}}) == spec_hash({"export": {"kws_budget": 0.001}})
