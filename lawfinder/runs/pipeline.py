"""The whole search as stages over a run folder: enumerate, fit + accept, train, rank, summarise.

Every stage writes its output into the run folder (`lawfinder.runfolder.RunFolder` says where each
file lives) before the next starts, so ``resume=True`` skips finished stages (and finished fit
chunks and ranking runs). ``run.json`` holds the run's identity (`run_identity`): the data's hash,
``--noise``, the seeds and every setting that changes results; ``--resume`` with anything
different is refused.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import dsl
from lawfinder.data.trajectories import Trajectories
from lawfinder.discovery.stage import (
    WHERE,
    FitConfig,
    default_max_size,
    describe_acceptance,
    fit_conservation,
)
from lawfinder.errors import UserError
from lawfinder.laws.law import Law, laws_from_table
from lawfinder.ranking.config import RankingConfig
from lawfinder.ranking.stage import SETTINGS, VAL_FRACTION, data_dt, data_hash  # noqa: F401 (data_dt: re-exported)
from lawfinder.runfolder import RunFolder, write_json, write_table
from lawfinder.runs.metadata import run_metadata
from lawfinder.runs.report_text import acceptance_line


@dataclass(frozen=True)
class SearchConfig:
    """A search's settings: the fit stage's, the ranking stage's, the formula size and the noise.

    `from_options` takes them flat, as ``lawfinder search`` and `lawfinder.search` do; the
    options both stages have (``seed``, ``jobs``, ``backend``, ``scheduler``) go to both.
    """

    fit: FitConfig = field(default_factory=FitConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    max_size: int | None = None  # None: `lawfinder.discovery.stage.default_max_size` of the data's units
    noise: float = 0.0  # recorded in the identity (the data hash covers it too)
    device: str = "cpu"  # "auto", "cpu" or "cuda": resolved when the run starts

    @classmethod
    def from_options(cls, *, max_size: int | None = None, noise: float = 0.0, device: str = "cpu",
                     **options) -> SearchConfig:  # fmt: skip
        fit_names = {f.name for f in dataclasses.fields(FitConfig)} - {"device"}
        rank_names = {f.name for f in dataclasses.fields(RankingConfig)}
        unknown = sorted(set(options) - fit_names - rank_names)
        if unknown:
            known = sorted(fit_names | rank_names | {"max_size", "noise", "device"})
            raise UserError(f"unknown setting {unknown[0]!r}; settings: {', '.join(known)}")
        fit = FitConfig(**{k: v for k, v in options.items() if k in fit_names})
        ranking = RankingConfig(**{k: v for k, v in options.items() if k in rank_names})
        return cls(fit, ranking, max_size, noise, device)


def _results_settings(config) -> dict:
    """A stage config's fields that change results (`WHERE` left out), JSON-ready."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in WHERE}
    return json.loads(json.dumps(fields, default=str))


def run_identity(traj: Trajectories, config: SearchConfig, system: str, formula: str | None) -> dict:
    """Everything that changes a run's results (not where or how fast it runs)."""
    return {"system": system, "variables": dict(traj.units), "data_sha256": data_hash(traj),
            "noise": config.noise, "max_size": config.max_size, "formula": formula,
            "fit": _results_settings(config.fit), "ranking": _results_settings(config.ranking),
            "settings": [list(x) for x in SETTINGS], "val_fraction": VAL_FRACTION}  # fmt: skip


def fit_identity(traj: Trajectories, config: FitConfig, max_size: int, name: str) -> dict:
    """The identity of a fit-only run (``lawfinder fit``, `lawfinder.fit`)."""
    return {"kind": "fit", "name": name, "variables": dict(traj.units), "data_sha256": data_hash(traj),
            "max_size": max_size, "fit": _results_settings(config)}  # fmt: skip


def claim_run_folder(out: Path, identity: dict, resume: bool) -> RunFolder:
    """The run folder `out`, created and holding `identity` (`RunFolder.claim`)."""
    run = RunFolder(out)
    run.claim(identity, resume)
    return run


def fit_stage(traj: Trajectories, max_size: int, config: FitConfig, *, out: Path | None = None,
              resume: bool = False, log: Callable[[str], None] = print, progress=None,
              timings: dict | None = None) -> tuple[dsl.FormulaSet, pd.DataFrame]:  # fmt: skip
    """Enumerate and fit + accept; returns the formulas and the candidates table.

    With `out`, writes ``formulas.parquet``, the fit checkpoints and ``candidates.parquet`` there
    (and with `resume`, reads them back).
    """
    timings = {} if timings is None else timings
    run = None if out is None else RunFolder(out)
    t = time.perf_counter()
    formulas = dsl.FormulaSet.enumerate(traj.units, max_size)
    if run is not None:
        write_table(run.formulas, pd.DataFrame(formulas.records()))
    timings["enumerate"] = time.perf_counter() - t
    log(f"enumerate: {len(formulas)} formulas up to size {max_size} ({timings['enumerate']:.1f} s)")
    t = time.perf_counter()
    if resume and run is not None and run.candidates.exists():
        table = pd.read_parquet(run.candidates)
    else:
        chunks = None if progress is None else (lambda done, total: progress("fit", done, total))
        table = fit_conservation(traj, formulas, config, out_dir=out, resume=resume, progress=chunks)
        if run is not None:
            write_table(run.candidates, table)
    timings["fit"] = time.perf_counter() - t
    log(f"fit: {len(table)} fitted, {int(table.accepted.sum())} accepted ({describe_acceptance(config)}) "
        f"({timings['fit']:.1f} s)")  # fmt: skip
    log(acceptance_line(table.attrs.get("acceptance")))
    return formulas, table


def fit_counts(formulas: dsl.FormulaSet, table: pd.DataFrame) -> dict:
    """Enumerated, fitted (finite on the data) and accepted formulas, as both commands count them."""
    fitted = int(table.reject_reason.ne("not finite on the data").sum())
    return {"enumerated": len(formulas), "fitted": fitted, "accepted": int(table.accepted.sum())}


def run_search(
    traj: Trajectories,
    out: Path,
    config: SearchConfig,
    *,
    system: str,
    oracle: str | None = None,
    oracle_fn: Callable | None = None,
    resume: bool = False,
    formula: str | None = None,
    log: Callable[[str], None] = print,
    progress=None,
) -> dict:
    """Run the search (or, with `formula`, evaluate one user formula) and write `out/summary.json`."""
    import torch

    from lawfinder.tailoring.predictor import resolve_device

    device = resolve_device(config.device)
    out = Path(out)
    if config.max_size is None:
        config = dataclasses.replace(config, max_size=default_max_size(traj.units))
    run = claim_run_folder(out, run_identity(traj, config, system, formula), resume)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    torch.manual_seed(config.ranking.seed)

    if formula is None:
        fit = dataclasses.replace(config.fit, device=str(device))
        formulas, table = fit_stage(traj, config.max_size, fit, out=out, resume=resume, log=log,
                                    progress=progress, timings=timings)  # fmt: skip
        accepted = table[table.accepted]
        acceptance = table.attrs.get("acceptance")
        counts = fit_counts(formulas, table)
        candidates = laws_from_table(accepted, formulas.dag, traj.units)
    else:
        counts = {"enumerated": 0, "fitted": 0, "accepted": 1}
        acceptance = None
        candidates = [Law.parse(formula, traj.units)]

    from lawfinder.ranking.stage import evaluate_candidates

    result = evaluate_candidates(
        traj, candidates, config.ranking, out=out, device=device, oracle=oracle, oracle_fn=oracle_fn,
        resume=resume, log=log, timings=timings, progress=progress,
    )  # fmt: skip
    counts.update(result.pop("counts"))
    timings["total"] = time.perf_counter() - start
    summary = {
        **run_metadata(config.ranking.seed, str(device)),
        "kind": "tailor" if formula else "search",
        "system": system,
        "variables": dict(traj.units),
        "settings": {"max_size": config.max_size, "window": config.fit.window, "threshold": config.fit.threshold,
                     "top": config.ranking.top, "epochs": config.ranking.epochs,
                     "loss_forms": sorted({f for _, f, _ in SETTINGS}), "jobs": config.ranking.jobs,
                     "seeds": config.ranking.seeds, "outer_rate_form_inner_rate": [list(x) for x in SETTINGS],
                     "val_fraction": VAL_FRACTION, "noise": config.noise,
                     "backend": config.ranking.backend, "surrogate_control": config.fit.surrogate_control},
        "counts": counts,
        "acceptance": acceptance,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        **result,
    }  # fmt: skip
    write_json(run.summary_json, summary)
    return summary
