"""Held-out check of the sparse search's settings: systems and seeds they were not tuned on.

`lawfinder.discovery.sparse`'s settings (``rho_max``, ``max_score``, ``prune``, ``penalty``,
``RADIUS_MARGIN``) were chosen looking at seed 0 of the systems of
`benchmarks/multivariable.py`. This benchmark changes nothing in lawfinder; it
runs ``lf.fit`` on data those settings never saw and checks every accepted law
against the known invariants:

- new systems, simulated here with ``solve_ivp`` (``rtol=1e-10``) from seeded
  random starts, 50 trajectories each (the first 25 train), clean dx/dt targets,
  measurement noise added as `lawfinder.data.manybody` does (absolute: ``sigma`` in
  each variable's own unit, every state):

  * ``lotka-volterra``: ``x' = a x - b x y``, ``y' = d x y - c y`` (a, b, c, d =
    1, 0.5, 1.5, 0.75; dimensionless populations): ``d x - c log x + b y - a log y``;
  * ``euler-top``: torque-free rigid body, moments 1, 2, 3, spins of random
    direction and size 0.5-1.5 rad/s over 10 s: energy and ``|L|^2`` (2). (The
    registry's ``rigid-body`` has the same moments; the sparse settings were not
    tuned on it.)
  * ``spring-chain``: three unit masses, four unit springs between walls: the
    three normal-mode energies (3);
  * ``isotropic-3d``: the 3-D isotropic oscillator ``x'' = -x``: the energy
    tensor ``x_i x_j + v_i v_j`` (6) and angular momentum ``x x v`` (3), of which
    5 are functionally independent (superintegrable);
  * lawless controls: ``ar1-chain``, six independent AR(1) processes in the
    chain's units, and ``walk-top``, three random walks in the top's units;

- seeds 1 and 2 of the tuned systems (``lf.load_system(name, noise, seed)``).

Fresh seeds (declared before any run of them, with the #13 fix of the sparse search):
seeds 1 and 2 above showed two-body at noise 0.01 missing invariants and accepting a
false law; the fix (rounds of sparsification with fixed pivots, Bonferroni in the term
elimination, joint conservation of kept laws) was designed looking at seeds 0-2 of
the tuned systems, so those seeds, and seed 0 of the held-out systems, are no longer
held out for it. Its validation is `FRESH_SEEDS` = 3, 4, 5 of every system above
(the six held-out systems and controls and the four tuned ones), clean and at noise
0.01, at the default formula size only (the sparse search does not depend on the
size beyond dropping laws the enumeration holds). They were declared in this
docstring and committed before they were first run; whatever they show is reported,
and any change made after seeing them must be validated on yet fresher seeds.

Each data set is fitted with ``lf.fit`` at its default settings, whose formula
size is `default_max_size` (the largest up to 7 with at most 10,000 formulas, as
`lawfinder fit` and `benchmarks/multivariable.py`, where the settings were tuned,
use). Where that is below 7, the held-out systems are fitted at 7 too (two-body,
tuned at 6, is not: 55,847 formulas). When this ran, ``lf.fit`` defaulted to 7
for any variables; it now uses `default_max_size` like the CLI.

An accepted law is *conserved* when its gradient lies in the span of the true
invariants' gradients (median relative residual over the training states, the
check of `benchmarks/multivariable.py`, at most `GRADIENT_TOL`) or when its
variation along the clean trajectories (the same starts without noise) is at
most `DRIFT_TOL` of its spread across them. *Recovered* is the number of
independent true invariants the conserved laws give (the rank of their
gradients at the clean states, `lawfinder.discovery.acceptance.RANK_TOL`); an accepted
law that is not conserved is a *false law*.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/heldout.py          # writes results/heldout.md and .json
    python benchmarks/heldout.py --quick                    # lotka-volterra and walk-top, not written
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import sympy  # noqa: E402

from benchmarks.multivariable import INDEPENDENT, invariant_checks  # noqa: E402
from benchmarks.publish import meta_line, publish  # noqa: E402
from lawfinder.data.manybody import N_TRAJECTORIES, simulate  # noqa: E402

NOISES = (0.0, 0.01)
TUNED = ("kepler", "coupled-oscillators", "two-body", "coupled-ou")
TUNED_SEEDS = (1, 2)
FRESH_SEEDS = (3, 4, 5)  # the #13 fix's validation: declared before any run
FULL_SIZE = 7  # the enumeration's largest size, also fitted where the default is smaller
GRADIENT_TOL = 1e-2  # median relative gradient residual outside the invariants' span
DRIFT_TOL = 1e-3  # median variation along a clean trajectory / spread of the law across them

LV = (1.0, 0.5, 1.5, 0.75)  # a, b, c, d
TOP_MOMENTS = np.array([1.0, 2.0, 3.0])
CHAIN_K = np.array([[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]])  # unit masses and springs
CHAIN_VARIABLES = ("x1", "x2", "x3", "v1", "v2", "v3")
CHAIN_UNITS = {**{f"x{i}": "m" for i in (1, 2, 3)}, **{f"v{i}": "m/s" for i in (1, 2, 3)}}
TOP_UNITS = {w: "rad/s" for w in ("w1", "w2", "w3")}


@dataclass(frozen=True)
class HeldOut:
    """A generated system: ``make(noise, seed)`` and its invariants as sympy text over the variables."""

    name: str
    units: dict
    invariants: tuple[str, ...]
    independent: int
    make: Callable[[float, int], object]

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.units)

    def functions(self) -> list[Callable]:
        """The invariants as numpy functions of an ``(..., d)`` array."""
        symbols = sympy.symbols(self.variables)
        local = dict(zip(self.variables, symbols))
        fns = [sympy.lambdify(symbols, sympy.sympify(t, locals=local), "numpy") for t in self.invariants]
        return [lambda x, f=f: f(*np.moveaxis(np.asarray(x, float), -1, 0)) for f in fns]


def lotka_volterra(noise: float, seed: int):
    """Starts uniform in [0.7, 3.5]^2 around the fixed point (2, 2): 60 points over 10 s."""
    a, b, c, d = LV
    rng = np.random.default_rng(seed)

    def field(y):
        x, yy = y
        return np.stack([a * x - b * x * yy, d * x * yy - c * yy])

    return simulate("lotka-volterra", {"x": "dimensionless", "y": "dimensionless"}, field,
                    np.linspace(0, 10, 60), lambda: rng.uniform(0.7, 3.5, 2), rng, noise)  # fmt: skip


def top_field(w):
    i1, i2, i3 = TOP_MOMENTS
    w1, w2, w3 = w
    return np.stack([(i2 - i3) / i1 * w2 * w3, (i3 - i1) / i2 * w3 * w1, (i1 - i2) / i3 * w1 * w2])


def euler_top(noise: float, seed: int):
    """Spins of uniformly random direction and size uniform in [0.5, 1.5] rad/s: 60 points over 10 s."""
    rng = np.random.default_rng(seed)

    def start():
        w = rng.standard_normal(3)
        return w / np.linalg.norm(w) * rng.uniform(0.5, 1.5)

    return simulate("euler-top", TOP_UNITS, top_field, np.linspace(0, 10, 60), start, rng, noise)


def spring_chain(noise: float, seed: int):
    """Positions and velocities uniform in [-1, 1]: 60 points over 10 s."""
    rng = np.random.default_rng(seed)

    def field(y):
        x, v = y[:3], y[3:]
        return np.concatenate([v, -np.einsum("ij,j...->i...", CHAIN_K, x)])

    return simulate("spring-chain", CHAIN_UNITS, field, np.linspace(0, 10, 60), lambda: rng.uniform(-1, 1, 6), rng, noise)


def chain_modes() -> tuple[str, ...]:
    """Normal-mode energies ``(u.v)^2 + lambda (u.x)^2`` with ``u`` the eigenvectors of the stiffness."""
    s = sympy.sqrt(2)
    modes = [((1, s, 1), 2 - s), ((1, 0, -1), 2), ((1, -s, 1), 2 + s)]
    out = []
    for u, lam in modes:
        ux = " + ".join(f"({sympy.nsimplify(c)})*x{i + 1}" for i, c in enumerate(u))
        uv = " + ".join(f"({sympy.nsimplify(c)})*v{i + 1}" for i, c in enumerate(u))
        out.append(f"({uv})**2 + ({lam})*({ux})**2")
    return tuple(out)


def isotropic(noise: float, seed: int):
    """``x'' = -x`` in 3-D, positions and velocities uniform in [-1, 1]: 60 points over 10 s."""
    rng = np.random.default_rng(seed)
    return simulate("isotropic-3d", CHAIN_UNITS, lambda y: np.concatenate([y[3:], -y[:3]]),
                    np.linspace(0, 10, 60), lambda: rng.uniform(-1, 1, 6), rng, noise)  # fmt: skip


def isotropic_invariants() -> tuple[str, ...]:
    tensor = [f"x{i}*x{j} + v{i}*v{j}" for i in (1, 2, 3) for j in (1, 2, 3) if i <= j]
    momentum = ["x2*v3 - x3*v2", "x3*v1 - x1*v3", "x1*v2 - x2*v1"]
    return tuple(tensor + momentum)


def ar1_chain(noise: float, seed: int):
    """Six independent stationary AR(1) processes (unit variance, correlation time 1-5 s), 60 points over 10 s."""
    from lawfinder import Trajectories

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 10, 60)
    states = []
    for _ in range(N_TRAJECTORIES):
        phi = np.exp(-(t[1] - t[0]) / rng.uniform(1, 5, 6))
        x = np.empty((len(t), 6))
        x[0] = rng.standard_normal(6)
        for k in range(1, len(t)):
            x[k] = phi * x[k - 1] + np.sqrt(1 - phi**2) * rng.standard_normal(6)
        states.append(x + rng.standard_normal(x.shape) * noise)
    return Trajectories.from_arrays(states, CHAIN_UNITS, t, name="ar1-chain", train_fraction=0.5)


def walk_top(noise: float, seed: int):
    """Three Gaussian random walks (diffusion 0.1 rad^2/s^3) from uniform [-1, 1] rad/s, 60 points over 10 s."""
    from lawfinder import Trajectories

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 10, 60)
    states = []
    for _ in range(N_TRAJECTORIES):
        steps = rng.standard_normal((len(t) - 1, 3)) * np.sqrt(0.1 * np.diff(t))[:, None]
        x = rng.uniform(-1, 1, 3) + np.concatenate([np.zeros((1, 3)), np.cumsum(steps, 0)])
        states.append(x + rng.standard_normal(x.shape) * noise)
    return Trajectories.from_arrays(states, TOP_UNITS, t, name="walk-top", train_fraction=0.5)


def held_out_systems() -> dict[str, HeldOut]:
    a, b, c, d = LV
    systems = [
        HeldOut("lotka-volterra", {"x": "dimensionless", "y": "dimensionless"},
                (f"{d}*x - {c}*log(x) + {b}*y - {a}*log(y)",), 1, lotka_volterra),
        HeldOut("euler-top", TOP_UNITS, ("w1**2 + 2*w2**2 + 3*w3**2", "w1**2 + 4*w2**2 + 9*w3**2"), 2, euler_top),
        HeldOut("spring-chain", CHAIN_UNITS, chain_modes(), 3, spring_chain),
        HeldOut("isotropic-3d", CHAIN_UNITS, isotropic_invariants(), 5, isotropic),
        HeldOut("ar1-chain", CHAIN_UNITS, (), 0, ar1_chain),
        HeldOut("walk-top", TOP_UNITS, (), 0, walk_top),
    ]  # fmt: skip
    return {s.name: s for s in systems}


def law_gradients(nodes, variables, states: np.ndarray) -> np.ndarray:
    """``(N, d, k)`` gradients of the laws at the states."""
    import torch

    from lawfinder.laws.compile import node_to_torch

    out = []
    for node in nodes:
        x = torch.as_tensor(states, dtype=torch.float64).requires_grad_(True)
        (g,) = torch.autograd.grad(node_to_torch(node, variables)(x).sum(), x)
        out.append(g.numpy())
    return np.stack(out, -1)


def recovered(nodes, variables, states: np.ndarray) -> int:
    """Independent laws among `nodes`: the rank of their unit gradients at the median state."""
    from lawfinder.discovery.acceptance import RANK_TOL

    if not nodes:
        return 0
    g = law_gradients(nodes, variables, states)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
    sv = np.linalg.svd(g, compute_uv=False)  # (N, k)
    return int(np.median((sv > RANK_TOL * np.maximum(sv[:, :1], 1e-300)).sum(1)))


def invariant_texts(checker) -> list[str]:
    return [] if checker.oracle is None else [checker.oracle, *checker.also_conserved]


def missing(checker, nodes, variables, states: np.ndarray) -> list[str]:
    """The true invariants whose gradient is not in the span of the laws' gradients (median residual)."""
    symbols = sympy.symbols(variables)
    local = dict(zip(variables, symbols))
    found = law_gradients(nodes, variables, states) if nodes else np.zeros((len(states), len(variables), 0))
    out = []
    for text in invariant_texts(checker):
        expr = sympy.sympify(text, locals=local)
        grad = sympy.lambdify(symbols, [sympy.diff(expr, v) for v in symbols], "numpy")(*states.T)
        g = np.stack([np.broadcast_to(np.asarray(c, float), len(states)) for c in grad], -1)
        coef = np.einsum("nkd,nd->nk", np.linalg.pinv(found), g) if nodes else np.zeros((len(states), 0))
        resid = np.linalg.norm(g - np.einsum("ndk,nk->nd", found, coef), axis=1) / np.linalg.norm(g, axis=1)
        if np.median(resid) > GRADIENT_TOL:
            out.append(text)
    return out


def extra_terms(checker, node, variables) -> list[str]:
    """Terms of the expanded law that no true invariant has (spurious terms the sparsification kept)."""
    from dsl.export import to_sympy

    local = {v: sympy.Symbol(v) for v in variables}
    known = {k for t in invariant_texts(checker) for k in sympy.expand(sympy.sympify(t, locals=local)).as_coefficients_dict()}
    mine = sympy.expand(to_sympy(node)).as_coefficients_dict()
    return sorted(str(k) for k in mine if k != 1 and k not in known)


def drift(law, clean) -> float:
    """Median over the clean trajectories of the law's variation along one, over its spread across them."""
    values = [law.evaluate(x) for x in clean.states]
    along = np.median([v.std() for v in values])
    across = np.std([v.mean() for v in values])
    return float(along / across) if across > 0 else float("inf")


def evaluate(name: str, kind: str, seed: int, noise: float, size: int, traj, clean, checker,
             expected: int) -> dict:  # fmt: skip
    import lawfinder as lf

    t0 = time.perf_counter()
    result = lf.fit(traj, max_size=size)
    seconds = time.perf_counter() - t0
    stages = result.candidates.attrs.get("timings_s", {})
    train = np.stack(traj.train().states).reshape(-1, traj.dims)
    clean_states = np.concatenate(clean.states)
    laws, good = [], []
    for law in result.laws:
        item = {"formula": law.name, "status": law.evidence.get("status"),
                "independent": bool(law.evidence.get("independent")), "method": law.evidence.get("method"),
                "size": int(law.size), "noise_ratio": float(law.evidence.get("noise_ratio", np.nan)),
                "p_value": float(law.evidence.get("p_value", np.nan)), "drift": drift(law, clean)}  # fmt: skip
        if checker is not None and expected:
            item["gradient_residual"], item["coefficient_error"] = invariant_checks(checker, law.node, train)
            item["extra_terms"] = extra_terms(checker, law.node, traj.variables)
        else:
            item["gradient_residual"], item["coefficient_error"] = float("nan"), float("nan")
        item["conserved"] = bool(expected) and (item["gradient_residual"] <= GRADIENT_TOL or item["drift"] <= DRIFT_TOL)
        if item["conserved"]:
            good.append(law.node)
        laws.append(item)
    errors = [x["coefficient_error"] for x in laws if x["conserved"] and np.isfinite(x["coefficient_error"])]
    return {"system": name, "kind": kind, "seed": seed, "noise": noise, "variables": traj.dims,
            "trajectories": traj.n_trajectories, "max_size": size, "candidates": len(result.candidates),
            "fit_s": seconds, "sparse_s": float(stages.get("sparse", float("nan"))), "accepted": len(laws), "independent": sum(x["independent"] for x in laws),
            "expected_independent": expected, "recovered": recovered(good, traj.variables, clean_states),
            "missing": missing(checker, good, traj.variables, clean_states) if expected else [],
            "false_laws": sum(not x["conserved"] for x in laws),
            "max_coefficient_error": max(errors) if errors else float("nan"),
            "acceptance": result.acceptance, "laws": laws}  # fmt: skip


def verdict(r: dict) -> str:
    parts = []
    if r["recovered"] < r["expected_independent"]:
        parts.append(f"missed {r['expected_independent'] - r['recovered']}")
    if r["false_laws"]:
        parts.append(f"{r['false_laws']} false")
    if r["independent"] != r["expected_independent"]:
        parts.append(f"independent {r['independent']} != {r['expected_independent']}")
    if np.isfinite(r["max_coefficient_error"]) and r["max_coefficient_error"] > 0.01:
        parts.append(f"coef error {r['max_coefficient_error']:.1%}")
    return "; ".join(parts) or "ok"


def summary_paragraph(results: list[dict]) -> str:
    """Which data the settings generalise to and where they fail, from the numbers above."""

    def label(r):
        return f"{r['system']} (seed {r['seed']}, noise {r['noise']:g}, size {r['max_size']})"

    def passed(kind):
        rows = [r for r in results if r["kind"] == kind]
        return f"{sum(verdict(r) == 'ok' for r in rows)} of {len(rows)}"

    systems = sorted({r["system"] for r in results}, key=[r["system"] for r in results].index)
    fine = [s for s in systems if all(verdict(r) == "ok" for r in results if r["system"] == s)]
    failing = [s for s in systems if s not in fine]
    text = (f"{sum(verdict(r) == 'ok' for r in results)} of {len(results)} data sets pass every check (every true "
            f"invariant recovered, the acceptance test's independent count right, no false law, coefficients "
            f"within 1%): {passed('new')} on held-out systems (seed 0), {passed('tuned')} on seeds 1-2 of the tuned "
            f"systems, and {passed('fresh')} on the fresh seeds {', '.join(map(str, FRESH_SEEDS))} of all of them, "
            f"declared before their first run as the validation of the #13 fix (the only data it was not designed "
            f"on). The settings generalise to {', '.join(fine) or 'none of them'} (every seed, noise level and "
            f"size tried){'; they fail on ' + ', '.join(failing) if failing else ''}. Scope: 50 trajectories per "
            f"data set, so a pass is evidence on these data, not a proof.")  # fmt: skip
    lines = [text]
    bad = [r for r in results if verdict(r) != "ok"]
    if bad:
        lines.append("")
    for r in bad:
        lines.append(f"- {label(r)}: {verdict(r)}" + (f"; not in the span of the laws found: "
                     f"{', '.join(f'`{m}`' for m in r['missing'])}." if r["missing"] else "."))  # fmt: skip
        for law in r["laws"]:
            if not law["conserved"]:
                lines.append(f"  - false law `{law['formula']}` ({law['method']}, accepted as {law['status']}, "
                             f"gradient residual {law['gradient_residual']:.2g}, drift {law['drift']:.2g}).")  # fmt: skip
            elif np.isfinite(law["coefficient_error"]) and law["coefficient_error"] > 0.01:
                extra = law.get("extra_terms") or []
                lines.append(f"  - `{law['formula']}`: coefficient error {law['coefficient_error']:.1%}"
                             + (f", terms no true invariant has: {', '.join(extra)}." if extra else "."))  # fmt: skip
    return "\n".join(lines)


def markdown(results: list[dict], meta: dict, command: str) -> str:
    lines = ["# Held-out check of the sparse search's settings", "",
             f"`{command}` at git `{meta['git']}`, {meta['machine']}, OMP_NUM_THREADS=1. The sparse search's "
             f"settings were tuned on seed 0 of kepler, coupled-oscillators, two-body and coupled-ou; its #13 fix "
             f"(rounds with fixed pivots, Bonferroni elimination, identified and jointly conserved laws) was "
             f"designed on seeds 0-2 of those and seed 0 of the held-out systems, so for it only the fresh seeds "
             f"{', '.join(map(str, FRESH_SEEDS))} (declared before their first run) are held out. `lf.fit` at its defaults, "
             f"formula size `default_max_size`, and for the held-out systems "
             f"also {FULL_SIZE} where that is smaller. Noise is absolute (sigma in each "
             f"variable's unit), as in `lawfinder.data.manybody`. Conserved: gradient residual against the true "
             f"invariants' span <= {GRADIENT_TOL:g} or drift along clean trajectories <= {DRIFT_TOL:g} of the "
             f"spread; recovered: rank of the conserved laws' gradients.", "",
             "| system | held out | seed | noise | vars | traj | size | candidates | fit s | sparse s | accepted | independent (known) | recovered | false | max coef error | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        err = r["max_coefficient_error"]
        lines.append(f"| {r['system']} | {KINDS[r['kind']]} | {r['seed']} | {r['noise']:g} | "
                     f"{r['variables']} | {r['trajectories']} | {r['max_size']} | {r['candidates']} | {r['fit_s']:.1f} | "
                     f"{r['sparse_s']:.1f} | "
                     f"{r['accepted']} | {r['independent']} ({r['expected_independent']}) | {r['recovered']} | "
                     f"{r['false_laws']} | {'-' if not np.isfinite(err) else f'{err:.2%}'} | {verdict(r)} |")  # fmt: skip
    lines += ["", summary_paragraph(results)]
    return "\n".join(lines) + "\n"


KINDS = {"new": "system", "tuned": "seed", "fresh": "fresh seed"}


def datasets(quick: bool):
    """(name, kind, seed, make(noise), checker, expected independent) for every data set.

    Kinds: ``new`` (seed 0 of a held-out system), ``tuned`` (`TUNED_SEEDS` of a tuned system), ``fresh``
    (`FRESH_SEEDS` of both, the #13 fix's validation).
    """
    from lawfinder.data.systems import get_system

    news = held_out_systems()
    for name in ("lotka-volterra", "walk-top") if quick else news:
        s = news[name]
        checker = SimpleNamespace(variables=s.variables, oracle=s.invariants[0] if s.invariants else None,
                                  also_conserved=s.invariants[1:])  # fmt: skip
        for kind, seeds in (("new", (0,)), ("fresh", () if quick else FRESH_SEEDS)):
            for seed in seeds:
                yield name, kind, seed, (lambda noise, s=s, k=seed: s.make(noise, k)), checker, s.independent
    for name in () if quick else TUNED:
        system = get_system(name)
        for kind, seeds in (("tuned", TUNED_SEEDS), ("fresh", FRESH_SEEDS)):
            for seed in seeds:
                yield (name, kind, seed, (lambda noise, n=name, k=seed: get_system(n).load(noise, k)), system,
                       INDEPENDENT[name])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from lawfinder.discovery.stage import default_max_size

    command = "OMP_NUM_THREADS=1 python benchmarks/heldout.py"
    results = []
    for name, kind, seed, make, checker, expected in datasets(args.quick):
        clean = make(0.0)
        sizes = {default_max_size(clean.units)} | ({FULL_SIZE} if kind == "new" else set())  # fresh: default only
        for size, noise in itertools.product(sorted(sizes), NOISES):
            traj = clean if noise == 0 else make(noise)
            r = evaluate(name, kind, seed, noise, size, traj, clean, checker, expected)
            print(f"{name} seed {seed} noise {noise:g} size {size}: {r['accepted']} accepted, {r['independent']} independent, "
                  f"{r['recovered']} recovered of {expected}, {r['false_laws']} false, {r['fit_s']:.1f} s "
                  f"(sparse {r['sparse_s']:.1f} s) -> {verdict(r)}", flush=True)  # fmt: skip
            results.append(r)
    from lawfinder.runs.metadata import run_metadata

    results.sort(key=lambda r: r["kind"] == "fresh")  # the seen data first, then the validation
    meta = run_metadata(0, "cpu")
    text = markdown(results, meta_line(meta), command)
    data = {"meta": meta, "command": command, "gradient_tol": GRADIENT_TOL, "drift_tol": DRIFT_TOL,
            "noise": "absolute, added to every state", "results": results}  # fmt: skip
    if args.quick:
        print(text)
    else:
        publish(text, data, ROOT / "results" / "heldout.md")


if __name__ == "__main__":
    main()
