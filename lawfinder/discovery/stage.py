"""Fit and accept: every template fitted on true windows and on two controls, in checkpointed chunks.

`fit_conservation` cuts the training trajectories into windows, builds the
random-sequence control (`lawfinder.discovery.controls.random_sequences`), splits the
formulas into fixed chunks (by position, so results never depend on the
number of workers), fits each chunk on both data sets through
`lawfinder.parallel.run_chunks` (in-process, local processes or a Dask
cluster: ``FitConfig.jobs/backend/scheduler``), and
writes each finished chunk to ``out_dir/chunks/`` at once. A run killed at any
moment and restarted with ``resume=True`` fits only the missing chunks and
ends with the same table.

Acceptance (`lawfinder.discovery.acceptance`, in the serial finish, so checkpoints,
resume and their fingerprint do not depend on it):

1. Shortlist: ``score_random / score_true >= threshold`` (column
   ``conservation_ratio``, the paper's test, 10 by default rather than the
   paper's 100, because it only decides what is tested: at noise 0.2 the
   pendulum's law reaches 44), at most ``shortlist`` formulas, best first.
   Otherwise the reason is ``conserved < 10x better than on random sequences``.
2. The shortlist faces the false-law test (refitted on lawless surrogate sets;
   column ``p_value``, Bonferroni over every formula fitted; off with
   ``surrogate_control=False``) and the exactness test (variation against the
   measurement noise estimated from the data; ``noise_ratio``, ``p_exact``),
   both at level ``alpha``. Column ``status`` says ``law``, ``approximate`` or
   ``rejected``; ``accepted`` is ``law`` or ``approximate``. Affine formulas
   of the shortlist are refitted noise-aware (their ``params``; ``score_true``
   stays that of the plain fit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dsl import FormulaSet, dimensions, infer
from dsl import nodes as dsl_nodes
from lawfinder.data.trajectories import Trajectories
from lawfinder.discovery.terms import template_of
from lawfinder.errors import UserError
from lawfinder.runfolder import RunFolder, write_table

WHERE = ("jobs", "device", "backend", "scheduler")  # where and how fast a stage runs, not what it computes

COLUMNS = [
    "template", "formula", "params", "score_true", "score_random", "conservation_ratio",
    "score_surrogate", "surrogate_ratio", "surrogate_margin", "p_value", "noise_ratio", "smooth_ratio", "p_exact",
    "status", "independent", "accepted", "reject_reason", "n_params", "size", "method",
]  # fmt: skip

SHORTLIST_THRESHOLD = 10.0
LOW_RATIO_REASON = "conserved < {threshold:g}x better than on random sequences"


PRETTY_ROWS = 200  # the best rows are printed by sympy (slow); the rest in the DSL's own syntax


@dataclass(frozen=True)
class FitConfig:
    window: int | None = None  # None: whole trajectories when short (<= 60 points), else 30
    threshold: float = SHORTLIST_THRESHOLD  # shortlist: conserved this many times better than on random
    seed: int = 0
    chunk_size: int = 1500
    jobs: int = 1  # local back end: worker processes (-1: all cores)
    device: str = "cpu"
    backend: str = "local"  # or "dask" (see lawfinder.parallel)
    scheduler: str | None = None  # dask: address or scheduler file; None: $LAWFINDER_DASK_SCHEDULER
    surrogate_control: bool = True  # the false-law test against lawless surrogates
    alpha: float = 0.01  # level of the acceptance tests
    surrogates: int = 19  # surrogate sets per shortlisted formula
    shortlist: int = 200  # most formulas tested
    sparse: bool = True  # also search sparse combinations of library terms beyond the enumeration

    def __post_init__(self) -> None:
        self.acceptance.check()

    @property
    def acceptance(self):
        from lawfinder.discovery.acceptance import AcceptanceConfig

        return AcceptanceConfig(alpha=self.alpha, surrogates=self.surrogates, shortlist=self.shortlist)


def describe_acceptance(config: FitConfig) -> str:
    """The acceptance rule in one line, for logs."""
    surrogates = f"lawless-surrogate p <= {config.alpha:g} (Bonferroni), " if config.surrogate_control else ""
    return (f"shortlist >= {config.threshold:g}x better conserved than on random sequences; {surrogates}"
            f"exact within noise at {config.alpha:g}, else the best approximation")  # fmt: skip


FORMULA_BUDGET = 10_000  # the default size: the largest up to 7 whose enumeration stays within this


def default_max_size(units, budget: int = FORMULA_BUDGET) -> int:
    """The largest formula size up to 7 with at most `budget` formulas over `units` (at least 3).

    Size 7 for the paper's systems (8,103 formulas for the pendulum) and for 4
    variables (7,702), 6 for the 8 variables of two-body (9,301; size 7 has 55,847):
    the sparse search reaches deeper laws in every case.
    """
    for size in range(7, 3, -1):
        if len(FormulaSet.enumerate(units, size)) <= budget:
            return size
    return 3


def default_window(traj: Trajectories) -> int:
    shortest = min(traj.lengths)
    return shortest if max(traj.lengths) <= 60 else min(30, shortest)


def train_windows(traj: Trajectories, config: FitConfig) -> tuple[Trajectories, int]:
    """The training trajectories cut into windows of ``config.window`` (or the default) points."""
    train = traj.train()
    length = config.window or default_window(train)
    windows = train.windows(length)
    if len(windows.states) < 2:
        raise UserError(
            f"need at least 2 windows of {length} points to score conservation; "
            f"got {len(windows.states)} (use a shorter --window)"
        )
    return windows, length


def window_arrays(traj: Trajectories, config: FitConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """True windows and random-sequence windows ``(W, L, d)`` from the training trajectories."""
    windows, length = train_windows(traj, config)
    return (*_true_and_random(windows, config.seed), length)


def _true_and_random(windows: Trajectories, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from lawfinder.discovery.controls import random_sequences

    return np.stack(windows.states), np.stack(random_sequences(windows, seed).states)


def fit_conservation(
    traj: Trajectories,
    formulas: FormulaSet,
    config: FitConfig = FitConfig(),
    out_dir: Path | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Fit and accept every formula of `formulas` on `traj`; returns the candidates table.

    ``table.attrs["acceptance"]`` holds the noise estimate and the verdict counts, and
    ``table.attrs["timings_s"]`` the seconds of the enumerated fit, the sparse search and acceptance,
    and ``table.attrs["chunk_seconds"]`` each chunk fitted now, timed where it ran (CPU and wall).
    """
    start = time.perf_counter()
    windows, _ = train_windows(traj, config)
    true_w, random_w = _true_and_random(windows, config.seed)
    from lawfinder.laws.compile import by_skeleton

    roots = by_skeleton(formulas.dag, formulas.enumeration.roots)
    chunks = [roots[i : i + config.chunk_size] for i in range(0, len(roots), config.chunk_size)]
    run = None if out_dir is None else RunFolder(out_dir)
    done: dict[int, pd.DataFrame] = {}
    if run is not None:
        run.check_settings(run.chunks, _chunk_settings(config, len(roots)), resume)
        if resume:
            done = {k: pd.read_parquet(run.chunk(k)) for k in range(len(chunks)) if run.chunk(k).exists()}
    todo = [k for k in range(len(chunks)) if k not in done]
    if progress:
        progress(len(done), len(chunks))
    from lawfinder.parallel import run_chunks

    tasks = [(_fit_chunk_task, (formulas.dag, chunks[k], true_w, random_w, config, k)) for k in todo]
    shared = (formulas.dag, true_w, random_w)  # scattered once to every Dask worker
    results = run_chunks(tasks, config.jobs, config.backend, config.scheduler, shared=shared, fork=True)
    sparse_table, terms, sparse_s = None, [], 0.0
    if config.sparse and config.jobs != 1:  # in this process while the workers fit
        sparse_s = time.perf_counter()
        sparse_table, terms = sparse_rows(windows, random_w, formulas, config)
        sparse_s = time.perf_counter() - sparse_s
    chunk_seconds = []
    for k, table in zip(todo, results):
        chunk_seconds.append(table.attrs.pop("seconds", None))
        if run is not None:
            write_table(run.chunk(k), table)
        done[k] = table
        if progress:
            progress(len(done), len(chunks))
    table = pd.concat([done[k] for k in range(len(chunks))], ignore_index=True)
    table["tree"] = None
    timings = {"fit": time.perf_counter() - start - sparse_s}  # with jobs > 1 the two overlap
    if config.sparse:
        if sparse_table is None:
            sparse_table, terms = sparse_rows(windows, random_w, formulas, config)
        if len(sparse_table):
            table = pd.concat([table, sparse_table], ignore_index=True)
    timings["sparse"] = time.perf_counter() - start - timings["fit"]
    finish = time.perf_counter()
    table = _finish(table, formulas, config, windows, terms)
    timings["accept"] = time.perf_counter() - finish
    table.attrs["timings_s"] = timings
    table.attrs["chunk_seconds"] = chunk_seconds
    return table


def term_library(windows: Trajectories, units) -> list:
    """The sparse search's terms for these data (`lawfinder.discovery.terms.library`; log only of positive variables)."""
    from lawfinder.discovery.terms import library

    states = np.stack(windows.states)
    positive = [v for i, v in enumerate(windows.variables) if np.all(states[..., i] > 0)]
    return library(windows.variables, dimensions(units), positive)


def sparse_rows(windows: Trajectories, random_w: np.ndarray, formulas: FormulaSet, config: FitConfig):
    """Candidate rows of the sparse search (`lawfinder.discovery.sparse`), and the library terms it used."""
    import torch

    from lawfinder.discovery import sparse
    from lawfinder.discovery.exactness import estimate_noise
    from lawfinder.discovery.score import solve_linear

    states, times = np.stack(windows.states), np.stack(windows.times).astype(float)
    terms = term_library(windows, formulas.units)
    noise = estimate_noise(states, times)
    laws, used = sparse.search(terms, windows.variables, states, noise.sigma, max(formulas.enumeration.by_size))
    rows = []
    for law in laws:
        basis = sparse.evaluate(law.terms, windows.variables, random_w, grads=False).values  # (W, L, k)
        score_random, _, _ = solve_linear(torch.as_tensor(np.moveaxis(basis, -1, 0)[None]))
        rows.append({"root": -1, "template": dsl_nodes.to_string(law.template), "params_values": law.params,
                     "score_true": max(law.score, 0.0), "score_random": float(score_random[0]),
                     "reject_reason": "", "n_params": len(law.params), "size": dsl_nodes.size(law.template),
                     "method": "sparse", "tree": json.dumps(dsl_nodes.to_dict(law.template))})  # fmt: skip
    return pd.DataFrame(rows, columns=["root", "template", "params_values", "score_true", "score_random",
                                       "reject_reason", "n_params", "size", "method", "tree"]), used  # fmt: skip


def _chunk_settings(config: FitConfig, n: int) -> dict:
    """What the chunks depend on: a resumed run refuses chunks made with other settings."""
    current = {**asdict(config), "n_formulas": n, "chunks_of": "skeletons"}  # chunks cut in `by_skeleton` order
    for how in WHERE:
        current.pop(how)
    for finish in ("surrogate_control", "alpha", "surrogates", "shortlist", "sparse"):
        current.pop(finish)  # applied in the finish: the chunks do not depend on them
    return current


def _fit_chunk_task(dag, roots, true_w, random_w, config: FitConfig, index: int) -> pd.DataFrame:
    """One chunk's rows; ``attrs["seconds"]``: its CPU (thread) and wall time where it ran."""
    import torch

    from lawfinder.discovery.fit import FitSettings, fit_with_control

    cpu, wall = time.thread_time(), time.perf_counter()
    device = torch.device(config.device)
    settings = FitSettings(seed=config.seed + index)
    x_true = torch.as_tensor(true_w, dtype=torch.float64, device=device)
    x_rand = torch.as_tensor(random_w, dtype=torch.float64, device=device)
    fit_true, fit_rand = fit_with_control(dag, roots, x_true, x_rand, settings, 1 / config.threshold)
    rows = []
    for pos, root in enumerate(roots):
        template = dag.to_node(root)
        reason = fit_true.reason[pos] or (fit_rand.reason[pos] and f"random control: {fit_rand.reason[pos]}")
        rows.append(
            {
                "root": root,
                "template": dsl_nodes.to_string(template),
                "params_values": fit_true.params[pos],
                "score_true": float(fit_true.score[pos]),
                "score_random": float(fit_rand.score[pos]),
                "reject_reason": reason or "",
                "n_params": len(fit_true.params[pos]),
                "size": dag.size[root],
                "method": fit_true.method[pos],
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["seconds"] = {"chunk": index, "cpu": time.thread_time() - cpu, "wall": time.perf_counter() - wall}
    return table


def _finish(table: pd.DataFrame, formulas: FormulaSet, config: FitConfig, windows: Trajectories,
            terms=()) -> pd.DataFrame:  # fmt: skip
    from lawfinder.discovery.acceptance import assess

    dims = dimensions(formulas.units)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = table["score_random"] / table["score_true"].clip(lower=1e-300)
    ratio = ratio.where(table["reject_reason"] == "", np.nan)
    table["conservation_ratio"] = ratio
    low = (table["reject_reason"] == "") & ~(ratio >= config.threshold)
    table.loc[low, "reject_reason"] = LOW_RATIO_REASON.format(threshold=config.threshold)
    table = table.sort_values("conservation_ratio", ascending=False, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    passed = table.index[table["reject_reason"] == ""]
    shortlist = passed[: config.shortlist]
    table.loc[passed[config.shortlist :], "reject_reason"] = f"not tested: beyond the shortlist of {config.shortlist}"
    summary = assess(table, shortlist, formulas.dag, windows, config.acceptance, seed=config.seed,
                     surrogate_test=config.surrogate_control, device=config.device, terms=terms)  # fmt: skip
    order = {"law": 0, "approximate": 1, "rejected": 2}
    table = table.sort_values("status", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    formulas_col, params_col = [], []
    # format only what is shown or accepted: sympy printing for the first PRETTY_ROWS rows, parameter
    # units for those and every accepted row (the others get "unit": null; their values are all kept,
    # their formula is the template's text with the values put in)
    rows = zip(table["root"], table["tree"], table["template"], table["params_values"], table["accepted"])
    by_text = not any(dsl_nodes.PARAM_NAME.fullmatch(v) for v in formulas.units)  # no variable named like C0
    for row, (root, tree, text, values, accepted) in enumerate(rows):
        shown = row < PRETTY_ROWS
        units = None
        if shown or accepted or not by_text:
            template = template_of(formulas.dag, root, tree)
            fitted = dsl_nodes.with_params(template, list(values))
            formulas_col.append(pretty(fitted) if shown else dsl_nodes.to_string(fitted))
            units = [u.to_units() for u in infer(template, dims).params] if len(values) else None
        else:
            formulas_col.append(dsl_nodes.fill_params(text, values))
        params_col.append(json.dumps({f"C{j}": {"value": float(v), "unit": None if units is None else units[j]}
                                      for j, v in enumerate(values)}))  # fmt: skip
    table["formula"] = formulas_col
    table["params"] = params_col
    table = table.drop(columns=["params_values"])
    table = table[COLUMNS + ["root", "tree"]]
    table.attrs["acceptance"] = summary
    return table


def pretty(node, digits: int = 17) -> str:
    """A fitted formula as sympy prints it (``p**2 - 3.0*cos(q)``); `sympy.sympify` reads it back."""
    import sympy

    from dsl.export import to_sympy

    expr = to_sympy(node)
    if not all(np.isfinite(float(f)) for f in expr.atoms(sympy.Float)):
        return dsl_nodes.to_string(node)
    floats = {f: sympy.Float(f, digits) for f in expr.atoms(sympy.Float)}  # evalf would turn sqrt into **0.5
    return sympy.sstr(expr.xreplace(floats), full_prec=False)
