"""The Dask back end of `lawfinder.parallel`: same tables as the local back end, survives a dead worker.

One `LocalCluster` (2 worker processes, 1 thread each, loopback only, no
dashboard) is started for the module.
"""

import os
import signal
import time

import pandas as pd
import pytest

pytest.importorskip("dask.distributed")

from dask.distributed import get_task_stream  # noqa: E402

import dsl  # noqa: E402
from lawfinder import parallel  # noqa: E402
from lawfinder.cli.app import main  # noqa: E402
from lawfinder.data.systems import get_system  # noqa: E402
from lawfinder.discovery.stage import FitConfig, fit_conservation  # noqa: E402
from lawfinder.errors import UserError  # noqa: E402

# dashboard_address=None still starts the scheduler's HTTP server (on 127.0.0.1 here); a second
# cluster, or another one on this machine, only moves it to another port, with a warning.
pytestmark = pytest.mark.filterwarnings("ignore:Port .* is already in use")


def exit_code(args) -> int:
    """`lawfinder ARGS` in this process: 0 on success, else the exit status."""
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        yield cluster, client


@pytest.fixture(scope="module")
def pendulum():
    """The pendulum and its formulas up to size 5 (306) and size 6 (1,551)."""
    system = get_system("pendulum")
    return system.load(), {n: dsl.FormulaSet.enumerate(system.units, n) for n in (5, 6)}


def fit(pendulum, size, chunk_size, cluster=None, progress=None):
    traj, formulas = pendulum
    where = {} if cluster is None else {"backend": "dask", "scheduler": cluster[0].scheduler_address}
    return fit_conservation(traj, formulas[size], FitConfig(chunk_size=chunk_size, **where), progress=progress)


def test_dask_gives_the_local_table(cluster, pendulum):
    n = len(pendulum[1][5].enumeration.roots)
    assert n > 5 * 50  # several chunks, so both workers get some
    local = fit(pendulum, 5, 50)
    with get_task_stream(client=cluster[1]) as stream:
        remote = fit(pendulum, 5, 50, cluster)
    assert len({task["worker"] for task in stream.data}) == 2  # both workers fitted chunks
    pd.testing.assert_frame_equal(remote, local, check_exact=True)


def test_dask_reads_the_scheduler_from_the_environment(cluster, monkeypatch):
    monkeypatch.setenv(parallel.ENV_SCHEDULER, cluster[0].scheduler_address)
    tasks = [(pow, (k, 2)) for k in range(7)]
    assert list(parallel.run_chunks(tasks, backend="dask")) == [k * k for k in range(7)]


def test_a_one_thread_cluster_still_runs_the_tasks_on_it(tmp_path):
    """joblib runs n_jobs == 1 in the caller; the tasks must still go to the lone worker."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(
        processes=True, n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=60)
        worker_pid = next(iter(client.run(os.getpid).values()))
        scheduler_file = str(tmp_path / "scheduler.json")  # also: --scheduler takes a scheduler file
        client.write_scheduler_file(scheduler_file)
        pids = list(parallel.run_chunks([(os.getpid, ())] * 3, backend="dask", scheduler=scheduler_file))
    assert pids == [worker_pid] * 3


def test_killing_a_worker_mid_run_gives_the_same_table(cluster, pendulum):
    """Size 6 in chunks of 150: 11 chunks, the first ones (parameter-free formulas) cheap, the later ones
    ~0.5 s, so once a chunk is back a worker is found busy with one for 50 ms and killed."""
    reference = fit(pendulum, 6, 150)
    _, client = cluster
    killed = {}

    def kill_a_busy_worker(done, total):
        if done < 1 or killed:
            return
        deadline, seen, busy = time.time() + 10, {}, {}
        while time.time() < deadline:  # a worker with the same chunk in flight 50 ms apart: not about to finish
            now = {w: set(keys) for w, keys in client.processing().items() if keys}
            busy = {w: keys for w, keys in now.items() if keys & seen.get(w, set())}
            if busy:
                break
            seen = now
            time.sleep(0.05)
        assert busy, "no chunk in flight to interrupt"
        address, keys = next(iter(busy.items()))
        pid = client.run(os.getpid, workers=[address])[address]
        os.kill(pid, signal.SIGKILL)
        killed.update(address=address, pid=pid, keys=list(keys), done=done, total=total)

    with get_task_stream(client=client) as stream:
        table = fit(pendulum, 6, 150, cluster, progress=kill_a_busy_worker)
    assert killed and killed["done"] < killed["total"] - 1, killed  # chunks were still to come
    pd.testing.assert_frame_equal(table, reference, check_exact=True)
    alive = {info["pid"] for info in client.scheduler_info()["workers"].values() if "pid" in info}
    assert killed["pid"] not in alive
    finished = {task["key"]: task["worker"] for task in stream.data}
    for key in killed["keys"]:  # the interrupted chunk was run again on another worker
        assert finished.get(key) not in (None, killed["address"]), (key, finished.get(key))


def test_cli_fit_on_the_cluster(cluster, tmp_path, capsys):
    address = cluster[0].scheduler_address
    common = ["fit", "--system", "pendulum", "--max-size", "5", "--quiet"]
    for name, extra in (("local", []), ("dask", ["--backend", "dask", "--scheduler", address])):
        assert exit_code(common + ["--out", str(tmp_path / name)] + extra) == 0, capsys.readouterr().err
    local = pd.read_parquet(tmp_path / "local" / "candidates.parquet")
    remote = pd.read_parquet(tmp_path / "dask" / "candidates.parquet")
    pd.testing.assert_frame_equal(remote, local, check_exact=True)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "nonsense:::", "foo://host:1", "127.0.0.1"])
def test_a_bad_scheduler_is_a_one_line_user_error(address, monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(UserError) as err:
        parallel.run_chunks([(pow, (2, 2))], backend="dask", scheduler=address)
    assert "\n" not in str(err.value) and address in str(err.value)


def test_cli_bad_scheduler_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1.0)
    args = ["fit", "--system", "pendulum", "--max-size", "2", "--quiet", "--out", str(tmp_path)]
    code = exit_code(args + ["--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:1") and "\n" not in err


def test_backend_options_are_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(parallel.ENV_SCHEDULER, raising=False)
    args = ["fit", "--system", "pendulum", "--max-size", "2", "--quiet", "--out", str(tmp_path)]
    for extra, message in (
        (["--backend", "dask"], "--backend dask needs --scheduler"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler goes with --backend dask"),
    ):
        assert exit_code(args + extra) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(UserError, match="unknown back end"):
        parallel.run_chunks([(pow, (2, 2))], backend="spark")


def test_the_environment_alone_does_not_switch_the_backend(tmp_path, monkeypatch):
    monkeypatch.setenv(parallel.ENV_SCHEDULER, "tcp://127.0.0.1:1")  # unreachable: must not be used
    args = ["fit", "--system", "pendulum", "--max-size", "3", "--quiet", "--out", str(tmp_path)]
    assert exit_code(args) == 0
    assert (tmp_path / "candidates.parquet").exists()
