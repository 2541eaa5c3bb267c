"""Fit benchmark: every size-7 formula fitted and tested on each built-in system.

Per system (clean spring, pendulum, real pendulum, the random-walk control; then spring and
pendulum with HNN's Gaussian noise, ``load(noise=0.1)``): counts per stage (enumerated, fitted,
rejected by reason, passed the random-sequence test, rejected by the phase-randomised surrogate
control, accepted), the rank of the true law by conservation ratio, its fitted coefficient
normalised as in the paper, its surrogate ratio, how many formulas took the exact / search path,
the wall time of the enumeration and of fitting + acceptance (timed alone; the surrogate refit,
part of it, also on its own), and the top accepted formulas. Also times ``jobs=2`` once for the
pendulum, and reruns the random-walk control with other seeds and 60 points per walk. Writes
``results/fit.md`` and ``results/fit.json`` with the paper's and pykan's figures beside ours, and
checks the issue's bars.

Single-threaded (``torch.set_num_threads(1)``), CPU only.

Usage::

    python benchmarks/fit.py                                   # everything
    python benchmarks/fit.py --systems pendulum --noisy        # one system, no noisy variants
    python benchmarks/fit.py --noisy spring --noise 0.1 --no-jobs2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:  # this checkout, not whatever `pip install -e` last pointed at
    sys.path.insert(0, str(ROOT))

from benchmarks.publish import publish  # noqa: E402
from lawfinder.discovery import SURROGATE_THRESHOLD as SURROGATE_T  # noqa: E402

CLEAN = ["spring", "pendulum", "real-pendulum", "random-walk"]
NOISY = ["spring", "pendulum"]

# true-law template (as lawfinder emits it), the paper's form, the normalisation C = f(C0), target
TRUE_LAW = {
    "pendulum": ("p**2 + C0*cos(q)", "p**2 - C*cos(q)", lambda c0: -c0, 3.0),
    "spring": ("p**2 + C0*q**2", "q**2 + C*p**2", lambda c0: 1.0 / c0, 1.0),
    "real-pendulum": ("v**2 + C0*cos(q)", "v**2 - C*cos(q)", lambda c0: -c0, 2.4),
}
REAL_RANGE = (2.2, 2.6)
PAPER = {
    "pendulum": {"enumerated": 41460, "accepted": 210, "formula": "p^2 - 2.99 cos(q)"},
    "spring": {"enumerated": 72372, "accepted": 219, "formula": "q^2 + 1.002 p^2"},
    "real-pendulum": {"enumerated": None, "accepted": None, "formula": "p^2 - 2.39 cos(q) (read off fig. 2)"},
}
PYKAN = {  # NOTES.md section 5, measured on a 2-core machine; needs dx/dt, no units, no acceptance test
    "spring": ("q^2 + 0.9984 p^2", 3.3),
    "pendulum": ("p^2 - 2.998 cos(1.0014 q)", 9.0),
    "real-pendulum": ("v^2 - 3.16 cos(0.86 q)", 3.6),
}
TIME_BAR_S = 60.0
LOW_RATIO = "conserved <"
SURROGATE = ("also conserved on phase-randomised", "surrogate control:")  # reason prefixes


class SurrogateTimer:
    """Times `lawfinder.discovery._surrogate_test` (the serial surrogate refit) while active."""

    def __enter__(self):
        from lawfinder import discovery

        self.seconds = 0.0
        self._module, self._original = discovery, discovery._surrogate_test

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        discovery._surrogate_test = timed
        return self

    def __exit__(self, *exc):
        self._module._surrogate_test = self._original


def surrogate_counts(table) -> dict:
    """Formulas that passed the random-sequence test, and what the surrogate control made of them."""
    failed = table["reject_reason"].str.startswith(SURROGATE[1])  # undefined on the surrogates
    tested = table[table["surrogate_ratio"].notna() | failed]
    rejected = tested[~tested["accepted"]]
    return {
        "passed_random_test": int(len(tested)),
        "rejected_by_surrogate": int(len(rejected)),
        "accepted": int(table["accepted"].sum()),
        "max_surrogate_ratio": float(tested["surrogate_ratio"].max()) if tested["surrogate_ratio"].notna().any() else None,
        "min_surrogate_ratio_accepted": float(tested.loc[tested["accepted"], "surrogate_ratio"].min())
        if tested["accepted"].any() else None,
        "max_surrogate_ratio_rejected": float(rejected["surrogate_ratio"].max())
        if rejected["surrogate_ratio"].notna().any() else None,
        "rejected": [
            {"formula": r.formula, "ratio": float(r.conservation_ratio),
             "surrogate_ratio": float(r.surrogate_ratio), "reject_reason": r.reject_reason}
            for r in rejected.head(5).itertuples()
        ],
    }  # fmt: skip


def within_total_ratio(formula_text: str, units: dict, true_w: np.ndarray, random_w: np.ndarray) -> float:
    """The plain score of NOTES section 3 (within-window / total variance), random over true."""
    from dsl import parse

    g = parse(formula_text, units).to_torch(list(units))

    def score(w):
        vals = g(torch.as_tensor(w, dtype=torch.float64))[..., 0]  # (W, L)
        within = (vals - vals.mean(-1, keepdim=True)).square().sum()
        total = (vals - vals.mean()).square().sum()
        return float(within / total)

    return score(random_w) / score(true_w)


def surrogate_ratio_spread(
    traj, formulas, config, root: int, score_true: float, seeds=range(10)
) -> list:
    """The true law's surrogate ratio refitted on surrogates drawn with other seeds (the run uses one)."""
    from lawfinder.controls import phase_randomised
    from lawfinder.discovery import train_windows
    from lawfinder.fit import FitSettings, fit_chunk

    windows, _ = train_windows(traj, config)
    out = []
    for seed in seeds:
        x = torch.as_tensor(np.stack(phase_randomised(windows, seed).states), dtype=torch.float64)
        fit = fit_chunk(formulas.dag, [root], x, FitSettings(seed=config.seed))
        out.append(float(fit.score[0]) / max(score_true, 1e-300))
    return out


def window_mean_squares(formula_text: str, units: dict, arrays: dict) -> dict:
    """(within, between) mean squares of one fitted formula on each set of windows (no refit)."""
    from dsl import parse
    from lawfinder.score import mean_squares

    g = parse(formula_text, units).to_torch(list(units))
    out = {}
    for name, w in arrays.items():
        within, between = mean_squares(g(torch.as_tensor(w, dtype=torch.float64))[..., 0])
        out[name] = {"within": float(within), "between": float(between)}
    return out


def run_one(name: str, noise: float, max_size: int, jobs: int, threshold: float, seed: int) -> dict:
    from dsl import FormulaSet
    from lawfinder.discovery import FitConfig, fit_conservation, surrogate_arrays, window_arrays
    from lawfinder.systems import get_system

    system = get_system(name)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    traj = system.load(noise=noise, seed=seed)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    formulas = FormulaSet.enumerate(system.units, max_size)
    t_enum = time.perf_counter() - t0
    config = FitConfig(window=None, threshold=threshold, seed=seed, jobs=jobs, device="cpu")
    with SurrogateTimer() as surrogate_timer:
        t0 = time.perf_counter()
        table = fit_conservation(traj, formulas, config)
        t_fit = time.perf_counter() - t0

    reasons = table["reject_reason"]
    tested = reasons.str.startswith(LOW_RATIO) | reasons.str.startswith(SURROGATE)
    fit_failed = (reasons != "") & ~tested
    by_reason = reasons[reasons != ""].value_counts().to_dict()
    accepted = table[table["accepted"]]
    fitted = table[~fit_failed]
    key = fitted["score_true"].map("{:.10g}".format) + "|" + fitted["score_random"].map("{:.10g}".format)
    groups = [g for _, g in fitted.groupby(key, sort=False) if len(g) > 1]
    same_size = [g for g in groups if g["size"].nunique() < len(g)]
    true_w, random_w, window = window_arrays(traj, config)
    out = {
        "system": name,
        "noise": noise,
        "jobs": jobs,
        "threshold": threshold,
        "units": system.units,
        "n_train_windows": int(true_w.shape[0]),
        "window": int(window),
        "counts": {
            "enumerated": int(len(table)),
            "fitted": int((~fit_failed).sum()),
            "rejected_by_reason": {k: int(v) for k, v in by_reason.items()},
            "accepted": int(len(accepted)),
        },
        "surrogate": surrogate_counts(table),
        "methods": {k: int(v) for k, v in table["method"].value_counts().items()},
        "score_duplicates": {
            "redundant_formulas": int(sum(len(g) - 1 for g in groups)),
            "groups": len(groups),
            "groups_with_same_size_members": len(same_size),
            "redundant_among_accepted": int(sum(max(int(g["accepted"].sum()) - 1, 0) for g in groups)),
            "examples_same_size": [
                g.sort_values("size")["formula"].tolist()[:2]
                for g in sorted(same_size, key=lambda g: -g["conservation_ratio"].max())[:2]
            ],
            "examples_other": [
                g.sort_values("size")["formula"].tolist()[:2]
                for g in sorted((g for g in groups if g["size"].nunique() == len(g)),
                                key=lambda g: -g["conservation_ratio"].max())[:1]
            ],  # fmt: skip
        },
        "timings_s": {
            "load": t_load,
            "enumerate": t_enum,
            "fit_and_accept": t_fit,
            "surrogate_refit": surrogate_timer.seconds,
        },
        "loadavg_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "top_accepted": [
            {
                "formula": r.formula,
                "template": r.template,
                "ratio": float(r.conservation_ratio),
                "surrogate_ratio": float(r.surrogate_ratio),
                "method": r.method,
            }
            for r in accepted.head(5).itertuples()
        ],
        "top_overall": [
            {
                "formula": r.formula,
                "ratio": float(r.conservation_ratio),
                "surrogate_ratio": float(r.surrogate_ratio),
                "accepted": bool(r.accepted),
            }
            for r in table.head(5).itertuples()
        ],
    }
    if name in TRUE_LAW:
        template, paper_form, normalise, target = TRUE_LAW[name]
        hit = table.index[table["template"] == template]
        if len(hit) == 0:
            out["true_law"] = {"template": template, "found": False}
        else:
            pos = int(hit[0])
            row = table.loc[pos]
            c0 = json.loads(row["params"])["C0"]["value"]
            c = normalise(c0)
            ratio = float(row["conservation_ratio"])
            better = table["conservation_ratio"] > ratio
            out["true_law"] = {
                "template": template,
                "paper_form": paper_form,
                "found": True,
                "rank": pos + 1,
                "rank_among_accepted": int((better & table["accepted"]).sum()) + 1 if row["accepted"] else None,
                "formula": row["formula"],
                "C0": c0,
                "C": c,
                "target": target,
                "rel_error": abs(c - target) / target,
                "in_real_range": (REAL_RANGE[0] <= c <= REAL_RANGE[1]) if name == "real-pendulum" else None,
                "ratio": ratio,
                "score_true": float(row["score_true"]),
                "score_random": float(row["score_random"]),
                "score_surrogate": float(row["score_surrogate"]),
                "surrogate_ratio": float(row["surrogate_ratio"]),
                "passed_random_test": bool(ratio >= threshold),
                "accepted": bool(row["accepted"]),
                "reject_reason": row["reject_reason"],
                "method": row["method"],
                "within_total_ratio": within_total_ratio(row["formula"], system.units, true_w, random_w),
                "surrogate_ratio_seeds_0_9": surrogate_ratio_spread(
                    traj, formulas, config, int(row["root"]), float(row["score_true"])
                ),
                "mean_squares": window_mean_squares(
                    row["formula"],
                    system.units,
                    {
                        "true": true_w,
                        "random": random_w,
                        "surrogate": surrogate_arrays(traj, config),
                    },
                ),
                "outranked_by": [
                    {"formula": r.formula, "ratio": float(r.conservation_ratio)} for r in table.head(pos).itertuples()
                ][:5],
            }
    return out


RW_CHECK = [(45, 1), (45, 2), (60, 0), (60, 1), (60, 2)]  # (points per trajectory, seed)


def _random_walk(n_points: int, seed: int):
    """The built-in random-walk control (50 walks on t in [0, 3]) with `n_points` per walk."""
    from lawfinder.trajectories import Trajectories

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    step = np.sqrt(np.diff(t))[:, None]
    states = []
    for _ in range(50):
        x0 = rng.uniform(-0.5, 0.5, size=(1, 2))
        walk = np.cumsum(rng.standard_normal((t.size - 1, 2)) * step, axis=0)
        states.append(np.concatenate([x0, x0 + walk]))
    return Trajectories(
        name=f"random-walk-{n_points}", variables=("q", "p"), units={"q": "rad", "p": "kg*m**2/s"},
        states=tuple(states), times=(t,) * 50, derivatives=None, split=("train",) * 25 + ("test",) * 25,
    )  # fmt: skip


def random_walk_check(max_size: int, threshold: float) -> list[dict]:
    """False acceptances on random walks with other seeds and with 60 instead of 45 points per walk.

    Each walk is fitted once (surrogate control on); ``passed_random`` counts what the
    random-sequence test alone accepts (the acceptance before the surrogate control).
    """
    from dsl import FormulaSet
    from lawfinder.discovery import FitConfig, fit_conservation

    formulas = FormulaSet.enumerate({"q": "rad", "p": "kg*m**2/s"}, max_size)
    out = []
    for n_points, seed in RW_CHECK:
        with SurrogateTimer() as surrogate_timer:
            t0 = time.perf_counter()
            table = fit_conservation(
                _random_walk(n_points, seed), formulas, FitConfig(threshold=threshold, seed=seed)
            )
            t_fit = time.perf_counter() - t0
        sur = surrogate_counts(table)
        row = {
            "points": n_points,
            "seed": seed,
            "passed_random": sur["passed_random_test"],
            "accepted": sur["accepted"],
            "surrogate": sur,
            "best": [{"formula": r.formula, "ratio": float(r.conservation_ratio),
                      "surrogate_ratio": float(r.surrogate_ratio)} for r in table.head(3).itertuples()],
            "fit_s": t_fit,
            "surrogate_refit_s": surrogate_timer.seconds,
        }  # fmt: skip
        out.append(row)
        print(f"random walk {n_points} points seed {seed}: {row['passed_random']} passed the random test, "
              f"{row['accepted']} accepted, best ratio {row['best'][0]['ratio']:.1f}", flush=True)  # fmt: skip
    return out


def label(run: dict) -> str:
    return run["system"] + (f" (noise {run['noise']:g})" if run["noise"] else "")


def _g(x: float) -> str:
    if x is None or not np.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def bars(runs: list[dict], check: list[dict] | None = None) -> list[tuple[str, bool | None, str]]:
    find = {(r["system"], r["noise"], r["jobs"]): r for r in runs}
    out = []
    for name, target in (("spring", 1.0), ("pendulum", 3.0)):
        r = find.get((name, 0.0, 1))
        if r:
            t = r["true_law"]
            ok = t["found"] and t["accepted"] and t["rel_error"] < 0.01
            out.append((f"clean {name}: true law accepted, C within 1% of {target:.3g}", ok,
                        f"C = {t.get('C', float('nan')):.6g}, error {t.get('rel_error', float('nan')):.2e}, "
                        f"accepted {t.get('accepted')}"))  # fmt: skip
    r = find.get(("real-pendulum", 0.0, 1))
    if r:
        t = r["true_law"]
        ok = t["found"] and t["accepted"] and bool(t["in_real_range"])
        out.append(("real pendulum: accepted `v**2 - C*cos(q)` with C in [2.2, 2.6]", ok,
                    f"C = {t.get('C', float('nan')):.4g}, accepted {t.get('accepted')}"))  # fmt: skip
    r = find.get(("random-walk", 0.0, 1))
    if r:
        n = r["counts"]["accepted"]
        out.append(("random walk: zero accepted", n == 0, f"{n} accepted"))
    if check:
        n = sum(c["accepted"] for c in check)
        walks = ", ".join(f"{c['points']} pts seed {c['seed']}: {c['accepted']}" for c in check)
        out.append(("random-walk check (other seeds, 60 points): zero accepted", n == 0, walks))
    single = [r for r in runs if r["jobs"] == 1]
    if single:
        worst = max(single, key=lambda r: r["timings_s"]["fit_and_accept"])
        ok = all(r["timings_s"]["fit_and_accept"] < TIME_BAR_S for r in single)
        out.append((f"fit + acceptance < {TIME_BAR_S:g} s per system (1 thread, 1 job)", ok,
                    f"slowest: {label(worst)} {worst['timings_s']['fit_and_accept']:.1f} s"))  # fmt: skip
    out.append(("CUDA timing", None, "not measured: no GPU was lent to this task"))
    return out


def markdown(data: dict) -> str:
    meta = data["metadata"]
    runs = data["runs"]
    single = [r for r in runs if r["jobs"] == 1]
    L = [
        "# Fit benchmark: fitting and acceptance of every size-7 formula",
        "",
        "Generated by `python benchmarks/fit.py`. **Timings are single-threaded** "
        "(`torch.set_num_threads(1)`, `jobs=1` unless stated) **on a shared 2-core CPU machine** "
        f"(`os.cpu_count()` = {meta['cpu_count']}; another engineer's jobs ran at the same time, so "
        f"times are upper bounds of what an idle machine gives; the table records the 1-minute load average before and after each run: above 2 the cores were oversubscribed). torch {meta['torch']}, "
        f"Python {meta['python']}, git revision `{meta['git_revision']}`. Max size {meta['max_size']}, "
        f"threshold {meta['threshold']:g}x, seed {meta['seed']}, float64, device cpu. "
        "**CUDA: no GPU was lent to this task, so there is no CUDA timing.**",
        "",
        "The score (`lawfinder/score.py`) is the one-way ANOVA ratio within / (within + between) over "
        "windows of the training data; the conservation ratio is score on random sequences / score "
        "on true data, and a formula passes the random-sequence test when it is >= the threshold (the "
        "paper's 100x test, with our score instead of the paper's gradient-descent variance). The "
        "formulas that pass are refitted on phase-randomised surrogates of the true windows "
        "(`lawfinder.controls.phase_randomised`: per window and per variable, the FFT amplitudes and "
        "the mean are kept and the phases drawn anew, so each variable keeps its autocorrelation but "
        "the relations between variables are gone); the *surrogate ratio* is score on surrogates / "
        f"score on true data, and a formula is **accepted** only when it is also >= {SURROGATE_T:g} "
        "(`FitConfig.surrogate_threshold`, with `surrogate_control` on by default; lower than the "
        "random-sequence threshold because this ratio lacks its factor of about L: lawless walks reach "
        "about 1, noisy laws about 30; the value was chosen after seeing those numbers). *Passed random test* is what the acceptance "
        "was before the surrogate control existed (the chunk fits are unchanged).",
        "",
        "## Stages and timings",
        "",
        "| system | windows x length | enumerated | fitted | rejected: fit failed | rejected: ratio < 100 | "
        "passed random test (before) | rejected: surrogate | accepted | paper accepted | "
        "exact / search / no-param | enumerate (s) | fit + accept (s) | of which surrogate refit (s) | "
        "load avg (1 min, before/after) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in single:
        c = r["counts"]
        low = sum(v for k, v in c["rejected_by_reason"].items() if k.startswith(LOW_RATIO))
        failed = c["enumerated"] - c["fitted"]
        paper = PAPER.get(r["system"], {}).get("accepted") if not r["noise"] else None
        m = r["methods"]
        s = r["surrogate"]
        L.append(
            f"| {label(r)} | {r['n_train_windows']} x {r['window']} | {c['enumerated']:,} | {c['fitted']:,} | "
            f"{failed:,} | {low:,} | {s['passed_random_test']} | {s['rejected_by_surrogate']} | "
            f"**{c['accepted']}** | {paper if paper is not None else '-'} | "
            f"{m.get('exact', 0):,} / {m.get('search', 0):,} / {m.get('none', 0):,} | "
            f"{r['timings_s']['enumerate']:.2f} | {r['timings_s']['fit_and_accept']:.1f} | "
            f"{r['timings_s']['surrogate_refit']:.2f} | "
            f"{r['loadavg_1min']['before']:.1f} / {r['loadavg_1min']['after']:.1f} |"
        )
    L += ["", "Rejections by reason (a reason prefixed `random control:` arose when fitting the random sequences, "
          "`surrogate control:` when refitting the surrogates):", ""]  # fmt: skip
    for r in single:
        parts = ", ".join(f"{k}: {v:,}" for k, v in r["counts"]["rejected_by_reason"].items())
        L.append(f"- {label(r)}: {parts}")
    jobs2 = [r for r in runs if r["jobs"] != 1]
    if jobs2:
        L.append("")
        for r in jobs2:
            base = next((s for s in single if s["system"] == r["system"] and s["noise"] == r["noise"]), None)
            speed = f" ({base['timings_s']['fit_and_accept'] / r['timings_s']['fit_and_accept']:.2f}x the jobs=1 speed)" if base else ""
            same = ""
            if base:
                same = (" Same accepted count as jobs=1." if base["counts"]["accepted"] == r["counts"]["accepted"]
                        else " **Accepted count differs from jobs=1.**")  # fmt: skip
            L.append(
                f"`jobs={r['jobs']}` on {label(r)}: fit + accept {r['timings_s']['fit_and_accept']:.1f} s{speed}, "
                "with two joblib worker processes (1 thread each) on the 2 shared cores, so the other engineer's "
                f"load competes directly with it.{same}"
            )
    L += [
        "",
        "Beside: the paper enumerated 41,460 (pendulum) / 72,372 (spring) formulas and accepted 210 / 219; "
        "its whole symbolic pipeline (fitting by gradient descent, then ranking and meta-tailoring the top "
        "20) took about **4 hours on one V100 GPU + 10 CPU cores** (not broken down by stage, so not a "
        "like-for-like comparison with our fit stage alone). pykan's conservation-law recipe (NOTES section 5, "
        "same kind of 2-core machine) returns one formula with no acceptance test: "
        + "; ".join(f"{k} `{f}` in {t} s" for k, (f, t) in PYKAN.items())
        + ". It needs dx/dt, knows no units, and on a random walk still returns a formula.",
        "",
        "## The true law",
        "",
        "Normalised as in the paper: pendulum and real pendulum `p**2 - C*cos(q)` (C = -C0 of our "
        "template `p**2 + C0*cos(q)`); spring `q**2 + C*p**2` (C = 1/C0 of our template `p**2 + C0*q**2`). "
        "Rank = position by conservation ratio among all enumerated formulas (1 = best). "
        "*Within/total ratio* is the plain score of NOTES section 3 (within-window / total variance, random "
        "over true) for the same fitted formula, shown for comparison with the paper-like test. "
        "*Surrogate ratio* = score on phase-randomised surrogates (parameters refitted there) / score on "
        f"true data; accepted needs the ratio >= the threshold and the surrogate ratio >= {SURROGATE_T:g}. The run draws one set of surrogates "
        "(seed 0); *surrogate seeds 0-9* refits the true law on ten sets, to show how much the ratio depends "
        "on the draw.",
        "",
        "| system | fitted formula | C | target | rel. error | rank | ratio (ours) | surrogate ratio | "
        f"surrogate seeds 0-9 (min-max, >= {SURROGATE_T:g}) | within/total ratio | accepted | path | paper | pykan |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|---|",
    ]
    for r in single:
        t = r.get("true_law")
        if not t:
            continue
        if not t["found"]:
            L.append(f"| {label(r)} | template `{t['template']}` **not enumerated** |" + " |" * 12)
            continue
        if r["system"] == "real-pendulum":
            target = f"2.4 (bar: [2.2, 2.6]: {'in' if t['in_real_range'] else '**out**'})"
        else:
            target = f"{t['target']:.3g}"
        paper = PAPER[r["system"]]["formula"] if not r["noise"] else "(test fails with noise)"
        seeds = t["surrogate_ratio_seeds_0_9"]
        pykan = f"`{PYKAN[r['system']][0]}`" if r["system"] in PYKAN and not r["noise"] else "-"
        L.append(
            f"| {label(r)} | `{t['formula']}` | {t['C']:.6g} | {target} | {t['rel_error']:.2e} | {t['rank']} | "
            f"{_g(t['ratio'])} | {_g(t['surrogate_ratio']) if t['passed_random_test'] else '- (not tested)'} | "
            f"{_g(min(seeds))}-{_g(max(seeds))}, {sum(s >= SURROGATE_T for s in seeds)}/{len(seeds)} | "
            f"{_g(t['within_total_ratio'])} | {'yes' if t['accepted'] else '**no**'} | "
            f"{t['method']} | {paper} | {pykan} |"
        )
    L += ["", "## Top 5 accepted formulas", "",
          "Each with its conservation ratio (random sequences) and surrogate ratio; below, up to 5 formulas that "
          "passed the random-sequence test but were rejected by the surrogate control.", ""]  # fmt: skip
    for r in single:
        L.append(f"**{label(r)}** ({r['counts']['accepted']} accepted)")
        L.append("")
        rejected = r["surrogate"]["rejected"]
        if not r["top_accepted"]:
            best = r["top_overall"][0] if r["top_overall"] else None
            extra = f"; best ratio {_g(best['ratio'])} for `{best['formula']}`" if best else ""
            L.append(f"- none{extra}")
        for k, f in enumerate(r["top_accepted"], 1):
            L.append(f"{k}. `{f['formula']}` (ratio {_g(f['ratio'])}, surrogate ratio "
                     f"{_g(f['surrogate_ratio'])}, {f['method']})")  # fmt: skip
        if rejected:
            n_rejected = r["surrogate"]["rejected_by_surrogate"]
            L += ["", f"Rejected by the surrogate control ({n_rejected}):", ""]
            for f in rejected:
                ratios = f"ratio {_g(f['ratio'])}, surrogate ratio {_g(f['surrogate_ratio'])}"
                L.append(f"- `{f['formula']}` ({ratios})")
        L.append("")
    L += [
        "## Equivalent formulas that slip through the pruning",
        "",
        "Fitted formulas whose (score_true, score_random) pair equals another's to 10 digits. The score is "
        "invariant to scale and offset, so such formulas are, with their fitted parameters, affine "
        "re-expressions of each other on the data. Two kinds: equivalent *templates* the enumerator does not "
        "merge (typically same size: `(C - q)**2` vs `(q - C)**2`, `(v**2 - C)*cos(q)` vs "
        "`(C - v**2)*cos(q)`, i.e. negation inside a square or a product), and a larger formula that "
        "equals a smaller one, either because the fitted parameter collapses a term (`p + q/(C*q)` is "
        "`p` + const) or by an identity up to sign that the numeric rule does not test "
        "(`sin(q) - (q + sin(q))` is `-q`). Counted only; the table keeps them. Redundant = group size - 1.",
        "",
        "| system | redundant formulas | groups | groups with two same-size members | redundant among accepted | "
        "examples (same size; other) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in single:
        d = r["score_duplicates"]
        ex = "; ".join(" = ".join(f"`{f}`" for f in g) for g in d["examples_same_size"] + d["examples_other"])
        L.append(
            f"| {label(r)} | {d['redundant_formulas']:,} | {d['groups']:,} | {d['groups_with_same_size_members']:,} | "
            f"{d['redundant_among_accepted']} | {ex} |"
        )
    L.append("")
    check = data.get("random_walk_check")
    if check:
        L += [
            "## Random-walk control: other seeds and longer walks",
            "",
            "The built-in control has 45 points per walk (seed 0 above). The same generator with other seeds, "
            "and with 60 points per walk on the same time span (60 is the longest trajectory the default "
            "window still takes whole), size-7 formulas, same threshold. *Passed random test* is what the "
            "random-sequence test alone accepts (the acceptance before the surrogate control); *accepted* "
            "adds the surrogate control; the surrogate ratios are those of the formulas that passed the "
            f"random test (max over them; the surrogate threshold is {SURROGATE_T:g}x):",
            "",
            "| points per walk | seed | passed random test (before) | accepted (after) | max surrogate ratio | "
            "best formulas (ratio) | fit + accept (s) |",
            "|---:|---:|---:|---:|---:|---|---:|",
        ]
        for c in check:
            best = "; ".join(f"`{b['formula']}` ({_g(b['ratio'])})" for b in c["best"][:2])
            before = f"**{c['passed_random']}**" if c["passed_random"] else "0"
            mark = f"**{c['accepted']}**" if c["accepted"] else "0"
            sur = c["surrogate"]
            top = _g(sur["max_surrogate_ratio"]) if sur["max_surrogate_ratio"] is not None else "-"
            cells = [c["points"], c["seed"], before, mark, top, best, f"{c['fit_s']:.1f}"]
            L.append("| " + " | ".join(str(x) for x in cells) + " |")
        L += [
            "",
            "A random walk is autocorrelated, so *every* smooth function of the state varies less inside a "
            "walk than across shuffled states: for a Brownian path on [0, T] the within-walk variance is about "
            "T/6 while the walk means spread by about T/3, so the between-window mean square (L times the "
            "variance of window means) grows with the number of points L per window and the ratio of a nearly "
            "linear formula grows roughly in proportion to L. The random-sequence control (i.i.d. draws from the "
            "pooled states) does not model this, so the 100x threshold is only a constant factor above what a "
            "lawless but autocorrelated signal reaches. The phase-randomised surrogates model it: each "
            "variable keeps its spectrum (so its slow drift) and only the relations between variables are "
            "lost, so a formula that looks conserved only because the state drifts slowly is about as "
            "conserved on the surrogates (surrogate ratio near 1), while a law is not.",
            "",
        ]
    L += ["## Bars (issue 4)", "", "| bar | met | value |", "|---|---|---|"]
    for text, ok, value in bars(runs, data.get("random_walk_check")):
        mark = "n/a" if ok is None else ("yes" if ok else "**NO**")
        L.append(f"| {text} | {mark} | {value} |")
    L += ["", "## Notes", ""] + [f"- {n}" for n in notes(runs, data.get("random_walk_check"))]
    return "\n".join(L)


def notes(runs: list[dict], check: list[dict] | None = None) -> list[str]:
    out = []
    find = {(r["system"], r["noise"], r["jobs"]): r for r in runs}
    for r in runs:
        t = r.get("true_law")
        if r["jobs"] != 1 or r["noise"] or not t or not t.get("found") or r["counts"]["accepted"] < 2:
            continue
        others = [f for f in r["top_accepted"] if f["template"] != t["template"]]
        if others:
            gone = r["surrogate"]["rejected"]
            out.append(
                f"{label(r)}: besides the true law (ratio {_g(t['ratio'])}, {t['ratio'] / others[0]['ratio']:.3g}x "
                "ahead of the next) the tests accept "
                + ", ".join(f"`{f['formula']}` ({_g(f['ratio'])}, surrogate {_g(f['surrogate_ratio'])})"
                            for f in others[:3])
                + ": approximate invariants that track the energy on the range of the data (`q**2` for "
                "`-2*cos(q)` at small angles, `cos(c*p)` for `-(c*p)**2/2`, the energy times a slowly varying "
                "factor). The fixed 100x threshold lets them through; they are not false laws of a lawless "
                "system, but they are not the law either."
                + (f" The surrogate control removed {r['surrogate']['rejected_by_surrogate']} such formula(s) "
                   "that passed the random-sequence test: "
                   + ", ".join(f"`{f['formula']}` (surrogate {_g(f['surrogate_ratio'])})" for f in gone[:3])
                   + "." if gone else "")
            )  # fmt: skip
    rw = find.get(("random-walk", 0.0, 1))
    for r in runs:
        if r["jobs"] != 1:
            continue
        t = r.get("true_law")
        if t and t.get("found") and t["rank"] != 1:
            above = ", ".join(f"`{o['formula']}` ({_g(o['ratio'])})" for o in t["outranked_by"][:3])
            out.append(f"{label(r)}: the true law ranks {t['rank']}, below {above}.")
    rw_best = rw["top_overall"][0]["ratio"] if rw and rw["top_overall"] else None
    if rw_best is not None:
        text = (
            f"random-walk: {rw['counts']['accepted']} accepted; the best formula reaches a conservation ratio "
            f"of {_g(rw_best)} (`{rw['top_overall'][0]['formula']}`), {rw_best / 100:.2f} of the threshold, "
            "so the random-sequence test alone has a thin margin here."
        )
        if check:
            before = sum(c["passed_random"] for c in check)
            after = sum(c["accepted"] for c in check)
            sur = [c["surrogate"]["max_surrogate_ratio_rejected"] for c in check]
            sur = [x for x in sur if x is not None]
            worst = ""
            if sur:
                worst = f" (the surrogate ratios of the rejected ones are at most {_g(max(sur))})"
            text += (
                f" On the other walks of the check above the random-sequence test alone passes {before} "
                f"formula(s); with the surrogate control {after} are accepted{worst}."
            )
        out.append(text)
    for r in runs:
        if not r["noise"] or r["jobs"] != 1 or not r.get("true_law", {}).get("found"):
            continue
        t = r["true_law"]
        text = (
            f"{label(r)}: the true law is {'accepted' if t['accepted'] else '**not accepted**'} "
            f"(ratio {_g(t['ratio'])}, rank {t['rank']}, C = {t['C']:.4g}, error {t['rel_error']:.1%}); the plain "
            f"within/total score would give the same formula only {_g(t['within_total_ratio'])}x (NOTES: ~10x, "
            "below the paper's 100x). Our ANOVA score compares the spread of window means (each mean averages "
            f"the noise of {r['window']} states) with the within-window fluctuation, so noise of variance s^2 "
            "lowers the ratio only to about (random score) x (1 + L var(H) / s_H^2), where s_H^2 is the noise "
            "that s^2 puts on H."
        )
        if not t["accepted"] and t.get("passed_random_test"):
            ms = t["mean_squares"]
            text += (
                f" It passes the random-sequence test but **fails the surrogate control** (surrogate ratio "
                f"{_g(t['surrogate_ratio'])} < {SURROGATE_T:g}; "
                f"{_g(min(t['surrogate_ratio_seeds_0_9']))}-{_g(max(t['surrogate_ratio_seeds_0_9']))} over "
                "surrogate seeds 0-9, so not an unlucky draw). The surrogates keep each window's "
                "mean of p**2 exactly (Parseval) and that of cos(q) nearly, so the spread of the energy across "
                f"windows survives on them (between-window mean square of the fitted formula: "
                f"{ms['true']['between']:.3g} on the data, {ms['surrogate']['between']:.3g} on the surrogates, "
                f"{ms['random']['between']:.3g} on random sequences), and the surrogate ratio is about the "
                f"ratio of within-window mean squares ({ms['surrogate']['within']:.3g} / "
                f"{ms['true']['within']:.3g} = {ms['surrogate']['within'] / ms['true']['within']:.3g}), "
                "without the factor of about L that the random-sequence ratio gains when the between-window "
                "spread collapses. The noise on H sets the within-window mean square on the data, so the "
                "surrogate test is the harsher one on noisy data."
            )
        elif not t["accepted"] and r["system"] == "spring":
            text += (
                " It still fails here: each spring trajectory has only 30 points (the window is the whole "
                "trajectory, so no longer window exists) and its energy H = r^2 with r ~ U[0.1, 1) spreads "
                "little across trajectories, while on small orbits the noise on H is as large as H itself."
            )
            if rw_best is not None and rw_best > t["ratio"]:
                text += (
                    f" Lowering the threshold is no fix: the best formula on the lawless random walk reaches "
                    f"{_g(rw_best)}, above this true law's {_g(t['ratio'])}."
                )
        out.append(text)
    return out



def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="*", default=CLEAN, help="clean systems (noise 0)")
    parser.add_argument("--noisy", nargs="*", default=NOISY, help="systems re-run with --noise")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--max-size", type=int, default=7)
    parser.add_argument("--threshold", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-jobs2", action="store_true", help="skip the jobs=2 pendulum timing")
    parser.add_argument("--no-rw-check", action="store_true", help="skip the random-walk seeds/length check")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "fit.md")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    from lawfinder.runinfo import run_metadata

    plan = [(s, 0.0, 1) for s in args.systems] + [(s, args.noise, 1) for s in args.noisy]
    if not args.no_jobs2 and "pendulum" in args.systems:
        plan.append(("pendulum", 0.0, 2))
    data = {
        "metadata": {
            **run_metadata(seed=args.seed, device="cpu"),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "max_size": args.max_size,
            "threshold": args.threshold,
            "note": "single-threaded on a 2-core machine shared with another engineer; no GPU lent",
            "lawfinder_path": str(Path(sys.modules["lawfinder"].__file__).parent),
        },
        "runs": [],
    }
    from dsl import FormulaSet

    FormulaSet.enumerate({"q": "rad", "p": "kg*m**2/s"}, 4)  # warm-up (pint registry), not timed
    for name, noise, jobs in plan:
        r = run_one(name, noise, args.max_size, jobs, args.threshold, args.seed)
        data["runs"].append(r)
        t = r.get("true_law") or {}
        print(
            f"{label(r):24s} jobs={jobs} enumerated {r['counts']['enumerated']:,} accepted {r['counts']['accepted']:>4} "
            f"enum {r['timings_s']['enumerate']:.2f}s fit {r['timings_s']['fit_and_accept']:.1f}s"
            + (f" | true law rank {t['rank']} C={t['C']:.6g} accepted={t['accepted']}" if t.get("found") else ""),
            flush=True,
        )
    if not args.no_rw_check and "random-walk" in args.systems:
        data["random_walk_check"] = random_walk_check(args.max_size, args.threshold)
    text = markdown(data)
    publish(text, data, args.out)


if __name__ == "__main__":
    main()
