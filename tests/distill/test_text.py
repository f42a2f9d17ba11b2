import torch

from edgedistill.distill.text import (CIF, global_alignment_loss, integrate, local_alignment_loss, monotonic_prior,
                                      token_prior)


def test_cif_fires_exactly_n_units_when_scaled_and_gradients_flow():
    torch.manual_seed(0)
    cif = CIF(8)
    h = torch.randn(3, 40, 8, requires_grad=True)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 30:] = False
    n = torch.tensor([5, 9, 1])
    out = cif(h, mask, n)
    assert out["unit_mask"].sum(-1).tolist() == [5, 9, 1]
    w = out["weights"].sum(-1)  # each fired unit integrates weight 1
    assert torch.allclose(w[out["unit_mask"]], torch.ones(15), atol=1e-4)
    assert out["weights"][1, :, 30:].abs().sum() == 0            # padded frames feed no unit
    (out["units"].sum() + out["quantity_loss"]).backward()
    assert h.grad.abs().sum() > 0 and cif.weight.weight.grad.abs().sum() > 0


def test_integrate_splits_boundary_frames():
    w, m = integrate(torch.tensor([[0.6, 0.6, 0.8]]), 2)
    assert torch.allclose(w[0], torch.tensor([[0.6, 0.4, 0.0], [0.0, 0.2, 0.8]]))
    assert m.tolist() == [[True, True]]


def test_quantity_loss_is_the_count_error_relative_to_n():
    cif = CIF(4)
    h = torch.zeros(1, 10, 4)
    torch.nn.init.zeros_(cif.weight.weight)
    torch.nn.init.zeros_(cif.weight.bias)       # alpha = 0.5 everywhere: sum = 5
    assert abs(float(cif(h, None, torch.tensor([4]))["quantity_loss"].detach()) - 0.25) < 1e-6  # |5 - 4| / 4
    assert int(cif(h)["unit_mask"].sum()) == 5   # without a target: round(sum)


def test_alignment_losses_are_minimal_when_aligned_and_larger_when_shuffled():
    torch.manual_seed(1)
    tokens = torch.randn(2, 6, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    assert float(local_alignment_loss(tokens.clone(), tokens, mask)) < 1e-6
    shuffled = tokens[:, torch.randperm(6)]
    assert float(local_alignment_loss(shuffled, tokens, mask)) > 0.5
    sent = torch.randn(4, 16)
    assert float(global_alignment_loss(sent.clone(), sent)) < 1e-6
    assert float(global_alignment_loss(sent[[1, 2, 3, 0]], sent)) > 0.5
    aligned_c = global_alignment_loss(3 * sent, sent, contrastive_weight=1.0)
    shuffled_c = global_alignment_loss(3 * sent[[1, 2, 3, 0]], sent, contrastive_weight=1.0)
    assert aligned_c < shuffled_c


def test_monotonic_prior_penalises_a_reversed_alignment():
    n, t = 4, 40
    diag = torch.zeros(1, n, t)
    for k in range(n):
        diag[0, k, k * 10:(k + 1) * 10] = 0.1
    rev = diag.flip(1)                                   # first token aligned to the end
    um, fm = torch.ones(1, n, dtype=torch.bool), torch.ones(1, t, dtype=torch.bool)
    assert float(monotonic_prior(diag, um, fm)) == 0.0
    assert float(monotonic_prior(rev, um, fm)) > 0.05


def test_token_prior_down_weights_padding_specials_and_frequent_tokens():
    ids = torch.tensor([[101, 7, 8, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)
    w = token_prior(ids, mask, counts={7: 1000, 8: 1}, special_ids=(101, 102))
    assert w[0, 0] == 0 and w[0, 3] == 0 and w[0, 4] == 0
    assert 0 < w[0, 1] < w[0, 2] <= 1


def _batch(texts):
    from edgedistill.models.text_teacher import load_text_teacher

    return load_text_teacher("builtin:bert-tiny").encode(texts)


def test_text_layers_put_finer_units_at_shallower_layers():
    from edgedistill.distill.text import default_text_layers

    assert default_text_layers(["token", "word", "utterance"], 12) == [4, 8, 12]
    assert default_text_layers(["token", "word", "utterance"], 2) == [1, 1, 2]
    assert default_text_layers(["utterance"], 3) == [3]


def test_text_heads_give_each_unit_loss_and_gradients_to_every_head():
    from edgedistill.distill.text import TextHeads

    torch.manual_seed(0)
    heads = TextHeads(16, 32, ["token", "word", "utterance"], [1, 2, 3])
    hidden = tuple(torch.randn(2, 40, 16, requires_grad=True) for _ in range(4))
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    out = heads(hidden, mask, _batch(["zoom in", "stop"]), scale={"utterance": 0.5})
    assert {"token", "word", "utterance", "quantity", "monotonic", "adaptive"} <= out.keys()
    lam = torch.tensor([1.0, 1.0, 0.5])
    raw = torch.stack([out[u] for u in ("token", "word", "utterance")])
    assert torch.allclose(out["adaptive"], (lam * raw).sum())         # log-variances start at 0
    (out["adaptive"] + out["quantity"] + out["monotonic"]).backward()
    for name, p in heads.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert hidden[0].grad is None and all(h.grad.abs().sum() > 0 for h in hidden[1:])
    assert set(heads.unit_weights()) == {"token", "word", "utterance"}


def test_clips_without_a_transcript_do_not_change_the_text_losses():
    from edgedistill.distill.text import TextHeads

    torch.manual_seed(0)
    heads = TextHeads(16, 32, ["token", "utterance"], [1, 1], adaptive=False)
    hidden = (torch.randn(3, 30, 16),) * 2
    mask = torch.ones(3, 30, dtype=torch.bool)
    with_gap = heads(hidden, mask, _batch(["go", None, "left"]))
    only = heads(tuple(h[[0, 2]] for h in hidden), mask[[0, 2]], _batch(["go", "left"]))
    for k in ("token", "utterance", "quantity"):
        assert torch.allclose(with_gap[k], only[k], atol=1e-6), k
    assert heads(hidden, mask, _batch([None, None, None])) == {}


def test_text_heads_save_and_load_round_trip(tmp_path):
    from edgedistill.distill.text import TextHeads

    heads = TextHeads(16, 32, ["word", "utterance"], [1, 2])
    with torch.no_grad():
        heads.log_vars.fill_(0.3)
    heads.save(tmp_path)
    again = TextHeads.load(tmp_path)
    assert again.spec == heads.spec and again.unit_weights() == heads.unit_weights()
    assert all(torch.equal(a, b) for a, b in zip(heads.state_dict().values(), again.state_dict().values()))


def test_quantity_loss_trains_the_cif_not_the_speech_model_unless_asked():
    torch.manual_seed(0)
    h = torch.randn(2, 30, 8, requires_grad=True)
    cif = CIF(8)
    cif(h, None, torch.tensor([2, 3]))["quantity_loss"].backward()
    assert h.grad is None and cif.weight.weight.grad.abs().sum() > 0   # boundaries: the CIF's job
    both = CIF(8, detach=False)
    both(h, None, torch.tensor([2, 3]))["quantity_loss"].backward()
    assert h.grad.abs().sum() > 0
    # the units' contents still teach the speech model through the integration
    h.grad = None
    cif(h, None, torch.tensor([2, 3]))["units"].sum().backward()
    assert h.grad.abs().sum() > 0
