"""Long-term evaluation: integrate a predictor's vector field and compare with true trajectories.

The integrator is a batched, fixed-step classical Runge-Kutta (RK4) in torch, with ``substeps``
equal steps per interval of the data's time grid (uneven grids, e.g. the real pendulum's gaps, are
followed exactly). HNN integrates with ``scipy.integrate.solve_ivp`` (RK45, rtol 1e-12) one
trajectory at a time; that does not fit here, because a tailored vector field makes an inner
gradient step at every evaluation: it must be evaluated in torch and batched over trajectories
(one vectorised inner step for all of them), and an adaptive solver per trajectory would loop in
Python and shrink its steps to meet a tolerance far below the model's own error. RK4's local
error is O(h^5): with 4 sub-steps on the ideal pendulum (h = 0.017 s) the global error after
3 s is about 1e-7 against ``solve_ivp`` at rtol 1e-12 (a test checks it), and with 2 sub-steps
on the real pendulum's 1/6 s grid about 1e-4 after 18 s; both are orders of magnitude under the
prediction errors being compared (>= 1e-3 in MSE).

Protocol of the Noether Networks paper: ideal spring and pendulum from the first state of each
test trajectory over its own time grid; real pendulum from the first test state over the test
span (111 steps, ~18.5 s). Metrics: RMSE over the whole horizon, MSE per horizon step, and the
drift ``E(x_t) - E(x_0)`` of a given energy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lawfinder.errors import UserError
from lawfinder.tailoring import TailoringLoss, tailored_predict
from lawfinder.tailoring.predictor import as_tensor

__all__ = ["RolloutResult", "evaluate_rollout", "evaluate_rollouts", "integrate", "vector_field"]

Field = Callable[[Tensor], Tensor]


def vector_field(
    model: nn.Module,
    loss: TailoringLoss | None = None,
    *,
    lr: float = 0.0,
    steps: int = 1,
    params: Sequence[str] | None = None,
    method: str = "auto",
) -> Field:
    """The map ``x (B, d) -> dx/dt (B, d)`` of ``model``, tailored to each state when ``loss`` is set.

    With a loss, every evaluation (each RK4 stage) first takes ``steps`` inner steps of rate
    ``lr`` per state, batched over the B trajectories, as Noether Networks predict.
    """
    if loss is None:
        return model
    return lambda x: tailored_predict(
        model, loss, x, lr=lr, steps=steps, params=params, method=method
    )


def integrate(field: Field, x0: Tensor, times: Tensor, *, substeps: int = 4) -> Tensor:
    """Integrate ``dx/dt = field(x)`` with fixed-step RK4 from ``x0 (B, d)``.

    Parameters
    ----------
    field
        Batched autonomous vector field.
    x0
        Initial states ``(B, d)``, at ``times[..., 0]``; or ``(R, B, d)`` for a field of R
        members (`lawfinder.tailoring.stacked.StackedMLP`).
    times
        Output times: ``(T,)`` shared by all trajectories, or ``(B, T)`` one grid each.
    substeps
        Equal RK4 steps per output interval.

    Returns
    -------
    Tensor
        States ``(B, T, d)`` (or ``(R, B, T, d)``); index 0 is ``x0``.
    """
    if substeps < 1:
        raise UserError(f"substeps must be >= 1, got {substeps}")
    times = times.to(x0)
    grid = times if times.ndim == 2 else times.expand(x0.shape[-2], -1)
    if grid.shape[0] != x0.shape[-2]:
        raise UserError(f"{grid.shape[0]} time grids for {x0.shape[-2]} initial states")
    out, x = [x0], x0
    with torch.no_grad():
        for k in range(grid.shape[1] - 1):
            h = ((grid[:, k + 1] - grid[:, k]) / substeps)[:, None]
            for _ in range(substeps):
                k1 = field(x)
                k2 = field(x + h / 2 * k1)
                k3 = field(x + h / 2 * k2)
                k4 = field(x + h * k3)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            out.append(x)
    return torch.stack(out, -2)


@dataclass
class RolloutResult:
    """Predicted and true trajectories with the paper's long-term metrics.

    Attributes
    ----------
    times
        ``(T,)`` horizon of the first trajectory, measured from its start.
    predicted, target
        ``(B, T, d)`` integrated and true states.
    mse_per_step
        ``(T,)`` coordinate MSE at each horizon step, averaged over trajectories and coordinates.
    rmse
        Root of the MSE over the whole horizon, all trajectories and coordinates.
    drift, true_drift
        ``(T,)`` mean over trajectories of ``E(x_t) - E(x_0)`` for the prediction and the truth
        (None without an energy).
    """

    times: np.ndarray
    predicted: np.ndarray
    target: np.ndarray
    mse_per_step: np.ndarray
    rmse: float
    drift: np.ndarray | None = None
    true_drift: np.ndarray | None = None

    @property
    def end_mse(self) -> float:
        """Coordinate MSE at the end of the horizon."""
        return float(self.mse_per_step[-1])

    @property
    def mse(self) -> float:
        """MSE over the whole horizon."""
        return self.rmse**2


def _energy_values(energy: Callable, states: np.ndarray) -> np.ndarray:
    owner = energy if isinstance(energy, nn.Module) else getattr(energy, "__self__", None)
    if isinstance(owner, nn.Module):
        ref = next(owner.parameters())
        with torch.no_grad():
            values = energy(torch.as_tensor(states, dtype=ref.dtype, device=ref.device))
    else:
        try:
            values = energy(states)
        except TypeError:
            values = energy(torch.as_tensor(states))
    values = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    return values.reshape(states.shape[:-1])


def evaluate_rollout(
    field: Field,
    states: Sequence[np.ndarray],
    times: Sequence[np.ndarray],
    *,
    energy: Callable | None = None,
    substeps: int = 4,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> RolloutResult:
    """Roll ``field`` out from the first state of each trajectory and score it against the rest.

    Parameters
    ----------
    field
        Batched vector field, e.g. from :func:`vector_field`.
    states, times
        True trajectories ``(T, d)`` and their time grids ``(T,)``; all of the same length T.
    energy
        Optional energy for the drift, a numpy or torch function ``(..., d) -> (...)``/``(..., 1)``.
    substeps
        RK4 steps per data interval.
    device, dtype
        Where and in what precision to integrate (the field's own).

    Returns
    -------
    RolloutResult
    """
    (result,) = evaluate_rollouts(field, states, times, energy=energy, substeps=substeps, device=device,
                                  dtype=dtype)  # fmt: skip
    return result


def evaluate_rollouts(
    field: Field,
    states: Sequence[np.ndarray],
    times: Sequence[np.ndarray],
    *,
    members: int | None = None,
    energy: Callable | None = None,
    substeps: int = 4,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[RolloutResult]:
    """:func:`evaluate_rollout` of each of the ``members`` of a stacked field (``(R, B, d) -> (R, B, d)``,
    e.g. `lawfinder.tailoring.stacked.StackedMLP.tailored`), integrated together; None: one plain field."""
    if not len(states) or len(states) != len(times):
        raise UserError(
            f"need matching, non-empty lists of states and times; got {len(states)}, {len(times)}"
        )
    lengths = {len(s) for s in states} | {len(t) for t in times}
    if len(lengths) != 1:
        raise UserError(
            f"all trajectories must have the same number of points, got {sorted(lengths)}"
        )
    target = np.stack([np.asarray(s, dtype=np.float64) for s in states])
    grid = np.stack([np.asarray(t, dtype=np.float64) for t in times])
    grid = grid - grid[:, :1]
    x0 = as_tensor(target[:, 0], device, dtype)
    if members is not None:
        x0 = x0.expand(members, *x0.shape)
    shared = np.allclose(grid, grid[:1])
    tgrid = as_tensor(grid[0] if shared else grid, device, torch.float64)
    predicted = integrate(field, x0, tgrid, substeps=substeps).double().cpu().numpy()
    e_true = None if energy is None else _energy_values(energy, target)
    return [_score(p, target, grid, energy, e_true) for p in (predicted if members is not None else [predicted])]


def _score(predicted: np.ndarray, target: np.ndarray, grid: np.ndarray, energy, e_true) -> RolloutResult:
    err = (predicted - target) ** 2
    result = RolloutResult(
        times=grid[0],
        predicted=predicted,
        target=target,
        mse_per_step=err.mean(axis=(0, 2)),
        rmse=float(np.sqrt(err.mean())),
    )
    if energy is not None:
        e_pred = _energy_values(energy, predicted)
        result.drift = (e_pred - e_pred[:, :1]).mean(0)
        result.true_drift = (e_true - e_true[:, :1]).mean(0)
    return result
