"""Meta-tailoring: fine-tune a predictor for the task loss measured *after* the inner step.

Noether Networks train ``theta`` so that ``f_{theta - lr grad L(theta, x)}(x)`` is accurate,
which needs the gradient through the inner step (second order, as in MAML). Starting from the
pre-trained predictor, this module runs Adam on that objective for a number of epochs and
reports numerical failure as a status instead of raising, so that a ranking over many candidate
laws goes on when one of them blows up (two of the paper's top 20 did on the real pendulum).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from lawfinder.errors import UserError
from lawfinder.tailoring.inner import tailored_predict
from lawfinder.tailoring.loss import NoetherLoss, TailoringLoss, slopes
from lawfinder.tailoring.mlp_step import applies, tailored_mlp
from lawfinder.tailoring.predictor import adam, as_tensor

__all__ = ["MetaResult", "meta_tailor", "task_mse"]

STATUSES = ("ok", "diverged")


def task_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error, the task loss on dx/dt."""
    return ((pred - target) ** 2).mean()


@dataclass
class MetaResult:
    """Outcome of :func:`meta_tailor`.

    Attributes
    ----------
    model
        The fine-tuned copy (the input model is left untouched). After a divergence, the weights
        of the last epoch whose loss and gradients were finite.
    status
        ``"ok"`` or ``"diverged"``.
    losses
        Mean task loss (after tailoring) of each epoch run, measured before its updates.
    initial_loss, final_loss
        Task loss after tailoring on the whole training set, before and after fine-tuning.
    reason
        Why the run was marked diverged (empty when ``status == "ok"``).
    seconds
        Wall-clock time of the fine-tuning.
    optimizer_state
        The outer Adam's ``state_dict`` at the end, to continue the run (``meta_tailor(optimizer_state=...)``).
    reference, scale
        The untailored task loss at the start and the larger of it and the loss of predicting zero:
        the divergence test's yardsticks, kept so that a resumed run (``meta_tailor(resume=...)``)
        is judged as one uninterrupted run would be.
    """

    model: nn.Module
    status: str
    losses: list[float] = field(default_factory=list)
    initial_loss: float = math.nan
    final_loss: float = math.nan
    reason: str = ""
    seconds: float = 0.0
    optimizer_state: dict | None = None
    reference: float = math.nan
    scale: float = math.nan

    @property
    def diverged(self) -> bool:
        """True when the run stopped on a numerical failure."""
        return self.status == "diverged"


def _predict(model, loss, x, tailor_kw, create_graph=False, at=None) -> Tensor:
    """The tailored prediction; at inner rate 0 that is the model's own (the same numbers, without the
    inner step's work: the control of a ranking fine-tunes this way). With ``at``, the slopes of ``loss.g`` at
    ``x``: the step written out (`lawfinder.tailoring.mlp_step`), always differentiable."""
    lr = tailor_kw["lr"]
    if not isinstance(lr, Tensor) and lr == 0 and isinstance(loss, NoetherLoss) and not loss.bank:
        return model(x)
    if at is not None:
        return tailored_mlp(model, loss, x, at, lr)
    return tailored_predict(model, loss, x, create_graph=create_graph, **tailor_kw)


def _full_loss(model, loss, x, y, task, tailor_kw, at=None) -> float:
    with torch.no_grad():
        return float(task(_predict(model, loss, x, tailor_kw, at=at), y))


def meta_tailor(
    model: nn.Module,
    loss: TailoringLoss,
    x: np.ndarray | Tensor,
    y: np.ndarray | Tensor,
    *,
    inner_lr: float,
    epochs: int = 100,
    outer_lr: float = 1e-4,
    batch_size: int | None = None,
    inner_steps: int = 1,
    params: Sequence[str] | None = None,
    weight_decay: float = 0.0,
    explode: float = 1e3,
    seed: int = 0,
    method: str = "auto",
    task: Callable[[Tensor, Tensor], Tensor] = task_mse,
    optimizer_state: dict | None = None,
    resume: MetaResult | None = None,
    finish: bool = True,
) -> MetaResult:
    """Fine-tune a copy of ``model`` on ``task(tailored prediction, y)`` with second-order Adam.

    Parameters
    ----------
    model
        The pre-trained predictor (not modified).
    loss
        The tailoring loss used in the inner step, e.g. ``NoetherLoss(g, "infinitesimal", dt)``.
    x, y
        Training inputs and targets (for a derivative predictor: states and dx/dt), ``(N, d)``.
    inner_lr, inner_steps, params, method
        The inner step, as in :func:`~lawfinder.tailoring.tailored_predict`. With ``"auto"``, one SGD step
        of every parameter of an `MLP` on a loss linear in the slope is written out
        (`lawfinder.tailoring.mlp_step`: the lowrank engine's numbers up to rounding, with the law's
        slopes at ``x`` computed once per run; results/meta_step.md measures it).
    epochs
        Passes over the training set (100 in the paper).
    outer_lr, weight_decay
        Adam settings of the outer (fine-tuning) step.
    batch_size
        Examples per outer step; ``None`` uses the full batch, so one step per epoch.
    explode
        The run is marked diverged when a loss or gradient is not finite, when an epoch's loss
        exceeds ``explode`` times the largest of the initial tailored loss, the untailored loss
        and the loss of predicting zero (``task(0, y)``), or when the final tailored loss is
        still ``explode`` times the untailored one. A large inner rate may start far above the
        untailored loss and recover, and so may the first Adam steps from a converged predictor
        (a 1000x transient at outer lr 1e-3 was measured): that is not divergence.
    seed
        Seeds the mini-batch order.
    task
        Task loss ``(prediction, target) -> scalar``; default mean squared error.
    optimizer_state
        An earlier run's ``MetaResult.optimizer_state``: continue its Adam moments and step count
        (at ``outer_lr`` and ``weight_decay`` given here).
    resume
        A run of this function on the same data and settings, not diverged: continue it for ``epochs``
        more (its model, Adam state, divergence yardsticks and losses; ``model`` and
        ``optimizer_state`` are then ignored). ``e1`` epochs resumed for ``e2`` are the same numbers
        as ``e1 + e2`` epochs in one call (`benchmarks/halving.py` uses it to measure stopping worse
        runs early; the ranking runs every run to the end, see `lawfinder.ranking.stage`).
    finish
        False for a step that will be resumed: the end-of-run test (the tailored loss still
        ``explode`` times the untailored one) is left to the last step, as in one uninterrupted run.

    Returns
    -------
    MetaResult
    """
    if epochs < 0:
        raise UserError(f"epochs must be >= 0, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch_size must be >= 1 or None, got {batch_size}")
    if resume is not None:
        if resume.diverged or resume.optimizer_state is None:
            raise UserError("only a finished run that did not diverge can be resumed")
        model, optimizer_state = resume.model, resume.optimizer_state
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    xs, ys = as_tensor(x, dev, dtype), as_tensor(y, dev, dtype)
    if xs.shape[0] != ys.shape[0]:
        raise UserError(f"x and y have {xs.shape[0]} and {ys.shape[0]} rows")
    tailor_kw = {"lr": inner_lr, "steps": inner_steps, "params": params, "method": method}
    start = time.perf_counter()
    fine = copy.deepcopy(model).train()
    at = slopes(loss.g, xs) if applies(fine, loss, inner_lr, tailor_kw) and inner_lr != 0 else None
    opt = adam(fine.parameters(), outer_lr, weight_decay, optimizer_state)
    gen = torch.Generator().manual_seed(seed)
    n = xs.shape[0]
    size = n if batch_size is None else min(batch_size, n)
    result = MetaResult(model=fine, status="ok")
    if resume is not None:
        result.reference, result.scale = resume.reference, resume.scale
        result.initial_loss, result.losses = resume.initial_loss, list(resume.losses)
    else:
        with torch.no_grad():
            result.reference = float(task(fine(xs), ys))
            result.scale = max(result.reference, float(task(torch.zeros_like(ys), ys)))
        result.initial_loss = _full_loss(fine, loss, xs, ys, task, tailor_kw, at)
    reference, scale = result.reference, result.scale
    if not math.isfinite(result.initial_loss):
        result.status, result.reason = "diverged", "the initial tailored loss is not finite"
        result.seconds = time.perf_counter() - start
        fine.eval()
        return result
    good = copy.deepcopy(fine.state_dict())
    done = len(result.losses)
    for _ in range(done if size < n else 0):  # the mini-batch orders an uninterrupted run has drawn
        torch.randperm(n, generator=gen)
    for epoch in range(done, done + epochs):
        order = torch.randperm(n, generator=gen).to(dev) if size < n else None
        total, why = 0.0, ""
        for s in range(0, n, size):
            idx = slice(s, s + size) if order is None else order[s : s + size]
            pred = _predict(fine, loss, xs[idx], tailor_kw, create_graph=True,
                            at=None if at is None else [slope[idx] for slope in at])
            value = task(pred, ys[idx])
            opt.zero_grad()
            value.backward()
            grads_ok = all(
                torch.isfinite(p.grad).all() for p in fine.parameters() if p.grad is not None
            )
            if not math.isfinite(value.item()) or not grads_ok:
                why = f"non-finite loss or gradient in epoch {epoch}"
                break
            opt.step()
            total += value.item() * ys[idx].shape[0]
        mean = total / n
        if not why and mean > explode * max(result.initial_loss, scale):
            why = f"loss {mean:.3g} exceeded {explode:g} x the initial {result.initial_loss:.3g}"
        if why:
            fine.load_state_dict(good)
            result.status, result.reason = "diverged", why
            break
        result.losses.append(mean)
        good = copy.deepcopy(fine.state_dict())
    fine.eval()
    result.final_loss = _full_loss(fine, loss, xs, ys, task, tailor_kw, at)
    if result.status == "ok" and not math.isfinite(result.final_loss):
        fine.load_state_dict(good)
        result.status, result.reason = "diverged", "the final tailored loss is not finite"
    elif finish and result.status == "ok" and result.final_loss > explode * reference:
        result.status = "diverged"
        result.reason = f"the tailored loss {result.final_loss:.3g} stayed above {explode:g} x "
        result.reason += f"the untailored {reference:.3g}"
    result.seconds = time.perf_counter() - start
    result.optimizer_state = opt.state_dict()
    return result
