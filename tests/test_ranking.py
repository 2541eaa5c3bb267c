"""Ranking: a batched screen over candidates x rates, then meta-tailoring of the best few."""

import numpy as np
import pytest
import torch

from lawfinder.errors import UserError
from lawfinder.predictor import MLP, train_predictor
from lawfinder.ranking import RATES, rank_candidates, screen
from lawfinder.systems import get_system
from lawfinder.tailoring import NoetherLoss, tailored_predict
from tests.tolerance import assert_close

torch.set_num_threads(1)
NAMES = ["p^2 - 3 cos q", "p^2 - 1 cos q", "q^2 + p^2", "p", "1e4 (p^2 - 3 cos q)"]
DT = 0.068


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


def test_screen_prefers_the_true_energy(setup):
    model, train, _ = setup
    x, dxdt = train.derivative_pairs()
    table = screen(model, bank, x, dxdt, dt=DT)
    assert list(table.columns[:5]) == [
        "candidate",
        "best_lr",
        "screen_mse",
        "base_mse",
        "screen_score",
    ]
    assert len(table) == len(NAMES) and table.screen_score.idxmin() in (0, 4)
    assert table.screen_score[0] < 1.0
    assert table.best_lr[4] < table.best_lr[0]


def test_rank_candidates_table_and_divergence(setup):
    model, train, test = setup
    ranking = rank_candidates(
        model, bank, NAMES, train, test, dt=DT, top=3, epochs=3, meta_rates=(0.1, 10.0), substeps=1
    )
    table = ranking.table
    expected = {"rank", "candidate", "name", "lr", "screen_score", "meta_train_mse", "diverged"}
    assert expected | {"train_rollout_mse", "test_rollout_rmse"} <= set(table.columns)
    assert len(table) == 6 and list(table["rank"]) == list(range(1, 7))
    ok = table[~table.diverged]
    assert ok.train_rollout_mse.is_monotonic_increasing and len(ok) >= 1
    assert table.diverged.any()
    assert table.tail(int(table.diverged.sum())).diverged.all()
    assert set(ranking.timings) == {"screen", "meta", "rollouts", "total"}
    assert all((int(c), float(r)) in ranking.models for c, r in zip(ok.candidate, ok.lr))
    assert len(ranking.screen) == len(NAMES) and np.isfinite(ranking.best.test_rollout_rmse)


def test_rank_candidates_checks_names(setup):
    model, train, test = setup
    with pytest.raises(UserError, match="as many names"):
        rank_candidates(model, bank, NAMES[:2], train, test, dt=DT)
    with pytest.raises(UserError, match="n_candidates"):
        screen(model, lambda x: x.sum(-1), *train.derivative_pairs(), dt=DT)
    assert len(RATES) == 9 and RATES[0] == pytest.approx(1e-3) and RATES[-1] == pytest.approx(10.0)
