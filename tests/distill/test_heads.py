import torch

from edgedistill.distill.heads import DistillHeads, default_student_layers, default_targets


def test_default_targets_scale_with_depth():
    assert default_targets(12) == [4, 8, 12]
    assert default_targets(4) == [1, 3, 4]
    assert default_student_layers([4, 8, 12], 12, 3) == [1, 2, 3]


def test_prediction_heads_shape_and_size():
    h = DistillHeads("prediction-heads", 768, 768, [4, 8, 12])
    # DistilHuBERT: Linear(768 -> 3*768) + 3 x Linear(768 -> 768) = 3,543,552 parameters
    assert sum(p.numel() for p in h.parameters()) == 3_543_552
    hs = tuple(torch.randn(2, 5, 768) for _ in range(3))
    assert h(hs).shape == (3, 2, 5, 768)


def test_layer_to_layer_starts_as_identity_and_round_trips(tmp_path):
    h = DistillHeads("layer-to-layer", 16, 16, [2, 4], student_layers=[1, 2])
    hs = tuple(torch.randn(2, 5, 16) for _ in range(3))
    out = h(hs)
    assert torch.equal(out[0], hs[1]) and torch.equal(out[1], hs[2])
    h.save(tmp_path)
    again = DistillHeads.load(tmp_path)
    assert again.targets == [2, 4] and torch.equal(again(hs), out)


def test_cnn_hint_starts_as_the_identity_on_layer_zero_and_round_trips(tmp_path):
    h = DistillHeads("prediction-heads", 16, 16, [2, 4], cnn_hint=True)
    hs = tuple(torch.randn(2, 5, 16) for _ in range(3))
    assert torch.equal(h.hint_forward(hs), hs[0])
    h.save(tmp_path)
    again = DistillHeads.load(tmp_path)
    assert again.hint is not None and torch.equal(again.hint_forward(hs), hs[0])
    assert DistillHeads("prediction-heads", 16, 16, [2, 4]).hint_forward(hs) is None


def test_heads_saved_before_the_cnn_hint_still_load(tmp_path):
    import json

    h = DistillHeads("prediction-heads", 16, 24, [2, 4])
    h.save(tmp_path)
    spec = json.loads((tmp_path / "distill_heads.json").read_text())
    spec.pop("cnn_hint")
    (tmp_path / "distill_heads.json").write_text(json.dumps(spec))
    assert DistillHeads.load(tmp_path).hint is None


def test_distillation_heads_predict_the_teacher_at_a_micro_students_frame_rate(tiny_hubert):
    """A micro student gives 50 frames a second (n // 320), a HuBERT (n - 400) // 320 + 1: the heads
    run at the student's rate, the mask marks its real frames, and the loss compares the frames
    both have."""
    from edgedistill.distill.model import DistillModel
    from edgedistill.models.student import StudentConfig, build_student
    from edgedistill.models.teacher import load_teacher

    student, _ = build_student(tiny_hubert, StudentConfig(preset="micro30k"))
    heads = DistillHeads("prediction-heads", 48, tiny_hubert.config.hidden_size, [1, 2], cnn_hint=True)
    model = DistillModel(student, heads)
    wave = torch.randn(2, 16_000) * 0.1
    out = model(wave, torch.tensor([16_000, 8_000]))
    assert out["pred"].shape == (2, 2, 50, tiny_hubert.config.hidden_size)
    assert out["hint"].shape == (2, 50, tiny_hubert.config.hidden_size)
    assert out["mask"].sum(1).tolist() == [50, 25]
    teacher = load_teacher(tiny_hubert)
    assert teacher(wave)[1].shape[1] == 49
