"""Acceptance benchmark: false-law rate on lawless data, power under noise, laws of a 3-variable system.

Three parts, every data set fitted with the default `lawfinder fit` settings
(`FitConfig()`: shortlist >= 10x, alpha 0.01, 19 shuffled-pair surrogate sets):

1. **False laws.** Lawless generators (`lawfinder.data.lawless`): the calibration
   family (random walks of 30, 45 and 60 points) and five held-out families
   (Ornstein-Uhlenbeck, AR(2), smooth random paths, phase-reset oscillators, a
   noisy damped rotation) with the pendulum's variables and shapes. A data set
   counts as a false discovery when anything is accepted. The rate comes with
   its exact (Clopper-Pearson) one-sided 95% upper bound. Many data sets are
   fitted at size 6 (1,551 formulas) and a few at size 7 (8,103).
2. **Power under noise.** Spring, pendulum (HNN generators) and the real
   pendulum with Gaussian noise added to both variables, several noise seeds
   per level: how often the right law is the first accepted formula, its
   verdict, and its coefficient error (against the truth; for the real
   pendulum against the fit on the data without added noise).
3. **Rigid body** (3 variables, 2 independent invariants) at noise 0, 0.01
   and 0.05: every accepted law must lie in the span of the true invariants'
   gradients, and how many independent ones are found.

Usage::

    python benchmarks/acceptance.py            # writes results/acceptance.md and .json
    python benchmarks/acceptance.py --quick    # a smoke run (few data sets), not written
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from scipy import stats  # noqa: E402

from benchmarks.publish import publish  # noqa: E402

# Seeds of the held-out families: a first run (seeds 0-39 and 100-103, before MARGIN existed, see
# lawfinder.discovery.acceptance) was looked at, so its data sets are no longer held out.
HELD_OUT_SEED = 1000
FIRST_RUN = ("At git `2d4628a`, before the surrogate margin existed, the same benchmark found false approximations "
             "(never a false exact law) in 6 of 64 calibration and 6 of 220 held-out data sets; the margin (2x) was "
             "then chosen on the calibration random walks alone (their false approximations beat the surrogates by "
             "1.06-1.26x; the real pendulum's law, a training system, by 100-214x), and the held-out families below "
             "are fresh seeds (from 1000).")
RIGHT = {"spring": ("p**2 + C0*q**2", 1.0), "pendulum": ("p**2 + C0*cos(q)", -3.0),
         "real-pendulum": ("v**2 + C0*cos(q)", None)}  # fmt: skip
NOISE = {"spring": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2], "pendulum": [0.0, 0.01, 0.02, 0.05, 0.1, 0.2],
         "real-pendulum": [0.0, 0.01, 0.02, 0.05, 0.1]}  # fmt: skip


def _fit(traj, max_size: int, seed: int = 0):
    import torch

    import dsl
    from lawfinder.discovery.stage import FitConfig, fit_conservation

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    table = fit_conservation(traj, dsl.FormulaSet.enumerate(traj.units, max_size), FitConfig(seed=seed))
    return table, time.perf_counter() - t0


def lawless_task(family: str, n_points: int, seed: int, max_size: int) -> dict:
    from lawfinder.data import lawless

    table, seconds = _fit(lawless.FAMILIES[family](n_points, seed=seed), max_size, seed)
    accepted = table[table.accepted]
    return {"family": family, "points": n_points, "seed": seed, "max_size": max_size, "seconds": seconds,
            "shortlisted": table.attrs["acceptance"]["shortlisted"], "accepted": accepted.formula.tolist(),
            "statuses": accepted.status.tolist(), "min_p_value": float(table.p_value.min())}  # fmt: skip


def power_task(system: str, noise: float, seed: int) -> dict:
    from lawfinder.data.systems import get_system

    traj = get_system(system).load(noise=noise, seed=seed) if system != "real-pendulum" else _noisy_real(noise, seed)
    table, seconds = _fit(traj, 7, seed)
    template, _ = RIGHT[system]
    accepted = table[table.accepted]
    row = table[table.template == template].iloc[0]
    value = json.loads(row.params)["C0"]["value"]
    return {"system": system, "noise": noise, "seed": seed, "seconds": seconds,
            "first": accepted.formula.iloc[0] if len(accepted) else None,
            "right_first": bool(len(accepted) and accepted.template.iloc[0] == template),
            "n_accepted": int(len(accepted)), "status": row.status, "coefficient": value,
            "p_value": float(row.p_value), "noise_ratio": float(row.noise_ratio), "reject_reason": row.reject_reason,
            "sigma_estimated": table.attrs["acceptance"]["noise_sigma"]}  # fmt: skip


def _noisy_real(noise: float, seed: int):
    from lawfinder.data.systems import get_system

    traj = get_system("real-pendulum").load()
    rng = np.random.default_rng(seed)
    return traj.replace(states=tuple(x + rng.standard_normal(x.shape) * noise for x in traj.states))


def rigid_task(noise: float) -> dict:
    import dsl
    from lawfinder.discovery.exactness import probe
    from lawfinder.data.systems import get_system

    system = get_system("rigid-body")
    table, seconds = _fit(system.load(noise=noise), 7)
    w = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    moments = np.array([1.0, 2.0, 3.0])
    span = np.stack([2 * moments * w, 2 * moments**2 * w], -1)
    laws = []
    for row in table[table.accepted].itertuples():
        values = [v["value"] for v in json.loads(row.params).values()]
        node = dsl.nodes.with_params(dsl.parse(row.template, system.units).root, values)
        grad = probe(node, list(system.variables), w[None]).grad[0]
        fit = np.einsum("nij,nj->ni", span, np.stack([np.linalg.lstsq(span[k], grad[k], rcond=None)[0] for k in range(len(w))]))
        off = float(np.median(np.linalg.norm(grad - fit, axis=1) / np.linalg.norm(grad, axis=1)))
        laws.append({"formula": row.formula, "status": row.status, "off_span": off,
                     "noise_ratio": float(row.noise_ratio), "p_value": float(row.p_value)})  # fmt: skip
    rejected = table[table.p_value.notna() & ~table.accepted]
    return {"noise": noise, "seconds": seconds, "laws": laws, "shortlisted": int(table.p_value.notna().sum()),
            "rejected_reasons": rejected.reject_reason.str.split(r" \(|:", regex=True).str[0].value_counts().to_dict()}  # fmt: skip


def upper_bound(k: int, n: int, level: float = 0.95) -> float:
    return 1.0 if k >= n else float(stats.beta.ppf(level, k + 1, n - k))


def run(quick: bool) -> tuple[list, list, list]:
    from lawfinder.data.lawless import CALIBRATION, FAMILIES

    seeds6, seeds7, power_seeds = (2, 1, 1) if quick else (40, 4, 3)
    lawless_jobs = [("random-walk", n, s, 6) for n in (30, 45, 60) for s in range(seeds6 // 2 if quick else 20)]
    lawless_jobs += [(f, 45, HELD_OUT_SEED + s, 6) for f in FAMILIES if f not in CALIBRATION for s in range(seeds6)]
    lawless_jobs += [(f, 45, (100 if f in CALIBRATION else HELD_OUT_SEED + 100) + s, 7) for f in FAMILIES
                     for s in range(seeds7)]  # fmt: skip
    power_jobs = [(name, noise, s) for name, levels in NOISE.items() for noise in levels for s in range(power_seeds)]
    if quick:
        power_jobs = [j for j in power_jobs if j[1] in (0.0, 0.1)]
    rigid_jobs = [0.0, 0.01, 0.05] if not quick else [0.05]
    parallel = Parallel(n_jobs=2, verbose=5)
    rigid = parallel(delayed(rigid_task)(n) for n in rigid_jobs)
    power = parallel(delayed(power_task)(*j) for j in power_jobs)
    lawless = parallel(delayed(lawless_task)(*j) for j in lawless_jobs)
    return lawless, power, rigid


def report(lawless: list, power: list, rigid: list, seconds: float) -> tuple[str, dict]:
    from lawfinder.data.lawless import CALIBRATION
    from lawfinder.runs.metadata import run_metadata

    meta = run_metadata(0, "cpu")
    L = ["# Acceptance: false laws, power under noise, a 3-variable system", "",
         f"`python benchmarks/acceptance.py` at git `{meta['git_revision']}`, {meta['machine']['platform']} ({meta['machine']['cpus']} CPUs), "
         f"2 worker processes with 1 torch thread each, {seconds / 60:.0f} min. Default settings of "
         "`lawfinder fit`: shortlist >= 10x better conserved than on random sequences, then the false-law test "
         "(19 shuffled-pair surrogate sets, Bonferroni over every formula fitted) and the exactness test (noise "
         "estimated from the data), both at alpha = 0.01 (`lawfinder.discovery.acceptance`).", "",
         "## 1. False laws on lawless data", "",
         "A data set is a false discovery when any formula is accepted (as a law or as an approximation). "
         "*Calibration* marks the family the design choices were made on; the others were never looked at "
         "while choosing them. Bound: exact one-sided 95% upper bound on the rate. *Exact* counts the data sets "
         "where a formula was accepted as an exact law.", "", FIRST_RUN, "",
         "| family | role | points | size | data sets | shortlisted (median) | false discoveries (exact) | rate | 95% bound |",
         "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict = {}
    for r in lawless:
        groups.setdefault((r["family"], r["points"], r["max_size"]), []).append(r)
    totals = {"calibration": [0, 0, 0], "held-out": [0, 0, 0]}
    for (family, points, size), rows in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0] not in CALIBRATION, kv[0])):
        role = "calibration" if family in CALIBRATION else "held-out"
        k = sum(bool(r["accepted"]) for r in rows)
        k_exact = sum("law" in r["statuses"] for r in rows)
        totals[role][0] += k
        totals[role][1] += len(rows)
        totals[role][2] += k_exact
        L.append(f"| {family} | {role} | {points} | {size} | {len(rows)} | {int(np.median([r['shortlisted'] for r in rows]))} | "
                 f"{k} ({k_exact}) | {k / len(rows):.1%} | {upper_bound(k, len(rows)):.1%} |")  # fmt: skip
    for role, (k, n, k_exact) in totals.items():
        L.append(f"| **all {role}** | | | | {n} | | {k} ({k_exact}) | {k / n:.1%} | {upper_bound(k, n):.1%} |")
    false = [r for r in lawless if r["accepted"]]
    if false:
        L += ["", "False discoveries:", ""] + [f"- {r['family']} ({r['points']} points, seed {r['seed']}, size {r['max_size']}): "
                                              + ", ".join(f"`{f}` ({s})" for f, s in zip(r["accepted"], r["statuses"])) for r in false]  # fmt: skip
    L += ["", "## 2. Power under noise", "",
          "Gaussian noise of the given sigma on both variables (the HNN generators draw it; the real pendulum gets it "
          "added to its measurements). *Right law first*: the first accepted formula is the system's law. *Coefficient "
          "error*: of the law's fitted C (noise-aware refit) against the truth (spring 1, pendulum 3; real pendulum: "
          "its fit without added noise), mean and max over seeds. *Verdict*: of the law's row, over seeds.", "",
          "| system | noise sigma | seeds | right law first | verdicts | coef. error mean / max | sigma estimated (q) | mean fit + accept (s) |",
          "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    reference = {r["seed"]: r["coefficient"] for r in power if r["system"] == "real-pendulum" and r["noise"] == 0.0}
    ref_real = reference.get(0, next(iter(reference.values()), None))
    for system in RIGHT:
        for noise in sorted({r["noise"] for r in power if r["system"] == system}):
            rows = [r for r in power if r["system"] == system and r["noise"] == noise]
            truth = RIGHT[system][1] or ref_real
            err = [abs(r["coefficient"] / truth - 1) for r in rows]
            verdicts = ", ".join(f"{v} {sum(r['status'] == v for r in rows)}" for v in ("law", "approximate", "rejected")
                                 if any(r["status"] == v for r in rows))  # fmt: skip
            sigma_q = np.mean([r["sigma_estimated"]["q"] for r in rows])
            L.append(f"| {system} | {noise:g} | {len(rows)} | {sum(r['right_first'] for r in rows)}/{len(rows)} | {verdicts} | "
                     f"{np.mean(err):.2%} / {np.max(err):.2%} | {sigma_q:.3g} | {np.mean([r['seconds'] for r in rows]):.1f} |")  # fmt: skip
    missed = [r for r in power if not r["right_first"]]
    if missed:
        L += ["", "Where the law was not first:", ""] + [f"- {r['system']} sigma {r['noise']:g} seed {r['seed']}: law "
                                                         f"{r['status']} ({r['reject_reason'] or 'accepted'}); first accepted: "
                                                         f"`{r['first']}`" for r in missed]  # fmt: skip
    L += ["", "## 3. Rigid body: 3 variables, 2 independent invariants", "",
          "Torque-free rigid body, principal moments 1, 2, 3 (`lawfinder systems`: `rigid-body`), size 7. *Off span*: "
          "median over 500 states of the part of the law's gradient outside the span of the true invariants' gradients "
          "(energy, |L|^2), relative; 0 means the law is a function of the true invariants.", "",
          "| noise sigma | shortlisted | accepted | off span (max) | rejected as |", "|---|---|---|---|---|"]  # fmt: skip
    for r in rigid:
        laws = "; ".join(f"`{x['formula']}` ({x['status']}, noise x{x['noise_ratio']:.3g})" for x in r["laws"])
        worst = max((x["off_span"] for x in r["laws"]), default=float("nan"))
        reasons = ", ".join(f"{k} {v}" for k, v in r["rejected_reasons"].items())
        L.append(f"| {r['noise']:g} | {r['shortlisted']} | {laws} | {worst:.2g} | {reasons} |")
    data = {"meta": meta, "seconds": seconds, "lawless": lawless, "power": power, "rigid": rigid,
            "totals": {k: {"false": v[0], "false_exact": v[2], "datasets": v[1], "bound95": upper_bound(v[0], v[1])}
                       for k, v in totals.items()}}  # fmt: skip
    return "\n".join(L), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "acceptance.md")
    args = parser.parse_args()
    t0 = time.perf_counter()
    lawless, power, rigid = run(args.quick)
    text, data = report(lawless, power, rigid, time.perf_counter() - t0)
    if args.quick:
        print(text)
    else:
        publish(text, data, args.out)


if __name__ == "__main__":
    main()
