"""SVG-LP: the video predictor with a stochastic latent and a learned prior (Denton & Fergus 2018).

A posterior LSTM q(z_t | x_1..x_t) and a learned prior LSTM p(z_t | x_1..x_{t-1}) give the mean
and log-variance of a latent ``z_t``; the frame-predictor LSTM takes [encoding of the previous
frame, z_t, action_t]. The standard-normal noise is an *input*, never sampled inside the model, so
it runs one example at a time under ``torch.func.vmap(randomness="same")`` and goes through the
shared tailoring core exactly like :class:`~lawfinder.video.models.FramePredictor`::

    adapted = tailor(model, loss, (history, actions, noise), params=model.cn_names())
    pred = predict_with(model, adapted, (history, actions, noise))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lawfinder.errors import UserError
from lawfinder.video.models import (
    LSTM,
    AdaptableMixin,
    Decoder,
    Encoder,
    VideoConfig,
)

__all__ = ["GaussianLSTM", "StochasticPredictor", "gaussian_kl"]


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) of diagonal Gaussians, summed over the last
    dimension."""
    ratio = (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp()
    return 0.5 * (logvar_p - logvar_q + ratio - 1).sum(-1)


class GaussianLSTM(nn.Module):
    """An :class:`LSTM` with a linear head: one input per step -> (mean, log-variance) of z."""

    def __init__(self, n_in: int, z_dim: int, hidden: int, layers: int = 1):
        super().__init__()
        self.lstm = LSTM(n_in, hidden, hidden, layers, steps=0)  # no activation offsets
        self.head = nn.Linear(hidden, 2 * z_dim)

    def forward(self, x: Tensor, state) -> tuple[Tensor, Tensor, list]:
        h, state = self.lstm(x, state)
        mu, logvar = self.head(h).chunk(2, -1)
        return mu, logvar, state


class StochasticPredictor(AdaptableMixin, nn.Module):
    """SVG-LP: ``(history (B,P,C,H,W), actions (B,T,A), noise (B,T,z_dim)) -> (B,T,C,H,W)``.

    On the conditioning frames the posterior mean of z (the frames are known) drives the frame
    predictor, as in SVG-LP's generation; on each predicted step ``z_t = mu_prior + sigma_prior *
    noise_t``, and ``noise=None`` uses the prior mean (deterministic). Decoding uses the skip
    features of the last conditioning frame; actions are zero on the conditioning frames.
    """

    def __init__(self, cfg: VideoConfig, z_dim: int = 8):
        super().__init__()
        self.cfg, self.z_dim = cfg, z_dim
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.posterior = GaussianLSTM(cfg.g_dim, z_dim, cfg.rnn_size)
        self.prior = GaussianLSTM(cfg.g_dim, z_dim, cfg.rnn_size)
        self.rnn = LSTM(cfg.g_dim + z_dim + cfg.action_dim, cfg.g_dim, cfg.rnn_size,
                        cfg.rnn_layers, cfg.n_future)  # fmt: skip

    def _check_noise(self, noise: Tensor | None, steps: int) -> None:
        if noise is not None and tuple(noise.shape[-2:]) != (steps, self.z_dim):
            raise UserError(
                f"noise must have shape (B, {steps}, {self.z_dim}), got {tuple(noise.shape)}"
            )

    def _init(self, B: int, like: Tensor):
        return [m.init_state(B, like) for m in (self.posterior.lstm, self.prior.lstm, self.rnn)]

    def forward(self, history: Tensor, actions: Tensor, noise: Tensor | None = None) -> Tensor:
        B, P = history.shape[:2]
        T = actions.shape[1]
        self._check_noise(noise, T)
        enc, skips = self.encoder.sequence(history)
        last_skips = [s[:, -1] for s in skips]
        q, p, r = self._init(B, history)
        no_action = actions.new_zeros(B, actions.shape[-1])
        for i in range(1, P):
            z, _, q = self.posterior(enc[:, i], q)
            _, _, p = self.prior(enc[:, i - 1], p)
            _, r = self.rnn(torch.cat([enc[:, i - 1], z, no_action], -1), r)
        e, preds = enc[:, -1], []
        for t in range(T):
            mu, logvar, p = self.prior(e, p)
            z = mu if noise is None else mu + (0.5 * logvar).exp() * noise[:, t]
            g, r = self.rnn(torch.cat([e, z, actions[:, t]], -1), r, t)
            frame = self.decoder(g, last_skips)
            preds.append(frame)
            if t + 1 < T:
                e = self.encoder(frame)[0]
        return torch.stack(preds, 1)

    def training_loss(self, history: Tensor, actions: Tensor, future: Tensor, noise: Tensor, *,
                      teacher_forcing: bool = True, beta: float = 1e-4) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Teacher-forced SVG-LP loss on the sequence ``x = [history, future]`` of P+T frames.

        Step i = 1..P+T-1 encodes the ground-truth frame x_{i-1}, samples ``z = mu_q + sigma_q *
        noise[:, i-1]`` from the posterior on x_i and decodes a prediction of x_i (with the skips
        of x_{i-1} on the conditioning frames, of x_{P-1} after them). ``noise`` is
        ``(B, P+T-1, z_dim)``. The loss is the per-pixel MSE averaged over pixels, batch and
        steps, plus ``beta`` times KL(q || p) summed over z and averaged over batch and steps.
        Returns ``(loss, pred)``; ``pred`` holds the predictions of the future, ``(B,T,C,H,W)``.
        """
        if not teacher_forcing:
            raise UserError("the stochastic (SVG-LP) model trains with teacher forcing only")
        B, P = history.shape[:2]
        T = future.shape[1]
        self._check_noise(noise, P + T - 1)
        frames = torch.cat([history, future], 1)
        enc, skips = self.encoder.sequence(frames)
        q, p, r = self._init(B, history)
        no_action = actions.new_zeros(B, actions.shape[-1])
        preds, kls = [], []
        for i in range(1, P + T):
            mu_q, logvar_q, q = self.posterior(enc[:, i], q)
            mu_p, logvar_p, p = self.prior(enc[:, i - 1], p)
            z = mu_q + (0.5 * logvar_q).exp() * noise[:, i - 1]
            a, t = (actions[:, i - P], i - P) if i >= P else (no_action, None)
            g, r = self.rnn(torch.cat([enc[:, i - 1], z, a], -1), r, t)
            preds.append(self.decoder(g, [s[:, min(i, P) - 1] for s in skips]))
            kls.append(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p))
        pred = torch.stack(preds, 1)
        loss = ((pred - frames[:, 1:]) ** 2).mean() + beta * torch.stack(kls, 1).mean()
        return loss, pred[:, P - 1 :]
