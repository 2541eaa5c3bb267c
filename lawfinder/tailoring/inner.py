"""The tailoring core: per-example inner steps on an unsupervised conservation loss.

Tailoring (Alet et al. 2020) adapts a predictor to each query at prediction time with a few
gradient steps on an unsupervised loss; Noether Networks use the conservation loss of a quantity
``g``. The losses (:class:`~lawfinder.tailoring.loss.NoetherLoss`) are in
:mod:`lawfinder.tailoring.loss`; this module holds the inner optimizers and the ``"vmap"``
engine; :func:`tailored_predict` also dispatches to the ``"lowrank"`` engine. Both compute the
per-example inner steps without a Python loop:

``"vmap"``
    ``torch.func.vmap`` of ``torch.func.grad`` of a ``functional_call``: any model, any subset of
    parameters, SGD or Adam. It materialises one copy of the adapted parameters per example.
``"lowrank"``
    :mod:`lawfinder.tailoring.lowrank`: SGD on ``nn.Linear`` weights and biases only; exact, about three
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

import inspect
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lawfinder.errors import UserError
from lawfinder.tailoring.batch import Inputs, as_args, map_inputs
from lawfinder.tailoring.loss import TailoringLoss
from lawfinder.tailoring.lowrank import NotLowRank, lowrank_predict


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


def tailored_predict(model: nn.Module, loss: TailoringLoss, inputs: Inputs, *, method: str = "auto",
                     **options) -> Tensor:  # fmt: skip
    """Predictions of ``model`` after tailoring it to each example (see :func:`tailor`).

    Parameters
    ----------
    method
        ``"vmap"``, ``"lowrank"`` (SGD on ``nn.Linear`` parameters only; exact, much cheaper)
        or ``"auto"`` (``"lowrank"`` when it applies).
    options
        :func:`tailor`'s keyword arguments (``params``, ``steps``, ``lr``, ``optimizer``,
        ``create_graph``, ``theta``), with its defaults.

    Returns
    -------
    Tensor
        The outputs for every example, with leading dimensions ``(R, C, B)`` (R with a tensor of
        rates, C for a bank of C losses).

    Examples
    --------
    >>> from lawfinder.tailoring.predictor import MLP
    >>> energy = lambda x: (x[..., 1:2] ** 2 - 3 * torch.cos(x[..., 0:1]))
    >>> loss = NoetherLoss(energy, "infinitesimal", dt=0.07)
    >>> tailored_predict(MLP(2), loss, torch.randn(5, 2), lr=0.1).shape
    torch.Size([5, 2])
    """
    if method not in METHODS:
        raise UserError(f"unknown tailoring method {method!r}; choose one of {list(METHODS)}")
    bound = _TAILOR.bind(model, loss, inputs, **options)
    bound.apply_defaults()
    kw = bound.arguments
    own = kw["theta"] is None
    theta, names = _resolve(model, kw["theta"], kw["params"], kw["optimizer"], kw["steps"], kw["lr"])
    steps, lr, optimizer, create_graph = kw["steps"], kw["lr"], kw["optimizer"], kw["create_graph"]
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


_TAILOR = inspect.signature(tailor)
