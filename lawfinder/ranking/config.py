"""The ranking stage's settings (`lawfinder.ranking.stage.evaluate_candidates` reads them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RankingConfig:
    seed: int = 0  # predictor seeds: seed, seed + 1, ...
    seeds: int = 5
    top: int = 20  # meta-tailoring runs per seed (the paper's 20), spent as laws x SETTINGS
    epochs: int = 100  # meta-tailoring epochs
    predictor_steps: int = 2000  # HNN's full-batch Adam steps (fewer only for fast tests)
    weight_decay: float | None = None  # None: 1e-4, or 1e-5 for a single long trajectory (HNN's)
    jobs: int = 1  # local back end: worker processes (-1: all cores)
    backend: str = "local"  # or "dask" (see lawfinder.parallel)
    scheduler: str | None = None  # dask: address or scheduler file; None: $LAWFINDER_DASK_SCHEDULER
