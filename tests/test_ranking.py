"""Ranking: the paired per-seed rule, its fallback, merging of rewrites, and the held-out stage."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import dsl
from lawfinder.data.systems import get_system
from lawfinder.errors import UserError
from lawfinder.ranking.compare import RATES, Law, beats, dedupe, order_laws, screen
from lawfinder.ranking.config import RankingConfig
from lawfinder.ranking.stage import SETTINGS, evaluate_candidates, split_validation
from lawfinder.tailoring import NoetherLoss, tailored_predict
from lawfinder.tailoring.predictor import MLP, train_predictor
from tests.tolerance import assert_close

torch.set_num_threads(1)
NAMES = ["p^2 - 3 cos q", "p^2 - 1 cos q", "q^2 + p^2", "p", "1e4 (p^2 - 3 cos q)"]
DT = 0.068
UNITS = {"q": "rad", "p": "kg*m**2/s"}


def bank(x):
    q, p = x[..., 0:1], x[..., 1:2]
    true = p**2 - 3 * torch.cos(q)
    return torch.cat([true, p**2 - torch.cos(q), q**2 + p**2, p, 1e4 * true], -1)


@pytest.fixture(scope="module")
def setup():
    data = get_system("pendulum").load()
    train, test = data.train(), data.test()
    x, dxdt = train.derivative_pairs()
    torch.manual_seed(0)
    model = train_predictor(x, dxdt, steps=400, model=MLP(2, hidden=32), seed=0)
    return model, train, test


def test_screen_equals_one_call_per_candidate_and_rate(setup):
    model, train, _ = setup
    x, dxdt = train.derivative_pairs()
    x, dxdt = x[:100], dxdt[:100]
    rates = (0.01, 0.1, 1.0)
    table = screen(model, bank, x, dxdt, dt=DT, rates=rates, chunk=2)
    xs, ys = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(dxdt, dtype=torch.float32)
    for c in range(len(NAMES)):
        loss = NoetherLoss(lambda z, c=c: bank(z)[..., c : c + 1], dt=DT)
        mses = []
        for r in rates:
            with torch.no_grad():
                pred = tailored_predict(model, loss, xs, lr=r, method="vmap")
            mses.append(float(((pred - ys) ** 2).mean()))
        mses = np.nan_to_num(np.array(mses), nan=np.inf)
        got = table.loc[c, [f"ratio@{r:.3g}" for r in rates]].to_numpy(float) * table.base_mse[c]
        assert_close(got, mses, dtype=np.float32, rtol=1e-3)
        assert table.best_lr[c] == rates[int(np.argmin(mses))]


def test_screen_checks_the_bank(setup):
    model, train, _ = setup
    with pytest.raises(UserError, match="n_candidates"):
        screen(model, lambda x: x.sum(-1), *train.derivative_pairs(), dt=DT)
    assert len(RATES) == 9 and RATES[0] == pytest.approx(1e-3) and RATES[-1] == pytest.approx(10.0)


def test_beats_needs_a_paired_difference_beyond_the_seed_spread():
    a = np.log([1.0, 2.0, 4.0, 8.0])
    assert beats(a - 1.0, a)  # 2.7x better in every seed: spread 0
    assert not beats(a, a - 1.0)
    noisy = a + np.array([-1.0, 1.2, -0.9, 1.1])  # better on average, but within the noise
    assert noisy.mean() < a.mean() + 0.2 and not beats(noisy - 0.1, a)
    assert not beats(a[:1] - 5.0, a[:1])  # one seed has no spread: never separates


def test_below_five_seeds_beating_the_spread_must_also_be_significant():
    """kepler, 2 seeds: a Runge-Lenz component 1.6% and 3.5% below angular momentum on validation is
    beyond the spread (t = 2.5) but not significant (t must exceed 6.3 at 2 seeds); at 5 seeds the
    spread rule alone decides, as before (it implies the t-test there)."""
    from scipy import stats

    lrl, ang = np.log([0.5048, 0.3371]), np.log([0.5128, 0.3495])
    d = lrl - ang
    assert d.mean() < -d.std(ddof=1) and not beats(lrl, ang)
    assert beats(lrl - 1.0, ang)  # a large, consistent difference still separates at 2 seeds
    rng = np.random.default_rng(0)
    for n in (5, 6, 10):
        for _ in range(200):
            x, y = rng.normal(size=n), rng.normal(size=n)
            e = x - y
            spread_rule = e.mean() < 0 and -e.mean() > e.std(ddof=1)
            assert beats(x, y) == spread_rule
            if spread_rule:
                assert -e.mean() / (e.std(ddof=1) / np.sqrt(n)) > stats.t.ppf(0.95, n - 1)


def test_order_laws_falls_back_to_the_given_order_unless_separated():
    same = [np.log([1.0, 1.1, 0.9]), np.log([1.1, 0.9, 1.0]), np.log([0.9, 1.0, 1.1])]
    order, score = order_laws(same)
    assert order == [0, 1, 2] and not score.any()
    helps = [np.log([1.0, 1.1, 0.9]), np.log([0.1, 0.12, 0.09]), np.log([1.0, 1.05, 0.92])]
    order, score = order_laws(helps)
    assert order[0] == 1 and order[1:] == [0, 2] and score[1] == 2


def law(text, ratio, size=7):
    return Law(name=text, node=dsl.parse(text, UNITS).root, ratio=ratio, size=size)


def test_dedupe_merges_sign_and_affine_rewrites_but_not_approximations():
    states = np.concatenate(get_system("pendulum").load().train().states)
    laws = [law("p**2 + 1.024*q**2", 527), law("p**2 - 3.0*cos(q)", 3e12),
            law("3.0*cos(q) - p**2", 1e12), law("2.5 - 0.5*p**2 + 1.5*cos(q)", 1e11)]  # fmt: skip
    distinct, dupes = dedupe(laws, states, ["q", "p"])
    assert [d.name for d in distinct] == ["p**2 - 3.0*cos(q)", "p**2 + 1.024*q**2"]
    assert sorted(distinct[0].duplicates) == sorted(dupes) and len(dupes) == 2


@pytest.fixture(scope="module")
def pendulum_ranking(tmp_path_factory):
    """The held-out ranking stage on the pendulum with the exact law and two accepted
    approximations (the ones the paper-style 100x test accepted), at fast settings (with 200
    pre-training steps the predictor's validation MSE is 0.14, 300x the default's, and the
    approximation `cos(0.94 p) + cos(q)` then helped it more than the law in both seeds)."""
    traj = get_system("pendulum").load()
    laws = [law("p**2 + 1.024*q**2", 527), law("cos(0.9381*p) + cos(q)", 673, size=6),
            law("p**2 - 3.0000004*cos(q)", 3.2e12)]  # fmt: skip
    config = RankingConfig(seeds=2, epochs=10, predictor_steps=1000, top=3 * len(SETTINGS))
    out = tmp_path_factory.mktemp("rank")
    timings = {}
    result = evaluate_candidates(traj, laws, config, out=out, device=torch.device("cpu"), oracle=None,
                                 oracle_fn=None, resume=False, log=lambda _: None, timings=timings)  # fmt: skip
    return result, out


def test_exact_law_ranks_first_among_accepted_approximations(pendulum_ranking):
    result, out = pendulum_ranking
    ranking = result["ranking"]
    assert ranking[0]["formula"] == "p**2 - 3.0000004*cos(q)"
    assert [e["rank"] for e in ranking] == [1, 2, 3] and all(e["meta_tailored"] for e in ranking)
    first = ranking[0]
    assert len(first["per_seed"]) == 2 and len(first["seed_ranks"]) == 2
    assert 0 <= first["seeds_helped"] <= 2 and first["ranked_by"] in (
        "tailoring benefit", "conservation evidence and simplicity")  # fmt: skip
    assert {"vanilla", "control"} <= set(result["baselines"])
    assert "the seed spread and a paired t-test at 0.05 (2 seeds)" in result["ranking_basis"]
    assert result["baselines"]["control"]["what"].startswith("the predictor fine-tuned")
    runs = pd.read_parquet(out / "ranking.parquet")
    # 2 seeds x (vanilla + 2 controls + 3 laws x 4 settings); one checkpoint per seed and key
    assert len(runs) == 2 * (1 + 2 + 3 * len(SETTINGS))
    assert len(list((out / "ranking_runs").iterdir())) == 2 * (1 + 3)
    # test numbers exist only for the settings chosen on validation (one per key and seed)
    assert runs.test_rmse.notna().sum() == 2 * (1 + 1 + 3)


def test_rates_and_laws_are_chosen_on_validation_never_on_test(pendulum_ranking):
    result, out = pendulum_ranking
    runs = pd.read_parquet(out / "ranking.parquet")
    for entry in result["ranking"]:
        for seed in entry["per_seed"]:
            rows = runs[(runs.seed == seed["seed"]) & runs.key.str.startswith("law")]
            same = rows[np.isclose(rows.val_mse, seed["val_mse"])]
            assert len(same) >= 1 and math.isclose(same.test_rmse.iloc[0], seed["test_rmse"])
            assert seed["val_mse"] == min(r for r in rows[rows.key == same.key.iloc[0]].val_mse)


def test_split_validation_in_time_and_by_trajectory():
    real = get_system("real-pendulum").load().train()
    fit, val = split_validation(real)
    assert fit.n_trajectories == val.n_trajectories == 1
    assert fit.times[0][-1] < val.times[0][0] and fit.n_points + val.n_points == real.n_points
    pend = get_system("pendulum").load().train()
    fit, val = split_validation(pend)
    assert fit.n_trajectories + val.n_trajectories == pend.n_trajectories and val.n_trajectories >= 1


def test_kepler_laws_are_tailored_alone_and_as_an_independent_set(tmp_path):
    """Four variables: each law, and the independent laws together, meta-tailored and rolled out."""
    traj = get_system("kepler").load()
    units = dict(traj.units)
    texts = ["x*vy - y*vx", "vx**2 + vy**2 - 2/sqrt(x**2 + y**2)"]
    laws = [Law(name=t, node=dsl.parse(t, units).root, ratio=1e12, size=7 + 8 * k, exact=True, units=units,
                evidence={"status": "law", "independent": True}) for k, t in enumerate(texts)]  # fmt: skip
    config = RankingConfig(seeds=1, epochs=3, predictor_steps=200, top=2 * len(SETTINGS))
    result = evaluate_candidates(traj, laws, config, out=tmp_path, device=torch.device("cpu"), oracle=None,
                                 oracle_fn=None, resume=False, log=lambda _: None, timings={})  # fmt: skip
    joint = result["baselines"]["set"]
    assert joint["formulas"] == texts and len(joint["per_seed"]) == 1
    assert {"beats_rank_1", "beaten_by_rank_1", "helps"} <= set(joint)
    assert [e["formula"] for e in result["ranking"]] == texts  # exact laws: simplest first
    runs = pd.read_parquet(tmp_path / "ranking.parquet")
    assert (runs.key == "set").sum() == len(SETTINGS)
    finite = [e["test_rmse"] for e in result["ranking"]] + [joint["test_rmse"]]
    assert all(v is not None and math.isfinite(v) for v in finite)  # the 1/r law does not blow up


def test_an_oracle_equal_to_a_law_up_to_a_constant_shares_its_runs():
    from lawfinder.ranking.stage import same_function

    system = get_system("pendulum")
    states = system.load().train().states[0]
    node = lambda text: dsl.parse(text, system.units).root  # noqa: E731
    assert same_function(node("p**2 - 3.0000000000000004*cos(q)"), node("p**2 - 3*cos(q) + 5"), states, ["q", "p"])
    assert not same_function(node("p**2 - 3*cos(q)"), node("2*p**2 - 6*cos(q)"), states, ["q", "p"])  # other inner step
    assert not same_function(node("p**2 - 3*cos(q)"), node("p**2 - 3.001*cos(q)"), states, ["q", "p"])


def test_the_executor_runs_local_functions_in_workers_with_the_same_results():
    from lawfinder.parallel import executor

    offset = 3
    for jobs in (1, 2):
        with executor(jobs) as pool:
            futures = [pool.submit(lambda k: (k + offset, torch.get_num_threads()), k) for k in range(4)]
            assert [f.result() for f in futures] == [(k + 3, 1) for k in range(4)]
