"""Discover conservation laws from Python: `search` (fit, accept and rank) and `fit` (no ranking).

Both take a pandas DataFrame (columns ``trajectory``, ``t``, one per variable), arrays, a
`Trajectories` or the name of a built-in system, and return laws as `lawfinder.Law` objects.
Settings are the options of `lawfinder.runs.pipeline.SearchConfig.from_options` (for `fit`, the fields of
`lawfinder.discovery.stage.FitConfig`), given as keywords.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from lawfinder.data.trajectories import Trajectories
from lawfinder.errors import UserError
from lawfinder.runs.results import FitResult, SearchResult

__all__ = ["as_trajectories", "fit", "load_system", "search", "system_oracle"]


def load_system(name: str, *, noise: float = 0.0, seed: int = 0) -> Trajectories:
    """The trajectories of a built-in system (``lawfinder systems`` lists them).

    Examples
    --------
    >>> data = load_system("pendulum")
    >>> data.variables, data.units["p"]
    (('q', 'p'), 'kg*m**2/s')
    """
    from lawfinder.data.systems import get_system

    return get_system(name).load(noise=noise, seed=seed)


def system_oracle(name: str) -> tuple[str | None, Callable | None]:
    """A built-in system's known law as formula text and as a function, if the formulas reach it."""
    import dsl
    from lawfinder.data.systems import get_system

    system = get_system(name)
    if system.oracle is None:
        return None, system.oracle_fn
    try:
        dsl.parse(system.oracle, system.units)
    except ValueError:
        return None, system.oracle_fn  # beyond the formulas: no oracle baseline
    return system.oracle, system.oracle_fn


def as_trajectories(data, units: Mapping[str, str] | None = None, *, times=None, noise: float = 0.0,
                    seed: int = 0, name: str | None = None) -> Trajectories:  # fmt: skip
    """`data` as `Trajectories`: a system name, a DataFrame, arrays or `Trajectories` as they are.

    Parameters
    ----------
    data : str, pandas.DataFrame, array, list of arrays or Trajectories
        A built-in system's name; a table with columns ``trajectory``, ``t`` and one per variable
        (`Trajectories.from_dataframe`); or states as in `Trajectories.from_arrays`.
    units : dict of str to str
        A pint unit per variable (for arrays, in column order); not for systems and Trajectories.
    times
        Times of array data (`Trajectories.from_arrays`).
    noise, seed
        Gaussian noise added to a built-in system's states, and its random seed.
    """
    if isinstance(data, str):
        if units:
            raise UserError(f"units go with your own data; the built-in system {data!r} has its own")
        return load_system(data, noise=noise, seed=seed)
    if noise:
        raise UserError("noise is added to built-in systems only")
    if isinstance(data, Trajectories):
        if units and dict(units) != data.units:
            raise UserError(f"these trajectories already have units {data.units}")
        return data
    if not units:
        raise UserError("give a unit per variable, e.g. units={'x': 'm', 'v': 'm/s'}")
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return Trajectories.from_dataframe(data, dict(units), name=name or "dataframe")
    return Trajectories.from_arrays(data, dict(units), times, name=name or "arrays")


def _config(cls, settings: dict):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r}; settings: {', '.join(sorted(known))}")
    return cls(**settings)


def _quiet(_: str) -> None:
    pass


def search(data, units: Mapping[str, str] | None = None, *, times=None, out: str | Path | None = None,
           resume: bool = False, log: Callable[[str], None] | None = None, progress=None,
           **settings) -> SearchResult:  # fmt: skip
    """Enumerate, fit, accept and rank conservation laws of `data`.

    Parameters
    ----------
    data, units, times
        The trajectories, as for `as_trajectories`.
    out : str or Path, optional
        The run folder (as ``lawfinder search --out``); default a new temporary folder.
    resume : bool
        Continue an interrupted run in `out`.
    log : callable, optional
        Called with each progress line (``print`` shows them); default silent.
    progress : callable, optional
        ``progress(stage, done, total)``, called as the work of each stage advances: ``"fit"``
        (formula chunks), ``"pretrain"`` (predictors), ``"meta-tailor"`` (tailoring runs).
    **settings
        Options of `lawfinder.runs.pipeline.SearchConfig.from_options`: ``max_size`` (as for `fit`), ``seeds`` (5),
        ``epochs`` (100), ``top`` (20), ``alpha`` (0.01), ``seed``, ``device``, ``jobs``,
        ``noise`` (for a built-in system), ``predictor_steps`` (2000; fewer for a quick look).

    Returns
    -------
    SearchResult
        Ranked laws (``result.laws``, ``result.best``), baselines and the run folder.

    Examples
    --------
    A quick look at the rigid body (the full search drops the small settings):

    >>> result = search("rigid-body", max_size=5, seeds=1, epochs=1, predictor_steps=50, top=4)
    >>> law = result.best
    >>> law.status, law.rank, sorted(law.units)
    ('law', 1, ['w1', 'w2', 'w3'])
    >>> spin = load_system("rigid-body").states[0]
    >>> values = law.evaluate(spin)  # constant along the spin
    >>> bool(values.std() < 1e-6 * abs(values).max())
    True
    """
    from lawfinder.runs.pipeline import SearchConfig, run_search

    config = SearchConfig.from_options(**settings)
    traj = as_trajectories(data, units, times=times, noise=config.noise, seed=config.ranking.seed)
    oracle, oracle_fn = system_oracle(data) if isinstance(data, str) else (None, None)
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"lawfinder-{traj.name}-"))
    summary = run_search(traj, folder, config, system=data if isinstance(data, str) else traj.name,
                         oracle=oracle, oracle_fn=oracle_fn, resume=resume, log=log or _quiet,
                         progress=progress)  # fmt: skip
    return SearchResult.from_summary(summary, folder)


def fit(data, units: Mapping[str, str] | None = None, *, times=None, max_size: int | None = None,
        noise: float = 0.0, out: str | Path | None = None, resume: bool = False,
        log: Callable[[str], None] | None = None, progress=None, **settings) -> FitResult:  # fmt: skip
    """Enumerate, fit and accept (no ranking): the laws of `data` with their evidence.

    Parameters
    ----------
    data, units, times
        The trajectories, as for `as_trajectories`.
    max_size : int, optional
        Largest formula size (nodes); default the largest up to 7 with at most 10,000 formulas
        over these units (as ``lawfinder fit``).
    noise : float
        Gaussian noise added to a built-in system's states.
    out : str or Path, optional
        Where to write ``candidates.parquet`` and the fit checkpoints; default nowhere.
    resume, log, progress
        As for `search`.
    **settings
        Fields of `lawfinder.discovery.stage.FitConfig`: ``alpha``, ``threshold``, ``window``, ...

    Examples
    --------
    Circles of several radii conserve ``x**2 + y**2``:

    >>> import numpy as np
    >>> t = np.linspace(0, 3, 40)
    >>> circles = [np.stack([r * np.cos(t), r * np.sin(t)], 1) for r in np.linspace(0.5, 2, 10)]
    >>> result = fit(circles, {"x": "m", "y": "m"}, times=t, max_size=5)
    >>> [(law.name, law.status) for law in result.laws]
    [('x**2 + y**2', 'law')]
    """
    from lawfinder.discovery.stage import FitConfig, default_max_size
    from lawfinder.runs.pipeline import claim_run_folder, fit_identity, fit_stage

    config = _config(FitConfig, settings)
    traj = as_trajectories(data, units, times=times, noise=noise, seed=config.seed)
    max_size = max_size or default_max_size(traj.units)
    folder = None if out is None else Path(out)
    if folder is not None:
        claim_run_folder(folder, fit_identity(traj, config, max_size, traj.name), resume)
    formulas, table = fit_stage(traj, max_size, config, out=folder, resume=resume, log=log or _quiet,
                                progress=progress)  # fmt: skip
    return FitResult.from_table(table, formulas.dag, traj.units, folder)
