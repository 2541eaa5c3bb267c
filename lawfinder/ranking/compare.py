"""Rank conservation laws: the paired per-seed comparison, its fallback, and the paper's screen.

`order_laws` is the final ranking of `lawfinder.ranking.stage` (runs on held-out validation data,
over several predictor seeds):

* Law A ranks above law B on tailoring benefit only when their paired per-seed difference of
  ``log(validation MSE)`` exceeds its own seed spread: ``mean(d) < -std(d)`` (sample std, so
  never with one seed), and, below 5 seeds, where that happens by chance too often (one time in
  five at 2 seeds), when a one-sided paired t-test at `LEVEL` passes as well. Laws are ordered by their Copeland score (laws beaten minus laws
  beaten by); ties, which is every pair when no difference exceeds the noise, fall back to
  the conservation evidence (exact within noise first, simplest first among them, when the candidates table says so in
  ``status == "law"`` or ``exact``; then the conservation ratio) and then simplicity (``size``). The rule "exceeds the seed spread" is the issue's
  (#14), not tuned on any data.
* `dedupe` gives one place to laws that are the same function up to sign or an affine rewrite
  (``a*g + b``), checked numerically: ``|corr| >= 1 - 1e-9`` of their values on the training
  states (approximations such as ``q**2`` for ``2 - 2*cos(q)`` stay below it on data that
  leave the small-angle regime).

`screen` is the paper's one-step screen, kept as a library function; the search no longer uses
it (it cannot see which rate helps after meta-tailoring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from lawfinder.errors import UserError
from lawfinder.laws.law import Law, laws_from_table
from lawfinder.tailoring import NoetherLoss, tailored_predict
from lawfinder.tailoring.predictor import as_tensor

__all__ = ["RATES", "Law", "beats", "candidate_loss", "dedupe", "laws_from_table", "order_laws", "screen"]

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


def screen(model: nn.Module, bank: Bank, x: np.ndarray | Tensor, dxdt: np.ndarray | Tensor, *, dt: float,
           rates: Sequence[float] = RATES, form: str = "infinitesimal", chunk: int = 8) -> pd.DataFrame:  # fmt: skip
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


def dedupe(laws: Sequence[Law], states: np.ndarray, variables: Sequence[str], tol: float = 1e-9):
    """Distinct laws in fallback order (best-conserved first), merging affine rewrites of each other.

    Returns ``(distinct, duplicates)``; each kept law lists the formulas merged into it.
    """
    from lawfinder.laws.compile import node_to_torch

    x = torch.as_tensor(states, dtype=torch.float64)
    order = sorted(range(len(laws)), key=lambda i: laws[i].fallback_key())
    kept, values, dupes = [], [], []
    for i in order:
        law = laws[i]
        with torch.no_grad():
            v = node_to_torch(law.node, variables)(x).reshape(-1).numpy()
        v = v - v.mean() if np.isfinite(v).all() else None
        scale = None if v is None else float(np.linalg.norm(v))
        same = None
        for k, w in enumerate(values):
            if v is not None and w is not None and scale > 0 and w[1] > 0:
                if abs(float(v @ w[0])) / (scale * w[1]) >= 1 - tol:
                    same = k
                    break
        if same is None:
            kept.append(replace(law, duplicates=()))
            values.append(None if v is None else (v, scale))
        else:
            kept[same] = replace(kept[same], duplicates=(*kept[same].duplicates, law.name))
            dupes.append(law.name)
    return kept, dupes


LEVEL = 0.05
"""One-sided level of the paired t-test that `beats` also asks for below 5 seeds: the conventional
5%, not tuned on any data; it changes no ranking at 5 seeds or more (tests/test_ranking.py)."""


def beats(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` (log validation MSE per seed) is lower than ``b`` beyond the seed spread.

    "Beyond the spread" (``mean(d) < -std(d)``) is a paired t statistic above ``sqrt(n)``: at 5 or
    more seeds that is also significant at `LEVEL` (one-sided), but at 2 seeds it happens by chance
    one time in five. So below 5 seeds the paired t-test at `LEVEL` must pass too (t above 6.3 at 2
    seeds, 2.9 at 3, 2.4 at 4); from 5 seeds on the rule is the spread alone, as before.
    """
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    if n < 2:
        return False
    mean, spread = float(d.mean()), float(d.std(ddof=1))
    if not (mean < 0 and -mean > spread):
        return False
    if spread == 0.0:
        return True
    from scipy import special

    return bool(-mean / (spread / math.sqrt(n)) > special.stdtrit(n - 1, 1 - LEVEL))


def order_laws(values: Sequence[np.ndarray]) -> tuple[list[int], np.ndarray]:
    """Order of laws given in fallback order: Copeland score on `beats`, ties keep fallback order.

    Returns the order and the Copeland scores (laws beaten minus laws beaten by).
    """
    n = len(values)
    win = np.array([[i != j and beats(values[i], values[j]) for j in range(n)] for i in range(n)])
    score = win.sum(1) - win.sum(0) if n else np.zeros(0, int)
    return sorted(range(n), key=lambda i: (-score[i], i)), score


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def best_runs(table: pd.DataFrame, key: str, seeds: Sequence[int]) -> list[dict]:
    """Per seed, the run of `key` with the lowest validation MSE (its inner rate chosen there)."""
    out = []
    for s in seeds:
        rows = table[(table.key == key) & (table.seed == s)]
        val = rows.val_mse.where(~rows.diverged.astype(bool), np.inf).fillna(np.inf)
        out.append(rows.loc[val.idxmin()].to_dict() if len(rows) else {})
    return out


def _stats(runs: list[dict], vanilla: list[dict] | None = None, control: list[dict] | None = None) -> dict:
    rmse = np.array([r.get("test_rmse", math.nan) for r in runs], float)
    end = np.array([r.get("test_end_mse", math.nan) for r in runs], float)
    ok = np.isfinite(rmse)
    out = {"test_rmse": _num(rmse[ok].mean()) if ok.any() else None,
           "test_rmse_std": _num(rmse[ok].std()) if ok.any() else None,
           "test_end_mse": _num(end[ok].mean()) if ok.any() else None,
           "test_end_mse_std": _num(end[ok].std()) if ok.any() else None,
           "val_mse": _num(np.mean([r.get("val_mse", math.inf) for r in runs])),
           "diverged_seeds": int((~ok).sum())}  # fmt: skip
    if vanilla is not None:
        out["seeds_helped"] = int(sum(r < v["test_rmse"] for r, v in zip(rmse, vanilla) if math.isfinite(r)))
    if control is not None:
        out["seeds_beat_control"] = int(sum(r < c["test_rmse"] for r, c in zip(rmse, control) if math.isfinite(r)))
    out["per_seed"] = [{"seed": int(r["seed"]), "inner_lr": float(r["lr"]),
                        "outer_lr": float(r.get("outer_lr", math.nan)), "form": r.get("form"), "val_mse": _num(r["val_mse"]),
                        "test_rmse": _num(r["test_rmse"]), "test_end_mse": _num(r["test_end_mse"]),
                        "diverged": bool(r["diverged"]) or bool(r.get("final_diverged", False))}
                       for r in runs if r]  # fmt: skip
    return out


def _log_values(runs: list[dict], caps: np.ndarray) -> np.ndarray:
    v = np.array([r.get("val_mse", math.inf) if r else math.inf for r in runs], float)
    v = np.where(np.isfinite(v) & (v > 0), v, np.exp(caps))
    return np.minimum(np.log(v), caps)


def rank_summary(table: pd.DataFrame, distinct, chosen, dupes, seeds, oracle, members=()) -> dict:
    """The summary's ``ranking``, ``ranking_basis``, ``baselines`` and ``curves`` from all runs."""
    finite = table.val_mse.replace([np.inf, -np.inf], np.nan)
    caps = np.array([np.log(finite[table.seed == s].max()) + np.log(10.0) for s in seeds])
    vanilla = best_runs(table, "vanilla", seeds)
    control = best_runs(table, "control", seeds)
    laws = [best_runs(table, f"law{k}", seeds) for k in range(len(chosen))]
    values = [_log_values(r, caps) for r in laws]
    order, score = order_laws(values)
    ctl_values = _log_values(control, caps)
    per_seed_rank = np.argsort(np.argsort(np.stack(values), axis=0, kind="stable"), axis=0) + 1 if values else None
    separated = bool(len(set(score.tolist())) > 1)
    n = len(seeds)
    test = f" and a paired t-test at {LEVEL:g}" if 1 < n < 5 else ""
    basis = (f"tailoring benefit where paired differences exceed the seed spread{test} ({n} seeds), "
             "otherwise conservation evidence and simplicity") if separated else (
             f"conservation evidence and simplicity: no law's tailoring benefit differed from "
             f"another's by more than the seed spread{test} ({n} seed{'s' * (n != 1)})")  # fmt: skip
    ranking = []
    for pos, k in enumerate(order + list(range(len(chosen), len(distinct)))):
        law = distinct[k]
        entry = {"rank": pos + 1, **law.to_dict(), "meta_tailored": k < len(chosen)}
        if k < len(chosen):
            nxt = order[pos + 1] if pos + 1 < len(order) else None
            entry["ranked_by"] = ("tailoring benefit" if nxt is not None and score[k] > score[nxt]
                                  else "conservation evidence and simplicity")  # fmt: skip
            entry.update(_stats(laws[k], vanilla, control))
            entry["inner_lr"] = [p["inner_lr"] for p in entry["per_seed"]]
            entry["seed_ranks"] = per_seed_rank[k].tolist()
            entry["helps"] = beats(values[k], ctl_values)
            entry["diverged"] = entry["diverged_seeds"] == n
        else:
            entry["ranked_by"] = "not meta-tailored (beyond the --top budget): conservation evidence"
            entry.update(test_rmse=None, test_end_mse=None, diverged=False)
        ranking.append(entry)
    baselines = {"vanilla": _stats(vanilla), "control": {**_stats(control, vanilla), "what":
                 "the predictor fine-tuned for the same epochs without tailoring"}}  # fmt: skip
    curve_rows = {"vanilla": vanilla[0], "control": control[0]}
    if oracle is not None:
        runs = best_runs(table, "oracle", seeds)
        baselines["oracle"] = {"formula": oracle, **_stats(runs, vanilla, control),
                               "inner_lr": [float(r["lr"]) for r in runs]}  # fmt: skip
        curve_rows["oracle"] = runs[0]
    if members:
        runs = best_runs(table, "set", seeds)
        both = _log_values(runs, caps)
        best = values[order[0]] if order else None
        baselines["set"] = {"formulas": [law.name for law in members], **_stats(runs, vanilla, control),
                            "inner_lr": [float(r["lr"]) for r in runs], "helps": beats(both, ctl_values),
                            "beats_rank_1": best is not None and beats(both, best),
                            "beaten_by_rank_1": best is not None and beats(best, both)}  # fmt: skip
    if order:
        curve_rows["rank 1"] = laws[order[0]][0]
    first = vanilla[0]
    curves = {"seed": int(seeds[0]), "t": first.get("times"), "mse": {}, "energy_drift": {}}
    if isinstance(first.get("true_drift"), list):
        curves["energy_drift"]["truth"] = first["true_drift"]
    for name, row in curve_rows.items():
        if isinstance(row.get("mse_curve"), list):
            curves["mse"][name] = row["mse_curve"]
        if isinstance(row.get("drift_curve"), list):
            curves["energy_drift"][name] = row["drift_curve"]
    return {"ranking": ranking, "ranking_basis": basis, "seeds": list(seeds), "baselines": baselines,
            "curves": curves}  # fmt: skip
