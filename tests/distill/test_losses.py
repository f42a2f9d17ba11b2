import math

import torch

from edgedistill.distill.losses import frame_mask, layerwise_loss


def _direct(pred, target, lam):
    """The formula written out element by element."""
    n, B, T, D = pred.shape
    total = 0.0
    for k in range(n):
        l1 = sum(abs(float(pred[k, b, t, d] - target[k, b, t, d]))
                 for b in range(B) for t in range(T) for d in range(D)) / (B * T * D)
        cos = 0.0
        for b in range(B):
            for t in range(T):
                p, q = pred[k, b, t].double(), target[k, b, t].double()
                c = float(p @ q / (p.norm() * q.norm()))
                cos += -math.log(1 / (1 + math.exp(-c)))
        total += l1 + lam * cos / (B * T)
    return total / n


def test_matches_a_direct_recomputation_of_the_formula():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 2, 4, 5, generator=g), torch.randn(3, 2, 4, 5, generator=g)
    for lam in (1.0, 0.5):
        loss, parts = layerwise_loss(pred, target, cos_weight=lam)
        assert math.isclose(float(loss), _direct(pred, target, lam), rel_tol=1e-5)
    assert parts["l1"].shape == (3,)


def test_padded_frames_do_not_count():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 2, 6, 4, generator=g), torch.randn(2, 2, 6, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    garbage = pred.clone()
    garbage[:, 1, 3:] = 1e6
    assert torch.allclose(layerwise_loss(pred, target, mask)[0], layerwise_loss(garbage, target, mask)[0])
    assert not torch.allclose(layerwise_loss(pred, target)[0], layerwise_loss(garbage, target)[0])


def test_perfect_prediction_has_zero_l1_and_minimal_cos():
    x = torch.randn(1, 2, 3, 4)
    loss, parts = layerwise_loss(x, x.clone())
    assert float(parts["l1"]) == 0 and math.isclose(float(loss), -math.log(1 / (1 + math.exp(-1))), rel_tol=1e-5)


def test_frame_mask_follows_the_cnn():
    kernel, stride = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
    m = frame_mask(torch.tensor([16000, 720, 400]), 49, kernel, stride)
    assert m.sum(1).tolist() == [49, 2, 1]
