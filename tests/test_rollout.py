"""Rollouts, the baseline predictor and the HNN peer."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from lawfinder.data.systems import get_system
from lawfinder.errors import UserError
from lawfinder.ranking.hnn import HNN, train_hnn
from lawfinder.ranking.rollout import evaluate_rollout, integrate, vector_field
from lawfinder.tailoring import NoetherLoss
from lawfinder.tailoring.predictor import MLP, mlp_from_state_dict, train_predictor
from tests.tolerance import assert_close

torch.set_num_threads(1)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def energy(x):
    return x[..., 1:2] ** 2 - 3 * torch.cos(x[..., 0:1])


def pendulum_field(x):
    return torch.stack([2 * x[..., 1], -3 * torch.sin(x[..., 0])], -1)


def reference(y0, t):
    fun = lambda _, y: [2 * y[1], -3 * np.sin(y[0])]
    return solve_ivp(fun, (t[0], t[-1]), y0, t_eval=t, rtol=1e-12, atol=1e-12).y.T


@pytest.fixture(scope="module")
def pendulum():
    data = get_system("pendulum").load()
    return data.train(), data.test()


@pytest.mark.parametrize("device", DEVICES)
def test_rk4_matches_solve_ivp_on_the_true_field(device):
    t = np.linspace(0, 3, 45)
    x0 = np.array([[1.0, 0.5], [-0.3, 1.2], [2.0, 0.0]])
    got = integrate(pendulum_field, torch.tensor(x0, device=device), torch.tensor(t), substeps=4)
    expected = np.stack([reference(y0, t) for y0 in x0])
    assert_close(got.cpu().numpy(), expected, atol=5e-7, rtol=0)


def test_uneven_per_trajectory_grids():
    t1 = np.array([0.0, 0.1, 0.3, 0.35, 0.8])
    t2 = np.array([0.0, 0.2, 0.25, 0.6, 0.7])
    x0 = np.array([[1.0, 0.5], [-0.3, 1.2]])
    got = integrate(pendulum_field, torch.tensor(x0), torch.tensor(np.stack([t1, t2])), substeps=8)
    assert_close(got[0].numpy(), reference(x0[0], t1), atol=1e-5, rtol=0)
    assert_close(got[1].numpy(), reference(x0[1], t2), atol=1e-5, rtol=0)


def test_metrics_of_the_exact_field_are_zero(pendulum):
    _, test = pendulum
    numpy_energy = get_system("pendulum").oracle_fn
    res = evaluate_rollout(
        pendulum_field, test.states[:4], test.times[:4], energy=numpy_energy, dtype=torch.float64
    )
    assert res.predicted.shape == res.target.shape == (4, 45, 2)
    assert res.rmse < 1e-5 and res.end_mse < 1e-9 and res.mse_per_step.shape == (45,)
    assert np.abs(res.drift).max() < 1e-5 and np.abs(res.true_drift).max() < 1e-5
    with pytest.raises(UserError, match="same number of points"):
        evaluate_rollout(
            pendulum_field, [np.zeros((3, 2)), np.zeros((4, 2))], [np.arange(3), np.arange(4)]
        )


def test_oracle_tailoring_conserves_energy_better_than_vanilla(pendulum):
    train, test = pendulum
    x, dxdt = train.derivative_pairs()
    torch.manual_seed(0)
    model = train_predictor(x, dxdt, steps=300, model=MLP(2, hidden=32), seed=0)
    states, times = test.states[:5], test.times[:5]
    oracle = get_system("pendulum").oracle_fn

    def violation(res):
        e = oracle(res.predicted)
        return np.abs(e - e[:, :1]).mean()

    vanilla = violation(evaluate_rollout(vector_field(model), states, times, substeps=1))
    tailored = {}
    for lr in (0.1, 0.3):
        field = vector_field(model, NoetherLoss(energy, dt=0.068), lr=lr)
        tailored[lr] = violation(evaluate_rollout(field, states, times, substeps=1))
    assert tailored[0.3] < tailored[0.1] < vanilla
    assert tailored[0.3] < 0.5 * vanilla


def test_train_predictor_fits_and_round_trips(pendulum):
    x, dxdt = pendulum[0].derivative_pairs()
    model = train_predictor(x[:200], dxdt[:200], steps=150, seed=3)
    assert isinstance(model, MLP) and not model.training
    xs = torch.as_tensor(x[:200], dtype=torch.float32)
    mse = ((model(xs) - torch.as_tensor(dxdt[:200], dtype=torch.float32)) ** 2).mean()
    assert mse < 0.1 * float((torch.as_tensor(dxdt[:200]) ** 2).mean())
    again = mlp_from_state_dict(model.state_dict())
    assert torch.equal(again(xs), model(xs))
    assert model.net[4].bias is None
    w = model.net[2].weight
    with pytest.raises(UserError, match="shape"):
        train_predictor(x[:10], dxdt[:9])
    assert w.shape == (200, 200)


def test_hnn_learns_a_conserved_vector_field(pendulum):
    x, dxdt = pendulum[0].derivative_pairs()
    model = train_hnn(x[:300], dxdt[:300], steps=150, seed=0)
    xs = torch.as_tensor(x[:300], dtype=torch.float32)
    with torch.no_grad():
        out = model(xs)
    assert out.shape == (300, 2) and not out.requires_grad
    assert ((out - torch.as_tensor(dxdt[:300], dtype=torch.float32)) ** 2).mean() < 0.1
    res = evaluate_rollout(
        model, pendulum[1].states[:3], pendulum[1].times[:3], energy=model.hamiltonian
    )
    assert np.abs(res.drift).max() < 1e-3
    with pytest.raises(UserError, match="even state dimension"):
        HNN(3)


def test_stacked_rollouts_equal_one_rollout_per_member(pendulum):
    """`evaluate_rollouts` integrates R runs in one pass: each member's metrics as if rolled out alone."""
    from lawfinder.ranking.rollout import evaluate_rollouts
    from lawfinder.tailoring.stacked import StackedMLP

    _, test = pendulum
    states, times = list(test.states[:3]), list(test.times[:3])
    models = [MLP(2) for _ in range(3)]
    loss = NoetherLoss(energy, "infinitesimal", dt=0.07)
    losses, rates = [None, loss, loss], [0.0, 0.1, 1.0]
    stack = StackedMLP([m.state_dict() for m in models], losses, rates)
    together = evaluate_rollouts(stack.tailored, states, times, members=3, energy=energy, substeps=2)
    for model, lss, lr, got in zip(models, losses, rates, together):
        alone = evaluate_rollout(vector_field(model, lss, lr=lr), states, times, energy=energy, substeps=2)
        assert_close(got.predicted, alone.predicted, rtol=1e-4, atol=1e-5)
        assert_close(got.drift, alone.drift, rtol=1e-3, atol=1e-5)


def test_adam_fit_continues_where_it_stopped(pendulum):
    """The refit continues the selection predictor: 30 + 20 steps with the Adam state are 50 steps."""
    from lawfinder.tailoring.predictor import adam_fit, as_tensor

    x, dxdt = (as_tensor(a[:200]) for a in pendulum[0].derivative_pairs())
    torch.manual_seed(0)
    whole, parts = MLP(2), MLP(2)
    parts.load_state_dict(whole.state_dict())
    adam_fit(whole, x, dxdt, steps=50)
    adam_fit(parts, x, dxdt, steps=20, state=adam_fit(parts, x, dxdt, steps=30))
    for a, b in zip(whole.parameters(), parts.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
