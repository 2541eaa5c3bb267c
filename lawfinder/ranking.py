"""Rank candidate conservation laws by what they do for a predictor, as Noether Networks do.

1. **Screen** every candidate with one inner tailoring step on the pre-trained predictor at every
   inner learning rate ``10^k, k in {-3, -2.5, ..., 1}``; candidates x rates x training points
   are one batched call of the tailoring core (the bank of candidates is a loss with one output
   per candidate), in chunks of candidates to bound memory. Score: the training dx/dt MSE after
   the inner step, relative to the untailored MSE (lower is better); each candidate keeps its
   best rate.
2. **Meta-tailor** the ``top`` candidates (20) from the pre-trained predictor, each with its best
   rate (or with each of ``meta_rates``); a numerical failure marks the run diverged and the
   ranking goes on.
3. **Pick** the winner by long-term rollout MSE on the *training* trajectories (tailoring at every
   evaluation) and report its rollout RMSE on the test trajectories.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from lawfinder.errors import UserError
from lawfinder.meta import meta_tailor
from lawfinder.predictor import as_tensor
from lawfinder.rollout import evaluate_rollout, vector_field
from lawfinder.tailoring import NoetherLoss, tailored_predict

__all__ = ["RATES", "Ranking", "candidate_loss", "rank_candidates", "screen"]

RATES = tuple(float(10.0**k) for k in np.arange(-3.0, 1.01, 0.5))
"""The paper's inner learning rates, 10^k for k in {-3, -2.5, ..., 1}."""

Bank = Callable[[Tensor], Tensor]


def _columns(bank: Bank, idx: Sequence[int]) -> Bank:
    index = list(idx)
    return lambda x: bank(x)[..., index]


def candidate_loss(bank: Bank, c: int, *, form: str = "infinitesimal", dt: float) -> NoetherLoss:
    """The Noether loss of candidate ``c`` of a bank ``(..., d) -> (..., n_candidates)``."""
    return NoetherLoss(_columns(bank, [c]), form, dt)


def _bank_size(bank: Bank, x: Tensor) -> int:
    with torch.no_grad():
        out = bank(x[:1])
    if out.ndim != 2 or out.shape[0] != 1:
        raise UserError(
            f"a candidate bank must map (N, d) to (N, n_candidates); got {tuple(out.shape)}"
        )
    return out.shape[1]


def screen(
    model: nn.Module,
    bank: Bank,
    x: np.ndarray | Tensor,
    dxdt: np.ndarray | Tensor,
    *,
    dt: float,
    rates: Sequence[float] = RATES,
    form: str = "infinitesimal",
    chunk: int = 8,
) -> pd.DataFrame:
    """One inner step per candidate and rate; returns the best rate and score of each candidate.

    Parameters
    ----------
    model
        The pre-trained predictor of dx/dt.
    bank
        All candidates at once: ``(..., d) -> (..., n_candidates)``.
    x, dxdt
        Training states and derivatives ``(N, d)``.
    dt
        Time step of the derivative loss form.
    rates, form
        Inner learning rates and loss form (see :data:`lawfinder.tailoring.DERIVATIVE_FORMS`).
    chunk
        Candidates per batched call (memory grows as rates x chunk x N x width).

    Returns
    -------
    pandas.DataFrame
        One row per candidate: ``candidate``, ``best_lr``, ``screen_mse`` (train dx/dt MSE after
        the inner step at the best rate), ``base_mse`` (untailored) and ``screen_score``
        (their ratio; below 1 means the law helps), then ``ratio@<rate>`` for every rate.
    """
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    xs, ys = as_tensor(x, dev, dtype), as_tensor(dxdt, dev, dtype)
    n_cand = _bank_size(bank, xs)
    lr = torch.tensor(list(rates), dtype=dtype, device=dev)
    with torch.no_grad():
        base = float(((model(xs) - ys) ** 2).mean())
        mses = []
        for start in range(0, n_cand, chunk):
            idx = range(start, min(start + chunk, n_cand))
            loss = NoetherLoss(_columns(bank, idx), form, dt, bank=True)
            pred = tailored_predict(model, loss, xs, lr=lr)
            mses.append(((pred - ys) ** 2).mean((-1, -2)))
    mse = torch.cat(mses, 1).double().cpu().numpy()
    mse[~np.isfinite(mse)] = np.inf
    best = mse.argmin(0)
    best_mse = mse[best, np.arange(n_cand)]
    table = pd.DataFrame(
        {
            "candidate": np.arange(n_cand),
            "best_lr": np.asarray(rates)[best],
            "screen_mse": best_mse,
            "base_mse": base,
            "screen_score": best_mse / base,
        }
    )
    per_rate = pd.DataFrame(mse.T / base, columns=[f"ratio@{r:.3g}" for r in rates])
    return pd.concat([table, per_rate], axis=1)


@dataclass
class Ranking:
    """Result of :func:`rank_candidates`.

    Attributes
    ----------
    table
        One row per meta-tailoring run (candidate and inner rate), best first: ``rank``,
        ``candidate``, ``name``, ``lr``, ``screen_score``, ``meta_train_mse`` (train dx/dt MSE after meta-tailoring),
        ``train_rollout_mse``, ``test_rollout_rmse``, ``test_end_mse``, ``diverged``.
    screen
        The full screen table (every candidate).
    models
        Meta-tailored predictor per ``(candidate, lr)`` (runs that did not diverge).
    timings
        Seconds per stage: ``screen``, ``meta``, ``rollouts``, ``total``.
    """

    table: pd.DataFrame
    screen: pd.DataFrame
    models: dict[tuple[int, float], nn.Module] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> pd.Series:
        """The winning row (lowest train rollout MSE among candidates that did not diverge)."""
        return self.table.iloc[0]


def _rollout_data(data: Any, horizon: int | None) -> tuple[list, list]:
    if horizon is not None and hasattr(data, "windows"):
        data = data.windows(horizon)
    return list(data.states), list(data.times)


def rank_candidates(
    model: nn.Module,
    bank: Bank,
    names: Sequence[str],
    train: Any,
    test: Any,
    *,
    dt: float,
    top: int = 20,
    rates: Sequence[float] = RATES,
    form: str = "infinitesimal",
    epochs: int = 100,
    outer_lr: float = 1e-4,
    batch_size: int | None = None,
    substeps: int = 2,
    horizon: int | None = None,
    chunk: int = 8,
    meta_rates: Sequence[float] | None = None,
    laws: Sequence[Callable[[Tensor], Tensor]] | None = None,
) -> Ranking:
    """Screen, meta-tailor the top candidates and rank them by long-term training MSE.

    Parameters
    ----------
    model
        The pre-trained predictor of dx/dt (not modified).
    bank, names
        Candidates as one callable ``(..., d) -> (..., n_candidates)`` and their names.
    train, test
        :class:`~lawfinder.trajectories.Trajectories` (anything with ``states``, ``times`` and
        ``derivative_pairs()``): meta-tailoring uses the training derivative pairs; rollouts start
        at the first state of each trajectory.
    dt
        Time step of the loss form.
    top
        How many screened candidates to meta-tailor.
    rates, form, chunk
        As in :func:`screen`.
    epochs, outer_lr, batch_size
        As in :func:`~lawfinder.meta.meta_tailor`.
    substeps
        RK4 sub-steps per data interval in the rollouts.
    horizon
        Cut the training trajectories into windows of this many points for the training
        rollouts (e.g. the test horizon, for one long real-pendulum trajectory); default whole.
    meta_rates
        Inner rates at which to meta-tailor every top candidate (one run each); default only the
        candidate's best screening rate. The one-step screen cannot see that a larger rate, once
        meta-tailored, predicts better in the long term (it does on the real pendulum), so
        ``top=5, meta_rates=(0.01, 0.0316, 0.1, 0.316)`` spends the same 20 runs differently.
    laws
        Optional single-candidate callables ``(..., d) -> (..., 1)``, one per bank column; when
        given, meta-tailoring and rollouts use them instead of slicing the bank (which would
        evaluate every candidate at each of the thousands of rollout evaluations).

    Returns
    -------
    Ranking
    """
    t0 = time.perf_counter()
    x, dxdt = train.derivative_pairs()
    dev = next(model.parameters()).device
    n_cand = _bank_size(bank, as_tensor(x, dev))
    if len(names) != n_cand or (laws is not None and len(laws) != n_cand):
        raise UserError(
            f"a bank of {n_cand} candidates needs as many names (got {len(names)})"
            + ("" if laws is None else f" and laws (got {len(laws)})")
        )
    scr = screen(model, bank, x, dxdt, dt=dt, rates=rates, form=form, chunk=chunk)
    scr.insert(1, "name", list(names))
    t1 = time.perf_counter()
    chosen = scr.sort_values("screen_score", kind="stable").head(top)
    train_states, train_times = _rollout_data(train, horizon)
    pairs = [
        (int(c), float(r))
        for c, best in zip(chosen.candidate, chosen.best_lr)
        for r in ([best] if meta_rates is None else meta_rates)
    ]
    info = scr.set_index("candidate")[["name", "screen_score"]]
    rows, models, meta_s, roll_s = [], {}, 0.0, 0.0
    for c, lr in pairs:
        loss = (
            candidate_loss(bank, c, form=form, dt=dt)
            if laws is None
            else NoetherLoss(laws[c], form, dt)
        )
        ta = time.perf_counter()
        res = meta_tailor(
            model,
            loss,
            x,
            dxdt,
            inner_lr=lr,
            epochs=epochs,
            outer_lr=outer_lr,
            batch_size=batch_size,
        )
        tb = time.perf_counter()
        row = {"candidate": c, "name": info.name[c], "lr": lr, "screen_score": info.screen_score[c]}
        row.update(meta_train_mse=res.final_loss, diverged=res.diverged)
        row.update(train_rollout_mse=math.nan, test_rollout_rmse=math.nan, test_end_mse=math.nan)
        if not res.diverged:
            models[(c, lr)] = res.model
            fld = vector_field(res.model, loss, lr=lr)
            tr = evaluate_rollout(fld, train_states, train_times, substeps=substeps, device=dev)
            te = evaluate_rollout(
                fld, list(test.states), list(test.times), substeps=substeps, device=dev
            )
            row.update(train_rollout_mse=tr.mse, test_rollout_rmse=te.rmse, test_end_mse=te.end_mse)
            if not math.isfinite(tr.mse):
                row["diverged"] = True
        roll_s += time.perf_counter() - tb
        meta_s += tb - ta
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        key = table.train_rollout_mse.where(~table.diverged, np.inf).fillna(np.inf)
        table = table.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key")
        table.insert(0, "rank", np.arange(1, len(table) + 1))
        table = table.reset_index(drop=True)
    timings = {"screen": t1 - t0, "meta": meta_s, "rollouts": roll_s}
    timings["total"] = time.perf_counter() - t0
    return Ranking(table=table, screen=scr, models=models, timings=timings)
