"""SVG-LP stochastic video predictor (tiny sizes, a few seconds in all)."""

from __future__ import annotations

import pytest
import torch

from lawfinder.errors import UserError
from lawfinder.tailoring import predict_with, tailor
from lawfinder.video.models import CondNorm, NoetherEmbedding, VideoNoetherLoss, get_config
from lawfinder.video.stochastic import StochasticPredictor, gaussian_kl

torch.set_num_threads(1)
CFG = get_config("tiny", n_past=3, n_future=4)  # 16x16 frames
P, T, Z = CFG.n_past, CFG.n_future, 8


def _batch(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(B, P, 3, 16, 16, generator=g)
    a = torch.randn(B, T, 1, generator=g)
    y = torch.rand(B, T, 3, 16, 16, generator=g)
    return h, a, y


def _noise(B, steps, seed=1):
    return torch.randn(B, steps, Z, generator=torch.Generator().manual_seed(seed))


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return StochasticPredictor(CFG, z_dim=Z)


def test_shapes_range_and_noise(model):
    h, a, _ = _batch(3)
    n1, n2 = _noise(3, T, 1), _noise(3, T, 2)
    out = model(h, a, n1)
    assert out.shape == (3, T, 3, 16, 16)
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, model(h, a, n1))  # deterministic given the noise
    assert not torch.allclose(out, model(h, a, n2), atol=1e-6)
    assert torch.allclose(model(h, a), model(h, a, torch.zeros_like(n1)))  # None = prior mean
    with pytest.raises(UserError):
        model(h, a, _noise(3, T + 1))


def test_parameter_groups(model):
    names = model.cn_names()
    assert len(names) >= 6 and all(isinstance(model.get_submodule(n), CondNorm) for n in names)
    outer = {id(p) for p in model.outer_parameters()}
    cn = {id(p) for n in names for p in model.get_submodule(n).parameters()}
    assert not outer & cn and id(model.rnn.act.delta) not in outer
    assert model.adapt_names("cn") == names and model.adapt_names("lstm") == ["rnn.act"]
    with pytest.raises(UserError):
        model.adapt_names("all")


def test_training_loss_gradients(model):
    h, a, y = _batch(2)
    loss, pred = model.training_loss(h, a, y, _noise(2, P + T - 1))
    assert torch.isfinite(loss) and pred.shape == (2, T, 3, 16, 16)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        if any(p is q for q in model.outer_parameters()):
            assert grads[n] is not None and grads[n].abs().sum() > 0, n
    for part in ("encoder.", "decoder.", "prior.", "posterior.", "rnn."):
        assert any(n.startswith(part) for n, g in grads.items() if g is not None)


def _square_video(B=2):
    """A bright square sliding right on a dark background (learnable, unlike uniform noise)."""
    x = torch.zeros(B, P + T, 3, 16, 16)
    for b in range(B):
        for t in range(P + T):
            x[b, t, :, 4 + 2 * b : 9 + 2 * b, t : t + 5] = 1.0
    return x[:, :P], torch.zeros(B, T, 1), x[:, P:]


def test_adam_reduces_training_loss(model):
    h, a, y = _square_video()
    noise = _noise(2, P + T - 1)
    opt = torch.optim.Adam(model.outer_parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss, _ = model.training_loss(h, a, y, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    dark = (torch.cat([h, y], 1)[:, 1:] ** 2).mean()  # the MSE of predicting a black frame
    assert losses[-1] < 0.6 * dark, (losses, float(dark))


def test_kl_zero_when_posterior_equals_prior(model):
    mu, logvar = torch.randn(5, Z), torch.randn(5, Z)
    assert torch.allclose(gaussian_kl(mu, logvar, mu, logvar), torch.zeros(5))
    mu2, logvar2 = torch.randn(5, Z), torch.randn(5, Z)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(mu2, (0.5 * logvar2).exp())
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(gaussian_kl(mu, logvar, mu2, logvar2), ref, atol=1e-5)
    assert (ref > 0).all()
    # A static video and a posterior with the prior's weights: q and p see the same inputs.
    model.posterior.load_state_dict(model.prior.state_dict())
    frame = torch.rand(2, 1, 3, 16, 16)
    h, y, a = frame.expand(2, P, 3, 16, 16), frame.expand(2, T, 3, 16, 16), torch.randn(2, T, 1)
    noise = _noise(2, P + T - 1)
    no_kl, _ = model.training_loss(h, a, y, noise, beta=0.0)
    big_beta, _ = model.training_loss(h, a, y, noise, beta=1e6)
    assert torch.allclose(no_kl, big_beta, rtol=0, atol=1e-6)
    # ... and a moving video has a strictly positive KL
    h2, a2, y2 = _batch(2)
    assert model.training_loss(h2, a2, y2, noise, beta=1e6)[0] > 1.0


def test_tailoring_through_the_shared_core(model):
    h, a, _ = _batch(2)
    noise = _noise(2, T)
    for n in model.cn_names():
        cn = model.get_submodule(n)
        assert torch.equal(cn.gamma, torch.ones_like(cn.gamma))
        assert torch.equal(cn.beta, torch.zeros_like(cn.beta))
    torch.manual_seed(1)
    loss = VideoNoetherLoss(NoetherEmbedding(CFG))
    base = model(h, a, noise)
    adapted = tailor(model, loss, (h, a, noise), params=model.cn_names(), lr=1.0, steps=1)
    assert adapted["decoder.cn.gamma"].shape == (2, *model.decoder.cn.gamma.shape)
    pred = predict_with(model, adapted, (h, a, noise))
    assert pred.shape == base.shape and not torch.allclose(pred, base)
    # per-example tailoring: example 0 alone gives the same adapted prediction
    one = tailor(model, loss, (h[:1], a[:1], noise[:1]), params=model.cn_names(), lr=1.0)
    assert torch.allclose(predict_with(model, one, (h[:1], a[:1], noise[:1]))[0], pred[0],
                          atol=1e-5)  # fmt: skip
    # without noise (prior mean) and on the LSTM activations
    adapted = tailor(model, loss, (h, a), params=model.adapt_names("lstm"), lr=1.0)
    assert set(adapted) == {"rnn.act.delta"}
    assert not torch.allclose(predict_with(model, adapted, (h, a)), model(h, a))
