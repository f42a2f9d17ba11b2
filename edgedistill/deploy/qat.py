"""Quantization-aware training for the `int8` export (fake quantization in PyTorch).

`int8` (`edgedistill.deploy.quantize.Int8`) quantizes the CNN's convolutions statically
(per-channel symmetric weights, uint8 activations with calibrated ranges) and every MatMul
dynamically (per-tensor symmetric weights, uint8 inputs ranged at run time). `prepare_qat`
makes a model see the same rounding while it trains:
- conv weights: per output channel, scale = max|w| / qmax (qmax 64 with the AVX2 target's
  reduce_range, else 127), as onnxruntime computes it;
- conv inputs and outputs: uint8 over a running range (the 0.05 / 99.95 percentiles of the batch,
  averaged), standing in for the percentile calibration of the export;
- Linear weights: per tensor, scale = max|w| / qmax; Linear inputs: uint8 over each clip's own
  min and max (dynamic quantization quantizes each call's input).
Gradients pass straight through the rounding. `fold_qat` ends it: every weight keeps its
rounded value (integers times the scale), so the export's quantizer finds the same scales and
rounds nothing more; the weights are exactly the ones the model was trained with. `qat_ranges`
gives the trained activation ranges, which the int8 export uses instead of calibrating afresh.

Convolutions whose weight is already parametrized (the positional convolution's weight norm)
are left as they are: onnxruntime still quantizes them after training.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgedistill.deploy.onnx import unparametrize
from edgedistill.deploy.quantize import QuantScheme

_SAMPLE = 1 << 18  # elements a range estimate looks at (a strided subsample of the tensor)


def weight_qmax(target: str = "auto") -> int:
    """The largest integer of the target's int8 weights (64 with reduce_range, else 127)."""
    return 64 if QuantScheme(target=target).settings()["reduce_range"] else 127  # the export's own resolution


class WeightFakeQuant(nn.Module):
    """Symmetric int8 rounding of a weight, per output channel (`per_channel`) or per tensor."""

    def __init__(self, qmax: int, per_channel: bool):
        super().__init__()
        self.qmax, self.per_channel = qmax, per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.per_channel:
            scale = w.detach().abs().flatten(1).amax(1).clamp(min=1e-12) / self.qmax
            zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
            return torch.fake_quantize_per_channel_affine(w, scale.float(), zero, 0, -self.qmax, self.qmax)
        scale = w.detach().abs().amax().clamp(min=1e-12) / self.qmax
        return torch.fake_quantize_per_tensor_affine(w, scale.float(), torch.zeros((), dtype=torch.int32,
                                                                                   device=w.device), -self.qmax, self.qmax)


def _uint8(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """uint8 asymmetric rounding of `x` over [lo, hi] (scalars, or one pair per row of dim 0)."""
    lo, hi = lo.float().clamp(max=0), hi.float().clamp(min=0)
    scale = ((hi - lo) / 255).clamp(min=1e-8)
    zero = torch.round(-lo / scale).clamp(0, 255).to(torch.int32)
    y = x.float()  # the rounding kernels take float32 (autocast may hand bf16 / fp16)
    if scale.dim() == 0:
        return torch.fake_quantize_per_tensor_affine(y, scale, zero, 0, 255).to(x.dtype)
    return torch.fake_quantize_per_channel_affine(y, scale, zero, 0, 0, 255).to(x.dtype)


class StaticActQuant(nn.Module):
    """uint8 rounding over a running range (as the export's calibrated static quantization)."""

    def __init__(self, momentum: float = 0.9, percentile: float = 99.9):
        super().__init__()
        self.momentum, self.cut = momentum, (100 - percentile) / 200
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.seen:
            flat = x.detach().float().flatten()
            flat = flat[:: max(1, flat.numel() // _SAMPLE)]
            lo, hi = torch.quantile(flat, torch.tensor([self.cut, 1 - self.cut], device=flat.device))
            m = self.momentum if self.seen else 0.0
            self.lo.mul_(m).add_((1 - m) * lo)
            self.hi.mul_(m).add_((1 - m) * hi)
            self.seen += 1
        return _uint8(x, self.lo, self.hi)


def _dynamic(x: torch.Tensor) -> torch.Tensor:
    """uint8 rounding of each clip's tensor over its own min and max (dynamic quantization)."""
    if x.dim() <= 1:
        return _uint8(x, x.detach().min(), x.detach().max())
    flat = x.detach().flatten(1)
    return _uint8(x, flat.amin(1), flat.amax(1))


def _conv_pre(module, args):
    return (module.qat_in(args[0]),) + tuple(args[1:])


def _conv_post(module, args, output):
    return module.qat_out(output)


def _linear_pre(module, args):
    return (_dynamic(args[0]),) + tuple(args[1:])


def prepare_qat(model: nn.Module, target: str = "auto") -> nn.Module:
    """Makes `model` (in place) train with the `int8` export's rounding; returns it. The range
    buffers are submodules (`qat_in`, `qat_out`), so checkpoints keep them and resume exactly."""
    qmax = weight_qmax(target)
    done = 0
    for module in list(model.modules()):  # the loop adds submodules
        if isinstance(module, nn.Conv1d) and not parametrize.is_parametrized(module, "weight"):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant(qmax, per_channel=True))
            module.qat_in, module.qat_out = StaticActQuant(), StaticActQuant()
            module._qat_hooks = [module.register_forward_pre_hook(_conv_pre), module.register_forward_hook(_conv_post)]
            done += 1
        elif isinstance(module, nn.Linear):
            parametrize.register_parametrization(module, "weight", WeightFakeQuant(qmax, per_channel=False))
            module._qat_hooks = [module.register_forward_pre_hook(_linear_pre)]
            done += 1
    if not done:
        raise ValueError("prepare_qat found no Conv1d or Linear layer to quantize in the model")
    return model


def qat_ranges(model: nn.Module) -> dict[str, dict[str, list[float]]]:
    """The trained input and output ranges of a `prepare_qat` model's convolutions, by module
    path ({"in": [lo, hi], "out": [lo, hi]}): what `edgedistill.deploy.trained_ranges` writes
    into the int8 file, so it rounds as the model trained."""
    return {name: {key: [float(q.lo), float(q.hi)] for key, q in (("in", m.qat_in), ("out", m.qat_out))}
            for name, m in model.named_modules() if hasattr(m, "qat_in") and m.qat_in.seen}


def fold_qat(model: nn.Module) -> nn.Module:
    """A copy of a `prepare_qat` model without fake quantization, each weight replaced by its
    rounded value (so the int8 export rounds nothing more). The model itself is unchanged."""
    folded = copy.deepcopy(model)
    for module in folded.modules():
        hooks = module.__dict__.pop("_qat_hooks", None)
        if hooks is None:
            continue
        for h in hooks:  # by id: a copied handle still points at the original's hook dicts
            module._forward_pre_hooks.pop(h.id, None)
            module._forward_hooks.pop(h.id, None)
        unparametrize(module)  # the copy's class only: the model still training keeps its own
        for name in ("qat_in", "qat_out"):
            if hasattr(module, name):
                delattr(module, name)
    return folded
