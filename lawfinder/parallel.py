"""The one parallel layer: every stage that fans out hands `run_chunks` a list of (function, args).

Local processes by default (``jobs`` workers, joblib's loky back end), or a
Dask cluster through joblib's ``dask`` back end when a scheduler address is
given (argument or ``LAWFINDER_DASK_SCHEDULER``). Results come back in task
order whatever the back end, so tables do not depend on it. Each worker runs
torch and BLAS with one thread so that workers do not oversubscribe cores.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

from lawfinder.errors import UserError

Task = tuple[Callable[..., Any], tuple]


def _single_threaded(fn: Callable, args: tuple):
    import torch

    torch.set_num_threads(1)
    return fn(*args)


def run_chunks(
    tasks: Sequence[Task], jobs: int = 1, backend: str = "local", scheduler: str | None = None
) -> Iterator[Any]:
    """Yield ``fn(*args)`` for each task, in order, as soon as each is ready in order."""
    if not tasks:
        return iter(())
    scheduler = scheduler or os.environ.get("LAWFINDER_DASK_SCHEDULER")
    if backend == "dask" or (backend == "local" and scheduler and jobs == 0):
        return _run_dask(tasks, scheduler)
    if backend != "local":
        raise UserError(f"unknown --backend {backend!r}: use local or dask")
    if jobs == 1:
        return (fn(*args) for fn, args in tasks)
    from joblib import Parallel, delayed

    n_jobs = jobs if jobs > 0 else os.cpu_count()
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    return parallel(delayed(_single_threaded)(fn, args) for fn, args in tasks)


def _run_dask(tasks: Sequence[Task], scheduler: str | None) -> Iterator[Any]:
    if not scheduler:
        raise UserError("--backend dask needs --scheduler ADDRESS (or LAWFINDER_DASK_SCHEDULER)")
    try:
        from dask.distributed import Client
    except ImportError:
        raise UserError("--backend dask needs dask.distributed: pip install 'lawfinder[dask]'") from None
    from joblib import Parallel, delayed, parallel_config

    try:
        client = Client(scheduler, timeout="10s")
    except OSError as err:
        raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None

    def generate():
        with client, parallel_config(backend="dask"):
            parallel = Parallel(return_as="generator")
            yield from parallel(delayed(_single_threaded)(fn, args) for fn, args in tasks)

    return generate()
