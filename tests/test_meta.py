"""Meta-tailoring: second-order fine-tuning that reports divergence instead of raising."""

import copy

import numpy as np
import pytest
import torch

from lawfinder.errors import UserError
from lawfinder.tailoring import NoetherLoss, tailored_predict
from lawfinder.tailoring.meta import meta_tailor
from lawfinder.tailoring.predictor import MLP

torch.set_num_threads(1)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def energy(x):
    return x[..., 1:2] ** 2 - 3 * torch.cos(x[..., 0:1])


def problem(device, n=64, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.uniform(-1.5, 1.5, size=(n, 2))
    dxdt = np.stack([2 * x[:, 1], -3 * np.sin(x[:, 0])], 1)
    torch.manual_seed(seed)
    return MLP(2, hidden=16).to(device), x, dxdt


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [None, 16])
def test_meta_tailoring_lowers_the_tailored_task_loss(device, batch_size):
    model, x, dxdt = problem(device)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = NoetherLoss(energy, dt=0.1)
    res = meta_tailor(
        model, loss, x, dxdt, inner_lr=0.1, epochs=30, outer_lr=1e-2, batch_size=batch_size
    )
    assert res.status == "ok" and not res.diverged and len(res.losses) == 30
    assert res.final_loss < 0.5 * res.initial_loss
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    xs = torch.as_tensor(x, dtype=torch.float32, device=device)
    with torch.no_grad():
        pred = tailored_predict(res.model, loss, xs, lr=0.1)
    mse = float(((pred.cpu() - torch.as_tensor(dxdt, dtype=torch.float32)) ** 2).mean())
    assert mse == pytest.approx(res.final_loss, rel=1e-4)


def _expected_adam_step(model, loss, x, y, lr, outer_lr, first_order):
    """One Adam step (its first: ``theta - outer_lr * g / (|g| + eps)``) on the meta-loss, with the
    gradient ``g`` computed independently by torch.func, through the inner step or not."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def inner(p, xi):
        return loss(xi[None], functional_call(model, p, (xi[None],))).sum()

    def adapted(p, xi):
        step = grad(inner)(p, xi)
        if first_order:
            step = {k: v.detach() for k, v in step.items()}
        return functional_call(model, {k: p[k] - lr * step[k] for k in p}, (xi[None],))[0]

    def task(p):
        return ((vmap(adapted, in_dims=(None, 0))(p, x) - y) ** 2).mean()

    g = grad(task)(params)
    return {k: params[k] - outer_lr * g[k] / (g[k].abs() + 1e-8) for k in params}, g


def test_meta_gradient_is_second_order():
    model, x, dxdt = problem("cpu")
    model = model.double()
    xs, ys = torch.as_tensor(x), torch.as_tensor(dxdt)
    loss = NoetherLoss(energy, dt=0.1)
    lr, outer = 0.5, 1e-2
    got = dict(meta_tailor(model, loss, x, dxdt, inner_lr=lr, epochs=1, outer_lr=outer).model.named_parameters())
    second, g2 = _expected_adam_step(model, loss, xs, ys, lr, outer, first_order=False)
    first, g1 = _expected_adam_step(model, loss, xs, ys, lr, outer, first_order=True)
    differs = 0
    for k in second:
        clear = g2[k].abs() > 1e-6  # where the sign of the gradient is not a rounding question
        assert torch.allclose(got[k].detach()[clear], second[k][clear], atol=1e-9), k
        differs += int((~torch.isclose(first[k], second[k], atol=1e-9) & clear).sum())
    # The test can tell a first-order (FOMAML) implementation from a second-order one:
    assert differs > 0.01 * sum(v.numel() for v in second.values())


def test_divergence_is_caught_and_reported():
    model, x, dxdt = problem("cpu")
    broken = NoetherLoss(lambda z: torch.sqrt(energy(z) - 10.0), dt=0.1)
    res = meta_tailor(model, broken, x, dxdt, inner_lr=0.1, epochs=5)
    assert res.status == "diverged" and res.reason
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    huge = NoetherLoss(lambda z: 1e4 * energy(z), dt=0.1)
    res = meta_tailor(model, huge, x, dxdt, inner_lr=10.0, epochs=2)
    assert res.status == "diverged" and res.reason
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_explosion_threshold_marks_divergence():
    model, x, dxdt = problem("cpu")
    loss = NoetherLoss(energy, dt=0.1)
    res = meta_tailor(model, loss, x, dxdt, inner_lr=0.1, epochs=20, outer_lr=10.0, explode=2.0)
    assert res.diverged and ("exceeded" in res.reason or "non-finite" in res.reason)


def test_bad_arguments():
    model, x, dxdt = problem("cpu")
    loss = NoetherLoss(energy, dt=0.1)
    with pytest.raises(UserError, match="epochs"):
        meta_tailor(model, loss, x, dxdt, inner_lr=0.1, epochs=-1)
    with pytest.raises(UserError, match="batch_size"):
        meta_tailor(model, loss, x, dxdt, inner_lr=0.1, batch_size=0)
    with pytest.raises(UserError, match="rows"):
        meta_tailor(model, loss, x, dxdt[:5], inner_lr=0.1)


def test_a_continued_run_equals_one_uninterrupted_run():
    """`optimizer_state` carries Adam's moments: 3 + 2 epochs are the same numbers as 5."""
    model, x, dxdt = problem("cpu")
    loss = NoetherLoss(energy, "infinitesimal", dt=0.1)
    whole = meta_tailor(model, loss, x, dxdt, inner_lr=0.1, epochs=5, outer_lr=1e-3)
    first = meta_tailor(model, loss, x, dxdt, inner_lr=0.1, epochs=3, outer_lr=1e-3)
    rest = meta_tailor(first.model, loss, x, dxdt, inner_lr=0.1, epochs=2, outer_lr=1e-3,
                       optimizer_state=first.optimizer_state)  # fmt: skip
    for a, b in zip(whole.model.parameters(), rest.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("batch_size", [None, 7])
def test_a_resumed_run_equals_one_uninterrupted_run(batch_size):
    """`resume` continues model, Adam state, mini-batch order, losses and divergence yardsticks."""
    model, x, dxdt = problem("cpu")
    loss = NoetherLoss(energy, "normalised", dt=0.1)
    kw = {"inner_lr": 0.1, "outer_lr": 1e-3, "batch_size": batch_size, "seed": 3}
    whole = meta_tailor(model, loss, x, dxdt, epochs=5, **kw)
    first = meta_tailor(model, loss, x, dxdt, epochs=2, finish=False, **kw)
    second = meta_tailor(None, loss, x, dxdt, epochs=1, resume=first, finish=False, **kw)
    rest = meta_tailor(None, loss, x, dxdt, epochs=2, resume=second, **kw)
    for a, b in zip(whole.model.parameters(), rest.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert rest.losses == whole.losses and len(rest.losses) == 5
    assert (rest.initial_loss, rest.reference, rest.scale) == (whole.initial_loss, whole.reference, whole.scale)
    assert rest.final_loss == whole.final_loss
    for a, b in zip(first.model.parameters(), model.parameters()):  # resuming copies: the first run stays
        assert not torch.equal(a, b)
    first.status = "diverged"
    with pytest.raises(UserError, match="resumed"):
        meta_tailor(None, loss, x, dxdt, epochs=1, resume=first, **kw)


def test_inner_rate_zero_is_plain_fine_tuning():
    """At inner rate 0 the tailored prediction is the model's own: the control fine-tunes on the MSE."""
    from lawfinder.tailoring.predictor import adam_fit, as_tensor

    model, x, dxdt = problem("cpu")
    res = meta_tailor(model, NoetherLoss(energy, "infinitesimal", dt=0.1), x, dxdt, inner_lr=0.0, epochs=4,
                      outer_lr=1e-3)  # fmt: skip
    plain = copy.deepcopy(model)
    adam_fit(plain, as_tensor(x), as_tensor(dxdt), steps=4, lr=1e-3, weight_decay=0.0)
    for a, b in zip(res.model.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lowrank = tailored_predict(res.model, NoetherLoss(energy, "infinitesimal", dt=0.1), as_tensor(x), lr=0.0)
    torch.testing.assert_close(lowrank, res.model(as_tensor(x)))
