"""Many predictors evaluated as one: the weights of R :class:`~lawfinder.tailoring.predictor.MLP` s stacked.

A tailored rollout evaluates its predictor a few hundred times on a handful of states (6
validation trajectories, one real-pendulum trajectory), so each evaluation costs the fixed
overhead of ~30 small torch calls, not arithmetic. Stacking the R runs of a ranking (settings,
laws) makes one call serve all of them (`lawfinder.ranking.rollout.evaluate_rollouts`).

The tailored evaluation is the ``"lowrank"`` engine's one SGD step on every layer written out
for this three-layer MLP (`lawfinder.tailoring.mlp_step`, which meta-tailoring uses too), for R
members at once. Each member has its own loss and inner rate; members
without a loss are evaluated untailored. The output's gradient ``delta`` of the forms linear in
the slope (`lawfinder.tailoring.loss.NoetherLoss.output_gradient`) is written out too, with the
slopes of one quantity g taken for all the members that tailor with it in one reverse pass: a
kepler evaluation of 4 members on 6 states took 1.4 ms instead of 9.2 ms by autograd through the
loss. First order only (evaluation; meta-tailoring trains one model at a time, where the
arithmetic, not the call overhead, dominates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lawfinder.tailoring.loss import TailoringLoss, slopes
from lawfinder.tailoring.mlp_step import adapted_output

__all__ = ["StackedMLP"]

_NAMES = ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight")


class StackedMLP:
    """R MLPs of the same shape, called on states ``(R, B, d)`` (or ``(B, d)``, shared by all).

    Parameters
    ----------
    states
        The members' ``state_dict`` s (as :func:`~lawfinder.tailoring.predictor.mlp_from_state_dict` takes).
    losses
        Per member, the tailoring loss of its inner step, or None for no tailoring.
    rates
        Per member, its inner learning rate (ignored without a loss).

    Examples
    --------
    >>> from lawfinder.tailoring.predictor import MLP
    >>> stack = StackedMLP([MLP(2).state_dict(), MLP(2).state_dict()])
    >>> stack(torch.zeros(3, 2)).shape
    torch.Size([2, 3, 2])
    """

    def __init__(self, states: Sequence[Mapping[str, Tensor]], losses: Sequence[TailoringLoss | None] | None = None,
                 rates: Sequence[float] | None = None) -> None:  # fmt: skip
        w0, b0, w2, b2, w4 = (torch.stack([s[name].detach() for s in states]) for name in _NAMES)
        self.w0t, self.w2t, self.w4t = (w.transpose(1, 2).contiguous() for w in (w0, w2, w4))
        self.w2, self.w4 = w2, w4
        self.b0, self.b2 = b0.unsqueeze(1), b2.unsqueeze(1)
        n = len(states)
        losses = [None] * n if losses is None else list(losses)
        rates = [0.0] * n if rates is None else [float(r) for r in rates]
        if len(losses) != n or len(rates) != n:
            raise ValueError(f"{n} members, {len(losses)} losses and {len(rates)} rates")
        self.rates = torch.tensor([r if loss is not None else 0.0 for loss, r in zip(losses, rates)],
                                  dtype=w0.dtype).reshape(n, 1, 1)  # fmt: skip
        self.groups = _groups(losses)
        self.slope_groups = _slope_groups(self.groups)
        self.autograd_groups = [group for group in self.groups if not _closed_form(group[0])]

    def __len__(self) -> int:
        return self.w2.shape[0]

    def _layers(self, x: Tensor):
        if x.ndim == 2:
            x = x.expand(len(self), *x.shape)
        z1 = torch.baddbmm(self.b0, x, self.w0t)
        h1 = torch.tanh(z1)
        h2 = torch.tanh(torch.baddbmm(self.b2, h1, self.w2t))
        return x, z1, h1, h2, torch.bmm(h2, self.w4t)

    def __call__(self, x: Tensor) -> Tensor:
        """Untailored predictions ``(R, B, d)``."""
        return self._layers(x)[-1]

    def tailored(self, x: Tensor) -> Tensor:
        """Predictions ``(R, B, d)`` after each member's inner step on each state."""
        x, z1, h1, h2, out = self._layers(x)
        if not self.groups:
            return out
        d4 = torch.zeros_like(out)
        for g, members in self.slope_groups:
            a, b = members[0][1], members[-1][2]
            grads = slopes(g, x[a:b])
            for loss, i, j in members:
                d4[i:j] = loss.output_gradient(out[i:j], [u[i - a : j - a] for u in grads])
        for loss, a, b in self.autograd_groups:
            with torch.enable_grad():
                leaf = out[a:b].detach().requires_grad_(True)
                (d4[a:b],) = torch.autograd.grad(loss(x[a:b], leaf).sum(), leaf)
        return adapted_output(x, z1, h1, h2, d4, self.rates, self.w2, self.w4, self.b2)


def _groups(losses: Sequence[TailoringLoss | None]) -> list[tuple[TailoringLoss, int, int]]:
    """Runs of consecutive members with the same loss object: ``(loss, start, stop)``."""
    out: list[tuple[TailoringLoss, int, int]] = []
    for i, loss in enumerate(losses):
        if loss is None:
            continue
        if out and out[-1][0] is loss and out[-1][2] == i:
            out[-1] = (loss, out[-1][1], i + 1)
        else:
            out.append((loss, i, i + 1))
    return out


def _slope_groups(groups: list[tuple[TailoringLoss, int, int]]) -> list[tuple[object, list]]:
    """Adjacent groups whose losses have a closed-form gradient of the same quantity g: their slopes come
    from one call of g on all their members' states. ``(g, [(loss, start, stop), ...])``."""
    out: list[tuple[object, list]] = []
    for loss, a, b in groups:
        if not _closed_form(loss):
            continue
        if out and out[-1][0] is loss.g and out[-1][1][-1][2] == a:
            out[-1][1].append((loss, a, b))
        else:
            out.append((loss.g, [(loss, a, b)]))
    return out


def _closed_form(loss: TailoringLoss) -> bool:
    """Whether the loss's gradient with respect to the prediction has a closed form (`NoetherLoss.output_gradient`)."""
    return getattr(loss, "linear_in_slope", False)
