"""The one parallel layer: every stage that fans out hands `run_chunks` a list of (function, args).

Back ends
---------
``local`` (default)
    ``jobs=1`` runs the tasks one after the other in this process;
    ``jobs=N`` (``-1``: all cores) runs them in N local processes (joblib's
    loky back end; with ``fork=True`` on Linux, N forked copies of this
    process, which start in milliseconds where a loky worker needs ~5 s to
    import torch: the size-7 fit takes less than that).
``dask``
    The same tasks on a Dask cluster through joblib's ``dask`` back end. The
    scheduler is given as an address (``tcp://host:8786``, ``host:8786``) or
    as the path of a scheduler file (``dask scheduler --scheduler-file``),
    by argument or by ``LAWFINDER_DASK_SCHEDULER``. ``jobs`` is ignored: the
    cluster's worker threads decide how many tasks run at once.

Guarantees, whatever the back end
---------------------------------
* Results come back in task order, so tables do not depend on the back end,
  on the number of workers or on which worker finished first.
* Every task runs with one torch thread (set around the call and restored in
  this process), so workers do not oversubscribe cores and a task computes
  exactly the same numbers in-process, in a loky process or on a Dask worker.
  BLAS threads: loky limits them in its workers; Dask's nanny starts workers
  with ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1``
  (``distributed.nanny.pre-spawn-environ``). Start workers with
  ``--nthreads 1`` and one worker process per core.
* The nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` makes torch's allocations
  slow (every tensor mmapped afresh): tasks undo it in their worker process,
  see `_undo_dask_malloc_settings`.
* Each task is shipped as one Dask task (``batch_size=1``): the callers cut
  their work into chunks large enough (seconds each) that scheduling overhead
  stays small, so joblib's auto-batching has nothing to gain.

Data
----
Objects passed as `shared` (the formula DAG and the window arrays of the fit
stage) are scattered once to every worker (``client.scatter(...,
broadcast=True)`` through joblib's ``scatter=``); tasks that take them as
arguments (by identity, as top-level arguments) reference the scattered copy
instead of carrying it. Without that, joblib's dask back end would scatter
each large argument once per call to a single worker and let the others fetch
it, and anything nested in a tuple would be pickled into every task.

Faults
------
A worker that dies while it runs a task (killed, out of memory, node lost)
has its tasks rescheduled by the Dask scheduler on the remaining workers;
joblib waits for the rescheduled result, so nothing is lost or duplicated.
Dask gives up on a task after it has killed ``distributed.scheduler.
allowed-failures`` workers (default 3) and the run fails with
``KilledWorker``. Exceptions raised by a task itself are not retried: our
tasks are deterministic, so a retry would fail the same way.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lawfinder.errors import UserError

Task = tuple[Callable[..., Any], tuple]

ENV_SCHEDULER = "LAWFINDER_DASK_SCHEDULER"
BACKENDS = ("local", "dask")
CONNECT_TIMEOUT_S = 10.0  # to reach the scheduler
WORKERS_TIMEOUT_S = 60.0  # for a reachable scheduler to get its first worker


_DASK_TRIM = "65536"  # distributed.nanny.pre-spawn-environ's MALLOC_TRIM_THRESHOLD_
_malloc_checked = False


def _undo_dask_malloc_settings() -> None:
    """On a Dask worker started with Dask's malloc settings, give glibc back its large-block reuse.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand
    freed memory back to the OS). Setting any such variable also switches off
    glibc's dynamic mmap threshold, so every tensor above 128 KiB is mmapped
    and unmapped afresh, page faults included: the fit then needs 30-60% more
    CPU (measured on size-7 chunks: 2.9 -> 4.6 s and 5.1 -> 7.4 s). Once per
    worker process we set the mmap threshold to 32 MiB (glibc's own dynamic
    ceiling) and the trim threshold to 64 MiB (its usual 2x), which restores
    the plain-process speed and keeps at most 64 MiB of free heap unreturned.
    Only when exactly Dask's default is in the environment (a value someone
    chose is theirs to keep); on non-glibc systems nothing happens.
    """
    global _malloc_checked
    if _malloc_checked:
        return
    _malloc_checked = True
    if os.environ.get("MALLOC_TRIM_THRESHOLD_") != _DASK_TRIM or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def cores() -> int:
    """The cores this process may run on (its CPU affinity), what ``jobs=-1`` uses."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _one_thread(fn: Callable, *args):
    """``fn(*args)`` with one torch thread (restored afterwards)."""
    import torch

    _undo_dask_malloc_settings()

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def run_chunks(
    tasks: Sequence[Task],
    jobs: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    shared: Sequence[Any] = (),
    fork: bool = False,
) -> Iterator[Any]:
    """Yield ``fn(*args)`` for each task of `tasks`, in task order, each as soon as it (and those before) are done.

    Parameters
    ----------
    tasks : sequence of (function, args)
        Module-level functions (workers import them by name) and their arguments.
    jobs : int
        Local back end: 1 runs in this process, N > 1 in N processes, -1 on all cores.
    backend : "local" or "dask"
    scheduler : str, optional
        Dask back end: scheduler address or scheduler file; default ``$LAWFINDER_DASK_SCHEDULER``.
    shared : sequence
        Objects that many tasks take as top-level arguments (big arrays, the DAG):
        scattered once to every Dask worker. Ignored by the local back end.
    fork : bool
        Local back end, ``jobs != 1``, Linux: forked workers (the tasks start at once, before
        the first result is asked for). For callers whose process holds no threads of its own.

    A bad back end, a missing or unreachable scheduler raise `UserError` here,
    before any task runs.
    """
    scheduler = _checked(backend, scheduler)
    if backend == "dask":
        if not tasks:
            return iter(())
        return _run_dask(connect(scheduler), tasks, shared)
    if not tasks:
        return iter(())
    if jobs == 1:
        return (_one_thread(fn, *args) for fn, args in tasks)
    from joblib import Parallel, delayed

    n_jobs = jobs if jobs > 0 else cores()
    if fork and "fork" in multiprocessing.get_all_start_methods():
        return _run_forked(tasks, n_jobs)
    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    return parallel(delayed(_one_thread)(fn, *args) for fn, args in tasks)


class _InProcess(concurrent.futures.Executor):
    """``jobs=1``: each task runs in this process when it is submitted."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # handed to whoever asks for the result, as a pool would
            future.set_exception(err)
        return future


class _OneThreadEach:
    def __init__(self, pool: concurrent.futures.Executor, pickled: bool = False) -> None:
        self._pool, self._pickled = pool, pickled

    def submit(self, fn: Callable, *args) -> concurrent.futures.Future:
        if not self._pickled:
            return self._pool.submit(_one_thread, fn, *args)
        import cloudpickle  # as loky and Dask do: lambdas and local functions travel too (joblib needs it)

        sent = self._pool.submit(_unpickled, cloudpickle.dumps((fn, args)))
        result: concurrent.futures.Future = concurrent.futures.Future()
        sent.add_done_callback(lambda done: _unpickle_into(result, done))
        return result


def _unpickled(task: bytes) -> bytes:
    """Run a pickled task; its result goes back pickled too, as plain bytes: a tensor in it must not
    travel as torch's shared-memory handle, whose hand-over hangs a worker forked from a process
    whose torch thread pool had started (both workers of `lawfinder search` stuck in
    ``_share_fd_cpu_`` after their first task; tests/test_parallel.py)."""
    import pickle

    fn, args = pickle.loads(task)
    return pickle.dumps(_one_thread(fn, *args))


def _unpickle_into(result: concurrent.futures.Future, done: concurrent.futures.Future) -> None:
    import pickle

    try:
        result.set_result(pickle.loads(done.result()))
    except BaseException as err:  # the task's own error, or a cancelled one
        result.set_exception(err)


@contextlib.contextmanager
def executor(jobs: int = 1, backend: str = "local", scheduler: str | None = None):
    """A pool with ``submit(fn, *args) -> concurrent.futures.Future``, for stages whose later tasks
    depend on earlier results (`run_chunks` takes its whole list at once). Same back ends, same
    one-thread rule; local ``jobs > 1`` forks its workers where it can (they start in milliseconds).
    """
    scheduler = _checked(backend, scheduler)
    if backend == "dask":
        client = connect(scheduler)
        try:
            yield _OneThreadEach(client.get_executor(pure=False))
        finally:
            client.close()
    elif jobs == 1:
        yield _OneThreadEach(_InProcess())
    else:
        start = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        pool = concurrent.futures.ProcessPoolExecutor(jobs if jobs > 0 else cores(), initializer=_die_with,
                                                      initargs=(os.getpid(),), mp_context=multiprocessing.get_context(start))  # fmt: skip
        try:
            yield _OneThreadEach(pool, pickled=True)
        finally:  # on an error, the tasks not started are dropped rather than run
            pool.shutdown(cancel_futures=True)


def _die_with(parent: int) -> None:
    """In a pool worker: end when the parent process ends (killed, even with SIGKILL), not linger."""
    import signal

    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)


def _checked(backend: str, scheduler: str | None) -> str | None:
    """The scheduler to use (dask: the argument or ``$LAWFINDER_DASK_SCHEDULER``), or a `UserError`."""
    if backend not in BACKENDS:
        raise UserError(f"unknown back end {backend!r}: use local or dask", option="backend")
    if backend == "local":
        return None
    scheduler = scheduler or os.environ.get(ENV_SCHEDULER) or None
    if not scheduler:
        raise UserError(f"the dask back end needs a scheduler address (or {ENV_SCHEDULER})", option="scheduler")
    return scheduler


_forked_tasks: Sequence[Task] = ()


def _run_forked_task(index: int):
    fn, args = _forked_tasks[index]
    return _one_thread(fn, *args)


def _run_forked(tasks: Sequence[Task], n_jobs: int) -> Iterator[Any]:
    """The tasks in `n_jobs` forked processes, which inherit them (only indices and results are pickled)."""
    global _forked_tasks
    _forked_tasks = tasks
    pool = multiprocessing.get_context("fork").Pool(min(n_jobs, len(tasks)))
    _forked_tasks = ()
    results = pool.imap(_run_forked_task, range(len(tasks)))

    def generate():
        try:
            yield from results
        finally:
            pool.terminate()
            pool.join()

    return generate()


def connect(scheduler: str, timeout: float | None = None):
    """A `dask.distributed.Client` for `scheduler` (address or scheduler file), or one-line `UserError`.

    Waits up to `WORKERS_TIMEOUT_S` for the cluster to have a worker.
    """
    try:
        from dask.distributed import Client
    except ImportError:
        raise UserError("the dask back end needs dask.distributed: pip install 'lawfinder[dask]'", option="backend") from None
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    where = f"the Dask scheduler at {scheduler}"
    if Path(scheduler).expanduser().is_file():
        kwargs = {"scheduler_file": str(Path(scheduler).expanduser())}
    else:
        _check_address(scheduler)
        kwargs = {"address": scheduler}
    try:
        client = Client(**kwargs, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        raise UserError(f"cannot reach {where}: {_one_line(err)}") from None
    try:
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (OSError, TimeoutError) as err:
        client.close()
        raise UserError(f"{where} has no workers after {WORKERS_TIMEOUT_S:g} s: {_one_line(err)}") from None
    return client


def _check_address(scheduler: str) -> None:
    """Refuse malformed addresses before `Client` sees them (it would hang at exit on some)."""
    from distributed.comm import get_address_host_port, parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, _ = parse_address(scheduler)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            get_address_host_port(scheduler)
    except (ValueError, TypeError) as err:
        raise UserError(
            f"--scheduler {scheduler!r} is neither a scheduler address (tcp://HOST:PORT) "
            f"nor a scheduler file: {_one_line(err)}"
        ) from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _unique(objects: Sequence[Any]) -> list:
    seen, out = set(), []
    for obj in objects:
        if id(obj) not in seen:
            seen.add(id(obj))
            out.append(obj)
    return out


def _dask_backend(client, scatter: list):
    """joblib's dask back end, except that it never reports fewer than 2 jobs.

    joblib runs a call whose back end reports ``n_jobs == 1`` sequentially in
    the calling process, so on a cluster with one worker thread in all
    (``dask worker --nworkers 1 --nthreads 1``) the tasks would silently run
    on the client instead of the cluster. Reporting 2 keeps them on the
    cluster; the scheduler queues them on the one worker.
    """
    from joblib._dask import DaskDistributedBackend

    class _AtLeastTwo(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs):
            return max(2, super().effective_n_jobs(n_jobs))

    return _AtLeastTwo(client=client, scatter=scatter or None)


def _run_dask(client, tasks: Sequence[Task], shared: Sequence[Any]) -> Iterator[Any]:
    from joblib import Parallel, delayed, parallel_config

    scatter = _unique(shared)

    def generate():
        try:
            with parallel_config(backend=_dask_backend(client, scatter)):
                parallel = Parallel(batch_size=1, return_as="generator")
                yield from parallel(delayed(_one_thread)(fn, *args) for fn, args in tasks)
        finally:
            client.close()

    return generate()
