import re
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
    with pytest.raises(TeacherNotFoundError, match="hf download nobody/no-such-model --local-dir DIR"):
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


def test_one_lookup_one_clean_error_for_every_kind_of_bad_teacher(tmp_path, capsys):
    """Defects: a folder without config.json was 'not a local folder and not in the HF cache';
    `students` gave raw tracebacks for a missing path or a text model."""
    from edgedistill.cli import main

    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherNotFoundError, match="has no config.json"):
        load_teacher(str(tmp_path / "empty"))
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(tmp_path / "bert")
    for teacher, match in (("./no/such/dir", "path './no/such/dir' does not exist"),
                           (str(tmp_path / "empty"), "has no config.json"),
                           (str(tmp_path / "bert"), "is a 'bert' model, not a speech SSL model"),
                           ("nobody/no-such-model", "HF_HUB_OFFLINE is set.*hf download nobody/no-such-model")):
        for command in (["students"], ["distill", "--out", str(tmp_path / "run")]):
            start = time.perf_counter()
            assert main(command + ["--teacher", teacher]) == 2
            assert time.perf_counter() - start < 10
            assert re.search(match, capsys.readouterr().err), (command, teacher)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "edgedistill", "students", "--teacher", str(tmp_path / "bert")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "not a speech SSL model" in out.stderr
    assert not (tmp_path / "run").exists()  # distill checks the teacher before writing anything


def test_teacher_and_student_attend_with_sdpa_and_a_bf16_teacher_stays_close_to_fp32():
    from edgedistill.models.student import StudentConfig, build_student

    teacher = load_teacher("builtin:hubert-tiny")
    student, _ = build_student(teacher.model, StudentConfig())
    assert teacher.config._attn_implementation == "sdpa" and student.config._attn_implementation == "sdpa"
    wave = torch.randn(2, 16000) * 0.1
    ref = teacher(wave)[-1]
    teacher.set_precision("bf16")
    out = teacher(wave)[-1]
    assert out.dtype == torch.bfloat16 and next(teacher.model.parameters()).dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(out.float(), ref, dim=-1)
    assert cos.mean() > 0.99 and not torch.equal(out.float(), ref)


def test_an_embedded_teacher_not_built_yet_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))  # a machine that has not built it
    with pytest.raises(TeacherNotFoundError, match="not built on this machine yet .*`edgedistill embedded-teacher`"):
        load_teacher("embedded")


def test_the_embedded_teacher_is_cached_under_its_recipe_and_trainer_version(monkeypatch, tmp_path):
    import edgedistill.models.teacher as teacher_mod

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    shipped = teacher_mod.embedded_teacher_path()
    assert shipped.parent == tmp_path and shipped.name.startswith("embedded-teacher-")
    edited = tmp_path / "embedded_teacher.yaml"
    text = teacher_mod.embedded_teacher_recipe().read_text()
    monkeypatch.setattr(teacher_mod, "embedded_teacher_recipe", lambda: edited)
    edited.write_text("# another comment\n" + text)
    assert teacher_mod.embedded_teacher_path() == shipped  # comments are not settings
    edited.write_text(text.replace("steps: 3000", "steps: 2000"))
    assert teacher_mod.embedded_teacher_path() != shipped  # an edited recipe is another teacher
    monkeypatch.undo()
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path))
    monkeypatch.setattr(teacher_mod, "EMBEDDED_TEACHER_VERSION", teacher_mod.EMBEDDED_TEACHER_VERSION + 1)
    assert teacher_mod.embedded_teacher_path() != shipped  # so is another trainer's


def test_an_install_without_the_embedded_teacher_recipe_says_to_reinstall(monkeypatch):
    import edgedistill.config as config_mod

    monkeypatch.setattr(config_mod, "shipped_recipe", lambda name: None)
    with pytest.raises(TeacherNotFoundError, match=r"configs/embedded_teacher.yaml\) is missing .*reinstall"):
        load_teacher("embedded")
