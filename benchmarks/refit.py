"""How long the final refit must continue the selection runs on all the training data (training data only).

The ranking stage (`lawfinder/ranking/stage.py`) chooses settings on a predictor trained on the *fit*
part, then refits on all the training data (fit + validation) before the test rollouts. This script
compares, on TRAINING data only (no validation or test numbers are looked at), two ways to refit:

* from scratch (the protocol before): a predictor pre-trained 2000 steps on all the training pairs,
  then meta-tailored 100 epochs on them;
* continued: the selection predictor (2000 steps on the fit part) continued K steps on all the pairs,
  and the selection run (100 epochs on the fit part) continued E epochs on all of them, both with
  their Adam moments.

It reports the MSE on all training pairs (untailored for the predictor, tailored for the meta runs)
of each, as a ratio continued / from scratch. `lawfinder.ranking.stage.REFIT_FRACTION` (one share
of the selection budget for both) is the smallest E / 100 here whose geometric-mean ratio is <= 1;
the predictor's K / 2000 at that share is then checked in the first table. A single Adam spike
(lr 1e-3, as in training from scratch) can make one checkpoint 6-150x worse: read rows, not cells.

    python benchmarks/refit.py   # writes results/refit.md and results/refit.json
    python benchmarks/refit.py --seeds 2 3 --name refit.heldout   # the check on seeds the choice never saw
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch

import dsl
from lawfinder.data.systems import get_system
from lawfinder.ranking import stage as st
from lawfinder.ranking.tasks import law_function
from lawfinder.runs.metadata import run_metadata
from lawfinder.tailoring import NoetherLoss, tailored_predict
from lawfinder.tailoring.meta import meta_tailor
from lawfinder.tailoring.predictor import MLP, adam_fit, as_tensor

ROOT = Path(__file__).resolve().parent.parent
STEPS = (0, 100, 250, 500, 1000)
EPOCHS = (0, 10, 25, 50)
SETTINGS = ((1e-3, "infinitesimal", 0.1), (1e-3, "normalised", 1.0))


def _mse(model, x, y, loss=None, lr=0.0) -> float:
    with torch.no_grad():
        pred = model(x) if loss is None else tailored_predict(model, loss, x, lr=lr)
        return float(((pred - y) ** 2).mean())


def case(name: str, seed: int) -> list[dict]:
    system = get_system(name)
    traj = system.load()
    train = traj.train()
    fit, _ = st.split_validation(train)
    fx, fy = (as_tensor(a) for a in fit.derivative_pairs())
    ax, ay = (as_tensor(a) for a in train.derivative_pairs())
    wd_fit = st.weight_decay(type("C", (), {"weight_decay": None})(), fit)
    wd_all = st.weight_decay(type("C", (), {"weight_decay": None})(), train)
    g = law_function(dsl.parse(system.oracle, system.units).root, list(traj.variables))
    dt = st.data_dt(train)
    torch.manual_seed(seed)
    scratch = MLP(ax.shape[1])
    adam_fit(scratch, ax, ay, steps=2000, weight_decay=wd_all)
    torch.manual_seed(seed)
    sel = MLP(fx.shape[1])
    state = adam_fit(sel, fx, fy, steps=2000, weight_decay=wd_fit)
    rows = [{"system": name, "seed": seed, "what": "predictor", "scratch": _mse(scratch, ax, ay)}]
    cont, done = copy.deepcopy(sel), 0
    for k in STEPS:
        state = adam_fit(cont, ax, ay, steps=k - done, weight_decay=wd_all, state=state)
        done = k
        rows[0][f"K={k}"] = _mse(cont, ax, ay)
    for outer, form, lr in SETTINGS:
        loss_all = NoetherLoss(g, form, dt, scale=st.state_scale(train))
        loss_fit = NoetherLoss(g, form, dt, scale=st.state_scale(fit))
        old = meta_tailor(scratch, loss_all, ax, ay, inner_lr=lr, epochs=100, outer_lr=outer, seed=seed)
        row = {"system": name, "seed": seed, "what": f"meta {form} {lr:g} outer {outer:g}",
               "scratch": _mse(old.model, ax, ay, loss_all, lr)}  # fmt: skip
        res = meta_tailor(sel, loss_fit, fx, fy, inner_lr=lr, epochs=100, outer_lr=outer, seed=seed)
        model, opt, done = res.model, res.optimizer_state, 0
        for e in EPOCHS:
            if e > done:
                more = meta_tailor(model, loss_all, ax, ay, inner_lr=lr, epochs=e - done, outer_lr=outer,
                                   seed=seed, optimizer_state=opt)  # fmt: skip
                model, opt, done = more.model, more.optimizer_state, e
            row[f"E={e}"] = _mse(model, ax, ay, loss_all, lr)
        rows.append(row)
    print(json.dumps(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--systems", nargs="+", default=["pendulum", "spring", "real-pendulum"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="refit", help="results/NAME.md and .json")
    args = parser.parse_args()
    from lawfinder.parallel import run_chunks

    tasks = [(case, (n, s)) for n in args.systems for s in args.seeds]
    rows = [r for out in run_chunks(tasks, jobs=args.jobs, fork=True) for r in out]
    meta = run_metadata()
    (ROOT / "results" / f"{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = ["# Refit: continue the selection runs on all the training data, or start again?", "",
             f"Generated by `python benchmarks/refit.py --seeds {' '.join(map(str, args.seeds))} --name {args.name}` "
             f"at git {meta['git_revision']}. TRAINING data only:",
             "MSE on all the training pairs (fit + validation) of the refitted model, as a ratio continued /",
             "from scratch (below 1: the continued model fits the training data better). Predictor: K more",
             "Adam steps from the selection predictor; meta runs: E more epochs from the selection run.", ""]  # fmt: skip
    for what, grid, col in (("predictor", STEPS, "K"), ("meta", EPOCHS, "E")):
        sel = [r for r in rows if r["what"].startswith(what)]
        lines += ["| system | seed | run | from scratch | " + " | ".join(f"{col}={v}" for v in grid) + " |",
                  "|---" * (4 + len(grid)) + "|"]  # fmt: skip
        for r in sel:
            lines.append(f"| {r['system']} | {r['seed']} | {r['what']} | {r['scratch']:.3g} | "
                         + " | ".join(f"{r[f'{col}={v}'] / r['scratch']:.2f}" for v in grid) + " |")  # fmt: skip
        geo = [float(np.exp(np.mean([np.log(r[f"{col}={v}"] / r["scratch"]) for r in sel]))) for v in grid]
        lines += ["| geometric mean | | | | " + " | ".join(f"{g:.2f}" for g in geo) + " |", ""]
    (ROOT / "results" / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
