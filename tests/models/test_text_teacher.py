import json

import pytest
import torch

from edgedistill.models.teacher import TeacherNotFoundError
from edgedistill.models.text_teacher import builtin_text_teacher, load_text_teacher


def test_builtin_teacher_gives_token_word_and_sentence_targets_without_specials():
    t = load_text_teacher("builtin:bert-tiny")
    assert t.tokenizer.tokenize("zoom in") == ["z", "##o", "##o", "##m", "in"]   # any word tokenizes
    b = t.encode(["zoom in", "stop", None])
    assert b.tokens.shape == (3, 5, t.dim) and b.token_mask.sum(1).tolist() == [5, 1, 0]
    assert b.word_mask.sum(1).tolist() == [2, 1, 0] and b.has_text.tolist() == [True, True, False]
    assert set(b.token_ids[0, :5].tolist()).isdisjoint(t.tokenizer.all_special_ids)
    # a word unit is the mean of its sub-word tokens
    assert torch.allclose(b.words[0, 0], b.tokens[0, :4].mean(0), atol=1e-6)
    assert torch.allclose(b.words[0, 1], b.tokens[0, 4], atol=1e-6)
    assert not b.tokens.requires_grad and not any(p.requires_grad for p in t.model.parameters())
    # cached: the same transcript gives the same targets, different ones differ
    again = t.encode(["stop", "zoom in"])
    assert torch.equal(again.sentence[0], b.sentence[1]) and not torch.allclose(b.sentence[0], b.sentence[1])
    assert t.token_counts(["zoom in", "zoom"])[t.tokenizer.convert_tokens_to_ids("z")] == 2


def test_loads_a_saved_text_encoder_by_path_with_its_pooling(tmp_path):
    t = builtin_text_teacher()
    t.model.save_pretrained(tmp_path)
    t.tokenizer.save_pretrained(tmp_path)
    loaded = load_text_teacher(str(tmp_path))
    assert loaded.pooling == "mean"
    assert torch.allclose(loaded.encode(["go left"]).sentence, t.encode(["go left"]).sentence, atol=1e-5)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    cls = load_text_teacher(str(tmp_path))
    assert cls.pooling == "cls"
    enc = cls.tokenizer(["go left"], return_tensors="pt")
    assert torch.allclose(cls.encode(["go left"]).sentence[0], cls.model(**enc).last_hidden_state[0, 0], atol=1e-5)


def test_clear_errors_for_missing_unknown_and_non_text_models(tmp_path, tiny_hubert):
    with pytest.raises(TeacherNotFoundError, match="does not exist"):
        load_text_teacher(str(tmp_path / "nope"))
    with pytest.raises(TeacherNotFoundError, match="builtin:bert-tiny"):
        load_text_teacher("builtin:gpt")
    with pytest.raises(TeacherNotFoundError, match="hf download"):
        load_text_teacher("someone/not-cached-text-model")
    tiny_hubert.save_pretrained(tmp_path / "speech")
    with pytest.raises(ValueError, match="not a text encoder"):
        load_text_teacher(str(tmp_path / "speech"))
