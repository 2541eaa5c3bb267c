"""An unseen pendulum: new variable names and constants, handed to `lawfinder.search` as a user would.

Issue #14's must-show: "A noisy pendulum you generate in other variable names and constants:
rank 1 is its energy, coefficient within 2%."

The data: theta' = omega, omega' = -(g/l) sin(theta) with g/l = 9.81, so the energy (up to
scale and offset) is omega**2 - 19.62*cos(theta). 40 trajectories of 60 points over 3 s, each
with an amplitude drawn uniformly in [0.3, 2.0] rad (below the top, pi) and a random phase,
integrated by scipy's solve_ivp (rtol 1e-10, atol 1e-12); Gaussian noise sigma 0.02 is added
to theta and omega. Seed 0 throughout. The table (trajectory, t, theta, omega; no derivatives)
is written to a CSV file, read back, and given to ``lf.search`` at its default settings
(``jobs=2`` only uses both cores).

Each law (ranked or accepted) is checked against the energy by fitting its values on the clean
states as ``a*omega**2 + b*cos(theta) + c`` (least squares): C = b/a is compared with -19.62,
and the fit's residual (RMS over the standard deviation of the law) says whether the law has
that form at all (below 1e-6: it is the energy up to scale and offset). The must-show holds
when rank 1 has that form and |C/-19.62 - 1| <= 2%.

Usage::

    python benchmarks/unseen_pendulum.py   # writes results/unseen_pendulum.md and .json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.publish import publish  # noqa: E402
from lawfinder.runs.report_text import rmse_text, short  # noqa: E402

G_OVER_L = 9.81
TRUE_C = -2 * G_OVER_L  # omega**2 - 19.62*cos(theta)
N_TRAJ, N_POINTS, T_END = 40, 60, 3.0
AMPLITUDES = (0.3, 2.0)
NOISE = 0.02
SEED = 0
TOLERANCE = 0.02
FORM_RESIDUAL = 1e-6
UNITS = {"theta": "rad", "omega": "rad/s"}
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/unseen_pendulum.py"


def make_data(seed: int = SEED) -> tuple[pd.DataFrame, np.ndarray]:
    """The user's table (noisy) and the clean states, (N_TRAJ, N_POINTS, 2)."""
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, T_END, N_POINTS)
    clean = []
    for _ in range(N_TRAJ):
        amplitude = rng.uniform(*AMPLITUDES)
        theta0 = rng.uniform(-amplitude, amplitude)
        omega0 = rng.choice([-1.0, 1.0]) * np.sqrt(2 * G_OVER_L * (np.cos(theta0) - np.cos(amplitude)))
        sol = solve_ivp(lambda _, y: [y[1], -G_OVER_L * np.sin(y[0])], (0.0, T_END), [theta0, omega0],
                        t_eval=t, rtol=1e-10, atol=1e-12)  # fmt: skip
        clean.append(sol.y.T)
    clean = np.stack(clean)
    noisy = clean + rng.normal(0.0, NOISE, clean.shape)
    frame = pd.DataFrame({"trajectory": np.repeat(np.arange(N_TRAJ), N_POINTS), "t": np.tile(t, N_TRAJ),
                          "theta": noisy[..., 0].ravel(), "omega": noisy[..., 1].ravel()})  # fmt: skip
    return frame, clean


def energy_check(law, clean: np.ndarray) -> dict:
    """Fit the law's values on the clean states as a*omega**2 + b*cos(theta) + c; C = b/a."""
    flat = clean.reshape(-1, 2)
    g = np.asarray(law.evaluate(flat), float)
    if not np.all(np.isfinite(g)) or g.std() == 0:
        return {"C": None, "relative_error": None, "form_residual": None, "is_energy": False}
    design = np.stack([flat[:, 1] ** 2, np.cos(flat[:, 0]), np.ones(len(flat))], 1)
    coef, *_ = np.linalg.lstsq(design, g, rcond=None)
    residual = float(np.sqrt(np.mean((design @ coef - g) ** 2)) / g.std())
    c = float(coef[1] / coef[0]) if coef[0] != 0 else float("inf")
    error = abs(c / TRUE_C - 1)
    return {"C": c, "relative_error": error, "form_residual": residual,
            "is_energy": bool(residual < FORM_RESIDUAL and error <= TOLERANCE)}  # fmt: skip


def run() -> dict:
    import dsl
    import lawfinder as lf
    from lawfinder.laws.law import laws_from_table

    frame, clean = make_data()
    true_energy = clean[..., 1] ** 2 + TRUE_C * np.cos(clean[..., 0])
    with tempfile.TemporaryDirectory(prefix="unseen-pendulum-") as tmp:
        csv = Path(tmp) / "pendulum.csv"
        frame.to_csv(csv, index=False)
        user_frame = pd.read_csv(csv)
        t0 = time.perf_counter()
        result = lf.search(user_frame, units=UNITS, jobs=2, out=Path(tmp) / "run")
        wall = time.perf_counter() - t0
        record = result.record
        candidates = result.candidates
        accepted_rows = candidates[candidates.accepted]
        dag = dsl.FormulaSet.enumerate(record["variables"], record["settings"]["max_size"]).dag
        accepted = laws_from_table(accepted_rows, dag, record["variables"])

    keep = ("ranked_by", "test_rmse", "test_rmse_std", "seeds_helped", "seeds_beat_control", "meta_tailored")
    ranking = [{"rank": law.rank, "formula": law.name, "status": law.status,
                "conservation_ratio": law.ratio, **{k: law.tailoring.get(k) for k in keep},
                "energy": energy_check(law, clean)} for law in result.laws]  # fmt: skip
    laws = [{"formula": law.name, "status": law.status, "conservation_ratio": law.ratio,
             **{k: law.evidence.get(k) for k in ("method", "independent", "noise_ratio", "p_value")},
             "energy": energy_check(law, clean)} for law in accepted]  # fmt: skip
    best_conserved = max(laws, key=lambda x: x["conservation_ratio"]) if laws else None
    base_keep = ("test_rmse", "test_rmse_std", "seeds_helped", "formulas", "beats_rank_1", "beaten_by_rank_1")
    baselines = {k: {kk: v.get(kk) for kk in base_keep if kk in v} for k, v in result.baselines.items()}
    rank1 = ranking[0] if ranking else None
    return {"data": {"variables": UNITS, "g_over_l": G_OVER_L, "true_C": TRUE_C, "trajectories": N_TRAJ,
                     "points": N_POINTS, "t_end_s": T_END, "amplitudes_rad": AMPLITUDES, "noise": NOISE,
                     "seed": SEED, "clean_energy_max_drift": float(np.abs(true_energy - true_energy[:, :1]).max())},
            "settings": record["settings"], "counts": record["counts"], "wall_s": wall,
            "timings_s": record["timings_s"], "ranking_basis": record["ranking_basis"],
            "ranking": ranking, "baselines": baselines, "accepted": laws, "best_conserved": best_conserved,
            "must_show": {"holds": bool(rank1 and rank1["energy"]["is_energy"]), "tolerance": TOLERANCE,
                          "form_residual_below": FORM_RESIDUAL}}  # fmt: skip


def _energy_cells(e: dict) -> str:
    if e["C"] is None:
        return "- | - | -"
    return f"{e['C']:.4g} | {e['relative_error']:.2%} | {e['form_residual']:.1e}"


def _best_text(best: dict | None) -> str:
    if best is None:
        return "none"
    e = best["energy"]
    text = f"`{short(best['formula'])}` (conservation ratio {best['conservation_ratio']:.3g})"
    if e["C"] is None:
        return text + ", C not finite"
    return (text + f", C = {e['C']:.5g} ({e['relative_error']:.2%} off, fit residual {e['form_residual']:.1e}): "
            + ("the energy" if e["is_energy"] else "not the energy"))


def markdown(r: dict, meta: dict) -> str:
    d = r["data"]
    rank1, best = (r["ranking"] or [None])[0], r["best_conserved"]
    if rank1 is None:
        verdict = "**does not hold**: the search ranked nothing."
    else:
        e = rank1["energy"]
        what = ("it is the energy" if e["is_energy"] else "it has the energy's form" if
                (e["form_residual"] or 1) < FORM_RESIDUAL else "it is not of the energy's form")  # fmt: skip
        verdict = (f"**{'holds' if r['must_show']['holds'] else 'does not hold'}**: rank 1 is "
                   f"`{short(rank1['formula'])}`; fitted as omega**2 + C*cos(theta), C = "
                   + (f"{e['C']:.5g} against {TRUE_C:g} ({e['relative_error']:.2%} off, fit residual "
                      f"{e['form_residual']:.1e}); {what}." if e["C"] is not None else f"not finite; {what}."))  # fmt: skip
    timings = ", ".join(f"{k} {v:.0f}" for k, v in r["timings_s"].items())
    lines = ["# An unseen pendulum: `theta`, `omega`, g/l = 9.81", "",
             f"`{COMMAND}` at git `{meta['git_revision']}`, {meta['machine']['platform']} "
             f"({meta['machine']['cpus']} CPUs, shared), lawfinder {meta['versions'].get('lawfinder')}, "
             f"torch {meta['versions'].get('torch')}.", "",
             f"Data: theta' = omega, omega' = -9.81 sin(theta) (energy omega**2 - 19.62*cos(theta) up to "
             f"scale); {d['trajectories']} trajectories of {d['points']} points over {d['t_end_s']:g} s, "
             f"amplitudes uniform in [{d['amplitudes_rad'][0]:g}, {d['amplitudes_rad'][1]:g}] rad, "
             f"solve_ivp rtol 1e-10 (clean energy drift {d['clean_energy_max_drift']:.1e}), noise sigma "
             f"{d['noise']:g} on both variables, seed {d['seed']}. The table (trajectory, t, theta, omega; "
             "no derivatives) goes through a CSV file into "
             "`lf.search(df, units={\"theta\": \"rad\", \"omega\": \"rad/s\"}, jobs=2)`: default settings "
             f"(max size {r['settings']['max_size']}, {r['settings']['seeds']} predictor seeds, "
             f"{r['settings']['epochs']} epochs, top {r['settings']['top']}).", "",
             "Energy check: each law's values on the clean states are fitted as a*omega**2 + b*cos(theta) + c; "
             f"C = b/a against {TRUE_C:g}; the fit residual (RMS / std of the law) below {FORM_RESIDUAL:g} "
             "means the law is the energy up to scale and offset.", "",
             f"## Must-show (issue #14): rank 1 is the energy, |C/19.62 - 1| <= {TOLERANCE:.0%}", "", f"The must-show {verdict}", "",
             f"Best-conserved accepted law: {_best_text(best)}.", "",
             f"Wall time {r['wall_s']:.0f} s (timings_s: {timings}). {r['counts'].get('enumerated')} formulas "
             f"enumerated, {r['counts'].get('accepted')} accepted, {r['counts'].get('distinct')} distinct, "
             f"{r['counts'].get('meta_tailored')} meta-tailored.", "",
             "## Ranking", "", f"Ranking basis: {r['ranking_basis']}.", "",
             "| rank | law | status | ranked by | test RMSE | seeds helped | C | error | fit residual |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for e in r["ranking"]:
        helped = "-" if e["seeds_helped"] is None else f"{e['seeds_helped']}/{r['settings']['seeds']}"
        lines.append(f"| {e['rank']} | `{short(e['formula'])}` | {e['status']} | {e['ranked_by']} | {rmse_text(e)} | "
                     f"{helped} | {_energy_cells(e['energy'])} |")  # fmt: skip
    b = r["baselines"]
    lines += ["", "Baselines (test RMSE, mean ± std over seeds): vanilla " + rmse_text(b.get("vanilla", {}))
              + ", fine-tuned control " + rmse_text(b.get("control", {}))
              + (f" (better than vanilla on {b['control']['seeds_helped']} seeds)" if b.get("control", {}).get("seeds_helped") is not None else "")
              + (f"; the independent laws tailored together: {rmse_text(b['set'])}" if b.get("set") else "") + ".",
              "", "## Every accepted law", "",
              "| law | status | method | independent | conservation ratio | C | error | fit residual |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for law in r["accepted"]:
        lines.append(f"| `{short(law['formula'])}` | {law['status']} | {law['method']} | {law['independent']} | "
                     f"{law['conservation_ratio']:.3g} | {_energy_cells(law['energy'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "unseen_pendulum.md")
    args = parser.parse_args()
    r = run()
    from lawfinder.runs.metadata import run_metadata

    meta = run_metadata(SEED, "cpu")
    meta["command"] = COMMAND
    publish(markdown(r, meta), {"meta": meta, **r}, args.out)


if __name__ == "__main__":
    main()
