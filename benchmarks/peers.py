"""lawfinder's fit + accept stage against pykan's conservation-law recipe, in one run on the same data.

Systems: clean spring, clean pendulum, real pendulum, pendulum with sigma-0.1 noise, random walk.
For each: the time to a formula, the formula, its coefficient against the true law, and (for
lawfinder) whether it was accepted; on the lawless random walk, what each returns. Speeds are
ratios measured in this run (the machine is shared, so absolute seconds are noisy).

pykan's recipe (its conservation-law tutorial): a KAN ``[2, 1]`` scalar H(x) trained with LBFGS so
that the normalised gradient of H is orthogonal to the normalised dx/dt (the data's derivatives:
stored ones, or forward differences for the real pendulum and the random walk), 20 steps with grid
updates, then ``auto_symbolic`` and 20 more steps on the symbolic form, float32 (its default; in
float64 the same recipe did not converge on the pendulum in a trial). pykan is optional:
``pip install -e ".[peers]"``; without it the table says why.

Also: fit + accept of the size-8 pendulum set; the fit stage's cost against formulas x states
(sizes 5-8 on the pendulum, and 300 to 4,500 states at size 7); and with ``--before REV`` the fit
stage of git revision REV (its fit.py, compile.py, score.py) timed against this checkout's, chunk by
chunk in this process, with a per-formula comparison of the results.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/peers.py                  # everything
    OMP_NUM_THREADS=1 python benchmarks/peers.py --before 3ea64a3   # as results/peers.md
    python benchmarks/peers.py --systems pendulum --no-cost
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:  # this checkout, not whatever `pip install -e` last pointed at
    sys.path.insert(0, str(ROOT))

from benchmarks.peers_report import before_after, markdown  # noqa: E402
from benchmarks.publish import publish  # noqa: E402

SYSTEMS = [("spring", 0.0), ("pendulum", 0.0), ("real-pendulum", 0.0), ("pendulum", 0.1), ("random-walk", 0.0)]
# true law as lawfinder's template, the normalised form, C = f(C0), target (as benchmarks/fit.py)
TRUE_LAW = {
    "pendulum": ("p**2 + C0*cos(q)", "p**2 - C*cos(q)", lambda c0: -c0, 3.0),
    "spring": ("p**2 + C0*q**2", "q**2 + C*p**2", lambda c0: 1.0 / c0, 1.0),
    "real-pendulum": ("v**2 + C0*cos(q)", "v**2 - C*cos(q)", lambda c0: -c0, 2.4),
}
PYKAN_LIB = ["x", "x^2", "x^3", "x^4", "sin", "cos", "exp", "log", "sqrt", "tanh", "abs"]
PYKAN_SMALL_LIB = ["x", "x^2", "sin", "cos"]  # a library that holds the true laws' pieces: pykan's best case


def label(name: str, noise: float) -> str:
    return f"{name} (noise {noise:g})" if noise else name


def run_lawfinder(name: str, noise: float, jobs: int, max_size: int = 7) -> dict:
    from dsl import FormulaSet
    from lawfinder.data.systems import get_system
    from lawfinder.discovery.stage import FitConfig, fit_conservation

    system = get_system(name)
    traj = system.load(noise=noise, seed=0)
    t0 = time.perf_counter()
    formulas = FormulaSet.enumerate(system.units, max_size)
    t1 = time.perf_counter()
    table = fit_conservation(traj, formulas, FitConfig(seed=0, jobs=jobs))
    t2 = time.perf_counter()
    finish_s = table.attrs["timings_s"]["accept"]  # the serial finish: acceptance tests and formatting
    accepted = table[table["accepted"]]
    out = {"enumerate_s": t1 - t0, "fit_accept_s": t2 - t1, "time_s": t2 - t0, "n_formulas": len(formulas),
           "fit_s": t2 - t1 - finish_s, "finish_s": finish_s, "timings_s": table.attrs["timings_s"],
           "load": os.getloadavg()[0],
           "accepted": [str(f) for f in accepted["formula"].head(5)], "n_accepted": int(len(accepted))}  # fmt: skip
    if name in TRUE_LAW:
        template, form, normalise, target = TRUE_LAW[name]
        row = table[table["template"] == template]
        if len(row):
            import json

            c0 = next(iter(json.loads(row["params"].iloc[0]).values()))["value"]
            c = normalise(c0)
            out["law"] = {"form": form, "C": c, "target": target, "rel_error": abs(c - target) / target,
                          "accepted": bool(row["accepted"].iloc[0]), "formula": str(row["formula"].iloc[0]),
                          "rank": int(row.index[0]) + 1}  # fmt: skip
    return out


def run_pykan(name: str, noise: float, seed: int = 0, lib=PYKAN_LIB) -> dict:
    """pykan's recipe on the training trajectories' (x, dx/dt) pairs; the formula as sympy text."""
    from lawfinder.data.systems import get_system

    t_import = time.perf_counter()
    try:
        import kan  # noqa: F401
    except ImportError as err:
        return {"error": f"pykan not importable: {err} (pip install -e '.[peers]')"}
    import_s = time.perf_counter() - t_import
    traj = get_system(name).load(noise=noise, seed=0)
    x_np, d_np = traj.train().derivative_pairs()
    try:
        expr, loss_spline, loss_symbolic, elapsed = pykan_recipe(x_np, d_np, traj.variables, seed=seed, lib=lib)
    except Exception as err:  # report, do not hide: pykan's own failure on this data
        return {"error": f"pykan failed: {type(err).__name__}: {err}"}
    out = {"time_s": elapsed, "import_s": import_s, "loss_spline": loss_spline, "loss_symbolic": loss_symbolic,
           "formula": _round(expr)}  # fmt: skip
    if name in TRUE_LAW:
        out["law"] = pykan_law(expr, name, traj.variables)
    return out


def pykan_recipe(x_np, d_np, variables, width=None, seed: int = 0, lib=PYKAN_LIB, steps: int = 20):
    """pykan's recipe on (x, dx/dt) pairs: ``(sympy formula, spline loss, symbolic loss, seconds)``.

    A KAN `width` (default ``[d, 1]``) H trained so that grad H is orthogonal to dx/dt, `steps`
    LBFGS steps with grid updates, ``auto_symbolic`` over `lib`, `steps` more; float32.
    """
    from kan import KAN
    from kan.LBFGS import LBFGS
    from kan.utils import batch_jacobian

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        t0 = time.perf_counter()
        x = torch.tensor(x_np, dtype=torch.float32)
        d = torch.tensor(d_np, dtype=torch.float32)
        width = [len(variables), 1] if width is None else list(width)
        model = KAN(width=width, grid=5, k=3, seed=seed, auto_save=False, device="cpu")
        d_n = d / torch.linalg.norm(d, dim=1, keepdim=True).clamp_min(1e-12)

        def train(steps: int, update_grid: bool) -> float:
            opt = LBFGS(model.parameters(), lr=1, history_size=10, line_search_fn="strong_wolfe",
                        tolerance_grad=1e-32, tolerance_change=1e-32, tolerance_ys=1e-32)  # fmt: skip

            def closure():
                opt.zero_grad()
                grad = batch_jacobian(model, x, create_graph=True)
                g_n = grad / torch.linalg.norm(grad, dim=1, keepdim=True)
                loss = torch.mean(torch.sum(g_n * d_n, dim=1) ** 2)
                loss.backward()
                return loss

            loss = None
            for step in range(steps):
                if update_grid and step % 5 == 0:
                    model.update_grid_from_samples(x)
                loss = opt.step(closure)
            return float(loss.detach()) if loss is not None else float("nan")

        loss_spline = train(steps, True)
        model.auto_symbolic(lib=list(lib), verbose=0)
        loss_symbolic = train(steps, False)
        expr = model.symbolic_formula(var=list(variables))[0][0]
        return expr, loss_spline, loss_symbolic, time.perf_counter() - t0
    finally:
        torch.set_default_dtype(before)


def _round(expr, digits: int = 4) -> str:
    import sympy

    return str(expr.xreplace({n: sympy.Float(float(n), digits) for n in expr.atoms(sympy.Float)}))


def pykan_law(expr, name: str, variables) -> dict:
    """pykan's formula read as the true law's form: C (and, for a cosine, its frequency), or why not."""
    import sympy

    q, p = (sympy.Symbol(v) for v in variables)
    _, form, _, target = TRUE_LAW[name]
    e = sympy.expand(expr.rewrite(sympy.cos))  # sin(x) -> cos(x - pi/2)
    a2 = e.coeff(p, 2).subs(q, 0) if e.has(p) else 0
    if name == "spring":
        b2 = e.coeff(q, 2).subs(p, 0) if e.has(q) else 0
        if not (a2 and b2):
            return {"form": form, "note": "not of the form q**2 + C*p**2"}
        c = float(a2 / b2)
        return {"form": form, "C": c, "target": target, "rel_error": abs(c - target) / target}
    cosines = [t for t in e.atoms(sympy.cos) if t.has(q)]
    if not a2 or len(cosines) != 1:
        return {"form": form, "note": "not of the form p**2 - C*cos(w*q)"}
    (cos_q,) = cosines
    arg = sympy.expand(cos_q.args[0])
    w, phase = float(arg.coeff(q, 1)), float(arg.subs(q, 0))
    c = float(-e.coeff(cos_q) / a2)
    if abs(abs(phase) - np.pi) < 0.5:  # cos(w q + pi) = -cos(w q)
        c, phase = -c, phase - np.sign(phase) * np.pi
    w = abs(w)
    return {"form": form, "C": c, "target": target, "rel_error": abs(c - target) / target, "frequency": w,
            "frequency_error": abs(w - 1.0), "phase": phase}  # fmt: skip


def cost_table(jobs: int = 1) -> list[dict]:
    """Fit stage (chunks as the stage runs them: true windows + the random-sequence control where it can
    matter; no acceptance) against formulas x states: pendulum sizes 5-8 on its 1,125 states, then
    size 7 on 300 to 4,500 states (fewer windows, or the windows of several seeds), spring and real pendulum."""
    from dsl import FormulaSet
    from lawfinder.data.systems import get_system
    from lawfinder.discovery import stage as discovery
    from lawfinder.discovery.stage import FitConfig, window_arrays
    from lawfinder.parallel import run_chunks

    config = FitConfig(jobs=jobs)
    cases = [("pendulum", size, 1, None) for size in (5, 6, 7, 8)]
    cases += [("pendulum", 7, 1, w) for w in (12, 23)] + [("pendulum", 7, seeds, None) for seeds in (2, 4)]
    cases += [("spring", 7, 1, None), ("real-pendulum", 7, 1, None)]
    rows = []
    for name, size, seeds, n_windows in cases:
        system = get_system(name)
        formulas = FormulaSet.enumerate(system.units, size)
        arrays = [window_arrays(system.load(seed=seed), config)[:2] for seed in range(seeds)]
        true_w, random_w = (np.concatenate([a[j] for a in arrays])[:n_windows] for j in (0, 1))
        roots = formulas.enumeration.roots
        chunks = [roots[i : i + config.chunk_size] for i in range(0, len(roots), config.chunk_size)]
        tasks = [(discovery._fit_chunk_task, (formulas.dag, c, true_w, random_w, config, k)) for k, c in enumerate(chunks)]
        t0, c0 = time.perf_counter(), time.process_time()
        tables = list(run_chunks(tasks, jobs))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        methods = [m for tab in tables for m in tab["method"]]
        controls = int(sum(np.isfinite(tab["score_random"]).sum() for tab in tables))
        states = int(true_w.shape[0] * true_w.shape[1])
        rows.append({"system": name, "size": size, "formulas": len(roots), "states": states, "windows": int(true_w.shape[0]),
                     "search": methods.count("search"), "exact": methods.count("exact"), "none": methods.count("none"),
                     "controls_fitted": controls, "fit_s": seconds, "cpu_s": cpu,
                     "ns_per_formula_state": seconds / (len(roots) * states) * 1e9, "jobs": jobs,
                     "load": os.getloadavg()[0]})  # fmt: skip
        print(f"cost {name} size {size}: {len(roots)} formulas x {states} states: {seconds:.1f} s", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="*", default=None, help="names (noise variants: pendulum:0.1)")
    parser.add_argument("--no-cost", action="store_true")
    parser.add_argument("--no-pykan", action="store_true")
    parser.add_argument("--no-size8", action="store_true", help="skip fit + accept of the size-8 pendulum set")
    parser.add_argument("--before", default=None, help="git revision whose fit stage to time against this one")
    parser.add_argument("--before-on", nargs="*", default=["pendulum:7", "random-walk:7", "pendulum:8"],
                        help="system:max_size pairs for --before")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "peers.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON beside --out")
    args = parser.parse_args(argv)
    if args.render:
        import json

        data = json.loads(args.out.with_suffix(".json").read_text())
        args.out.write_text(markdown(data, TRUE_LAW) + "\n")
        return
    from lawfinder.runs.metadata import run_metadata

    torch.set_num_threads(1)
    systems = SYSTEMS if args.systems is None else [
        (s.split(":")[0], float(s.split(":")[1]) if ":" in s else 0.0) for s in args.systems]  # fmt: skip
    from dsl import FormulaSet

    FormulaSet.enumerate({"q": "rad", "p": "kg*m**2/s"}, 4)  # warm-up (pint registry), not timed
    runs = []
    for name, noise in systems:
        run = {"system": name, "noise": noise, "load_before": os.getloadavg()[0]}
        run["lawfinder"] = run_lawfinder(name, noise, jobs=1)
        run["lawfinder_jobs2"] = run_lawfinder(name, noise, jobs=2)
        run["pykan"] = {"error": "skipped (--no-pykan)"} if args.no_pykan else run_pykan(name, noise)
        run["pykan_small_lib"] = ({"error": "skipped (--no-pykan)"} if args.no_pykan
                                  else run_pykan(name, noise, lib=PYKAN_SMALL_LIB))  # fmt: skip
        run["load_after"] = os.getloadavg()[0]
        lf, pk = run["lawfinder"], run["pykan"]
        print(f"{label(name, noise):22s} lawfinder {lf['time_s']:.1f} s (jobs=2 {run['lawfinder_jobs2']['time_s']:.1f} s) "
              f"{lf['accepted'][:1]} | pykan {pk.get('time_s', float('nan')):.1f} s {pk.get('formula', pk.get('error'))}",
              flush=True)  # fmt: skip
        runs.append(run)
    meta = run_metadata(seed=0, device="cpu")
    try:
        from importlib import metadata

        meta["versions"].update({n: metadata.version(n) for n in ("pykan", "scikit-learn")})
    except Exception:  # pykan not installed: the table says so
        pass
    size8 = [] if args.no_size8 else [run_lawfinder("pendulum", 0.0, jobs=j, max_size=8) | {"jobs": j} for j in (1, 2)]
    for run in size8:
        print(f"pendulum size 8 jobs={run['jobs']}: {run['time_s']:.1f} s {run['timings_s']}", flush=True)
    data = {**meta, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": runs, "size8": size8,
            "cost": [] if args.no_cost else cost_table(),
            "before_after": before_after(args.before, ROOT, [(o.split(":")[0], int(o.split(":")[1])) for o in args.before_on])
            if args.before else None}  # fmt: skip
    publish(markdown(data, TRUE_LAW), data, args.out)


if __name__ == "__main__":
    main()
