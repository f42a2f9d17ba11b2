"""Shared fixtures: offline hub, a small embedded corpus, tiny in-memory teachers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub in tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

# Two cores on CI; a machine whose other core runs a benchmark sets EDGEDISTILL_TEST_THREADS=1
# (two OpenMP threads on one free core spin against each other: ten times slower).
torch.set_num_threads(int(os.environ.get("EDGEDISTILL_TEST_THREADS", "2")))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["EDGEDISTILL_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A 4-keyword, 6-speaker corpus (2 takes): the manifest path."""
    from edgedistill.data.corpus import CorpusConfig, build_corpus

    cfg = CorpusConfig(keywords=["yes", "no", "stop", "go"], num_speakers=6, takes=2,
                       splits=(4, 1, 1))
    return build_corpus(cfg, root=tmp_path_factory.mktemp("corpus"))


# The embedded teacher's recipe cut to a tiny size (4 x 64, a few steps on the small corpus).
TINY_EMBEDDED = ["teacher_training.layers=4", "teacher_training.hidden=64", "teacher_training.cnn=32",
                 "teacher_training.steps=6", "teacher_training.eval_every=3", "distill.steps=2", "finetune.steps=2",
                 "finetune.batch_size=8", "finetune.num_trials=200"]


@pytest.fixture(scope="session")
def embedded_teacher(small_corpus):
    """`teacher: embedded` in the session's cache, built by the real builder from its recipe at a
    tiny size (the full build trains for about 8 minutes): the folder."""
    from edgedistill.models.teacher import embedded_teacher_path
    from edgedistill.recipes.embedded_teacher import build_embedded_teacher

    build_embedded_teacher(overrides=[*TINY_EMBEDDED, f"data={small_corpus}"])
    return embedded_teacher_path()


@pytest.fixture
def tiny_hubert():
    from transformers import HubertModel

    from edgedistill.models.teacher import tiny_hubert_config

    torch.manual_seed(0)
    return HubertModel(tiny_hubert_config()).eval()


@pytest.fixture(scope="session")
def embedded_corpus(tmp_path_factory):
    """The default embedded corpus (10 keywords, 24 speakers: 16 / 4 / 4), in the session's
    cache: the same corpus that `--data embedded` finds."""
    from edgedistill.data.corpus import build_corpus

    return build_corpus()


@pytest.fixture(scope="session")
def trained_multitask(embedded_corpus, tmp_path_factory):
    """A tiny multi-task model fine-tuned briefly on the embedded corpus: its saved folder."""
    from edgedistill.config import load_config
    from edgedistill.recipes.finetune import FinetuneConfig
    from edgedistill.recipes.finetune import finetune

    out = tmp_path_factory.mktemp("trained") / "ft"
    finetune(load_config(FinetuneConfig, None, [
        f"data={embedded_corpus}", f"out={out}", "model=builtin:hubert-tiny", "cpu=true", "batch_size=16",
        "freeze_cnn=false", "head_lr=5e-3", "backbone_lr=2e-3", "steps=400", "eval_every=400",
        "num_trials=2000"]))
    return out / "model"


@pytest.fixture(scope="session")
def exported(trained_multitask, tmp_path_factory):
    """(fp32 .onnx path, export summary) of `trained_multitask`."""
    from edgedistill.deploy.onnx import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "model.fp32.onnx"
    return path, export_onnx(trained_multitask, path)


@pytest.fixture(scope="session")
def micro_trained(embedded_corpus, tmp_path_factory):
    """A micro30k student distilled briefly from the tiny HuBERT and fine-tuned on the embedded
    corpus: (distill --out, finetune --out)."""
    from edgedistill.config import load_config
    from edgedistill.recipes.distill import DistillConfig, distill
    from edgedistill.recipes.finetune import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("micro")
    distill(load_config(DistillConfig, None, [
        f"data={embedded_corpus}", f"out={root / 'distill'}", "teacher=builtin:hubert-tiny", "batch_size=8",
        "max_samples=16000", "lr=2e-3", "steps=40", "log_every=10", "save_every=40", "cpu=true",
        "student.preset=micro30k"]))
    finetune(load_config(FinetuneConfig, None, [
        f"data={embedded_corpus}", f"out={root / 'ft'}", f"model={root / 'distill'}", "cpu=true", "batch_size=16",
        "head_lr=5e-3", "backbone_lr=3e-3", "steps=240", "eval_every=240", "num_trials=2000"]))
    return root / "distill", root / "ft"


@pytest.fixture(scope="session")
def micro_exported(micro_trained, tmp_path_factory):
    """(streaming fp32 .onnx path, export summary) of `micro_trained`'s fine-tuned model."""
    from edgedistill.deploy.onnx import export_onnx

    path = tmp_path_factory.mktemp("micro_onnx") / "model.fp32.onnx"
    return path, export_onnx(micro_trained[1], path)
