"""The ranking stage's settings (`lawfinder.ranking.stage.evaluate_candidates` reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from lawfinder.errors import UserError


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

    def __post_init__(self) -> None:
        for name, least in (("seeds", 1), ("top", 1), ("epochs", 0), ("predictor_steps", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise UserError(f"must be a whole number >= {least}, got {value!r}", option=name)
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise UserError(f"must be >= 0, got {self.weight_decay!r}", option="weight_decay")
