"""The baseline predictor of the HNN paper: an MLP that maps a state to its time derivative.

Greydanus et al. (2019) train ``Linear(d,200)-tanh-Linear(200,200)-tanh-Linear(200,d)`` (no bias
in the last layer, orthogonal weight init) on (x, dx/dt) pairs with full-batch Adam, lr 1e-3, 2000
steps and an MSE loss; Noether Networks start meta-tailoring from this model. Training returns the
module; callers cache ``model.state_dict()`` and rebuild with :func:`mlp_from_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from lawfinder.errors import UserError

__all__ = ["MLP", "adam_fit", "as_tensor", "mlp_from_state_dict", "resolve_device", "train_predictor"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda[:i]"`` into a device; asking for missing CUDA is an error.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UserError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return dev


def as_tensor(
    a: np.ndarray | Tensor, device: torch.device | str = "cpu", dtype=torch.float32
) -> Tensor:
    """A float tensor on ``device`` from an array or tensor (no copy when already there)."""
    return torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a).to(device, dtype)


class MLP(nn.Module):
    """The HNN-paper baseline: ``Linear(d_in,h)-tanh-Linear(h,h)-tanh-Linear(h,d_out, no bias)``.

    Parameters
    ----------
    d_in, d_out
        State dimension in and out (``d_out`` defaults to ``d_in``: a vector field).
    hidden
        Width of both hidden layers (200 in the paper).
    """

    def __init__(self, d_in: int = 2, d_out: int | None = None, hidden: int = 200) -> None:
        super().__init__()
        d_out = d_in if d_out is None else d_out
        self.net = nn.Sequential(
            nn.Linear(d_in, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, d_out, bias=False),
        )
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.orthogonal_(layer.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Predicted dx/dt for states ``x`` of shape ``(..., d_in)``."""
        return self.net(x)


def mlp_from_state_dict(state: Mapping[str, Tensor]) -> MLP:
    """Rebuild an :class:`MLP` (sizes read from the weights) from a cached ``state_dict``."""
    w0, w2 = state["net.0.weight"], state["net.4.weight"]
    model = MLP(d_in=w0.shape[1], d_out=w2.shape[0], hidden=w0.shape[0])
    model.load_state_dict(state)
    return model.to(w0.device)


def train_predictor(
    x: np.ndarray | Tensor,
    dxdt: np.ndarray | Tensor,
    weight_decay: float = 1e-4,
    steps: int = 2000,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    model: nn.Module | None = None,
) -> nn.Module:
    """Fit dx/dt = f(x) with full-batch Adam and an MSE loss (the HNN protocol).

    Parameters
    ----------
    x, dxdt
        States and their time derivatives, shape ``(N, d)``.
    weight_decay
        Adam weight decay: 1e-4 for the ideal spring and pendulum, 1e-5 for the real pendulum.
    steps, lr
        Number of full-batch Adam steps and learning rate (2000 and 1e-3 in the paper).
    seed
        Seeds the weight initialisation.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    model
        A module to train instead of a fresh :class:`MLP` (e.g. an :class:`~lawfinder.ranking.hnn.HNN`);
        its initialisation is the caller's to seed (``seed`` seeds only a fresh MLP).

    Returns
    -------
    torch.nn.Module
        The trained module, in eval mode, on ``device``.
    """
    dev = resolve_device(device)
    xs, ys = as_tensor(x, dev), as_tensor(dxdt, dev)
    if xs.ndim != 2 or xs.shape != ys.shape:
        raise UserError(f"x and dxdt must both have shape (N, d); got {xs.shape} and {ys.shape}")
    if steps < 0:
        raise UserError(f"steps must be >= 0, got {steps}")
    torch.manual_seed(seed)
    model = (MLP(xs.shape[1]) if model is None else model).to(dev)
    adam_fit(model, xs, ys, steps=steps, lr=lr, weight_decay=weight_decay)
    return model


def adam_fit(model: nn.Module, x: Tensor, dxdt: Tensor, *, steps: int, lr: float = 1e-3,
             weight_decay: float = 1e-4, state: dict | None = None) -> dict:  # fmt: skip
    """``steps`` full-batch Adam steps on the MSE of ``model(x)`` against ``dxdt``, in place.

    ``state``: an Adam ``state_dict`` that this returns, to continue a run where it stopped
    (moments and step count; the rate and weight decay are the ones given here).
    """
    opt = adam(model.parameters(), lr, weight_decay, state)
    model.train()
    for _ in range(steps):
        loss = ((model(x) - dxdt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return opt.state_dict()


def adam(parameters, lr: float, weight_decay: float, state: dict | None = None) -> torch.optim.Adam:
    """Adam over ``parameters``, continuing from ``state`` (a ``state_dict``) at this rate and decay."""
    opt = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if state is not None:
        opt.load_state_dict(state)
        for group in opt.param_groups:
            group.update(lr=lr, weight_decay=weight_decay)
    return opt
