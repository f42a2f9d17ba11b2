import time

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

from edgedistill.models.teacher import TeacherNotFoundError, load_teacher


def test_frozen_eval_and_hf_indexing(tiny_hubert):
    t = load_teacher(tiny_hubert)
    t.train()
    assert not t.model.training and not any(p.requires_grad for p in t.parameters())
    x = torch.randn(2, 3200)
    hs = t(x)
    ref = tiny_hubert(x, output_hidden_states=True).hidden_states
    assert len(hs) == 5 and all(torch.equal(a, b) for a, b in zip(hs, ref))


@pytest.mark.parametrize("family", ["hubert", "wav2vec2", "wavlm", "data2vec-audio"])
def test_precomputed_cnn_features_give_the_same_hidden_states(family):
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(family, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                               num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    t = load_teacher(AutoModel.from_config(cfg))
    x = torch.randn(2, 4000)
    a = t(x)
    b = t(x, features=t.cnn_features(x))
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(a, b))


def test_local_folder_round_trip(tmp_path, tiny_hubert):
    tiny_hubert.save_pretrained(tmp_path / "teacher")
    t = load_teacher(str(tmp_path / "teacher"))
    assert t.config.hidden_size == 64 and t.do_normalize is False


def test_unknown_id_offline_fails_fast_with_a_fix():
    start = time.perf_counter()
    with pytest.raises(TeacherNotFoundError, match="huggingface-cli download"):
        load_teacher("nobody/no-such-model")
    assert time.perf_counter() - start < 10
    with pytest.raises(TeacherNotFoundError, match="does not exist"):
        load_teacher("./no/such/folder")
    with pytest.raises(TeacherNotFoundError, match="available"):
        load_teacher("builtin:nope")


def test_text_models_are_rejected(tmp_path):
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="not a speech SSL model"):
        load_teacher(str(tmp_path / "bert"))


def test_builtin_teacher_is_seeded():
    a, b = load_teacher("builtin:hubert-tiny", seed=3), load_teacher("builtin:hubert-tiny", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
