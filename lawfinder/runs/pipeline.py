"""The whole search as stages over a run folder: enumerate, fit + accept, train, rank, summarise.

Every stage writes its output into the run folder before the next starts, so
``resume=True`` skips finished stages (and finished fit chunks). Files:

``formulas.parquet``   every enumerated template
``chunks/``            fit checkpoints, one file per chunk of formulas
``candidates.parquet`` fitted formulas with scores, ratios, acceptance and reasons
``predictors/``        the pre-trained MLP of each seed (``seed<S>.pt``) and its vanilla rollouts
``ranking_runs/``      one checkpoint per seed and law (its runs at every setting), control, oracle
``ranking.parquet``    every run's validation and test metrics
``summary.json``       the run's summary (schema in the README)

``run.json`` holds the run's identity (`run_identity`): the data's hash, ``--noise``, the seeds
and every setting that changes results; ``--resume`` with anything different is refused.
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
    SHORTLIST_THRESHOLD,
    FitConfig,
    default_max_size,
    describe_acceptance,
    fit_conservation,
)
from lawfinder.errors import UserError
from lawfinder.laws.law import Law, laws_from_table
from lawfinder.ranking.stage import SETTINGS, VAL_FRACTION, data_dt, data_hash  # noqa: F401 (data_dt: re-exported)
from lawfinder.runs.metadata import run_metadata, write_json
from lawfinder.runs.report_text import acceptance_line


@dataclass
class SearchConfig:
    max_size: int | None = None  # None: `lawfinder.discovery.stage.default_max_size` of the data's units
    seed: int = 0
    device: str = "cpu"
    jobs: int = -1  # local back end: worker processes (-1: one per core), one torch thread each
    backend: str = "local"  # or "dask": the fit chunks on a Dask cluster (lawfinder.parallel)
    scheduler: str | None = None  # dask: address or scheduler file; None: $LAWFINDER_DASK_SCHEDULER
    window: int | None = None
    threshold: float = SHORTLIST_THRESHOLD  # see FitConfig.threshold
    surrogate_control: bool = True  # see FitConfig.surrogate_control
    alpha: float = 0.01  # level of the acceptance tests (FitConfig.alpha)
    surrogates: int = 19  # surrogate sets per shortlisted formula (FitConfig.surrogates)
    sparse: bool = True  # the sparse search beyond the enumeration (FitConfig.sparse)
    top: int = 20  # meta-tailoring runs per seed (the paper's 20), spent as laws x SETTINGS
    epochs: int = 100
    seeds: int = 5  # predictor seeds: seed, seed+1, ...
    predictor_steps: int = 2000  # HNN's full-batch Adam steps (fewer only for fast tests)
    noise: float = 0.0  # recorded in the identity (the data hash covers it too)
    weight_decay: float | None = None  # None: 1e-4, or 1e-5 for a single long trajectory (HNN's)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        fit_config(self, self.device)  # checks the acceptance settings before any work


def run_identity(traj: Trajectories, config: SearchConfig, system: str, formula: str | None) -> dict:
    """Everything that changes a run's results (not where or how fast it runs)."""
    fit = {k: v for k, v in vars(fit_config(config, "cpu")).items()
           if k not in ("jobs", "device", "backend", "scheduler")}  # fmt: skip
    return {"system": system, "variables": dict(traj.units), "data_sha256": data_hash(traj),
            "noise": config.noise, "max_size": config.max_size, "seed": config.seed,
            "seeds": config.seeds, "predictor_steps": config.predictor_steps, "window": config.window, "threshold": config.threshold,
            "surrogate_control": config.surrogate_control, "formula": formula, "top": config.top,
            "epochs": config.epochs, "settings": [list(x) for x in SETTINGS],
            "val_fraction": VAL_FRACTION, "weight_decay": config.weight_decay,
            "extra": config.extra, "fit": json.loads(json.dumps(fit, default=str))}  # fmt: skip


def fit_config(config: SearchConfig, device: str) -> FitConfig:
    return FitConfig(window=config.window, threshold=config.threshold, seed=config.seed,
                     jobs=config.jobs, device=device, backend=config.backend,
                     scheduler=config.scheduler, surrogate_control=config.surrogate_control,
                     alpha=config.alpha, surrogates=config.surrogates, sparse=config.sparse)  # fmt: skip


def claim_run_folder(out: Path, identity: dict, resume: bool) -> None:
    """Create ``out`` and record the run's ``identity`` in ``out/run.json``.

    With ``resume``, refuse a folder that holds another run or is not a run folder.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    if resume and path.exists():
        before = json.loads(path.read_text())
        if before != identity:
            diff = sorted(k for k in identity if before.get(k) != identity.get(k))
            raise UserError(f"{out} holds another run (differs in {', '.join(diff)})", option="resume")
    elif resume and not path.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not a lawfinder run folder (no run.json)", option="resume")
    write_json(path, identity)


def fit_stage(traj: Trajectories, max_size: int, config: FitConfig, *, out: Path | None = None,
              resume: bool = False, log: Callable[[str], None] = print, progress=None,
              timings: dict | None = None) -> tuple[dsl.FormulaSet, pd.DataFrame]:  # fmt: skip
    """Enumerate and fit + accept; returns the formulas and the candidates table.

    With `out`, writes ``formulas.parquet``, the fit checkpoints and ``candidates.parquet`` there
    (and with `resume`, reads them back).
    """
    timings = {} if timings is None else timings
    t = time.perf_counter()
    formulas = dsl.FormulaSet.enumerate(traj.units, max_size)
    if out is not None:
        pd.DataFrame(formulas.records()).to_parquet(Path(out) / "formulas.parquet", index=False)
    timings["enumerate"] = time.perf_counter() - t
    log(f"enumerate: {len(formulas)} formulas up to size {max_size} ({timings['enumerate']:.1f} s)")
    t = time.perf_counter()
    cand_path = None if out is None else Path(out) / "candidates.parquet"
    if resume and cand_path is not None and cand_path.exists():
        table = pd.read_parquet(cand_path)
    else:
        chunks = None if progress is None else (lambda done, total: progress("fit", done, total))
        table = fit_conservation(traj, formulas, config, out_dir=out, resume=resume, progress=chunks)
        if cand_path is not None:
            table.to_parquet(cand_path, index=False)
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
    claim_run_folder(out, run_identity(traj, config, system, formula), resume)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    torch.manual_seed(config.seed)

    if formula is None:
        formulas, table = fit_stage(traj, config.max_size, fit_config(config, str(device)), out=out,
                                    resume=resume, log=log, progress=progress, timings=timings)  # fmt: skip
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
        traj, candidates, config, out=out, device=device, oracle=oracle, oracle_fn=oracle_fn,
        resume=resume, log=log, timings=timings, progress=progress,
    )  # fmt: skip
    counts.update(result.pop("counts"))
    timings["total"] = time.perf_counter() - start
    summary = {
        **run_metadata(config.seed, str(device)),
        "kind": "tailor" if formula else "search",
        "system": system,
        "variables": dict(traj.units),
        "settings": {"max_size": config.max_size, "window": config.window, "threshold": config.threshold,
                     "top": config.top, "epochs": config.epochs, "loss_forms": sorted({f for _, f, _ in SETTINGS}), "jobs": config.jobs,
                     "seeds": config.seeds, "outer_rate_form_inner_rate": [list(x) for x in SETTINGS],
                     "val_fraction": VAL_FRACTION, "noise": config.noise,
                     "backend": config.backend, "surrogate_control": config.surrogate_control},
        "counts": counts,
        "acceptance": acceptance,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        **result,
    }  # fmt: skip
    write_json(out / "summary.json", summary)
    return summary
