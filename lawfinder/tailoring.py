"""The tailoring core: per-example inner steps on an unsupervised conservation loss.

Tailoring (Alet et al. 2020) adapts a predictor to each query at prediction time with a few
gradient steps on an unsupervised loss; Noether Networks use the conservation loss of a quantity
``g``. This module knows nothing about where ``g`` comes from (a compiled formula, a neural
embedding): anything that maps a batch of states ``(..., d)`` to values ``(..., k)`` will do.

This module holds the losses (:class:`NoetherLoss`), the inner optimizers and the ``"vmap"``
engine; :func:`tailored_predict` also dispatches to the ``"lowrank"`` engine. Both compute the
per-example inner steps without a Python loop:

``"vmap"``
    ``torch.func.vmap`` of ``torch.func.grad`` of a ``functional_call``: any model, any subset of
    parameters, SGD or Adam. It materialises one copy of the adapted parameters per example.
``"lowrank"``
    :mod:`lawfinder.lowrank`: SGD on ``nn.Linear`` weights and biases only; exact, about three
    forward passes, and it stores activations instead of parameter copies.

``method="auto"`` picks ``"lowrank"`` whenever it applies. Both engines are differentiable with
respect to the starting parameters: with ``create_graph=True`` the inner gradient is part of the
graph (second order, as meta-tailoring needs); with ``create_graph=False`` it is treated as a
constant (first order), which is what evaluation wants.

A loss may describe a *bank* of C independent losses (it returns ``(B, C)``): every example is
then tailored once per loss, and ``lr`` may be a 1-D tensor of R rates; predictions then have
shape ``(R, C, B, ...)`` (absent dimensions left out). Ranking uses this to screen candidates x
rates in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from lawfinder.batch import Inputs, as_args, map_inputs
from lawfinder.errors import UserError
from lawfinder.lowrank import NotLowRank, lowrank_predict

__all__ = [
    "DERIVATIVE_FORMS",
    "LOSS_FORMS",
    "METHODS",
    "OPTIMIZERS",
    "SEQUENCE_FORMS",
    "ConservedQuantity",
    "NoetherLoss",
    "TailoringLoss",
    "conservation_loss",
    "predict_with",
    "tailor",
    "tailored_predict",
]


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

    def __call__(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        if self.form in DERIVATIVE_FORMS:
            extra = (self.scale,) if self.form == "normalised" else ()
            vals = DERIVATIVE_FORMS[self.form](self.g, inputs, outputs, self.dt, *extra)
        else:
            states = torch.cat([inputs.unsqueeze(-2).expand_as(outputs[..., :1, :]), outputs], -2)
            vals = SEQUENCE_FORMS[self.form](self.g, states)
        return vals if self.bank else vals.sum(-1)


def _sgd(p, g, state, lr, t):
    return {n: p[n] - lr * g[n] for n in p}, state


def _adam(p, g, state, lr, t, b1=0.9, b2=0.999, eps=1e-8):
    m0, v0 = state if state else ({n: 0.0 for n in p}, {n: 0.0 for n in p})
    m = {n: b1 * m0[n] + (1 - b1) * g[n] for n in p}
    v = {n: b2 * v0[n] + (1 - b2) * g[n] ** 2 for n in p}
    c1, c2 = 1 - b1**t, 1 - b2**t
    return {n: p[n] - lr * (m[n] / c1) / ((v[n] / c2).sqrt() + eps) for n in p}, (m, v)


OPTIMIZERS = {"sgd": _sgd, "adam": _adam}
"""Inner-loop update rules, stateless functions on parameter dicts (Adam: bias-corrected)."""

METHODS = ("auto", "vmap", "lowrank")


def _resolve(model: nn.Module, theta, params, optimizer, steps, lr):
    theta = dict(model.named_parameters()) if theta is None else dict(theta)
    if params is None:
        names = list(theta)
    else:
        params = [params] if isinstance(params, str) else list(params)
        unknown = [p for p in params if not any(n == p or n.startswith(p + ".") for n in theta)]
        if unknown:
            raise UserError(f"no parameters named {unknown}; the model has {list(theta)}")
        names = [n for n in theta if any(n == p or n.startswith(p + ".") for p in params)]
    if optimizer not in OPTIMIZERS:
        raise UserError(f"unknown inner optimizer {optimizer!r}; choose one of {list(OPTIMIZERS)}")
    if not isinstance(steps, int) or steps < 0:
        raise UserError(f"steps must be an integer >= 0, got {steps!r}")
    if isinstance(lr, Tensor) and lr.ndim > 1:
        raise UserError(
            f"lr must be a number or a 1-D tensor of rates, got shape {tuple(lr.shape)}"
        )
    return theta, names


def _bank_size(model, loss, inputs, theta) -> int | None:
    if getattr(loss, "bank", None) is False:
        return None
    one = map_inputs(inputs, lambda t: t[:1])
    with torch.no_grad():
        vals = loss(one, functional_call(model, theta, as_args(one)))
    if vals.ndim not in (1, 2) or vals.shape[0] != 1:
        raise UserError(f"a tailoring loss must return (B,) or (B, C); got {tuple(vals.shape)}")
    return vals.shape[1] if vals.ndim == 2 else None


def _vmap_tailor(model, loss, inputs, theta, names, steps, lr, optimizer, create_graph, bank):
    fixed = {n: t for n, t in theta.items() if n not in names}
    start = {n: theta[n] for n in names}
    update = OPTIMIZERS[optimizer]

    def one(example, rate, select):
        batch1 = map_inputs(example, lambda t: t.unsqueeze(0))

        def objective(p):
            val = loss(batch1, functional_call(model, {**fixed, **p}, as_args(batch1)))[0]
            return val if select is None else (val * select).sum()

        p, state = start, None
        for t in range(1, steps + 1):
            g = grad(objective)(p)
            if not create_graph:
                g = {n: v.detach() for n, v in g.items()}
            p, state = update(p, g, state, rate, t)
        return p

    fn = vmap(one, in_dims=(0, None, None), randomness="same")
    selects = None
    if bank is not None:
        selects = torch.eye(bank, dtype=as_args(inputs)[0].dtype, device=as_args(inputs)[0].device)
        fn = vmap(fn, in_dims=(None, None, 0), randomness="same")
    if isinstance(lr, Tensor) and lr.ndim == 1:
        fn = vmap(fn, in_dims=(None, 0, None), randomness="same")
    return fn(inputs, lr, selects)


def tailor(
    model: nn.Module,
    loss: TailoringLoss,
    inputs: Inputs,
    *,
    params: Sequence[str] | str | None = None,
    steps: int = 1,
    lr: float | Tensor = 1e-3,
    optimizer: str = "sgd",
    create_graph: bool = False,
    theta: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Adapt the parameters to every example separately with ``steps`` inner steps on ``loss``.

    Parameters
    ----------
    model
        Any module; it is called on a batch of one example at a time (under ``vmap``).
    loss
        The per-example unsupervised loss, e.g. a :class:`NoetherLoss`.
    inputs
        A tensor (or tuple of tensors) whose leading dimension indexes the B examples.
    params
        Names of the parameters to adapt, or module prefixes (e.g. the CN layers); default all.
    steps, lr, optimizer
        Number of inner steps, learning rate (a number, or a 1-D tensor of R rates) and rule
        (a key of :data:`OPTIMIZERS`).
    create_graph
        Differentiate through the inner gradient (second order) instead of treating it as
        a constant.
    theta
        Parameter values to start from instead of the module's own (e.g. to differentiate
        with respect to them).

    Returns
    -------
    dict
        Adapted values of the parameters in ``params``, each with leading dimensions
        ``(R, C, B)`` (R with a tensor of rates, C for a bank of C losses).
    """
    theta, names = _resolve(model, theta, params, optimizer, steps, lr)
    bank = _bank_size(model, loss, inputs, theta)
    return _vmap_tailor(model, loss, inputs, theta, names, steps, lr, optimizer, create_graph, bank)


def predict_with(
    model: nn.Module,
    adapted: Mapping[str, Tensor],
    inputs: Inputs,
    *,
    theta: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Run ``model`` on each example with its own adapted parameters (the output of :func:`tailor`).

    Parameters not in ``adapted`` are taken from ``theta`` (default: the module's own). The
    output carries the extra leading dimensions ``(R, C)`` of ``adapted``, if any.
    """
    theta = dict(model.named_parameters()) if theta is None else dict(theta)
    fixed = {n: t for n, t in theta.items() if n not in adapted}
    name = next(iter(adapted))
    extra = adapted[name].ndim - theta[name].ndim - 1

    def one(p, example):
        batch1 = map_inputs(example, lambda t: t.unsqueeze(0))
        return functional_call(model, {**fixed, **p}, as_args(batch1))[0]

    fn = vmap(one, in_dims=(0, 0), randomness="same")
    for _ in range(extra):
        fn = vmap(fn, in_dims=(0, None), randomness="same")
    return fn(dict(adapted), inputs)


def tailored_predict(
    model: nn.Module,
    loss: TailoringLoss,
    inputs: Inputs,
    *,
    params: Sequence[str] | str | None = None,
    steps: int = 1,
    lr: float | Tensor = 1e-3,
    optimizer: str = "sgd",
    create_graph: bool = False,
    theta: Mapping[str, Tensor] | None = None,
    method: str = "auto",
) -> Tensor:
    """Predictions of ``model`` after tailoring it to each example (see :func:`tailor`).

    Parameters
    ----------
    method
        ``"vmap"``, ``"lowrank"`` (SGD on ``nn.Linear`` parameters only; exact, much cheaper)
        or ``"auto"`` (``"lowrank"`` when it applies).

    Other parameters are those of :func:`tailor`.

    Returns
    -------
    Tensor
        The outputs for every example, with leading dimensions ``(R, C, B)`` (R with a tensor of
        rates, C for a bank of C losses).

    Examples
    --------
    >>> from lawfinder.predictor import MLP
    >>> energy = lambda x: (x[..., 1:2] ** 2 - 3 * torch.cos(x[..., 0:1]))
    >>> loss = NoetherLoss(energy, "infinitesimal", dt=0.07)
    >>> tailored_predict(MLP(2), loss, torch.randn(5, 2), lr=0.1).shape
    torch.Size([5, 2])
    """
    if method not in METHODS:
        raise UserError(f"unknown tailoring method {method!r}; choose one of {list(METHODS)}")
    own = theta is None
    theta, names = _resolve(model, theta, params, optimizer, steps, lr)
    bank = _bank_size(model, loss, inputs, theta)
    if method != "vmap" and optimizer == "sgd":
        run = model if own else (lambda *args: functional_call(model, theta, args))
        try:
            return lowrank_predict(run, model, loss, inputs, names, steps, lr, create_graph, bank)
        except NotLowRank as why:
            if method == "lowrank":
                raise UserError(f"method 'lowrank' does not apply: {why}") from None
    elif method == "lowrank":
        raise UserError("method 'lowrank' supports only the 'sgd' inner optimizer")
    adapted = _vmap_tailor(
        model, loss, inputs, theta, names, steps, lr, optimizer, create_graph, bank
    )
    return predict_with(model, adapted, inputs, theta=theta)
