import pytest
import torch
import torch.nn.functional as F

from edgedistill.models.multitask import AAMSoftmax, AttentiveStatsPooling, MultiTaskModel


def test_outputs_and_loss_ignore_missing_labels(tiny_hubert):
    m = MultiTaskModel(tiny_hubert, ["a", "b", "c"], num_speakers=4)
    out = m(torch.randn(3, 8000))
    assert out["kws_logits"].shape == (3, 3) and out["embedding"].shape == (3, 192)
    loss, parts = m.loss(out, torch.tensor([0, -1, 2]), torch.tensor([-1, -1, -1]))
    assert set(parts) == {"kws"}
    expected = F.cross_entropy(out["kws_logits"][[0, 2]], torch.tensor([0, 2]))
    assert torch.allclose(loss, expected)
    _, parts = m.loss(out, torch.tensor([-1, -1, -1]), torch.tensor([1, 2, -1]))
    assert set(parts) == {"sv"}


def test_weighted_layer_sum_starts_uniform(tiny_hubert):
    m = MultiTaskModel(tiny_hubert, ["a"], 2).eval()
    x = torch.randn(2, 4000)
    hs = torch.stack(tiny_hubert(x, output_hidden_states=True).hidden_states)
    assert torch.allclose(m.features(x), hs.mean(0), atol=1e-6)
    last = MultiTaskModel(tiny_hubert, ["a"], 2, layer_mode="last").eval()
    assert torch.allclose(last.features(x), hs[-1], atol=1e-6)


def test_aam_margin_penalises_the_target_class():
    torch.manual_seed(0)
    emb, y = torch.randn(8, 16), torch.randint(0, 5, (8,))
    with_m, without = AAMSoftmax(16, 5, 30, 0.2), AAMSoftmax(16, 5, 30, 0.0)
    without.weight.data.copy_(with_m.weight.data)
    assert with_m(emb, y) > without(emb, y)
    cos = F.linear(F.normalize(emb), F.normalize(without.weight))
    assert torch.allclose(without(emb, y), F.cross_entropy(30 * cos, y), atol=1e-4)


def test_attentive_pooling_of_constant_frames_is_mean_and_zero_std():
    p = AttentiveStatsPooling(4)
    h = torch.ones(2, 7, 4) * torch.arange(4.0)
    out = p(h)
    assert torch.allclose(out[:, :4], torch.arange(4.0).expand(2, 4), atol=1e-5)
    assert (out[:, 4:] < 2e-3).all()


def test_save_and_reload_keeps_outputs_labels_and_threshold(tmp_path, tiny_hubert):
    m = MultiTaskModel(tiny_hubert, ["yes", "no"], 3, emb_dim=16, sv_threshold=0.42).eval()
    m.save_pretrained(tmp_path / "m")
    again = MultiTaskModel.from_pretrained(tmp_path / "m")
    x = torch.randn(2, 4000)
    a, b = m(x), again(x)
    assert again.labels == ["yes", "no"] and again.spec["sv_threshold"] == 0.42
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(FileNotFoundError, match="not a saved multi-task model"):
        MultiTaskModel.from_pretrained(tmp_path)


def test_heads_on_a_micro_student_stay_smaller_than_it_and_reload(tmp_path):
    from transformers import AutoModel

    from edgedistill.models.micro import micro_config
    from edgedistill.models.multitask import head_sizes

    backbone = AutoModel.from_config(micro_config("micro100k"))
    emb, hidden = head_sizes(backbone, 192)
    assert (emb, hidden) == (48, 24)
    model = MultiTaskModel(backbone, ["a", "b"], 3, emb, sv_hidden=hidden)
    heads = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("backbone.", "aam.")))
    assert heads < 0.15 * sum(p.numel() for p in backbone.parameters())
    model.save_pretrained(tmp_path / "m")
    again = MultiTaskModel.from_pretrained(tmp_path / "m")
    assert again.spec["sv_hidden"] == 24 and again(torch.zeros(1, 16_000))["embedding"].shape == (1, 48)
