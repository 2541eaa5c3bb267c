"""The tailoring core: per-example inner steps equal a loop over examples, gradients are exact."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from lawfinder.errors import UserError
from lawfinder.tailoring import (
    DERIVATIVE_FORMS,
    NoetherLoss,
    conservation_loss,
    predict_with,
    tailor,
    tailored_predict,
)
from lawfinder.tailoring.predictor import MLP, resolve_device
from tests.tolerance import assert_close

torch.set_num_threads(1)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
HORIZON = 3


def close(actual, expected, **kwargs):
    assert_close(actual.detach().cpu().numpy(), expected.detach().cpu().numpy(), **kwargs)


def energy(x):
    return x[..., 1:2] ** 2 - 3 * torch.cos(x[..., 0:1])


def two_laws(x):
    return torch.cat([energy(x), x[..., 0:1] ** 2 + x[..., 1:2] ** 2], -1)


def pendulum_field(x):
    return torch.stack([2 * x[..., 1], -3 * torch.sin(x[..., 0])], -1)


def small_mlp(device, seed=0, d_out=2):
    torch.manual_seed(seed)
    return MLP(2, d_out=d_out, hidden=8).double().to(device)


def sequence_model(device):
    torch.manual_seed(1)
    return nn.Sequential(MLP(2, d_out=2 * HORIZON, hidden=8), nn.Unflatten(-1, (HORIZON, 2))).to(
        device, torch.float64
    )


def loop_reference(model, loss, x, lr, steps, optimizer="sgd", params=None):
    """One fresh copy of the model per example, stepped with torch.optim."""
    outs = []
    for i in range(x.shape[0]):
        clone = copy.deepcopy(model)
        chosen = [
            p
            for n, p in clone.named_parameters()
            if params is None or any(n == q or n.startswith(q + ".") for q in params)
        ]
        opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(chosen, lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss(x[i : i + 1], clone(x[i : i + 1])).sum().backward()
            opt.step()
        outs.append(clone(x[i : i + 1]).detach())
    return torch.cat(outs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("form", ["finite", "central", "infinitesimal", "normalised", "first", "consecutive"])
@pytest.mark.parametrize("method", ["vmap", "lowrank"])
def test_per_example_equals_loop(device, form, method):
    seq = form in ("first", "consecutive")
    model = sequence_model(device) if seq else small_mlp(device)
    loss = NoetherLoss(energy, form, dt=None if seq else 0.1)
    x = torch.randn(5, 2, dtype=torch.float64, device=device)
    got = tailored_predict(model, loss, x, lr=0.3, steps=2, method=method)
    close(got, loop_reference(model, loss, x, 0.3, 2))


@pytest.mark.parametrize("params", [["net.4"], ["net.0.bias", "net.2.weight"]])
@pytest.mark.parametrize("method", ["vmap", "lowrank"])
def test_parameter_subset_equals_loop(params, method):
    model, loss = small_mlp("cpu"), NoetherLoss(energy, dt=0.1)
    x = torch.randn(4, 2, dtype=torch.float64)
    got = tailored_predict(model, loss, x, lr=0.5, params=params, method=method)
    close(got, loop_reference(model, loss, x, 0.5, 1, params=params))


def test_adam_inner_steps_equal_loop():
    model, loss = small_mlp("cpu"), NoetherLoss(energy, dt=0.1)
    x = torch.randn(4, 2, dtype=torch.float64)
    got = tailored_predict(model, loss, x, lr=0.01, steps=3, optimizer="adam")
    close(got, loop_reference(model, loss, x, 0.01, 3, optimizer="adam"), rtol=1e-7)


def test_tailor_returns_per_example_parameters():
    model, loss = small_mlp("cpu"), NoetherLoss(energy, dt=0.1)
    x = torch.randn(6, 2, dtype=torch.float64)
    adapted = tailor(model, loss, x, lr=0.2, params=["net.4"])
    assert set(adapted) == {"net.4.weight"} and adapted["net.4.weight"].shape == (6, 2, 8)
    expected = tailored_predict(model, loss, x, lr=0.2, params=["net.4"])
    close(predict_with(model, adapted, x), expected)


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("method", ["vmap", "lowrank"])
def test_bank_and_rates_are_batched_not_looped(steps, method):
    model = small_mlp("cpu")
    x = torch.randn(5, 2, dtype=torch.float64)
    rates = torch.tensor([0.05, 0.5], dtype=torch.float64)
    bank = NoetherLoss(two_laws, dt=0.1, bank=True)
    got = tailored_predict(model, bank, x, lr=rates, steps=steps, method=method)
    assert got.shape == (2, 2, 5, 2)
    for c in range(2):
        one = NoetherLoss(lambda z, c=c: two_laws(z)[..., c : c + 1], dt=0.1)
        for r, rate in enumerate(rates.tolist()):
            expected = tailored_predict(model, one, x, lr=rate, steps=steps, method="vmap")
            close(got[r, c], expected)


@pytest.mark.parametrize("method", ["vmap", "lowrank"])
def test_gradcheck_through_the_inner_step(method):
    model, loss = small_mlp("cpu"), NoetherLoss(energy, "central", dt=0.1)
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    def fn(w0, w4, xs):
        theta = dict(model.named_parameters())
        theta.update({names[0]: w0, names[-1]: w4})
        return tailored_predict(
            model, loss, xs, lr=0.4, steps=2, theta=theta, create_graph=True, method=method
        )

    w0 = model.net[0].weight.detach().clone().requires_grad_(True)
    w4 = model.net[4].weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (w0, w4, x))


@pytest.mark.parametrize("method", ["vmap", "lowrank"])
def test_first_order_treats_the_inner_gradient_as_constant(method):
    model, loss = small_mlp("cpu"), NoetherLoss(energy, dt=0.1)
    x = torch.randn(4, 2, dtype=torch.float64)
    w = model.net[2].weight
    out = tailored_predict(model, loss, x, lr=0.5, method=method).sum()
    (got,) = torch.autograd.grad(out, w)
    adapted = tailor(model, loss, x, lr=0.5)
    shift = {n: (p - p.detach()).unsqueeze(0) for n, p in model.named_parameters()}
    detached = {n: adapted[n].detach() + shift[n] for n in adapted}
    (expected,) = torch.autograd.grad(predict_with(model, detached, x).sum(), w)
    close(got, expected)
    second = tailored_predict(model, loss, x, lr=0.5, method=method, create_graph=True).sum()
    assert not torch.allclose(torch.autograd.grad(second, w)[0], got)


def test_true_field_has_zero_infinitesimal_loss_and_biased_finite_loss():
    x = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    v = pendulum_field(x)
    dt = 0.07
    values = {f: NoetherLoss(energy, f, dt=dt)(x, v) for f in DERIVATIVE_FORMS}
    assert values["infinitesimal"].abs().max() < 1e-25
    assert values["normalised"].abs().max() < 1e-25
    assert values["central"].mean() < 1e-2 * values["finite"].mean()
    assert values["finite"].mean() > 1e-8


def test_sequence_forms_known_values():
    states = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 4.0]], dtype=torch.float64)
    momentum = lambda s: s[..., 1:2]
    assert conservation_loss(momentum, states, "first").item() == 1 + 9
    assert conservation_loss(momentum, states, "consecutive").item() == 1 + 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "lbfgs"}, "unknown inner optimizer"),
        ({"params": ["nope"]}, "no parameters named"),
        ({"method": "magic"}, "unknown tailoring method"),
        ({"method": "lowrank", "optimizer": "adam"}, "only the 'sgd'"),
        ({"lr": torch.ones(2, 2)}, "1-D tensor of rates"),
        ({"steps": -1}, "steps must be"),
    ],
)
def test_bad_options_raise_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        tailored_predict(small_mlp("cpu"), NoetherLoss(energy, dt=0.1), torch.zeros(2, 2), **kwargs)


def test_lowrank_refuses_models_it_cannot_handle():
    model = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 2)).double()
    x = torch.randn(3, 2, dtype=torch.float64)
    loss = NoetherLoss(energy, dt=0.1)
    with pytest.raises(UserError, match="'lowrank' does not apply"):
        tailored_predict(model, loss, x, method="lowrank")
    close(
        tailored_predict(model, loss, x, lr=0.1),
        tailored_predict(model, loss, x, lr=0.1, method="vmap"),
    )


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, x):
        return self.layer(torch.tanh(self.layer(x)))


def test_lowrank_refuses_a_layer_called_twice():
    torch.manual_seed(0)
    model = Twice().double()
    x = torch.randn(3, 2, dtype=torch.float64)
    loss = NoetherLoss(energy, dt=0.1)
    with pytest.raises(UserError, match="more than once"):
        tailored_predict(model, loss, x, method="lowrank")
    close(tailored_predict(model, loss, x, lr=0.3), loop_reference(model, loss, x, 0.3, 1))


def test_loss_validation_and_devices():
    with pytest.raises(UserError, match="unknown loss form"):
        NoetherLoss(energy, "sideways", dt=0.1)
    with pytest.raises(UserError, match="needs a time step"):
        NoetherLoss(energy, "finite")
    with pytest.raises(UserError, match="unknown sequence loss form"):
        conservation_loss(energy, torch.zeros(3, 2), "finite")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    assert np.isfinite(NoetherLoss(energy, dt=0.1)(torch.zeros(1, 2), torch.ones(1, 2)).item())


def test_normalised_form_depends_on_the_level_sets_only():
    x, v = torch.randn(20, 2, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    scale = (0.5, 2.0)
    base = NoetherLoss(energy, "normalised", dt=0.1, scale=scale)(x, v)
    rewritten = NoetherLoss(lambda s: -3 * energy(s) ** 3 + 7, "normalised", dt=0.1, scale=scale)(x, v)
    close(rewritten, base)
    # the infinitesimal form divided by the scaled slope norm, and bounded by dt^2 |v / scale|^2
    slope = torch.stack([3 * torch.sin(x[:, 0]), 2 * x[:, 1]], -1)
    s = torch.tensor(scale, dtype=torch.float64)
    close(base, NoetherLoss(energy, "infinitesimal", dt=0.1)(x, v) / ((slope * s) ** 2).sum(-1))
    assert (base <= 0.01 * ((v / s) ** 2).sum(-1) + 1e-15).all()


def test_normalised_form_of_several_laws_is_the_sum_of_each():
    momentum = lambda s: s[..., 0:1] * s[..., 1:2]
    both = lambda s: torch.cat([energy(s), momentum(s)], -1)
    x, v = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    total = NoetherLoss(both, "normalised", dt=0.1)(x, v)
    close(total, NoetherLoss(energy, "normalised", dt=0.1)(x, v) + NoetherLoss(momentum, "normalised", dt=0.1)(x, v))


def test_stacked_members_equal_each_model_tailored_alone():
    """`StackedMLP.tailored`: one call for R models, each with its own loss (or none) and inner rate."""
    from lawfinder.tailoring.stacked import StackedMLP

    models = [small_mlp("cpu", seed=k) for k in range(8)]
    inf = NoetherLoss(energy, "infinitesimal", dt=0.07)
    norm = NoetherLoss(two_laws, "normalised", dt=0.07, scale=(1.0, 2.0))
    norm_energy = NoetherLoss(energy, "normalised", dt=0.07, scale=(0.5, 1.5))  # shares g with `inf`
    finite = NoetherLoss(energy, "finite", dt=0.07)  # no closed-form gradient: autograd
    losses = [None, inf, inf, norm_energy, norm, norm, finite, inf]
    rates = [0.5, 0.1, 1.0, 0.3, 0.1, 1.0, 0.2, 0.1]
    stack = StackedMLP([m.state_dict() for m in models], losses, rates)
    x = torch.randn(6, 2, dtype=torch.float64)
    out = stack.tailored(x)
    assert out.shape == (8, 6, 2)
    for k, (model, loss, lr) in enumerate(zip(models, losses, rates)):
        expected = model(x) if loss is None else tailored_predict(model, loss, x, lr=lr)
        close(out[k], expected, rtol=1e-12, atol=1e-12)
    close(stack(x.expand(8, 6, 2)), torch.stack([m(x) for m in models]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", ["infinitesimal", "normalised"])
def test_output_gradient_equals_autograd(form):
    """The closed-form d(loss)/d(dx/dt) of the forms linear in the slope is autograd's, for one law and two."""
    from lawfinder.tailoring.loss import slopes

    x, v = torch.randn(3, 7, 2, dtype=torch.float64), torch.randn(3, 7, 2, dtype=torch.float64)
    for g in (energy, two_laws):
        loss = NoetherLoss(g, form, dt=0.07, scale=(0.5, 2.0))
        assert loss.linear_in_slope
        leaf = v.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(loss(x, leaf).sum(), leaf)
        close(loss.output_gradient(v, slopes(g, x)), expected, rtol=1e-12, atol=1e-14)
    assert not NoetherLoss(energy, "finite", dt=0.07).linear_in_slope


@pytest.mark.parametrize("form", ["infinitesimal", "normalised"])
@pytest.mark.parametrize("g", [energy, two_laws])
def test_written_out_step_equals_the_lowrank_engine(form, g):
    """`lawfinder.tailoring.mlp_step`: the MLP's inner step written out gives the lowrank engine's
    predictions and, through them, the same second-order gradient in every weight."""
    from lawfinder.tailoring.loss import slopes
    from lawfinder.tailoring.mlp_step import applies, tailored_mlp

    model = small_mlp("cpu", seed=3)
    loss = NoetherLoss(g, form, dt=0.07, scale=(0.5, 2.0))
    x, y = torch.randn(9, 2, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    assert applies(model, loss, 0.3, {"method": "auto", "steps": 1})
    grads = []
    for written in (True, False):
        model.zero_grad()
        if written:
            pred = tailored_mlp(model, loss, x, slopes(g, x), 0.3)
        else:
            pred = tailored_predict(model, loss, x, lr=0.3, method="lowrank", create_graph=True)
        ((pred - y) ** 2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        if written:
            expected = tailored_predict(model, loss, x, lr=0.3, method="lowrank")
            close(pred, expected, rtol=1e-12, atol=1e-13)
    for a, b in zip(*grads):
        close(a, b, rtol=1e-10, atol=1e-12)


def test_the_written_out_step_is_used_only_where_it_is_the_same_computation():
    from lawfinder.tailoring.mlp_step import applies

    model, inf = small_mlp("cpu"), NoetherLoss(energy, "infinitesimal", dt=0.1)
    assert applies(model, inf, 0.1, {"method": "auto", "steps": 1, "params": None})
    assert not applies(model, inf, 0.1, {"method": "lowrank"})  # an engine asked for by name is used
    assert not applies(model, inf, 0.1, {"steps": 2})
    assert not applies(model, inf, 0.1, {"params": ["net.4"]})
    assert not applies(model, inf, torch.tensor([0.1, 1.0]), {})
    assert not applies(model, NoetherLoss(energy, "finite", dt=0.1), 0.1, {})
    assert not applies(model, NoetherLoss(two_laws, "infinitesimal", dt=0.1, bank=True), 0.1, {})
    assert not applies(type("Wider", (MLP,), {})(2), inf, 0.1, {})  # a subclass may compute something else
