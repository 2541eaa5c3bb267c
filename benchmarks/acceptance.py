"""Acceptance benchmark: false-law rate on lawless data, power under noise, laws of a 3-variable system, precision.

Four parts, every data set fitted with the default `lawfinder fit` settings
(`FitConfig()`: shortlist >= 10x, alpha 0.01, 19 shuffled-pair surrogate sets):

1. **False laws.** Lawless generators (`lawfinder.data.lawless`) with the
   pendulum's variables and shapes. Calibration families (the acceptance
   test's margins were chosen on them): random walks of 30, 45 and 60 points
   at size 6, and at size 7 the noisy damped rotation (seeds 2000-2015) and
   random walks (seeds 2000-2003), the data `APPROXIMATE_MARGIN` was chosen on.
   Held-out families (`--datasets` data sets each at size 6, seeds from 4000,
   and `--datasets7` each at size 7, seeds from 4100; no seed in 4000-4199
   had been fitted before this benchmark was committed, and the families
   ``correlated-walks`` and ``shuffled-pendulum`` were declared in git commit
   310ed68 before any fit on them; the only fits on them before the run were
   smoke runs of the code: size 4 at seed 3000, size 6 at seed 9999, nothing
   accepted): Ornstein-Uhlenbeck, AR(2), smooth random
   paths, phase-reset oscillators, AR(1) with drift, correlated random walks,
   the shuffled pendulum. A data set counts as a false discovery when anything
   is accepted; the rate comes with its exact (Clopper-Pearson) one-sided 95%
   upper bound.
2. **Power under noise.** Spring, pendulum (HNN generators) and the real
   pendulum with Gaussian noise added to both variables, several noise seeds
   per level: how often the right law is the first accepted formula, its
   verdict, and its coefficient error (against the truth; for the real
   pendulum against the fit on the data without added noise).
3. **Rigid body** (3 variables, 2 independent invariants) at noise 0, 0.01
   and 0.05: every accepted law must lie in the span of the true invariants'
   gradients, and how many independent ones are found.
4. **Precision** of the law's coefficient (`benchmarks/precision.py`): the
   noise-aware refit on 40 data seeds per level (200-239) against Cramér-Rao
   bounds, and maximum-likelihood reference fits.

Usage::

    python benchmarks/acceptance.py                 # writes results/acceptance.md and .json
    python benchmarks/acceptance.py --datasets 50   # held-out data sets per family at size 6 (default 50)
    python benchmarks/acceptance.py --quick         # a smoke run (few data sets), not written
    # in parts, one after another at one revision, then one report:
    python benchmarks/acceptance.py --parts lawless --lawless-sets held-out --raw /tmp/a.json
    python benchmarks/acceptance.py --parts power,rigid,precision --raw /tmp/b.json
    python benchmarks/acceptance.py --parts lawless --lawless-sets rest --raw /tmp/c.json
    python benchmarks/acceptance.py --report-only /tmp/a.json /tmp/b.json /tmp/c.json
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

# Seeds: 0-39 and 100-103 (run 1, before MARGIN existed) and 1000-1039, 1100-1103 (run 2, before
# APPROXIMATE_MARGIN existed) were looked at; the held-out families below use fresh seeds.
HELD_OUT_SEED = 4000
CALIBRATION_7 = [("noisy-rotation", s) for s in range(2000, 2016)] + [("random-walk", s) for s in range(2000, 2004)]
HISTORY = ("Run 1 (git `2d4628a`, before the surrogate margin existed) found false approximations (never a false exact "
           "law) in 6 of 64 calibration and 6 of 220 held-out data sets; the margin (2x) was then chosen on the "
           "calibration random walks alone (their false approximations beat the surrogates by 1.06-1.26x; the real "
           "pendulum's law, a training system, by 100-214x). Run 2 (git `51aaedb`, fresh held-out seeds from 1000) "
           "found 0 of 64 and 2 of 220 (both approximations on the noisy damped rotation at size 7, which beat every "
           "surrogate by only 2.7x and 3.5x). An approximation (no exactness evidence) must now beat every surrogate "
           "by `APPROXIMATE_MARGIN` (exact laws keep 2x), chosen on the calibration families, the noisy rotation "
           "among them (see `lawfinder.discovery.acceptance`); the held-out families below are fresh seeds (from "
           "4000) and two families declared before any fit on them.")
NOT_RUN = "Not run at this revision: the part did not finish on the shared machine before the deadline."
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
    tested = table[table.p_value.notna()]
    return {"family": family, "points": n_points, "seed": seed, "max_size": max_size, "seconds": seconds,
            "shortlisted": table.attrs["acceptance"]["shortlisted"], "accepted": accepted.formula.tolist(),
            "statuses": accepted.status.tolist(), "margins": accepted.surrogate_margin.tolist(),
            "min_p_value": float(table.p_value.min()),
            "max_margin": float(tested.surrogate_margin.max()) if len(tested) else None}  # fmt: skip


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
            "n_accepted": int(len(accepted)), "accepted": accepted.formula.tolist(),
            "statuses": accepted.status.tolist(), "status": row.status, "coefficient": value,
            "p_value": float(row.p_value), "noise_ratio": float(row.noise_ratio),
            "surrogate_margin": float(row.surrogate_margin), "reject_reason": row.reject_reason,
            "sigma_estimated": table.attrs["acceptance"]["noise_sigma"]}  # fmt: skip


def _noisy_real(noise: float, seed: int):
    from lawfinder.data.systems import get_system

    traj = get_system("real-pendulum").load()
    rng = np.random.default_rng(seed)
    return traj.replace(states=tuple(x + rng.standard_normal(x.shape) * noise for x in traj.states))


def rigid_task(noise: float) -> dict:
    import dsl
    from lawfinder.data.systems import get_system
    from lawfinder.discovery.exactness import probe

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


PARTS = ("lawless", "power", "rigid", "precision")


def run(parts: set, quick: bool, datasets: int, datasets7: int, walks: int, power_seeds: int, lawless_sets: str) -> dict:
    """The benchmark's data: a dict of result lists by part (``reference_estimators`` with precision)."""
    from benchmarks.precision import precision_task, reference_estimators
    from lawfinder.data.lawless import CALIBRATION, FAMILIES

    held_out = [f for f in FAMILIES if f not in CALIBRATION]
    calibration7, precision_seeds = (CALIBRATION_7, 40) if not quick else (CALIBRATION_7[:2], 3)
    if quick:
        datasets, datasets7, walks, power_seeds = 1, 0, 2, 1
    parallel = Parallel(n_jobs=2, verbose=5)
    out: dict = {}
    if "rigid" in parts:
        out["rigid"] = parallel(delayed(rigid_task)(n) for n in ([0.0, 0.01, 0.05] if not quick else [0.05]))
    if "power" in parts:
        jobs = [(name, noise, s) for name, levels in NOISE.items() for noise in levels for s in range(power_seeds)]
        out["power"] = parallel(delayed(power_task)(*j) for j in jobs if not quick or j[1] in (0.0, 0.1))
    if "precision" in parts:
        jobs = [("spring", sigma) for sigma in (0.05, 0.1, 0.2)] + [("pendulum", sigma) for sigma in (0.1, 0.2)]
        out["precision"] = parallel(delayed(precision_task)(name, sigma, range(200, 200 + precision_seeds))
                                    for name, sigma in jobs)  # fmt: skip
        out["reference_estimators"] = reference_estimators(0.1, 200, 4 if quick else 30)
    if "lawless" in parts:
        jobs = []
        if lawless_sets in ("all", "held-out"):
            jobs += [(f, 45, HELD_OUT_SEED + s, 6) for f in held_out for s in range(datasets)]
        if lawless_sets in ("all", "rest"):
            jobs += [("random-walk", n, s, 6) for n in (30, 45, 60) for s in range(walks)]
            jobs += [(f, 45, s, 7) for f, s in calibration7]
            jobs += [(f, 45, HELD_OUT_SEED + 100 + s, 7) for f in held_out for s in range(datasets7)]
        out["lawless"] = parallel(delayed(lawless_task)(*j) for j in jobs)
    return out


def report(lawless: list, power: list, rigid: list, precision: list, reference: dict, seconds: float | list,
           command: str, revision: str | None = None) -> tuple[str, dict]:  # fmt: skip
    from benchmarks.precision import report_lines
    from lawfinder.data.lawless import CALIBRATION
    from lawfinder.runs.metadata import run_metadata

    meta = run_metadata(0, "cpu")
    rendered, meta["git_revision"] = meta["git_revision"], revision or meta["git_revision"]
    parts = seconds if isinstance(seconds, list) else [seconds]
    duration = (f"{parts[0] / 60:.0f} min" if len(parts) == 1 else
                " / ".join(f"{t / 60:.0f}" for t in parts) + " min for the parts in that order (partly run at the same time)")  # fmt: skip
    L = ["# Acceptance: false laws, power under noise, a 3-variable system, precision", "",
         f"`{command}` at git `{meta['git_revision']}`"
         + ("" if rendered == meta["git_revision"] else f" (report rendered at git `{rendered}`)") + ", "
         f"{meta['machine']['platform']} ({meta['machine']['cpus']} CPUs), "
         f"2 worker processes with 1 torch thread each (under `nice`, on a machine shared with other jobs), {duration}. Default settings of "
         "`lawfinder fit`: shortlist >= 10x better conserved than on random sequences, then the false-law test "
         "(19 shuffled-pair surrogate sets, Bonferroni over every formula fitted) and the exactness test (noise "
         "estimated from the data), both at alpha = 0.01 (`lawfinder.discovery.acceptance`).", "",
         "## 1. False laws on lawless data", "",
         "A data set is a false discovery when any formula is accepted (as a law or as an approximation). "
         "*Calibration* marks the families the design choices were made on; the others were never looked at "
         "while choosing them. Bound: exact one-sided 95% upper bound on the rate. *Exact* counts the data sets "
         "where a formula was accepted as an exact law. *Largest margin*: the largest factor by which any formula "
         "tested on a data set of the row beat every one of its surrogates (an approximation needs more than "
         "`APPROXIMATE_MARGIN`, an exact law more than `MARGIN`).", "", HISTORY, "",
         "| family | role | points | size | data sets | shortlisted (median) | largest margin | false discoveries (exact) | rate | 95% bound |",
         "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
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
        margins = [r["max_margin"] for r in rows if r["max_margin"] is not None]
        L.append(f"| {family} | {role} | {points} | {size} | {len(rows)} | {int(np.median([r['shortlisted'] for r in rows]))} | "
                 f"{max(margins, default=float('nan')):.3g} | {k} ({k_exact}) | {k / len(rows):.1%} | {upper_bound(k, len(rows)):.1%} |")  # fmt: skip
    for role, (k, n, k_exact) in totals.items():
        if n == 0:
            continue
        L.append(f"| **all {role}** | | | | {n} | | | {k} ({k_exact}) | {k / n:.1%} | {upper_bound(k, n):.1%} |")
    false = [r for r in lawless if r["accepted"]]
    if false:
        L += ["", "False discoveries:", ""] + [f"- {r['family']} ({r['points']} points, seed {r['seed']}, size {r['max_size']}): "
                                              + ", ".join(f"`{f}` ({s}, margin {m:.3g})" for f, s, m in zip(r["accepted"], r["statuses"], r["margins"])) for r in false]  # fmt: skip
    if power is None:
        power, L = [], L + ["", "## 2. Power under noise", "", NOT_RUN]
    else:
        L += ["", "## 2. Power under noise", "",
              "Gaussian noise of the given sigma on both variables (the HNN generators draw it; the real pendulum gets it "
              "added to its measurements). *Right law first*: the first accepted formula is the system's law. *Coefficient "
              "error*: of the law's fitted C (noise-aware refit) against the truth (spring 1, pendulum 3; real pendulum: "
              "its fit without added noise), mean and max over seeds. *Verdict*: of the law's row, over seeds. *Least "
              "margin*: the least factor by which the law beat every surrogate, over seeds.", "",
              "| system | noise sigma | seeds | right law first | verdicts | coef. error mean / max | least margin | sigma estimated (q) | mean fit + accept (s) |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    clean_real = {r["seed"]: r["coefficient"] for r in power if r["system"] == "real-pendulum" and r["noise"] == 0.0}
    ref_real = clean_real.get(0, next(iter(clean_real.values()), None))
    for system in RIGHT:
        for noise in sorted({r["noise"] for r in power if r["system"] == system}):
            rows = [r for r in power if r["system"] == system and r["noise"] == noise]
            truth = RIGHT[system][1] or ref_real
            err = [abs(r["coefficient"] / truth - 1) for r in rows]
            verdicts = ", ".join(f"{v} {sum(r['status'] == v for r in rows)}" for v in ("law", "approximate", "rejected")
                                 if any(r["status"] == v for r in rows))  # fmt: skip
            sigma_q = np.mean([r["sigma_estimated"]["q"] for r in rows])
            L.append(f"| {system} | {noise:g} | {len(rows)} | {sum(r['right_first'] for r in rows)}/{len(rows)} | {verdicts} | "
                     f"{np.mean(err):.2%} / {np.max(err):.2%} | {np.nanmin([r['surrogate_margin'] for r in rows]):.3g} | {sigma_q:.3g} | {np.mean([r['seconds'] for r in rows]):.1f} |")  # fmt: skip
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
    if rigid is None:
        rigid, L = [], L[:-2] + [NOT_RUN]
    for r in rigid:
        laws = "; ".join(f"`{x['formula']}` ({x['status']}, noise x{x['noise_ratio']:.3g})" for x in r["laws"])
        worst = max((x["off_span"] for x in r["laws"]), default=float("nan"))
        reasons = ", ".join(f"{k} {v}" for k, v in r["rejected_reasons"].items())
        L.append(f"| {r['noise']:g} | {r['shortlisted']} | {laws} | {worst:.2g} | {reasons} |")
    L += report_lines(precision, reference)
    data = {"meta": meta, "command": command, "seconds": seconds, "lawless": lawless, "power": power, "rigid": rigid,
            "precision": precision, "reference_estimators": reference,
            "totals": {k: {"false": v[0], "false_exact": v[2], "datasets": v[1], "bound95": upper_bound(v[0], v[1])}
                       for k, v in totals.items()}}  # fmt: skip
    return "\n".join(L), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", type=int, default=50, help="held-out data sets per family at size 6")
    parser.add_argument("--datasets7", type=int, default=6, help="held-out data sets per family at size 7")
    parser.add_argument("--walks", type=int, default=20, help="calibration random walks per length at size 6")
    parser.add_argument("--power-seeds", type=int, default=3, help="noise seeds per system and level")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--lawless-sets", choices=["all", "held-out", "rest"], default="all",
                        help="held-out: the held-out families at size 6 only; rest: everything else of part 1")  # fmt: skip
    parser.add_argument("--raw", type=Path, help="also write the raw results here (to render again with --report-only)")
    parser.add_argument("--report-only", type=Path, nargs="+", help="render the report from raw files of earlier runs")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "acceptance.md")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if args.datasets < 1 or args.datasets7 < 0 or args.walks < 1 or args.power_seeds < 1 or not parts <= set(PARTS):
        parser.error(f"--datasets, --walks and --power-seeds must be >= 1, --datasets7 >= 0, --parts among {PARTS}")
    if args.report_only:  # several raw files (parts run one after another at one revision) make one report
        raws = [json.loads(path.read_text()) for path in args.report_only]
        results: dict = {}
        for raw in raws:
            for key, value in raw["results"].items():
                results[key] = results.get(key, []) + value if isinstance(value, list) else value
        seconds, command = [raw["seconds"] for raw in raws], "; ".join(raw["command"] for raw in raws)
        revisions = {raw["git_revision"] for raw in raws}
        if len(revisions) != 1:
            parser.error(f"the raw files come from different revisions: {sorted(revisions)}")
        revision = revisions.pop()
    else:
        command = " ".join(["python benchmarks/acceptance.py", *sys.argv[1:]])
        t0 = time.perf_counter()
        results = run(parts, args.quick, args.datasets, args.datasets7, args.walks, args.power_seeds, args.lawless_sets)
        seconds = time.perf_counter() - t0
        from lawfinder.runs.metadata import run_metadata

        revision = run_metadata(0, "cpu")["git_revision"]
        if args.raw:
            args.raw.write_text(json.dumps({"results": results, "seconds": seconds, "command": command,
                                            "git_revision": revision}))  # fmt: skip
    missing = {"lawless", "precision", "reference_estimators"} - set(results)
    if missing or (not args.report_only and set(results) < set(PARTS) | {"reference_estimators"}):
        print(f"parts run: {sorted(results)}; the report needs all of {PARTS} (write raw files, then --report-only)")
        return
    text, data = report(results["lawless"], results.get("power"), results.get("rigid"), results["precision"],
                        results["reference_estimators"], seconds, command, revision)  # fmt: skip
    if args.quick:
        print(text)
    else:
        publish(text, data, args.out)


if __name__ == "__main__":
    main()
