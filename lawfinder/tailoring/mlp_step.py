"""The inner SGD step of the HNN MLP (`lawfinder.tailoring.predictor.MLP`) written out as tensor algebra.

For a loss linear in the slope (`lawfinder.tailoring.loss.NoetherLoss.linear_in_slope`) the inner step
on every layer has a closed form (the ``"lowrank"`` engine's, `lawfinder.tailoring.lowrank`): with
``delta`` the loss's gradient at each layer's output, the adapted layer computes
``W a' + b - lr delta (a . a' + 1)``, and the output's ``delta`` is ``sum_j 2 w_j dt^2 (grad g_j . v) grad g_j``
with the slopes ``grad g_j`` taken at the inputs, which do not depend on the weights. Written out, the
tailored prediction is a plain function of the weights: autograd differentiates it once (second order,
as meta-tailoring needs) instead of twice through the engine's inner gradient, and a meta-tailoring run
computes the slopes of its training states once. `StackedMLP` evaluates the same algebra for R members.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lawfinder.tailoring.predictor import MLP

__all__ = ["adapted_output", "applies", "tailored_mlp"]


def adapted_output(x, z1, h1, h2, d4, lr, w2, w4, b2) -> Tensor:
    """The MLP's output after one SGD step of rate ``lr`` on every layer, given its forward pass
    (``z1`` the first layer's pre-activation, ``h1``, ``h2`` the hidden activations) and the loss's
    gradient ``d4`` at its output. Weights ``(h, h)``, ``(d, h)`` (or stacked ``(R, h, h)``, ``(R, d, h)``,
    ``lr`` then ``(R, 1, 1)``). Fused ops (``addcmul``, ``tanh_backward``): each elementwise pass over
    the ``(B, h)`` activations costs about as much as a tenth of a matrix product."""
    d2 = torch.ops.aten.tanh_backward(torch.matmul(d4, w4), h2)
    d0 = torch.ops.aten.tanh_backward(torch.matmul(d2, w2), h1)
    h1n = torch.tanh(torch.addcmul(z1, d0, lr * ((x * x).sum(-1, keepdim=True) + 1), value=-1))
    z2n = torch.matmul(h1n, w2.transpose(-1, -2)) + torch.addcmul(b2, d2, lr * ((h1 * h1n).sum(-1, keepdim=True) + 1), value=-1)
    h2n = torch.tanh(z2n)
    return torch.addcmul(torch.matmul(h2n, w4.transpose(-1, -2)), d4, lr * (h2 * h2n).sum(-1, keepdim=True), value=-1)


def applies(model, loss, lr, options: dict) -> bool:
    """Whether `tailored_mlp` computes what ``tailored_predict(model, loss, x, lr=lr, **options)`` does
    (method ``"auto"``, one SGD step on every parameter of a plain `MLP`, a loss linear in the slope)."""
    plain = {"method": "auto", "steps": 1, "params": None, "optimizer": "sgd", "theta": None}
    return (type(model) is MLP and getattr(loss, "linear_in_slope", False) and not isinstance(lr, Tensor)
            and all(options.get(k, v) == v for k, v in plain.items()))  # fmt: skip


def tailored_mlp(model, loss, x: Tensor, slopes: list[Tensor], lr: float) -> Tensor:
    """``model``'s predictions at ``x (B, d)`` after its inner step on ``loss``, ``slopes`` being
    ``lawfinder.tailoring.loss.slopes(loss.g, x)``; differentiable in the weights."""
    first, second, last = model.net[0], model.net[2], model.net[4]
    z1 = first(x)
    h1 = torch.tanh(z1)
    h2 = torch.tanh(second(h1))
    out = last(h2)
    d4 = loss.output_gradient(out, slopes)
    return adapted_output(x, z1, h1, h2, d4, lr, second.weight, last.weight, second.bias)
