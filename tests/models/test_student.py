import pytest
import torch
from transformers import AutoModel, HubertConfig

from edgedistill.models.student import StudentConfig, build_student, count_parameters, student_config


def _params_meta(cfg):
    with torch.device("meta"):
        return count_parameters(AutoModel.from_config(cfg))


@pytest.mark.parametrize("preset, expected", [
    ("distilhubert", 23_491_200), ("deep", 26_871_936), ("wide", 30_579_072)])
def test_exact_parameter_counts_for_a_hubert_base_teacher(preset, expected):
    cfg = student_config(HubertConfig(), StudentConfig(preset=preset))
    assert _params_meta(cfg) == expected


def test_preset_shapes_scale_with_the_teacher(tiny_hubert):
    t = tiny_hubert.config
    deep = student_config(t, StudentConfig(preset="deep"))
    wide = student_config(t, StudentConfig(preset="wide"))
    assert (deep.num_hidden_layers, deep.hidden_size, deep.intermediate_size) == (4, 32, 64)
    assert (wide.num_hidden_layers, wide.hidden_size) == (1, 64)
    thin = student_config(HubertConfig(), StudentConfig(thin_cnn=True))
    assert list(thin.conv_dim) == [128, 256, 256, 256, 256, 512, 512]
    edge = student_config(HubertConfig(), StudentConfig(preset="edge"))
    assert edge.to_dict() == thin.to_dict()  # the edge preset: distilhubert + thin CNN
    with pytest.raises(ValueError, match="preset 'edge' is distilhubert with the thin CNN"):
        StudentConfig(preset="edge", cnn_channels=[8] * 7)
    custom = student_config(t, StudentConfig(preset="custom", num_layers=3, hidden_size=48, num_heads=4))
    assert (custom.num_hidden_layers, custom.hidden_size, custom.intermediate_size) == (3, 48, 192)
    assert deep.mask_time_prob == 0 and deep.layerdrop == 0 and not deep.feat_proj_layer_norm


def test_bad_shapes_are_rejected(tiny_hubert):
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        student_config(tiny_hubert.config, StudentConfig(preset="custom", num_layers=2, hidden_size=60, num_heads=8))
    with pytest.raises(ValueError, match="7 values"):
        student_config(tiny_hubert.config, StudentConfig(cnn_channels=[8, 8]))


def test_teacher_init_copies_what_it_claims(tiny_hubert):
    student, report = build_student(tiny_hubert, StudentConfig(preset="distilhubert"))
    t_state, s_state = tiny_hubert.state_dict(), student.state_dict()
    for name in report["copied"]:
        assert torch.equal(s_state[name], t_state[name]), name
    copied = set(report["copied"])
    for must in ["feature_extractor.conv_layers.0.conv.weight", "feature_extractor.conv_layers.0.layer_norm.weight",
                 "feature_projection.projection.weight",
                 "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
                 "encoder.layers.0.attention.q_proj.weight", "encoder.layers.1.final_layer_norm.bias"]:
        assert must in copied, must
    assert "encoder.layer_norm.weight" in report["fresh"]  # keeps its fresh init (DistilHuBERT)
    assert not any(n.startswith("encoder.layers.2") for n in s_state)
    # fresh means not equal to the teacher where the teacher has it
    assert report["params"] == count_parameters(student)


def test_deep_student_copies_only_the_cnn(tiny_hubert):
    _, report = build_student(tiny_hubert, StudentConfig(preset="deep"))
    assert report["copied"] and all(n.startswith("feature_extractor.") for n in report["copied"])
    _, report = build_student(tiny_hubert, StudentConfig(preset="distilhubert", init_from_teacher=False))
    assert report["copied"] == []


def test_saved_student_loads_with_plain_automodel(tmp_path, tiny_hubert):
    student, _ = build_student(tiny_hubert, StudentConfig(preset="distilhubert", thin_cnn=True))
    student.eval().save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 4000)
    with torch.no_grad():
        a, b = student(x).last_hidden_state, again(x).last_hidden_state
    assert a.shape == (2, 12, 64) and torch.equal(a, b)


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm", "data2vec-audio"])
def test_other_teacher_families(family):
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(family, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                               intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                               num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    teacher = AutoModel.from_config(cfg).eval()
    student, report = build_student(teacher, StudentConfig(preset="wide"))
    assert student.config.model_type == family and student.config.num_hidden_layers == 1
    assert any(n.startswith("encoder.layers.0.") for n in report["copied"])
    out = student.eval()(torch.randn(2, 1600), output_hidden_states=True)
    assert len(out.hidden_states) == 2


def test_thin_cnn_help_says_what_init_from_teacher_does(tiny_hubert):
    """Defect: the help said 'not teacher-initialised' while the last conv layer and the
    feature projection were copied."""
    import dataclasses

    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(StudentConfig)}["thin_cnn"]
    _, report = build_student(tiny_hubert, StudentConfig(preset="distilhubert", thin_cnn=True))
    copied = set(report["copied"])
    assert "feature_extractor.conv_layers.6.conv.weight" in copied and "feature_projection.projection.weight" in copied
    assert not any(n.startswith(f"feature_extractor.conv_layers.{i}.") for i in range(6) for n in copied)
    assert "first six conv layers change shape and start fresh" in help_text
    assert "last conv layer" in help_text and "feature projection" in help_text and "copied" in help_text


def test_a_frozen_cnn_builds_no_graph_down_to_the_waveform(tiny_hubert):
    """Defect: requires_grad_(False) alone left transformers' `_requires_grad` flag on, so in
    training mode the waveform required a gradient and backward ran through every convolution."""
    from edgedistill.distill.model import DistillModel
    from edgedistill.models.student import freeze_cnn

    student, _ = build_student(tiny_hubert, StudentConfig())
    student.train()
    wave = torch.randn(2, 8000)
    assert student.feature_extractor(wave).requires_grad  # the transformers default: a graph to the input
    freeze_cnn(student)
    assert not student.feature_extractor(wave).requires_grad
    other, _ = build_student(tiny_hubert, StudentConfig())
    model = DistillModel(other, None, freeze_cnn=True).train()
    assert not model.student.feature_extractor(wave).requires_grad
    assert model(wave)["mask"].shape[0] == 2
