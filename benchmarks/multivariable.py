"""Many variables, deeper laws: every independent invariant of 4- and 8-variable systems.

For each built-in system (kepler, coupled-oscillators, two-body, and the
lawless coupled-ou control), clean and with measurement noise sigma 0.01, the
discovery stage (`fit_conservation` with the default `FitConfig()`: the
exhaustive search at the default size plus the sparse search, then the
acceptance tests) is timed, and every accepted law is checked against the
system's known invariants (`System.oracle` and `also_conserved`):

- *conserved*: its gradient lies in the span of the invariants' gradients
  (median relative residual over the training states);
- *coefficient error*: the law, expanded by sympy, is fitted as a linear
  combination of the expanded invariants; the largest error of its
  coefficients relative to its largest coefficient (NaN when it is not such a
  combination, e.g. a product of laws);
- the number of laws the acceptance test marks as independent, against the
  known number.

The paper's three systems are fitted with and without the sparse search in the
same run: the accepted laws must be the same. A last table shows how the cost
grows with the number of variables and the depth.

Usage::

    python benchmarks/multivariable.py          # writes results/multivariable.md and .json
    python benchmarks/multivariable.py --quick  # kepler and the control only, not written
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sympy  # noqa: E402

from benchmarks.publish import publish  # noqa: E402

INDEPENDENT = {"kepler": 3, "coupled-oscillators": 2, "two-body": 5, "coupled-ou": 0}
NOISES = (0.0, 0.01)
PAPER = ("spring", "pendulum", "real-pendulum")


def invariant_checks(system, node, states: np.ndarray) -> tuple[float, float]:
    """(median gradient residual against the invariants' span, largest relative coefficient error)."""
    import torch

    from dsl.export import to_sympy
    from lawfinder.compile import node_to_torch

    symbols = sympy.symbols(system.variables)
    texts = [system.oracle, *system.also_conserved]
    exprs = [sympy.sympify(t, locals=dict(zip(system.variables, symbols))) for t in texts]
    grads = [sympy.lambdify(symbols, [sympy.diff(e, s) for s in symbols], "numpy") for e in exprs]
    flat = states.reshape(-1, states.shape[-1])
    span = np.stack([np.stack([np.broadcast_to(np.asarray(v, float), len(flat)) for v in g(*flat.T)], -1)
                     for g in grads], -1)  # (N, d, k)
    x = torch.as_tensor(flat, dtype=torch.float64).requires_grad_(True)
    (law_grad,) = torch.autograd.grad(node_to_torch(node, system.variables)(x).sum(), x)
    law_grad = law_grad.numpy()
    coef = np.einsum("nkd,nd->nk", np.linalg.pinv(span), law_grad)
    resid = np.linalg.norm(law_grad - np.einsum("ndk,nk->nd", span, coef), axis=1)
    residual = float(np.median(resid / np.maximum(np.linalg.norm(law_grad, axis=1), 1e-300)))
    law = sympy.expand(to_sympy(node).subs({sympy.Symbol(v): s for v, s in zip(system.variables, symbols)}))
    parts = [sympy.expand(e).as_coefficients_dict() for e in exprs]
    mine = law.as_coefficients_dict()
    keys = sorted({k for p in [mine, *parts] for k in p if k != 1}, key=str)
    a = np.array([[float(p.get(k, 0)) for p in parts] for k in keys])
    b = np.array([float(mine.get(k, 0)) for k in keys])
    c, *_ = np.linalg.lstsq(a, b, rcond=None)
    fit = a @ c
    if np.linalg.norm(fit - b) > 0.2 * np.linalg.norm(b):
        return residual, float("nan")
    return residual, float(np.max(np.abs(b - fit)) / np.abs(fit).max())


def discover(name: str, noise: float, sparse: bool = True) -> dict:
    import dsl
    from lawfinder.discovery import (
        FitConfig,
        default_max_size,
        fit_conservation,
        sparse_rows,
        train_windows,
    )
    from lawfinder.systems import get_system

    system = get_system(name)
    traj = system.load(noise, 0)
    t0 = time.perf_counter()
    size = default_max_size(traj.units)
    formulas = dsl.FormulaSet.enumerate(traj.units, size)
    t1 = time.perf_counter()
    table = fit_conservation(traj, formulas, FitConfig(sparse=sparse))
    t2 = time.perf_counter()
    out = {"system": name, "noise": noise, "variables": len(traj.variables), "max_size": size,
           "formulas": len(formulas), "enumerate_s": t1 - t0, "discovery_s": t2 - t0,
           "acceptance": table.attrs["acceptance"]}  # fmt: skip
    if sparse:
        windows, _ = train_windows(traj, FitConfig())
        from lawfinder.controls import random_sequences

        t3 = time.perf_counter()
        rows, terms = sparse_rows(windows, np.stack(random_sequences(windows, 0).states), formulas, FitConfig())
        out.update(sparse_s=time.perf_counter() - t3, library_terms=len(terms), sparse_candidates=len(rows))
    laws = []
    states = np.stack(traj.train().states)
    from lawfinder.ranking import laws_from_table

    accepted = table[table.accepted]
    for row, law in zip(accepted.itertuples(), laws_from_table(accepted, formulas.dag)):
        item = {"formula": row.formula, "status": row.status, "independent": bool(row.independent),
                "method": row.method, "size": int(row.size), "noise_ratio": float(row.noise_ratio),
                "p_value": float(row.p_value)}  # fmt: skip
        if system.oracle is not None:
            item["gradient_residual"], item["coefficient_error"] = invariant_checks(system, law.node, states)
        laws.append(item)
    out["laws"] = laws
    out["independent"] = sum(item["independent"] for item in laws)
    out["expected_independent"] = INDEPENDENT.get(name)
    return out


def growth() -> list[dict]:
    """Formulas per size for 2, 4 and 8 variables, and the sparse library's size."""
    import dsl
    from lawfinder.systems import get_system
    from lawfinder.terms import library

    rows = []
    for name in ("pendulum", "kepler", "two-body"):
        system = get_system(name)
        counts = {size: len(dsl.FormulaSet.enumerate(system.units, size)) for size in (5, 6, 7)}
        rows.append({"system": name, "variables": len(system.variables), "formulas_by_size": counts,
                     "library_terms": len(library(system.variables, dsl.dimensions(system.units)))})  # fmt: skip
    return rows


def markdown(results: list[dict], paper: list[dict], cost: list[dict], meta: dict) -> str:
    lines = ["# Many variables: every independent invariant", "",
             f"`python benchmarks/multivariable.py` at git `{meta['git']}`, {meta['machine']}, "
             f"OMP_NUM_THREADS=1, seed 0. Discovery = enumeration + fit + sparse search + acceptance "
             f"(`FitConfig()` defaults).", "",
             "| system | noise | vars | size | formulas | library | discovery s | sparse s | independent (known) | accepted |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r['system']} | {r['noise']:g} | {r['variables']} | {r['max_size']} | {r['formulas']} | "
                     f"{r.get('library_terms', '')} | {r['discovery_s']:.1f} | {r.get('sparse_s', float('nan')):.1f} | "
                     f"{r['independent']} ({r['expected_independent']}) | {len(r['laws'])} |")  # fmt: skip
    for r in results:
        lines += ["", f"## {r['system']}, noise {r['noise']:g}", ""]
        if not r["laws"]:
            lines.append("Nothing accepted.")
            continue
        lines += ["| law | status | independent | method | gradient residual | coefficient error |", "|---|---|---|---|---|---|"]
        for law in r["laws"]:
            lines.append(f"| `{law['formula']}` | {law['status']} | {law['independent']} | {law['method']} | "
                         f"{law.get('gradient_residual', float('nan')):.2g} | {law.get('coefficient_error', float('nan')):.2%} |")  # fmt: skip
    lines += ["", "## The paper's systems, with and without the sparse search", "",
              "| system | accepted with | accepted without | same |", "|---|---|---|---|"]
    for p in paper:
        lines.append(f"| {p['system']} | {'; '.join(p['with'])} | {'; '.join(p['without'])} | {p['with'] == p['without']} |")
    lines += ["", "## How the cost grows", "", "| system | variables | size 5 | size 6 | size 7 | library terms |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for c in cost:
        n = c["formulas_by_size"]
        lines.append(f"| {c['system']} | {c['variables']} | {n[5]} | {n[6]} | {n[7]} | {c['library_terms']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    names = ("kepler", "coupled-ou") if args.quick else tuple(INDEPENDENT)
    results = []
    for name in names:
        for noise in NOISES:
            r = discover(name, noise)
            print(f"{name} noise {noise}: {r['independent']} independent of {r['expected_independent']}, "
                  f"{len(r['laws'])} accepted, {r['discovery_s']:.1f} s", flush=True)
            results.append(r)
    paper = []
    for name in () if args.quick else PAPER:
        with_, without = (discover(name, 0.0, sparse=s) for s in (True, False))
        paper.append({"system": name, "with": [x["formula"] for x in with_["laws"]],
                      "without": [x["formula"] for x in without["laws"]]})  # fmt: skip
    cost = growth()
    from lawfinder.runinfo import run_metadata

    meta = run_metadata(0, "cpu")
    meta_line = {"git": meta["git_revision"], "machine": f"{meta['machine']['cpus']} CPUs ({meta['machine']['platform']})"}
    text = markdown(results, paper, cost, meta_line)
    data = {"meta": meta, "results": results, "paper": paper, "cost": cost}
    if args.quick:
        print(text)
    else:
        publish(text, data, ROOT / "results" / "multivariable.md")


if __name__ == "__main__":
    main()
