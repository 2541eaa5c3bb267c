"""Options, data loading and the run preamble shared by the commands that run on trajectories."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from lawfinder.errors import UserError
from lawfinder.parallel import ENV_SCHEDULER  # a light module: no torch, no dask at import

if TYPE_CHECKING:
    import torch


@dataclass
class Dataset:
    traj: object
    name: str
    oracle: str | None
    oracle_fn: Callable | None


UNITS_HELP = "A variable and its pint unit, NAME=UNIT (NAME:UNIT also read), e.g. --units p='kg*m/s'."


def parse_units(items: tuple[str, ...] | list[str], option: str = "units") -> dict[str, str]:
    """``("q=m", "p=kg*m/s")`` (repeated ``--units``; ``q:m`` is read too) -> a dict, each unit checked."""
    from lawfinder.data.tables import check_unit

    units: dict[str, str] = {}
    for item in items:
        sep = "=" if "=" in item else ":"
        name, found, unit = item.partition(sep)
        name, unit = name.strip(), unit.strip()
        if not found or not name or not unit:
            raise UserError(f"{item!r}: expected NAME=UNIT, e.g. --{option} q=m", option=option)
        if name in units:
            raise UserError(f"unit for {name!r} given twice", option=option)
        check_unit(unit, name)
        units[name] = unit
    return units


def data_options(fn):
    """--system / --data / --units / --noise."""
    options = [
        click.option("--system", help="A built-in system (see `lawfinder systems`)."),
        click.option("--data", type=click.Path(path_type=Path), help="Your trajectories: CSV or Parquet with columns trajectory, t, <variables>."),
        click.option("--units", "--var", "units", multiple=True, metavar="NAME=UNIT", help=UNITS_HELP + " For --data."),
        click.option("--noise", type=float, default=0.0, show_default=True, help="Gaussian noise sigma added to a simulated system's q and p."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def fit_options(fn):
    """--max-size / --window / --threshold / --alpha / --surrogates / --sparse / --surrogate-control, for `fit` and `search`."""
    options = [
        click.option("--max-size", type=click.IntRange(1, 9), help="Largest formula size (nodes) of the exhaustive search [default: the largest up to 7 with at most 10,000 formulas]."),
        click.option("--window", type=click.IntRange(3, None), help="Points per window for the conservation score [default: whole short trajectories, else 30]."),
        click.option("--threshold", default=10.0, show_default=True, help="Shortlist formulas conserved this many times better than on random sequences (the paper's test, which accepted at 100); the shortlist then faces the tests below."),
        click.option("--alpha", default=0.01, show_default=True, type=float, help="Level of the acceptance tests: the chance that lawless data yield any false law (Bonferroni over all formulas), and of rejecting an exact law as inexact."),
        click.option("--surrogates", default=19, show_default=True, type=int, help="Lawless surrogate sets (each variable keeps its autocorrelation) each shortlisted formula is refitted on."),
        click.option("--sparse/--no-sparse", default=True, show_default=True, help="Also search sparse combinations of library terms (monomials, 1/r, sqrt, log) beyond the exhaustive search."),
        click.option("--surrogate-control/--no-surrogate-control", default=True, show_default=True, help="Test shortlisted formulas against the lawless surrogates (the false-law test); off, only the random-sequence shortlist and the exactness test decide."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def rank_options(fn):
    """--seeds: predictor seeds of the ranking stage (search, tailor)."""
    return click.option("--seeds", default=5, show_default=True, type=click.IntRange(1, 50), help="Predictor seeds (--seed, --seed+1, ...): laws are compared seed by seed on held-out validation data.")(fn)  # fmt: skip


def run_options(fn):
    """--out / --device / --seed / --jobs / --backend / --scheduler / --resume / --quiet."""
    options = [
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder [default: results/runs/<system>-<timestamp>]."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--jobs", type=int, default=-1, show_default=True, help="Local worker processes, one torch thread each (-1: one per core)."),
        click.option("--backend", type=click.Choice(["local", "dask"]), default="local", show_default=True, help="Where the fit chunks run: local processes (--jobs) or a Dask cluster (--scheduler)."),
        click.option("--scheduler", metavar="ADDRESS", envvar=ENV_SCHEDULER, show_envvar=True, help="Dask scheduler address (tcp://HOST:8786) or scheduler file, for --backend dask."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run in --out."),
        click.option("--quiet", is_flag=True, help="Print only the final table."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def parallel_settings(backend: str, scheduler: str | None) -> tuple[str, str | None]:
    """Check --backend / --scheduler; returns (backend, scheduler or None).

    ``$LAWFINDER_DASK_SCHEDULER`` only supplies the address: it never switches
    the back end by itself, so it can stay set for local runs. An explicit
    ``--scheduler`` without ``--backend dask`` is refused rather than ignored.
    """
    if backend == "local":
        ctx = click.get_current_context(silent=True)
        if (
            scheduler
            and ctx is not None
            and ctx.get_parameter_source("scheduler") == ParameterSource.COMMANDLINE
        ):
            raise UserError("--scheduler goes with --backend dask")
        return backend, None
    if not scheduler:
        raise UserError(f"--backend dask needs --scheduler ADDRESS (or {ENV_SCHEDULER})")
    return backend, scheduler


def load_dataset(
    system: str | None, data: Path | None, units: tuple[str, ...], noise: float, seed: int
) -> Dataset:
    if bool(system) == bool(data):
        raise UserError("give exactly one of --system NAME or --data FILE")
    if system:
        if units:
            raise UserError("--units goes with --data; built-in systems have their own units")
        from lawfinder.api import load_system, system_oracle

        oracle, oracle_fn = system_oracle(system)
        if noise < 0:
            raise UserError(f"--noise must be >= 0, got {noise}")
        return Dataset(load_system(system, noise=noise, seed=seed), system, oracle, oracle_fn)
    from lawfinder.data.userdata import load_table

    traj = load_table(data, parse_units(units))
    return Dataset(traj, Path(data).stem, None, None)


def default_out(name: str) -> Path:
    return Path("results") / "runs" / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


@dataclass
class PreparedRun:
    dataset: Dataset
    device: torch.device
    backend: str
    scheduler: str | None
    out: Path


def prepare_run(
    system: str | None,
    data: Path | None,
    units: tuple[str, ...],
    noise: float,
    seed: int,
    *,
    device: str,
    backend: str,
    scheduler: str | None,
    out: Path | None,
    out_suffix: str = "",
) -> PreparedRun:
    """Check --device, --backend and --scheduler, load the data and name the run folder.

    Without --out the folder is ``default_out(<dataset name><out_suffix>)``.
    """
    from lawfinder.tailoring.predictor import resolve_device

    dev = resolve_device(device)
    backend, scheduler = parallel_settings(backend, scheduler)
    dataset = load_dataset(system, data, units, noise, seed)
    return PreparedRun(
        dataset, dev, backend, scheduler, out or default_out(dataset.name + out_suffix)
    )


STAGE_BARS = {"fit": ("fit", "chunk")}
RANKING_STAGES = {"pretrain": "pre-trained", "meta-tailor": "meta-tailored"}
"""The ranking's stages run interleaved (a seed's runs start when its predictor is there): one bar for both."""


def stage_progress(quiet: bool):
    """``(progress(stage, done, total), close)``: a tqdm bar per stage (one for the whole ranking, with its
    predictors and meta-tailoring runs counted apart), or nothing when quiet."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    shown: dict = {}  # the one bar open: {"stage": name, "bar": tqdm}
    counts: dict = {}  # ranking stage -> (done, total)

    def close() -> None:
        if shown:
            shown.pop("bar").close()
            shown.clear()

    def update(stage: str, done: int, total: int) -> None:
        key = "ranking" if stage in RANKING_STAGES else stage
        if shown.get("stage") != key:
            close()
            if key == "ranking":
                counts.clear()
                bar = tqdm(total=total, desc="ranking", leave=False,
                           bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")  # fmt: skip
            else:
                desc, unit = STAGE_BARS.get(stage, (stage, "step"))
                bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
            shown.update(stage=key, bar=bar)
        bar = shown["bar"]
        if key == "ranking":
            counts[stage] = (done, total)
            done = sum(d for d, _ in counts.values())
            total = sum(t for _, t in counts.values())
            parts = ", ".join(f"{RANKING_STAGES[k]} {d}/{t}" for k, (d, t) in counts.items())
            bar.set_description_str(f"ranking ({parts})", refresh=False)
            finished = len(counts) == len(RANKING_STAGES) and done >= total
        else:
            finished = done >= total
        bar.total, bar.n = total, done
        bar.refresh()
        if finished:
            close()

    return update, close


def search_and_print(run: PreparedRun, config, *, quiet: bool, resume: bool, formula: str | None = None) -> None:
    """`lawfinder.runs.pipeline.run_search` with progress bars, then its table (search, tailor)."""
    from lawfinder.runs.pipeline import run_search
    from lawfinder.runs.report_text import print_summary

    data = run.dataset
    progress, close = stage_progress(quiet)
    try:
        summary = run_search(data.traj, run.out, config, system=data.name, oracle=data.oracle,
                             oracle_fn=data.oracle_fn, resume=resume, formula=formula, log=echo_fn(quiet),
                             progress=progress)  # fmt: skip
    finally:
        close()
    print_summary(summary, run.out)


def echo_fn(quiet: bool) -> Callable[[str], None]:
    return (lambda _: None) if quiet else functools.partial(click.echo, err=True)
