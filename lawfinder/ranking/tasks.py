"""The ranking stage's tasks: each runs in a worker (`lawfinder.parallel.executor`), so they live at
module level and take and return plain data (a state dict, rows of metrics).

``pretrain_task`` pre-trains one seed's predictor and rolls it out; ``group_task`` meta-tailors one
law (or the control) at every setting, rolls the runs out on validation together and continues the
one chosen there on all the training data (`lawfinder.ranking.stage` says why and how it was chosen).
"""

from __future__ import annotations

import math
import time

import pandas as pd
import torch

from lawfinder.laws.compile import node_to_torch

FORM = "infinitesimal"


def _rollouts(field, states, times, energy, device, members=None) -> list:
    from lawfinder.ranking.rollout import evaluate_rollouts

    return evaluate_rollouts(field, states, times, members=members, energy=energy, substeps=2, device=device)


def _metrics(prefix: str, res) -> dict:
    return {f"{prefix}_mse": float(res.rmse) ** 2, f"{prefix}_rmse": float(res.rmse),
            f"{prefix}_end_mse": float(res.end_mse)}  # fmt: skip


def _curves(res) -> dict:
    return {"mse_curve": res.mse_per_step.tolist(),
            "drift_curve": None if res.drift is None else res.drift.tolist()}  # fmt: skip


def _evaluate(row: dict, field, ctx: dict, members: int | None = None) -> None:
    """Validation rollouts (selection contexts) or test rollouts (final contexts) into `row`
    (``members=1``: ``field`` is a one-member `lawfinder.tailoring.stacked.StackedMLP` field)."""
    dev = ctx["device"]
    if ctx.get("val") is not None:
        (val,) = _rollouts(field, *ctx["val"], None, dev, members)
        if not math.isfinite(val.rmse):
            row.update(diverged=True, reason="the validation rollout is not finite")
            return
        row.update(_metrics("val", val))
    if ctx.get("test") is not None:
        (test,) = _rollouts(field, *ctx["test"], ctx["energy"], dev, members)
        row.update(_metrics("test", test), **_curves(test), times=test.times.tolist())
        if test.true_drift is not None:
            row["true_drift"] = test.true_drift.tolist()


def _blank(seed, key, outer, lr, form=FORM) -> dict:
    return {"seed": seed, "key": key, "lr": lr, "outer_lr": outer, "form": form, "diverged": False, "reason": "",
            "val_mse": math.inf, "val_rmse": math.inf, "val_end_mse": math.inf, "test_mse": math.nan,
            "test_rmse": math.nan, "test_end_mse": math.nan, "mse_curve": None, "drift_curve": None}  # fmt: skip


def _pairs(ctx: dict):
    from lawfinder.tailoring.predictor import as_tensor

    return as_tensor(ctx["fit_x"], ctx["device"]), as_tensor(ctx["fit_y"], ctx["device"])


def pretrain_task(ctx: dict, final: dict | None, seed: int) -> dict:
    """Pre-train the predictor of one seed on ``ctx``'s pairs, roll it out (vanilla); then continue it
    ``final["refit_steps"]`` steps on ``final``'s pairs, with its Adam moments, and roll that out."""
    from lawfinder.tailoring.predictor import MLP, adam_fit

    clock = _Clock()
    x, y = _pairs(ctx)
    torch.manual_seed(seed)
    model = MLP(x.shape[1]).to(ctx["device"])
    adam = adam_fit(model, x, y, steps=ctx.get("steps", 2000), weight_decay=ctx["wd"])
    clock.lap("pretrain")
    row = _blank(seed, "vanilla", 0.0, 0.0)
    _evaluate(row, model, ctx)
    clock.lap("rollouts")
    out = {"state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, "row": row}
    if final is not None:
        adam_fit(model, *_pairs(final), steps=final["refit_steps"], weight_decay=final["wd"], state=adam)
        clock.lap("refit")
        out["final"] = _blank(seed, "vanilla", 0.0, 0.0)
        _evaluate(out["final"], model, final)
        clock.lap("rollouts")
    return {**out, "seconds": clock.laps}


class _Clock:
    """CPU seconds per kind of work inside a task (summed by kind; CPU, so that other processes
    sharing the cores do not count)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.process_time()

    def lap(self, kind: str) -> None:
        now = time.process_time()
        self.laps[kind] = self.laps.get(kind, 0.0) + now - self._t
        self._t = now


def group_task(ctx: dict, final: dict | None, state: dict, seed: int, key: str, node, settings) -> dict:
    """Meta-tailor one law (``node``; None: the no-tailoring control) at each ``(outer rate, form,
    inner rate)`` of ``settings`` on ``ctx``'s pairs and roll all of them out together on validation;
    then continue the run chosen there ``final["refit_epochs"]`` epochs on ``final``'s pairs (its
    Adam moments kept) and roll that one out on test."""
    from lawfinder.ranking.compare import best_runs
    from lawfinder.tailoring import NoetherLoss
    from lawfinder.tailoring.meta import meta_tailor
    from lawfinder.tailoring.predictor import mlp_from_state_dict
    from lawfinder.tailoring.stacked import StackedMLP

    clock = _Clock()
    dev = ctx["device"]
    g = law_function(node, ctx["variables"]) if node is not None else (lambda x: x[..., :1])
    forms = {form: NoetherLoss(g, form, ctx["dt"], scale=ctx.get("scale")) for _, form, _ in settings}
    x, y = _pairs(ctx)
    rows, runs = [], []
    for outer, form, lr in settings:
        lr = lr if node is not None else 0.0
        res = meta_tailor(mlp_from_state_dict(state).to(dev), forms[form], x, y, inner_lr=lr, epochs=ctx["epochs"],
                          outer_lr=outer, seed=seed)  # fmt: skip
        rows.append({**_blank(seed, key, outer, lr, form), "diverged": res.diverged, "reason": res.reason})
        runs.append(res)
    clock.lap("meta_tailor")
    ok = [i for i, r in enumerate(rows) if not r["diverged"]]
    if ok:
        stack = StackedMLP([runs[i].model.state_dict() for i in ok],
                           [forms[rows[i]["form"]] if node is not None else None for i in ok], [rows[i]["lr"] for i in ok])  # fmt: skip
        for i, val in zip(ok, _rollouts(stack.tailored, *ctx["val"], None, dev, len(ok))):
            if math.isfinite(val.rmse):
                rows[i].update(_metrics("val", val))
            else:
                rows[i].update(diverged=True, reason="the validation rollout is not finite")
    clock.lap("rollouts")
    out = {"rows": rows}
    if final is not None:
        best = best_runs(pd.DataFrame(rows), key, [seed])[0]
        i = next(i for i, r in enumerate(rows) if (r["outer_lr"], r["form"], r["lr"]) == (best["outer_lr"], best["form"], best["lr"]))
        out["final"] = _refit(final, runs[i], rows[i], g, node is not None, clock)
    return {**out, "seconds": clock.laps}


def _refit(final: dict, run, row: dict, g, tailored: bool, clock: _Clock) -> dict:
    from lawfinder.tailoring import NoetherLoss
    from lawfinder.tailoring.meta import meta_tailor
    from lawfinder.tailoring.stacked import StackedMLP

    out = {**_blank(row["seed"], row["key"], row["outer_lr"], row["lr"], row["form"])}
    if row["diverged"]:
        return {**out, "diverged": True, "reason": "the run chosen on validation diverged"}
    loss = NoetherLoss(g, row["form"], final["dt"], scale=final.get("scale"))
    res = meta_tailor(run.model, loss, *_pairs(final), inner_lr=row["lr"], epochs=final["refit_epochs"],
                      outer_lr=row["outer_lr"], seed=row["seed"], optimizer_state=run.optimizer_state)  # fmt: skip
    out.update(diverged=res.diverged, reason=res.reason)
    clock.lap("refit")
    if not res.diverged:
        stack = StackedMLP([res.model.state_dict()], [loss if tailored else None], [row["lr"]])
        _evaluate(out, stack.tailored, final, members=1)
    clock.lap("rollouts")
    return out


def law_function(node, variables: list[str]):
    """The torch function of a law's tree, or of a tuple of trees (a set of laws: one column each)."""
    if not isinstance(node, tuple):
        return node_to_torch(node, variables)
    parts = [node_to_torch(n, variables) for n in node]
    return lambda x: torch.cat([f(x) for f in parts], -1)
