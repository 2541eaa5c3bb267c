"""Conservation losses for tailoring: the quantity ``g`` along a prediction, in several forms.

This module knows nothing about where ``g`` comes from (a compiled formula, a neural embedding):
anything that maps a batch of states ``(..., d)`` to values ``(..., k)`` will do. The inner
steps that minimise these losses per example are in :mod:`lawfinder.tailoring.inner`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torch.func import jvp, vjp

from lawfinder.errors import UserError
from lawfinder.tailoring.batch import Inputs


class ConservedQuantity(Protocol):
    """Maps states ``(..., d)`` to the values of k conserved quantities ``(..., k)``."""

    def __call__(self, x: Tensor) -> Tensor: ...


class TailoringLoss(Protocol):
    """An unsupervised loss per example: ``(inputs, outputs) -> (B,)``, or ``(B, C)`` for a bank.

    ``inputs`` and ``outputs`` carry the batch in their leading dimension(s); the value for one
    example may depend only on that example. The ``"lowrank"`` engine may add leading dimensions.
    """

    def __call__(self, inputs: Inputs, outputs: Tensor) -> Tensor: ...


def _first(g: ConservedQuantity, states: Tensor) -> Tensor:
    gs = g(states)
    return ((gs[..., 1:, :] - gs[..., :1, :]) ** 2).sum(-2)


def _consecutive(g: ConservedQuantity, states: Tensor) -> Tensor:
    gs = g(states)
    return ((gs[..., 1:, :] - gs[..., :-1, :]) ** 2).sum(-2)


def _finite(g: ConservedQuantity, x: Tensor, v: Tensor, dt: float) -> Tensor:
    return (g(x + v * dt) - g(x)) ** 2


def _central(g: ConservedQuantity, x: Tensor, v: Tensor, dt: float) -> Tensor:
    return ((g(x + v * dt) - g(x - v * dt)) / 2) ** 2


def _infinitesimal(g: ConservedQuantity, x: Tensor, v: Tensor, dt: float) -> Tensor:
    x = x.expand_as(v).contiguous()
    values, pullback = vjp(g, x)
    if values.shape[-1] == 1:
        (slope,) = pullback(torch.ones_like(values))
        return (dt * (slope * v).sum(-1, keepdim=True)) ** 2
    return (dt * jvp(g, (x,), (v,))[1]) ** 2


def _normalised(g: ConservedQuantity, x: Tensor, v: Tensor, dt: float, scale=None) -> Tensor:
    """``dt^2 (grad g . v)^2 / |scale * grad g|^2`` per output of ``g``: the infinitesimal form
    measured in units of ``g``'s own local slope, so it depends on the law's level sets only."""
    x = x.expand_as(v).contiguous()
    values, pullback = vjp(g, x)
    s = 1.0 if scale is None else torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    out = []
    for j in range(values.shape[-1]):
        (slope,) = pullback(torch.zeros_like(values).index_fill(-1, torch.tensor([j], device=x.device), 1.0))
        den = ((slope * s) ** 2).sum(-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        out.append((dt * (slope * v).sum(-1, keepdim=True)) ** 2 / den)
    return torch.cat(out, -1)


SEQUENCE_FORMS: dict[str, Callable[[ConservedQuantity, Tensor], Tensor]] = {
    "first": _first,
    "consecutive": _consecutive,
}
"""Eq. 2a (every state against the first) and eq. 2b (consecutive states); ``(..., T+1, d)``."""

DERIVATIVE_FORMS: dict[str, Callable[[ConservedQuantity, Tensor, Tensor, float], Tensor]] = {
    "finite": _finite,
    "central": _central,
    "infinitesimal": _infinitesimal,
    "normalised": _normalised,
}
"""Forms for predictors of v = dx/dt: ``(g(x+v dt)-g(x))^2`` (the paper's, biased at O(dt^2)),
``((g(x+v dt)-g(x-v dt))/2)^2``, ``(dt grad g(x) . v)^2`` (the dt -> 0 limit, unbiased), and that
limit divided by ``|scale * grad g(x)|^2`` (``"normalised"``: the same for g, 2 g or g^3, and
bounded where the slope of g grows, as 1/r's does near the origin)."""

LOSS_FORMS = (*SEQUENCE_FORMS, *DERIVATIVE_FORMS)


def slopes(g: ConservedQuantity, x: Tensor) -> list[Tensor]:
    """``grad g_j`` at states ``x (..., d)`` for each output j of ``g``: one reverse pass per output."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        values = g(x)
        k = values.shape[-1]
        return [torch.autograd.grad(values[..., j].sum(), x, retain_graph=j + 1 < k)[0] for j in range(k)]


def conservation_loss(g: ConservedQuantity, states: Tensor, form: str = "first") -> Tensor:
    """Eq. 2a/2b on a sequence ``states (..., T+1, d)`` whose index 0 is the ground truth.

    Returns the loss per conserved component, shape ``(..., k)``.
    """
    if form not in SEQUENCE_FORMS:
        raise UserError(
            f"unknown sequence loss form {form!r}; choose one of {list(SEQUENCE_FORMS)}"
        )
    return SEQUENCE_FORMS[form](g, states)


@dataclass(frozen=True)
class NoetherLoss:
    """The Noether loss of ``g`` as a :class:`TailoringLoss`.

    Parameters
    ----------
    g
        The conserved quantity (or a bank of candidates, with ``bank=True``).
    form
        A key of :data:`DERIVATIVE_FORMS` (inputs x ``(..., d)``, outputs dx/dt ``(..., d)``) or of
        :data:`SEQUENCE_FORMS` (inputs x0 ``(..., d)``, outputs predicted ``(..., T, d)``).
    dt
        Time step of the derivative forms.
    bank
        Treat the k outputs of ``g`` as k candidate laws tailored independently: the loss then
        returns ``(..., k)`` instead of summing over them.
    scale
        Per-variable scales (e.g. the data's standard deviations) of the ``"normalised"`` form's
        slope norm; None: ones.

    Examples
    --------
    >>> energy = lambda x: (x[..., 1:2] ** 2 - 3 * torch.cos(x[..., 0:1]))
    >>> loss = NoetherLoss(energy, "infinitesimal", dt=0.1)
    >>> loss(torch.zeros(4, 2), torch.ones(4, 2)).shape
    torch.Size([4])
    """

    g: ConservedQuantity
    form: str = "infinitesimal"
    dt: float | None = None
    bank: bool = False
    scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.form not in LOSS_FORMS:
            raise UserError(f"unknown loss form {self.form!r}; choose one of {list(LOSS_FORMS)}")
        if self.form in DERIVATIVE_FORMS and (self.dt is None or not self.dt > 0):
            raise UserError(f"loss form {self.form!r} needs a time step dt > 0, got {self.dt}")

    @property
    def linear_in_slope(self) -> bool:
        """True for the forms ``sum_j w_j (dt grad g_j . v)^2`` with weights ``w_j`` that do not depend on v
        (``"infinitesimal"``: 1; ``"normalised"``: ``1 / |scale * grad g_j|^2``): their gradient with
        respect to v has a closed form (`output_gradient`)."""
        return self.form in ("infinitesimal", "normalised") and not self.bank

    def output_gradient(self, outputs: Tensor, slopes: list[Tensor]) -> Tensor:
        """The gradient of the summed loss with respect to ``outputs`` (v = dx/dt), ``(..., d)``, given
        the slopes ``grad g_j`` at the inputs (`slopes`): ``sum_j 2 w_j dt^2 (grad g_j . v) grad g_j``.

        No autograd through the loss: a tailored rollout evaluates this at every step on a handful
        of states, where autograd's calls, not the arithmetic, are the cost. Only for
        `linear_in_slope` forms.
        """
        s = 1.0 if self.scale is None else torch.as_tensor(self.scale, dtype=outputs.dtype, device=outputs.device)
        total = torch.zeros_like(outputs)
        for slope in slopes:
            weight = 2 * self.dt**2 * (slope * outputs).sum(-1, keepdim=True)
            if self.form == "normalised":
                weight = weight / ((slope * s) ** 2).sum(-1, keepdim=True).clamp_min(torch.finfo(outputs.dtype).tiny)
            total = total + weight * slope
        return total

    def __call__(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        if self.form in DERIVATIVE_FORMS:
            extra = (self.scale,) if self.form == "normalised" else ()
            vals = DERIVATIVE_FORMS[self.form](self.g, inputs, outputs, self.dt, *extra)
        else:
            states = torch.cat([inputs.unsqueeze(-2).expand_as(outputs[..., :1, :]), outputs], -2)
            vals = SEQUENCE_FORMS[self.form](self.g, states)
        return vals if self.bank else vals.sum(-1)
