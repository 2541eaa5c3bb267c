"""The ranking stage through `lawfinder.parallel.run_chunks`: same ranking in-process, in local
processes (--jobs 2) and on a Dask cluster (--backend dask)."""

import pytest
import torch

import dsl
from lawfinder.data.systems import get_system
from lawfinder.ranking.compare import Law
from lawfinder.ranking.config import RankingConfig
from lawfinder.ranking.stage import evaluate_candidates

UNITS = {"q": "m", "p": "m"}
pytestmark = pytest.mark.slow  # ~2.5 min on 2 shared cores (worker start-up dominates)


def rank(out, **parallel):
    traj = get_system("spring").load()
    laws = [Law(name="q**2 + p**2", node=dsl.parse("q**2 + 1.0*p**2", UNITS).root, ratio=1e9, size=7),
            Law(name="q**2 + 2*p**2", node=dsl.parse("q**2 + 2.0*p**2", UNITS).root, ratio=1e2, size=7)]  # fmt: skip
    config = RankingConfig(seeds=2, epochs=2, predictor_steps=50, top=8, **parallel)
    return evaluate_candidates(traj, laws, config, out=out, device=torch.device("cpu"), oracle=None,
                               oracle_fn=None, resume=False, log=lambda _: None, timings={})  # fmt: skip


def _numbers(result):
    return [(e["formula"], [(p["inner_lr"], p["outer_lr"], p["val_mse"], p["test_rmse"]) for p in e["per_seed"]])
            for e in result["ranking"]]  # fmt: skip


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return rank(tmp_path_factory.mktemp("serial"))


def test_local_processes_give_the_same_ranking(serial, tmp_path):
    assert _numbers(rank(tmp_path, jobs=2)) == _numbers(serial)


def test_dask_gives_the_same_ranking(serial, tmp_path):
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:  # fmt: skip
        got = rank(tmp_path, backend="dask", scheduler=cluster.scheduler_address)
    assert _numbers(got) == _numbers(serial)
