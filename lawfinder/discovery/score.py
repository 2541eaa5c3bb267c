"""The conservation score, and its exact minimiser for formulas linear in their parameters.

Data come as windows: ``g[..., W, L]`` holds a formula's values on W windows
of L consecutive states (a trajectory, or a piece of a long one). With the
window means ``m_w`` and the grand mean ``m``::

    within  = sum_w sum_t (g_wt - m_w)^2 / (W (L - 1))     # fluctuation inside windows
    between = L * sum_w (m_w - m)^2 / (W - 1)             # spread of window means
    score   = within / (within + between)                 # in [0, 1]; 0 = exactly conserved

These are the two mean squares of a one-way ANOVA with windows as groups. The
score ignores the scale and offset of g, so parameters cannot shrink it to
zero; a g that is constant on the data (within + between ~ 0) has no score and
is rejected. On random sequences (states drawn i.i.d.) both mean squares
estimate the same variance, so the score is about 1/2 whatever the formula.
Window means average measurement noise away, so noise of variance s^2 raises
a true law's score only to about s^2 / (s^2 + L var(H)): the test keeps its
power on noisy data where a within/total variance ratio loses it.
"""

from __future__ import annotations

import torch

TINY = 1e-300
# per dtype: the smallest magnitude used, and the spread (relative to max |g|) below which g is constant, not conserved
FLOOR = {torch.float64: (TINY, 1e-12), torch.float32: (1e-37, 1e-5)}
PRECISION = 1e-9  # relative precision of simulated states (integrator tolerance): no noise below it


def mean_squares(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(within, between) mean squares over the last two axes ``(W, L)``."""
    return _mean_squares(g)[:2]


def _mean_squares(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`mean_squares`, and the scratch tensor of g's shape it used (None when autograd needs it).

    Without autograd the squares are taken in place: on large batches, allocating
    (and page-faulting) fresh tensors costs more than the arithmetic (measured
    3-5x for the whole score), and the numbers are the same.
    """
    n_windows, length = g.shape[-2], g.shape[-1]
    means = g.mean(-1)
    centred = g - means.unsqueeze(-1)
    in_place = not (torch.is_grad_enabled() and centred.requires_grad)
    squares = centred.square_() if in_place else centred.square()
    within = squares.sum((-1, -2)) / (n_windows * (length - 1))
    between = length * (means - means.mean(-1, keepdim=True)).square().sum(-1) / (n_windows - 1)
    return within, between, (squares if in_place else None)


def conservation_score(g: torch.Tensor) -> torch.Tensor:
    """The score above; NaN where g is constant or not finite on the data."""
    within, between, scratch = _mean_squares(g)
    total = within + between
    magnitude = g.detach().abs() if scratch is None else torch.abs(g, out=scratch)
    return _ratio(within, total, magnitude.amax((-1, -2)))


def conservation_score_(g: torch.Tensor, spread: bool = False):
    """`conservation_score` (the very same numbers, no autograd), overwriting `g` with scratch values.

    `spread`: also return g's spread (root of the total mean square) as a fraction of max |g|.

    Fewer passes over g: ``max |g|`` as ``max(max g, -min g)`` (exact; torch.aminmax is 7x slower) and the
    centring and squaring in place; `g` must be a contiguous temporary.
    """
    n_windows, length = g.shape[-2], g.shape[-1]
    scale = torch.maximum(g.amax((-1, -2)), g.amin((-1, -2)).neg_())
    means = g.sum(-1).div_(length)  # what g.mean(-1) computes
    within = g.sub_(means.unsqueeze(-1)).square_().sum((-1, -2)).div_(n_windows * (length - 1))
    between = length * (means - means.mean(-1, keepdim=True)).square_().sum(-1) / (n_windows - 1)
    score = _ratio(within, within + between, scale)
    return (score, (within + between).sqrt_().div_(scale)) if spread else score


def _ratio(within: torch.Tensor, total: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    tiny, constant = FLOOR[total.dtype]
    ok = torch.isfinite(total) & (total > (constant * scale.clamp_min(tiny)) ** 2)
    return torch.where(ok, within / total.clamp_min(tiny), torch.full_like(total, float("nan")))


def scatter_matrices(basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Within and between scatter matrices ``(..., k, k)`` of basis functions ``(..., k, W, L)``."""
    n_windows, length = basis.shape[-2], basis.shape[-1]
    means = basis.mean(-1)
    centred = basis - means.unsqueeze(-1)
    within = torch.einsum("...iwl,...jwl->...ij", centred, centred) / (n_windows * (length - 1))
    spread = means - means.mean(-1, keepdim=True)
    between = length * torch.einsum("...iw,...jw->...ij", spread, spread) / (n_windows - 1)
    return within, between


def solve_linear(basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the score of ``g = F0 + sum_j C_j F_j`` exactly.

    `basis` is ``(n, k+1, W, L)`` with F0 first. The score of coefficient
    vector ``a`` is the Rayleigh quotient ``a'Wa / a'(W+B)a``, so its minimum is
    the smallest generalised eigenvalue of ``(W, W+B)``. Returns the scores
    ``(n,)``, the parameters ``C = a[1:] / a[0]`` ``(n, k)`` (inf where the
    optimum drops F0), and a mask of optima whose terms cancel (``q + C*q`` with
    ``C = -1``), which are constant on the data rather than conserved.
    """
    within, between = scatter_matrices(basis)
    total = within + between
    diag = torch.diagonal(total, dim1=-2, dim2=-1).clamp_min(TINY).sqrt()
    norm = diag.unsqueeze(-1) * diag.unsqueeze(-2)
    w_n, t_n = within / norm, total / norm
    k = t_n.shape[-1]
    eye = torch.eye(k, dtype=t_n.dtype, device=t_n.device)
    chol, info = torch.linalg.cholesky_ex(t_n + 1e-12 * eye)
    bad = info != 0
    chol = torch.where(bad[:, None, None], eye.expand_as(chol), chol)
    inv = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
    m = inv @ w_n @ inv.transpose(-1, -2)
    m = (m + m.transpose(-1, -2)) / 2
    eigvals, eigvecs = torch.linalg.eigh(m)
    y = eigvecs[..., 0]
    a_n = (inv.transpose(-1, -2) @ y.unsqueeze(-1)).squeeze(-1)
    cancels = a_n.square().sum(-1) > 1e10  # the terms nearly cancel: g is ~constant on the data
    a = a_n / diag
    score = eigvals[..., 0].clamp(min=0.0)
    lead = a[..., :1]
    params = torch.where(lead.abs() > 1e-12 * a.abs().amax(-1, keepdim=True), a[..., 1:] / lead,
                         torch.full_like(a[..., 1:], float("inf")))  # fmt: skip
    score = torch.where(bad | ~torch.isfinite(score), torch.full_like(score, float("nan")), score)
    return score, params, cancels
