import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from edgedistill.config import ConfigError, load_config
from edgedistill.distill.config import DistillConfig
from edgedistill.workflows.distill import distill


def _cfg(corpus, out, *overrides):
    return load_config(DistillConfig, None, [
        f"data={corpus}", f"out={out}", "teacher=builtin:hubert-tiny", "batch_size=8",
        "max_samples=8000", "lr=1e-3", "log_every=2", "save_every=4", "cpu=true", *overrides])


def _log(out):
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_distillation_lowers_the_loss_and_saves_a_plain_hf_student(small_corpus, tmp_path):
    out = tmp_path / "run"
    summary = distill(_cfg(small_corpus, out, "steps=40"))
    log = _log(out)
    first, last = log[0]["loss"], sum(r["loss"] for r in log[-3:]) / 3
    assert summary["finished"] and last < 0.8 * first, (first, last)
    assert log[-1]["cos_sim"][0] > log[0]["cos_sim"][0]
    from transformers import AutoModel

    student = AutoModel.from_pretrained(out / "student")
    assert student.config.num_hidden_layers == 2
    assert (out / "heads" / "distill_heads.safetensors").exists()
    assert (out / "student" / "preprocessor_config.json").exists()


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(small_corpus, tmp_path):
    extra = ("steps=10", "student.dropout=0.1")  # dropout on: the RNG state must be restored
    distill(_cfg(small_corpus, tmp_path / "full", *extra))
    part = distill(_cfg(small_corpus, tmp_path / "cut", *extra), stop_after=6)
    assert part["steps_done"] == 6 and not part["finished"]
    assert not (tmp_path / "cut" / "student").exists()
    done = distill(_cfg(small_corpus, tmp_path / "cut", *extra), resume=True)
    assert done["finished"]
    a = load_file(tmp_path / "full" / "student" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "student" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_never_overwritten_and_resume_checks_the_config(small_corpus, tmp_path):
    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=4"))
    with pytest.raises(ConfigError, match="pass --resume"):
        distill(_cfg(small_corpus, out, "steps=4"))
    with pytest.raises(ConfigError, match=r"\[.lr.\] differ"):
        distill(_cfg(small_corpus, out, "steps=4", "lr=0.1"), resume=True)


def test_shared_teacher_cnn_keeps_the_student_cnn_fixed(small_corpus, tmp_path):
    out = tmp_path / "run"
    distill(_cfg(small_corpus, out, "steps=4", "reuse_teacher_cnn=true", "objective=layer-to-layer"))
    from edgedistill.models.teacher import load_teacher

    teacher = load_teacher("builtin:hubert-tiny").model.state_dict()
    student = load_file(out / "student" / "model.safetensors")
    cnn = [k for k in student if k.startswith("feature_extractor.")]
    assert cnn and all(torch.equal(student[k], teacher[k]) for k in cnn)
    moved = [k for k in student if k.startswith("encoder.layers.0.") and not torch.equal(student[k], teacher[k])]
    assert moved


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run_keeps_ranks_in_sync(small_corpus, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(f"""
import json, os, torch
torch.set_num_threads(1)
from edgedistill.config import load_config
from edgedistill.distill.config import DistillConfig
from edgedistill.workflows.distill import distill
cfg = load_config(DistillConfig, None, ["data={small_corpus}", "out={tmp_path / 'ddp'}",
      "teacher=builtin:hubert-tiny", "batch_size=4", "max_samples=8000", "steps=6", "save_every=3",
      "cpu=true", "student.dropout=0.1"])
summary = distill(cfg)
with open(os.path.join("{tmp_path}", "rank" + os.environ["RANK"] + ".json"), "w") as f:
    json.dump(summary, f)
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["processes"] == r1["processes"] == 2
    assert r0["ranks_in_sync"] and r1["ranks_in_sync"] and r0["steps_done"] == 6
    assert (tmp_path / "ddp" / "student" / "model.safetensors").exists()
    assert {p.name for p in (tmp_path / "ddp" / "checkpoints" / "step-000006").glob("rng-*.pt")} == {"rng-0.pt", "rng-1.pt"}
