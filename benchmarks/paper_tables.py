"""Noether Networks' Tables 1-2 and Figure 2 from the laws `lawfinder search` discovered.

Reads the run folders that `benchmarks/search.py` writes (``results/runs/bench-<system>``): the
discovered rank-1 law, the vanilla MLP, the control fine-tuned for the same epochs without
tailoring and the oracle (true energy) meta-tailored, all on the same held-out protocol and the
same predictor seeds (see `lawfinder/ranking/stage.py`). Adds an HNN per seed, trained with its
paper's protocol on all the training data (2000 full-batch Adam steps; it has no setting to
choose) and rolled out on the same test trajectories. Writes
``results/paper_tables.md``, ``results/paper_tables.json`` and
``results/paper_fig2_<system>.png``; nothing here chooses a law or a rate.

    python benchmarks/search.py --seeds 5 --jobs 2     # first: the searches
    python benchmarks/paper_tables.py --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from lawfinder.data.systems import get_system
from lawfinder.parallel import run_chunks
from lawfinder.ranking.config import RankingConfig
from lawfinder.ranking.stage import rollout_set, weight_decay
from lawfinder.runs.metadata import run_metadata

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("spring", "pendulum", "real-pendulum")
PAPER = {
    "pendulum": {"vanilla": 0.0563, "noether": 0.0423, "oracle": 0.0422, "law": "p^2 - 2.99 cos(q)"},
    "spring": {"vanilla": 0.0174, "noether": 0.0165, "oracle": 0.0166, "law": "q^2 + 1.002 p^2"},
    "real-pendulum": {"noether": 0.009, "oracle": 0.011, "hnn": 0.021, "vanilla": "> 0.02 from 2.5 s",
                      "law": "p^2 - 2.39 cos(q)"},  # fmt: skip
}


def hnn_task(name: str, seed: int) -> dict:
    """An HNN on all of `name`'s training data, rolled out on test."""
    from lawfinder.ranking.hnn import train_hnn
    from lawfinder.ranking.rollout import evaluate_rollout

    system = get_system(name)
    traj = system.load()
    train = traj.train()
    x, dxdt = train.derivative_pairs()
    model = train_hnn(x, dxdt, weight_decay=weight_decay(RankingConfig(), train), seed=seed)
    res = evaluate_rollout(model, *rollout_set(traj.test()), energy=system.oracle_fn, substeps=2)
    return {"seed": seed, "test_rmse": float(res.rmse), "test_end_mse": float(res.end_mse),
            "mse_curve": res.mse_per_step.tolist(),
            "drift_curve": None if res.drift is None else res.drift.tolist()}  # fmt: skip


def _stat(values: Sequence[float | None]) -> dict:
    v = np.asarray([x for x in values if x is not None], float)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(len(v))} if len(v) else {}


def _fmt(s: dict) -> str:
    return "-" if not s else f"{s['mean']:.4g} ± {s['std']:.2g} (n={s['n']})"


def system_rows(name: str, summary: dict, hnn: list[dict]) -> dict:
    base, ranking = summary["baselines"], summary["ranking"]
    rows = []

    def add(method, entry, law=None):
        per = entry.get("per_seed", [])
        rows.append({"method": method, "law": law,
                     "test_rmse": _stat([p["test_rmse"] for p in per]),
                     "test_end_mse": _stat([p["test_end_mse"] for p in per]),
                     "per_seed": [{k: p.get(k) for k in ("seed", "test_rmse", "test_end_mse", "inner_lr", "outer_lr")}
                                  for p in per]})  # fmt: skip

    add("vanilla MLP", base["vanilla"])
    add("HNN", {"per_seed": hnn})
    add("MLP fine-tuned, no tailoring", base["control"])
    if "oracle" in base:
        add("oracle, meta-tailored", base["oracle"], base["oracle"]["formula"])
    if ranking and ranking[0].get("per_seed"):
        add("Noether Network (discovered rank 1)", ranking[0], ranking[0]["formula"])
    return {"system": name, "rows": rows, "seeds": summary["seeds"],
            "ranking_basis": summary["ranking_basis"], "git_revision": summary.get("git_revision"),
            "rank1_seed_ranks": ranking[0].get("seed_ranks") if ranking else None}  # fmt: skip


def plot_figure2(name: str, summary: dict, hnn0: dict, out: Path) -> Path:
    curves = summary["curves"]
    t = np.asarray(curves["t"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    series = dict(curves["mse"])
    series["HNN"] = hnn0["mse_curve"]
    for label, values in series.items():
        ax1.semilogy(t[1:], np.asarray(values)[1:], label=label)
    drift = dict(curves["energy_drift"])
    if hnn0.get("drift_curve") is not None:
        drift["HNN"] = hnn0["drift_curve"]
    for label, values in drift.items():
        ax2.plot(t, values, "k--" if label == "truth" else "-", label=label)
    ax1.set(xlabel="prediction horizon [s]", ylabel="coordinate MSE (test)",
            title=f"{name}, seed {curves['seed']}")  # fmt: skip
    ax2.set(xlabel="time [s]", ylabel="drift of the true energy E(x_t) - E(x_0)")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"paper_fig2_{name}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: list[dict], meta: dict, out: Path) -> Path:
    lines = ["# Noether Networks Tables 1-2 and Figure 2, from discovered laws", "",
             f"Generated by `python benchmarks/paper_tables.py` at git {meta['git_revision']} from the",
             "search runs of `python benchmarks/search.py` (git revision of each below; numbers in",
             "`results/paper_tables.json`). Every row uses the same protocol: laws and rates chosen on a",
             "validation part of the training data by models trained on the rest; the reported models",
             "(MLP and meta-tailored runs) continued on all the training data for a quarter of their",
             "budget, the HNN trained on all of it; test rollouts only reported; loss form and rates",
             "as chosen per seed; RK4 with 2 sub-steps. Mean ± std over",
             "predictor seeds (the data are the same). The Noether Network row is the law the search",
             "ranked first, not a hand-written one.", ""]  # fmt: skip
    for r in results:
        paper = PAPER[r["system"]]
        lines += [f"## {r['system']}", "", f"Search run at git {r['git_revision']}; seeds {r['seeds']}; "
                  f"ranked by {r['ranking_basis']}; rank 1's per-seed ranks {r['rank1_seed_ranks']}.", "",
                  "| method | law | test RMSE | end-of-horizon MSE | paper |", "|---|---|---|---|---|"]  # fmt: skip
        key = {"vanilla MLP": "vanilla", "HNN": "hnn", "oracle, meta-tailored": "oracle"}
        for row in r["rows"]:
            ref = paper.get("noether" if row["method"].startswith("Noether") else key.get(row["method"]), "")
            lines.append(f"| {row['method']} | {row['law'] or ''} | {_fmt(row['test_rmse'])} | "
                         f"{_fmt(row['test_end_mse'])} | {ref} |")  # fmt: skip
        by = {row["method"]: row for row in r["rows"]}
        noether = by.get("Noether Network (discovered rank 1)")
        if noether:
            van, hnn = by["vanilla MLP"], by["HNN"]
            per = []
            for p, v, h in zip(noether["per_seed"], van["per_seed"], hnn["per_seed"]):
                per.append(f"seed {p['seed']}: end MSE {p['test_end_mse']:.3g} (vanilla {v['test_end_mse']:.3g}, "
                           f"{v['test_end_mse'] / p['test_end_mse']:.1f}x; HNN {h['test_end_mse']:.3g}), RMSE "
                           f"{100 * (p['test_rmse'] / v['test_rmse'] - 1):+.0f}% vs vanilla")  # fmt: skip
            lines += ["", "Per seed: " + "; ".join(per) + "."]
        lines += ["", f"Paper law: `{paper['law']}`. Paper column: RMSE for spring/pendulum; for the real "
                  "pendulum the MSE at 18 s read off Figure 2.", "",
                  f"![Figure 2, {r['system']}](paper_fig2_{r['system']}.png)", ""]  # fmt: skip
    path = out / "paper_tables.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--runs", type=Path, default=ROOT / "results" / "runs", help="where bench-<system> are")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    summaries = {}
    for name in args.systems:
        path = args.runs / f"bench-{name}" / "summary.json"
        if not path.exists():
            sys.exit(f"error: {path} is missing: run `python benchmarks/search.py` first")
        summaries[name] = json.loads(path.read_text())
    tasks = [(hnn_task, (name, s)) for name in args.systems for s in summaries[name]["seeds"]]
    hnn_runs = list(run_chunks(tasks, jobs=args.jobs))
    results, k = [], 0
    for name in args.systems:
        n = len(summaries[name]["seeds"])
        hnn = hnn_runs[k : k + n]
        k += n
        results.append(system_rows(name, summaries[name], hnn))
        plot_figure2(name, summaries[name], hnn[0], args.out)
    meta = run_metadata()
    (args.out / "paper_tables.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(write_report(results, meta, args.out).read_text())


if __name__ == "__main__":
    main()
