"""Hamiltonian Neural Network (Greydanus, Dzamba & Yosinski, NeurIPS 2019), the peer baseline.

An MLP outputs a scalar ``H(x)`` and the predicted vector field is its symplectic gradient
``dx/dt = J grad H`` with ``x = (q, p)`` and ``J = [[0, I], [-I, 0]]``: ``dq/dt = dH/dp``,
``dp/dt = -dH/dq``. ``H`` is conserved along the model's own flow by construction, exactly, which
is the strong prior Noether Networks compare against (and which cannot represent dissipation).
Trained with the baseline's protocol (full-batch Adam, lr 1e-3, 2000 steps, MSE on dx/dt) and
evaluated by the same rollouts (:mod:`lawfinder.ranking.rollout`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from lawfinder.errors import UserError
from lawfinder.tailoring.predictor import MLP, train_predictor

__all__ = ["HNN", "train_hnn"]


class HNN(nn.Module):
    """``dx/dt = J grad H(x)`` with ``H`` the HNN paper's MLP with a single output.

    Parameters
    ----------
    d
        State dimension, even: the first half are coordinates q, the second momenta p.
    hidden
        Width of the two hidden layers (200).

    Examples
    --------
    >>> model = HNN(2)
    >>> model(torch.zeros(3, 2)).shape
    torch.Size([3, 2])
    """

    def __init__(self, d: int = 2, hidden: int = 200) -> None:
        super().__init__()
        if d % 2:
            raise UserError(f"an HNN needs an even state dimension (q, p), got {d}")
        self.h = MLP(d_in=d, d_out=1, hidden=hidden)
        n = d // 2
        eye = torch.eye(n)
        zero = torch.zeros(n, n)
        self.register_buffer(
            "J", torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)])
        )

    def hamiltonian(self, x: Tensor) -> Tensor:
        """The learned conserved quantity ``H(x)``, shape ``(..., 1)``."""
        return self.h(x)

    def forward(self, x: Tensor) -> Tensor:
        """Predicted dx/dt, ``(..., d)``; differentiable in the weights when grad is enabled."""
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            (dh,) = torch.autograd.grad(self.h(xg).sum(), xg, create_graph=keep_graph)
        return dh @ self.J.T


def train_hnn(x: np.ndarray | Tensor, dxdt: np.ndarray | Tensor, *, seed: int = 0, **protocol) -> HNN:
    """Train an :class:`HNN` on (x, dx/dt) pairs with the baseline protocol: ``protocol`` takes
    :func:`~lawfinder.tailoring.predictor.train_predictor`'s ``weight_decay``, ``steps``, ``lr`` and ``device``."""
    torch.manual_seed(seed)
    return train_predictor(x, dxdt, seed=seed, model=HNN(np.shape(x)[-1]), **protocol)
