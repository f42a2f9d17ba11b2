"""Shared fixtures: offline hub, a small embedded corpus, tiny in-memory teachers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub in tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(2)


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


@pytest.fixture
def tiny_hubert():
    from transformers import HubertModel

    from edgedistill.models.teacher import tiny_hubert_config

    torch.manual_seed(0)
    return HubertModel(tiny_hubert_config()).eval()
