"""Scaling benchmark: wall time of the fit stage on a Dask LocalCluster with 1, 2 and 4 workers.

For the pendulum's variables at max size 7 and 8: `fit_conservation` with
``backend="dask"`` on a `LocalCluster` of N worker processes (1 thread each,
loopback only), timed from the call to the finished candidates table, split
into the serial preparation (windows, controls, chunking), the fan-out of the
chunks (scatter + fits + results back) and the serial finish (ratios,
acceptance, sorting, printing the formulas); plus the in-process local back
end (``jobs=1``, no Dask) as the reference. Every table is checked to equal
the 1-worker table. Speed-up and efficiency per worker are against the
1-worker Dask run. The per-chunk compute times of the 1-worker run give, by
list scheduling in task order, the time the fan-out would take with N idle
cores: that is the projection for machines with more cores than this one.

Cluster start-up (worker processes importing torch) is done before timing and
reported apart: on a real cluster it is paid once, not per search.

Usage::

    python benchmarks/scaling.py                          # sizes 7 and 8, 1/2/4 workers
    python benchmarks/scaling.py --sizes 7 --workers 1 2  # quicker
    python benchmarks/scaling.py --sizes 8 --workers 2 --append     # more runs, merged into the last ones
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "pendulum"
PROJECT = (1, 2, 4, 8, 16, 32, 64)


def list_schedule(durations: list[float], workers: int) -> float:
    """Makespan when `workers` take tasks in order, each the next task when free (as joblib dispatches)."""
    free = [0.0] * workers
    for d in durations:
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def timed_fit(traj, formulas, config):
    from lawfinder.discovery.stage import fit_conservation

    marks = {}

    def progress(done, total):
        now = time.perf_counter()
        marks.setdefault("first", now)
        if done == total:
            marks["last"] = now

    t0 = time.perf_counter()
    table = fit_conservation(traj, formulas, config, progress=progress)
    t1 = time.perf_counter()
    return table, {
        "wall": t1 - t0,
        "prepare": marks["first"] - t0,
        "fan_out": marks["last"] - marks["first"],
        "finish": t1 - marks["last"],
    }


def run_cluster(traj, formulas, workers: int, chunk_size: int, seed: int) -> tuple[pd.DataFrame, dict]:
    from dask.distributed import Client, LocalCluster, get_task_stream

    from lawfinder.discovery.stage import FitConfig

    t0 = time.perf_counter()
    with LocalCluster(
        processes=True, n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=120)
        client.run(_warm_up)  # import torch and lawfinder in every worker before timing
        startup = time.perf_counter() - t0
        config = FitConfig(seed=seed, chunk_size=chunk_size, backend="dask", scheduler=cluster.scheduler_address)
        load = os.getloadavg()[0]
        with get_task_stream(client=client) as stream:
            table, times = timed_fit(traj, formulas, config)
        tasks = [t for t in stream.data if str(t["key"]).startswith("batch_of__one_thread")]
        per_chunk = _chunk_times(table)
    computes = []
    for task in sorted(tasks, key=lambda t: t["startstops"][0]["start"]):
        spans = [s for s in task["startstops"] if s["action"] == "compute"]
        computes.append(sum(s["stop"] - s["start"] for s in spans))
    return table, {
        **times,
        "startup": startup,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "chunk_compute_s": computes,
        "busy": sum(computes),
        **_cpu_columns(per_chunk),
    }


def _cpu_columns(per_chunk: list) -> dict:
    """Sum of CPU and wall seconds inside the chunk function; a chunk killed and re-run counts twice."""
    return {"chunk_cpu_s": [c for _, c, _ in per_chunk], "cpu": sum(c for _, c, _ in per_chunk),
            "chunk_wall": sum(w for _, _, w in per_chunk)}  # fmt: skip


def _warm_up():
    """Import torch and lawfinder, so that no chunk's time includes them."""
    import torch  # noqa: F401

    import lawfinder.discovery.fit  # noqa: F401
    import lawfinder.discovery.stage  # noqa: F401


def _chunk_times(table) -> list:
    """``(chunk, cpu, wall)`` of each chunk, as the fit timed it where it ran (``attrs["chunk_seconds"]``)."""
    return sorted((c["chunk"], c["cpu"], c["wall"]) for c in table.attrs["chunk_seconds"])


def run_local(size: int, chunk_size: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """The in-process back end, in a fresh process: as cold as a fresh Dask worker (no sympy caches)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    load = os.getloadavg()[0]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        table, times = pool.submit(_local_fit, size, chunk_size, seed).result()
    return table, {**times, "load_before": load, "load_after": os.getloadavg()[0]}


def _local_fit(size: int, chunk_size: int, seed: int):
    import dsl
    from lawfinder.data.systems import get_system
    from lawfinder.discovery.stage import FitConfig

    torch.set_num_threads(1)
    _warm_up()
    system = get_system(SYSTEM)
    formulas = dsl.FormulaSet.enumerate(system.units, size)
    table, times = timed_fit(system.load(seed=seed), formulas, FitConfig(seed=seed, chunk_size=chunk_size))
    return table, {**times, **_cpu_columns(_chunk_times(table))}


def measure(size: int, workers: list[int], chunk_size: int, seed: int, local: bool, repeat: int, log) -> dict:
    import dsl
    from lawfinder.data.systems import get_system

    system = get_system(SYSTEM)
    traj = system.load(seed=seed)
    t0 = time.perf_counter()
    formulas = dsl.FormulaSet.enumerate(system.units, size)
    enumerate_s = time.perf_counter() - t0
    n = len(formulas.enumeration.roots)
    out = {"size": size, "formulas": n, "chunk_size": chunk_size, "chunks": -(-n // chunk_size),
           "enumerate_s": enumerate_s, "repeat": repeat, "runs": []}  # fmt: skip
    log(f"size {size}: {n:,} formulas in {out['chunks']} chunks of {chunk_size}, enumerate {enumerate_s:.2f} s")
    reference = None
    plan = ([("local", 1)] if local else []) + [("dask", w) for w in workers]
    for backend, w in plan:
        rows = []
        for _ in range(repeat):
            if backend == "local":
                table, row = run_local(size, chunk_size, seed)
            else:
                table, row = run_cluster(traj, formulas, w, chunk_size, seed)
            if reference is None:
                reference = table
            else:
                pd.testing.assert_frame_equal(table, reference, check_exact=True)
            rows.append(row)
        out["table_hash"] = str(pd.util.hash_pandas_object(reference, index=True).sum())
        row = min(rows, key=lambda r: r["wall"])  # the least disturbed by the other jobs on the machine
        row.update(backend=backend, workers=w, same_table=True, accepted=int(table["accepted"].sum()),
                   walls=[r["wall"] for r in rows])  # fmt: skip
        out["runs"].append(row)
        log(f"  {backend:5s} x{w}: {row['wall']:7.1f} s (prepare {row['prepare']:.1f}, fan-out {row['fan_out']:.1f}, "
            f"finish {row['finish']:.1f}); load {row['load_before']:.1f} -> {row['load_after']:.1f}")  # fmt: skip
    return out


def merge(old: dict, new: dict) -> dict:
    """More runs of one size (``--append``): per back end and worker count, keep the fastest; list all."""
    if old.get("table_hash", new["table_hash"]) != new["table_hash"] or old["chunk_size"] != new["chunk_size"]:
        raise SystemExit(f"size {new['size']}: the earlier runs computed another table; not merging")
    runs = {(r["backend"], r["workers"]): r for r in old["runs"]}
    for r in new["runs"]:
        key = (r["backend"], r["workers"])
        if key in runs:
            walls = runs[key]["walls"] + r["walls"]
            runs[key] = {**min(runs[key], r, key=lambda x: x["wall"]), "walls": walls}
        else:
            runs[key] = r
    order = sorted(runs.values(), key=lambda r: (r["backend"] != "local", r["workers"]))
    return {**new, "runs": order}


def analyse(result: dict) -> dict:
    runs = {r["workers"]: r for r in result["runs"] if r["backend"] == "dask"}
    if 1 not in runs:
        return result
    one = runs[1]
    for r in runs.values():
        r["speedup"] = one["wall"] / r["wall"]
        r["efficiency"] = r["speedup"] / r["workers"]
    # Projection for idle cores: a chunk's CPU time is what it takes on a core of its own.
    chunks = one["chunk_cpu_s"]
    serial = one["prepare"] + one["finish"]
    overhead = max(0.0, one["fan_out"] - one["chunk_wall"])  # scatter, scheduling, results, checkpoints
    base = serial + overhead + sum(chunks)
    result["projection"] = []
    for w in sorted(set(runs) | set(PROJECT)):
        fan = list_schedule(chunks, w)
        wall = serial + overhead + fan
        result["projection"].append({"workers": w, "fan_out": fan, "wall": wall, "speedup": base / wall,
                                     "efficiency": base / wall / w})  # fmt: skip
    result.update(serial_s=serial, overhead_1w_s=overhead, largest_chunk_s=max(chunks), chunk_cpu_total_s=sum(chunks))
    return result


def _s(x: float) -> str:
    return f"{x:.1f}" if x >= 0.95 else f"{x:.2f}"


def markdown(data: dict) -> str:
    meta = data["metadata"]
    L = [
        "# Scaling: the fit stage on a Dask cluster",
        "",
        "Generated by `python benchmarks/scaling.py`. Fit stage = `fit_conservation` (windows, random-sequence "
        "control, every formula fitted on both, acceptance, sorted table with the best 200 printed by sympy) on "
        f"the {SYSTEM}'s variables (`q` rad, `p` kg m^2/s), seed {meta['seed']}, float64, CPU, default chunk "
        f"size ({data['results'][0]['chunk_size'] if data['results'] else '-'} formulas). *dask N*: "
        "`backend=\"dask\"` on a fresh `LocalCluster` of N worker processes, one thread each (loopback; start-up "
        "and imports not timed). *local*: the in-process back end (`jobs=1`, no Dask), in a fresh process. "
        "Speed-up and efficiency (speed-up / N) are against *dask 1*. Within an invocation every run's table "
        "was checked equal (`assert_frame_equal(check_exact=True)`) to the first run's; `--append` merges the runs "
        "of several invocations (here: `--sizes 7 --repeat 3`, `--sizes 8 --repeat 2`, then more runs at quieter "
        "moments) and checks a hash of the table against the earlier one's (the first invocation here predates "
        "that check).",
        "",
        f"**This machine has {meta['cpu_count']} CPU cores, shared with other engineers' jobs that ran during "
        f"the whole benchmark** (load average {_load_range(data)} on 2 cores, in the table). Two consequences: wall times "
        "are inflated by a varying amount, so each setting was run several times and the fastest run is shown "
        "(all runs in the last column); and *CPU in chunks* (thread CPU time inside the fit of every chunk, summed) "
        "is the load-independent cost of the work, while *CPU share* = CPU / wall inside the chunks shows how "
        "much of a core each chunk actually got. **4 workers oversubscribe the 2 cores**: they cannot beat 2 "
        f"workers, and their rows measure the cost of oversubscription, not scaling. torch {meta['torch']}, "
        f"Python {meta['python']}, dask {meta['dask']}, joblib {meta['joblib']}.",
        "",
    ]
    for res in data["results"]:
        L += [
            f"## Size {res['size']}: {res['formulas']:,} formulas, {res['chunks']} chunks",
            "",
            f"Enumeration (serial, before the fit stage, not in the times below): {res['enumerate_s']:.2f} s.",
            "",
            "| back end | workers | **fit stage (s)** | prepare (s) | fan-out (s) | finish (s) | speed-up | "
            "efficiency / worker | CPU in chunks (s) | CPU share | load before -> after | all runs (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in res["runs"]:
            sp = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
            ef = f"{100 * r['efficiency']:.0f}%" if "efficiency" in r else "-"
            share = f"{100 * r['cpu'] / r['chunk_wall']:.0f}%" if r.get("chunk_wall") else "-"
            walls = ", ".join(f"{w:.1f}" for w in r.get("walls", [r["wall"]]))
            L.append(
                f"| {r['backend']} | {r['workers']} | **{r['wall']:.1f}** | {_s(r['prepare'])} | {r['fan_out']:.1f} | "
                f"{_s(r['finish'])} | {sp} | {ef} | {r['cpu']:.1f} | {share} | "
                f"{r['load_before']:.1f} -> {r['load_after']:.1f} | {walls} |"
            )
        startups = ", ".join(f"{r['workers']} workers {r['startup']:.1f} s" for r in res["runs"] if "startup" in r)
        L += ["", f"Cluster start-up (not timed above: worker processes starting and importing torch): {startups}."]
        if "projection" in res:
            one = next(r for r in res["runs"] if r["backend"] == "dask" and r["workers"] == 1)
            L += [
                "",
                f"Chunk CPU times (1 worker, task order): {', '.join(f'{c:.1f}' for c in one['chunk_cpu_s'])} s; "
                f"total {res['chunk_cpu_total_s']:.1f} s, largest {res['largest_chunk_s']:.1f} s. Serial part on "
                f"the client (prepare + finish): {res['serial_s']:.1f} s; other fan-out overhead with 1 worker "
                f"(scatter, scheduling, results back, checkpoint writes): {res['overhead_1w_s']:.1f} s.",
                "",
                "**Projection for N idle cores** (N workers take the chunks in task order, each chunk taking its "
                "measured CPU time, plus the measured serial part and overhead; not measured):",
                "",
                "| workers | projected fan-out (s) | projected fit stage (s) | projected speed-up | efficiency |",
                "|---:|---:|---:|---:|---:|",
            ]
            for p in res["projection"]:
                L.append(f"| {p['workers']} | {p['fan_out']:.1f} | {p['wall']:.1f} | {p['speedup']:.2f}x | "
                         f"{100 * p['efficiency']:.0f}% |")  # fmt: skip
        L.append("")
    L += [notes(data), "", CLUSTER_SECTION]
    return "\n".join(L)


def _load_range(data: dict) -> str:
    loads = [x for res in data["results"] for r in res["runs"] for x in (r["load_before"], r["load_after"])]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"


def notes(data: dict) -> str:
    """The findings, with the numbers of this run."""
    by = {res["size"]: res for res in data["results"]}

    def run(size, backend, w):
        return next((r for r in by[size]["runs"] if r["backend"] == backend and r["workers"] == w), None)

    measured, cpu_growth, overhead_vs_local, limits = [], [], [], []
    for size, res in by.items():
        one = run(size, "dask", 1)
        if one is None:
            continue
        parts = [f"{r['workers']} workers {r['speedup']:.2f}x ({100 * r['efficiency']:.0f}% per worker)"
                 for r in res["runs"] if r["backend"] == "dask" and r["workers"] > 1]  # fmt: skip
        measured.append(f"size {size}: " + ", ".join(parts))
        two = run(size, "dask", 2)
        if two:
            cpu_growth.append(f"{one['cpu']:.1f} -> {two['cpu']:.1f} s at size {size}")
        local = run(size, "local", 1)
        if local:
            overhead_vs_local.append(f"{local['wall']:.1f} s in-process vs {one['wall']:.1f} s on a 1-worker cluster "
                                     f"at size {size}")  # fmt: skip
        proj = {p["workers"]: p for p in res["projection"]}
        cap = max(p["speedup"] for p in res["projection"])
        serial = res["serial_s"] + res["overhead_1w_s"]
        base = proj[1]["wall"]
        limits.append(
            f"size {size}: {res['chunks']} chunks, the largest {res['largest_chunk_s']:.1f} s of "
            f"{res['chunk_cpu_total_s']:.1f} s; serial part + overhead {serial:.1f} s = {100 * serial / base:.1f}% "
            f"of the 1-worker time, an Amdahl cap of {base / serial:.0f}x; projected {proj[8]['speedup']:.1f}x on 8 "
            f"cores, {proj[16]['speedup']:.1f}x on 16, at most {cap:.1f}x"
        )
    return f"""## What this shows, and what limits scaling

- **Identical results.** The candidates table is the same, bit for bit, with the local back end and with 1, 2 or 4
  Dask workers (and in `tests/test_dask.py`, also when a worker is killed mid-run): chunks are cut by formula
  position, each chunk is seeded by its index, every chunk runs with one torch thread wherever it runs, and joblib
  returns results in task order.
- **Measured here** (fastest run of each setting): {"; ".join(measured)}. Two workers fall short of 2x on this
  machine for three reasons: the other engineers' jobs (load column, CPU share below 100%); the work itself costs
  more CPU when two workers run at once ({"; ".join(cpu_growth)}: each worker process builds its own per-skeleton
  caches, i.e. sympy linearity analysis and lambdified functions, and the two vCPUs of this VM share caches and
  memory bandwidth); and uneven chunks leave a worker idle at the end (see the chunk times). **4 workers on 2
  cores** get under half a core each (CPU share) and are no faster than 2 beyond run-to-run noise: the 4-worker
  rows show oversubscription, not scaling.
- **Dask's own cost is small**: {"; ".join(overhead_vs_local) or "-"} (scheduling, shipping each chunk's table
  back, the worker's event loop). It was 30-60% before `lawfinder.parallel` undid the Dask nanny's
  `MALLOC_TRIM_THRESHOLD_=65536` in the workers (it makes glibc mmap every tensor afresh).
- **The fit is embarrassingly parallel over chunks**: chunks share only the read-only DAG and window arrays,
  scattered once to every worker, and each sends back a small table. What limits it, in order
  ({"; ".join(limits)}):
  1. **Chunk granularity.** With the default 1500 formulas per chunk, size 7 has 6 chunks and size 8 has 29, and
     chunk costs vary several-fold (search-path formulas with several parameters cost far more than exact ones):
     the fan-out cannot beat the largest chunk, and beyond as many workers as chunks there is nothing to share.
     This is what stops size 7 at ~2.8x. Smaller chunks balance better (`python benchmarks/scaling.py --sizes 7
     --workers 1 --chunk-size 500` gave 17 chunks, the largest 2.5 s instead of 5.7 s), but each costs more:
  2. **Per-chunk skeleton grouping.** Every chunk groups its formulas by skeleton and fits each group in one
     batch, so smaller chunks mean smaller batches and more Python overhead (that run needed 7% more CPU in total
     with chunks of 500 than of 1500); and every worker process redoes the per-skeleton sympy work (linearity
     analysis, lambdify) for the skeletons it meets, which is part of the extra CPU with 2 workers above.
  3. **Serial work on the client.** The enumeration (0.3 s at size 7, 0.6 s at size 8) runs before the fit stage;
     inside it, the finish of `fit_conservation` (unit inference and formatting for every formula, sympy printing
     of the best 200, sorting: the "finish" column, 5-8 s at size 8) and the per-chunk checkpoint writes. This
     grows with the number of formulas like the fit itself, so its Amdahl cap (above) does not rise with the
     problem size; together with the largest chunk it is what flattens size 8 at ~8x. Vectorising that finish would
     lift it.
  4. **Scheduling and transfer**: milliseconds per chunk, plus one scatter of the DAG (~4 MB pickled at size 8) to
     each worker: inside the "overhead" above, small next to chunks of seconds.
- **Projection.** The projection tables replay the measured 1-worker chunk CPU times on N idle cores (list
  scheduling in task order, as joblib dispatches them) and add the measured serial part and overhead. They are
  estimates, not measurements: real clusters add network transfer (small here) and may run chunks at a different
  speed per core."""


CLUSTER_SECTION = """## Running on a cluster

The fit stage (fitting every formula on the data and on random sequences) can run on a
[Dask](https://distributed.dask.org) cluster instead of local processes: a laptop, an HPC
allocation (dask-jobqueue) or Kubernetes. The chunks, the seeds and therefore the
candidates table and ranking are the same as with `--jobs`; only where the chunks run changes.
Everything else (enumeration, acceptance, screening, meta-tailoring, the report) runs where you
start `lawfinder`, and the run folder (checkpoints included, so `--resume` works) is written there.

Install the extra on the machine you run `lawfinder` from **and on every worker** (the workers
import `lawfinder` to run the chunks, so use the same version everywhere):

```bash
pip install 'lawfinder[dask]'
```

Start a scheduler and workers (one worker process per core, one thread each, so the
workers do not oversubscribe the cores):

```bash
dask scheduler --port 8786                                     # prints tcp://HOST:8786
dask worker tcp://HOST:8786 --nworkers 16 --nthreads 1         # on each worker machine
```

Point `lawfinder search` (or `lawfinder fit`) at it:

```bash
lawfinder search --system pendulum --max-size 8 --backend dask --scheduler tcp://HOST:8786
# or set the address once:
export LAWFINDER_DASK_SCHEDULER=tcp://HOST:8786
lawfinder search --system pendulum --max-size 8 --backend dask
```

On an HPC system, let the scheduler write a file on a shared disk and pass its path instead
of an address (`--scheduler ~/dask-scheduler.json`):

```bash
dask scheduler --scheduler-file ~/dask-scheduler.json &
srun dask worker --scheduler-file ~/dask-scheduler.json --nworkers 1 --nthreads 1   # e.g. one per task
lawfinder search --system pendulum --max-size 8 --backend dask --scheduler ~/dask-scheduler.json
```

(or start workers with `dask_jobqueue.SLURMCluster(cores=16, processes=16, ...)` and give
`--scheduler` its `cluster.scheduler_address`). For a quick try on one machine:
`dask scheduler --host 127.0.0.1` and `dask worker tcp://127.0.0.1:8786 --nworkers 2 --nthreads 1`.

Notes:

- `--jobs` is for the local back end and is ignored with `--backend dask`: the cluster's worker
  threads decide how many chunks run at once. `LAWFINDER_DASK_SCHEDULER` only supplies the
  address; it never switches the back end by itself.
- `--device` is resolved where you start `lawfinder` and used on the workers: give
  `--device cpu` unless every worker has a GPU.
- A bad or unreachable `--scheduler` stops the run with one line when the fit stage starts
  (`error: cannot reach the Dask scheduler at ...`, exit status 2), before anything is fitted.
- `lawfinder` must stay connected while the chunks run; each finished chunk is checkpointed in
  the run folder, so after an interruption `--resume` fits only the missing ones.
- The formula DAG and the window arrays are sent to each worker once; each chunk sends back a
  small table. A worker that dies mid-chunk has its chunk re-run on another worker by the
  scheduler (up to `distributed.scheduler.allowed-failures` deaths per chunk, default 3), so
  results are neither lost nor duplicated.
- The Dask scheduler port has no authentication: keep it on a private network, or configure
  Dask's TLS (`distributed.comm.tls.*`) and use a `tls://` address.
- Scaling measured on a 2-core machine and projected for more cores: `results/scaling.md`."""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[7, 8])
    parser.add_argument("--workers", nargs="*", type=int, default=[1, 2, 4])
    parser.add_argument("--workers-at", action="append", default=[], metavar="SIZE=N,N",
                        help="other worker counts for one size, e.g. 8=1,2")  # fmt: skip
    parser.add_argument("--chunk-size", type=int, default=None, help="default: FitConfig's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting; the fastest is kept")
    parser.add_argument("--local-at", nargs="*", type=int, default=[7],
                        help="sizes that also get the in-process (jobs=1, no Dask) reference run")  # fmt: skip
    parser.add_argument("--append", action="store_true", help="merge into the earlier results in --json (fastest run per setting kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "scaling.md")
    parser.add_argument("--json", type=Path, default=Path("/tmp/lawfinder-scaling.json"),
                        help="raw numbers (kept out of results/ by default)")  # fmt: skip
    args = parser.parse_args(argv)

    import dask
    import joblib

    from lawfinder.discovery.stage import FitConfig

    torch.set_num_threads(1)
    logging.getLogger("distributed.nanny").setLevel(logging.ERROR)  # "still alive after 4 s, killing" at close
    chunk_size = args.chunk_size or FitConfig().chunk_size
    per_size = {int(k): [int(w) for w in v.split(",")] for k, v in (s.split("=") for s in args.workers_at)}
    data = {"metadata": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "dask": dask.__version__,
                         "joblib": joblib.__version__, "python": platform.python_version(), "seed": args.seed},
            "results": []}  # fmt: skip
    earlier = {}
    if args.append and args.json.exists():
        earlier = {r["size"]: r for r in json.loads(args.json.read_text())["results"]}
        data["results"] = [r for r in earlier.values() if r["size"] not in args.sizes]

    def log(msg):
        print(msg, flush=True)

    for size in args.sizes:
        workers = per_size.get(size, args.workers)
        result = measure(size, workers, chunk_size, args.seed, size in args.local_at, args.repeat, log)
        if size in earlier:
            result = merge(earlier[size], result)
        data["results"].append(analyse(result))
        data["results"].sort(key=lambda r: r["size"])
        args.json.write_text(json.dumps(data, indent=1) + "\n")
        text = markdown(data)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    print(f"\nwrote {args.out} (raw numbers: {args.json})")


if __name__ == "__main__":
    main()
