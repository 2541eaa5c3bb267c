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
    python benchmarks/multivariable.py --search-seeds 2   # the same, 2 predictor seeds per end-to-end search
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

from benchmarks.publish import meta_line, publish  # noqa: E402
from lawfinder.runs.report_text import rmse_text, set_verdict, short  # noqa: E402

INDEPENDENT = {"kepler": 3, "coupled-oscillators": 2, "two-body": 5, "coupled-ou": 0}
NOISES = (0.0, 0.01)
PAPER = ("spring", "pendulum", "real-pendulum")


def invariant_checks(system, node, states: np.ndarray) -> tuple[float, float]:
    """(median gradient residual against the invariants' span, largest relative coefficient error)."""
    import torch

    from dsl.export import to_sympy
    from lawfinder.laws.compile import node_to_torch

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
    from lawfinder.data.systems import get_system
    from lawfinder.discovery.stage import (
        FitConfig,
        default_max_size,
        fit_conservation,
        term_library,
        train_windows,
    )

    system = get_system(name)
    traj = system.load(noise, 0)
    t0 = time.perf_counter()
    size = default_max_size(traj.units)
    formulas = dsl.FormulaSet.enumerate(traj.units, size)
    t1 = time.perf_counter()
    table = fit_conservation(traj, formulas, FitConfig(sparse=sparse))
    t2 = time.perf_counter()
    stages = table.attrs["timings_s"]
    out = {"system": name, "noise": noise, "variables": len(traj.variables), "max_size": size,
           "formulas": len(formulas), "enumerate_s": t1 - t0, "discovery_s": t2 - t0,
           "fit_s": stages["fit"], "sparse_s": stages["sparse"], "accept_s": stages["accept"],
           "acceptance": table.attrs["acceptance"]}  # fmt: skip
    if sparse:
        out["library_terms"] = len(term_library(train_windows(traj, FitConfig())[0], traj.units))
    laws = []
    states = np.stack(traj.train().states)
    from lawfinder.ranking.compare import laws_from_table

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


GROWTH_SIZES = (5, 6, 7)
GROWTH_MAX_FORMULAS = 20_000  # larger enumerations are counted, not fitted


def growth() -> list[dict]:
    """Formulas and discovery seconds (fit + sparse search + acceptance) per size, for 2, 4 and 8 variables."""
    import dsl
    from lawfinder.data.systems import get_system
    from lawfinder.discovery.stage import FitConfig, fit_conservation
    from lawfinder.discovery.terms import library

    rows = []
    for name in ("pendulum", "kepler", "two-body"):
        system = get_system(name)
        traj = system.load(0.0, 0)
        row = {"system": name, "variables": len(system.variables), "formulas_by_size": {}, "seconds_by_size": {},
               "library_terms": len(library(system.variables, dsl.dimensions(system.units)))}  # fmt: skip
        for size in GROWTH_SIZES:
            t0 = time.perf_counter()
            formulas = dsl.FormulaSet.enumerate(system.units, size)
            row["formulas_by_size"][size] = len(formulas)
            if len(formulas) <= GROWTH_MAX_FORMULAS:
                table = fit_conservation(traj, formulas, FitConfig())
                row["seconds_by_size"][size] = {"total": time.perf_counter() - t0, **table.attrs["timings_s"]}
            print(f"growth {name} size {size}: {len(formulas)} formulas {row['seconds_by_size'].get(size)}", flush=True)
        rows.append(row)
    return rows


SEARCHES = ("kepler", "coupled-oscillators", "two-body")


def end_to_end(name: str, seeds: int, jobs: int = 2) -> dict:
    """`lawfinder search --system NAME --seeds N --jobs 2`, otherwise at default settings."""
    import tempfile

    from lawfinder.data.systems import get_system
    from lawfinder.runs.pipeline import SearchConfig, run_search

    system = get_system(name)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        summary = run_search(system.load(), Path(out), SearchConfig.from_options(jobs=jobs, seeds=seeds), system=name,
                             oracle=system.oracle, oracle_fn=system.oracle_fn, log=lambda _: None)  # fmt: skip
    base = summary["baselines"]
    keep = ("test_rmse", "test_rmse_std", "seeds_helped", "per_seed", "diverged_seeds")
    return {"system": name, "wall_s": time.perf_counter() - t0, "timings_s": summary["timings_s"],
            "ranking_work_s": summary.get("ranking_work_s"), "ranking_basis": summary["ranking_basis"], "seeds": summary["seeds"],
            "ranking": [{"formula": e["formula"], **{k: e.get(k) for k in keep}} for e in summary["ranking"]],
            "baselines": {k: {kk: v.get(kk) for kk in (*keep, "formula", "formulas", "beats_rank_1", "beaten_by_rank_1")}
                          for k, v in base.items()}}  # fmt: skip


def markdown(results: list[dict], paper: list[dict], cost: list[dict], meta: dict, searches=()) -> str:
    lines = ["# Many variables: every independent invariant", "",
             f"`python benchmarks/multivariable.py` at git `{meta['git']}`, {meta['machine']}, "
             f"OMP_NUM_THREADS=1, seed 0. Discovery = enumeration + fit + sparse search + acceptance "
             f"(`FitConfig()` defaults). *Library*: the sparse search's terms for the data, before those "
             f"that vanish near zero or depend on simpler ones are dropped.", "",
             "| system | noise | vars | size | formulas | library | discovery s | of it: fit / sparse / accept s | independent (known) | accepted |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r['system']} | {r['noise']:g} | {r['variables']} | {r['max_size']} | {r['formulas']} | "
                     f"{r.get('library_terms', '')} | {r['discovery_s']:.1f} | {r['fit_s']:.1f} / {r['sparse_s']:.1f} / {r['accept_s']:.1f} | "
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
    lines += ["", "## How the cost grows", "",
              "Formulas enumerated, and seconds of discovery (enumeration + fit + sparse search + acceptance; "
              f"fitted up to {GROWTH_MAX_FORMULAS:,} formulas), by the largest formula size; the sparse "
              "library's terms, whose search costs the same at every size.", "",
              "| system | variables | " + " | ".join(f"size {k}" for k in GROWTH_SIZES) + " | library terms |",
              "|---" * (3 + len(GROWTH_SIZES)) + "|"]  # fmt: skip
    for c in cost:
        cells = []
        for k in GROWTH_SIZES:
            secs = c["seconds_by_size"].get(k)
            cells.append(f"{c['formulas_by_size'][k]:,}" + (f" in {secs['total']:.1f} s (sparse {secs['sparse']:.1f} s)" if secs else " (not fitted)"))
        lines.append(f"| {c['system']} | {c['variables']} | " + " | ".join(cells) + f" | {c['library_terms']} |")
    if searches:
        lines += ["", "## The whole search", "",
                  f"`lawfinder search --system NAME --seeds {len(searches[0]['seeds'])} --jobs 2`, otherwise at "
                  "default settings (100 epochs; the default is 5 seeds): wall time, test RMSE (mean ± std "
                  "over seeds) of each ranked law, of the independent laws tailored together, and of the "
                  "baselines.", "",
                  "| system | wall s | ranked by | vanilla | fine-tuned control | oracle | ranked laws | independent set together |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in searches:
            b = r["baselines"]
            joint = b.get("set")
            verdict = f" ({set_verdict(joint)})" if joint else ""
            laws = "; ".join(f"{k + 1}. `{short(e['formula'])}` {rmse_text(e)}" for k, e in enumerate(r["ranking"]))
            lines.append(f"| {r['system']} | {r['wall_s']:.0f} | {r['ranking_basis']} | {rmse_text(b['vanilla'])} | "
                         f"{rmse_text(b['control'])} | {rmse_text(b.get('oracle') or {})} | {laws} | "
                         f"{rmse_text(joint) + verdict if joint else '-'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--search-seeds", type=int, default=5, help="predictor seeds of the end-to-end searches")
    args = parser.parse_args()
    start = time.perf_counter()
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
    searches = [end_to_end(name, args.search_seeds) for name in (() if args.quick else SEARCHES)]
    from lawfinder.runs.metadata import run_metadata

    meta = run_metadata(0, "cpu")
    wall, load = time.perf_counter() - start, os.getloadavg()
    text = markdown(results, paper, cost, meta_line(meta), searches)
    text += f"\nThe whole benchmark took {wall / 60:.0f} min; load average at its end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).\n"
    data = {"meta": meta, "results": results, "paper": paper, "cost": cost, "searches": searches, "wall_s": wall,
            "load_average": load}  # fmt: skip
    if args.quick:
        print(text)
    else:
        publish(text, data, ROOT / "results" / "multivariable.md")


if __name__ == "__main__":
    main()
