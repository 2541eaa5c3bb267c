"""Is a formula conserved, or only slowly varying? The exactness half of `lawfinder.discovery.acceptance`.

The measurement noise of each variable is estimated from the data (`estimate_noise`) and
propagated through the formula's gradient (`probe`, `noise_variance`); `exactness` compares the
formula's variation inside each window with what the noise explains. `refit_affine` refits
formulas affine in their parameters noise-aware. See the acceptance module's docstring for the
design and what it was tuned on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from lawfinder.discovery.score import PRECISION
from lawfinder.errors import UserError

MODES = 10  # Legendre modes of a window's smooth variation (fewer for short windows: L // 3)
D4_VARIANCE = 70.0  # sum of squared coefficients of the 4th difference (1, -4, 6, -4, 1)
D4_CORRELATION = 2.63  # 1 + 2 * sum of its squared autocorrelations (-0.8, 0.4, -0.114, 0.014)
TRIM = 0.01  # largest differences dropped from the noise estimate
_C = special.ndtri(1 - TRIM / 2)
TRIMMED_VARIANCE = 1 - 2 * _C * np.exp(-_C * _C / 2) / np.sqrt(2 * np.pi) / (1 - TRIM)  # E[x^2 | |x| < c] of a unit normal


@dataclass(frozen=True)
class Noise:
    sigma: np.ndarray  # per variable
    dof: float  # effective degrees of freedom of the variance estimate (the least of the variables)


def estimate_noise(windows: np.ndarray, times: np.ndarray | None = None) -> Noise:
    """Noise standard deviation of each variable from 4th-order differences of windows ``(W, L, d)``.

    For white noise of variance s^2 the 4th difference has variance 70 s^2, while
    a smooth path contributes only ~(dt^4 x'''')^2 (2nd differences would count
    much more of it). Differences across an uneven time step (a gap in the
    record, when `times` ``(W, L)`` are given) are skipped, the largest 1% are
    dropped (outliers) and the mean square is corrected for that trimming. Clean simulated
    data give a tiny value (their smooth remainder), which only makes the
    exactness test stricter than the noise, never looser. Overlapping
    differences are correlated, hence ``dof`` = kept / 2.63 (1 + twice the sum
    of the filter's squared autocorrelations).
    """
    if windows.shape[1] < 5:
        raise UserError(f"need windows of at least 5 points to estimate the noise, got {windows.shape[1]}")
    d4 = np.diff(windows, n=4, axis=1).reshape(-1, windows.shape[-1])
    even = np.ones(len(d4), dtype=bool)
    if times is not None:
        steps = np.diff(times, axis=1)
        spans = np.lib.stride_tricks.sliding_window_view(steps, 4, axis=1)  # (W, L-4, 4)
        even = (np.ptp(spans, axis=-1) <= 1e-6 * np.abs(spans).max(-1)).reshape(-1)
    d4 = d4[even]
    if len(d4) < 10:
        raise UserError("too few evenly spaced points to estimate the noise (gaps in time?)")
    keep = np.abs(d4) <= np.quantile(np.abs(d4), 1 - TRIM, axis=0)
    var = np.where(keep, d4**2, 0.0).sum(0) / np.maximum(keep.sum(0), 1) / (D4_VARIANCE * TRIMMED_VARIANCE)
    return Noise(np.sqrt(var), float(keep.sum(0).min()) / D4_CORRELATION)


@dataclass
class Probe:
    """A fitted formula on the windows: values, gradient and diagonal Hessian ``(W, L[, d])``."""

    values: np.ndarray
    grad: np.ndarray
    hess_diag: np.ndarray


def probe(node, variables, windows: np.ndarray) -> Probe:
    """Evaluate a fitted formula tree and its first and second derivatives at every state."""
    import torch

    from lawfinder.laws.compile import node_to_torch

    g_fn = node_to_torch(node, variables)
    x = torch.as_tensor(windows, dtype=torch.float64).clone().requires_grad_(True)
    g = g_fn(x)[..., 0]
    if not g.requires_grad:  # constant formula
        zeros = np.zeros(windows.shape)
        return Probe(g.detach().numpy(), zeros, zeros)
    (grad,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    hess = []
    for i in range(windows.shape[-1]):
        gi = grad[..., i]
        if gi.requires_grad:
            (h,) = torch.autograd.grad(gi.sum(), x, retain_graph=True, allow_unused=True)
            hess.append(torch.zeros_like(gi) if h is None else h[..., i])
        else:
            hess.append(torch.zeros_like(gi))
    return Probe(g.detach().numpy(), grad.detach().numpy(), torch.stack(hess, -1).detach().numpy())


def noise_variance(p: Probe, sigma: np.ndarray) -> np.ndarray:
    """Variance of g at each state caused by Gaussian noise `sigma` on the variables (delta method)."""
    s2 = sigma**2
    var = (p.grad**2 * s2).sum(-1) + 0.5 * (p.hess_diag**2 * s2**2).sum(-1)
    floor = (PRECISION * np.sqrt(np.mean(p.values**2))) ** 2
    return np.maximum(var, max(floor, 1e-300))


def refit_affine(template, n_params: int, variables, windows: np.ndarray, sigma: np.ndarray):
    """Noise-aware parameters of a template affine in them (``F0 + sum_j C_j F_j``), or None.

    Measurement noise biases the exact fit (errors in variables): it adds its
    own variance ``a' N a`` to both mean squares of ``g = a . F`` (``N``: the
    noise covariance of the basis, from its gradients), and through curvature it
    shifts each basis function's mean (``cos(q + e)`` ~ ``exp(-s^2/2) cos q``).
    The refit de-biases the basis to second order (``F - 1/2 sum_i s_i^2 d_ii F``)
    and solves ``(W - N) a = lambda (W + B - 2N) a``; on clean data N ~ 0 and it
    returns the exact fit's parameters. None when the corrected problem is not
    positive definite (noise larger than the signal).
    """
    import torch
    from scipy.linalg import eigh

    from dsl.nodes import with_params
    from lawfinder.discovery.score import scatter_matrices

    zero = probe(with_params(template, [0.0] * n_params), variables, windows)
    parts = [zero]
    for j in range(n_params):
        unit = probe(with_params(template, [float(i == j) for i in range(n_params)]), variables, windows)
        parts.append(Probe(unit.values - zero.values, unit.grad - zero.grad, unit.hess_diag - zero.hess_diag))
    s2 = sigma**2
    basis = np.stack([f.values - 0.5 * (f.hess_diag * s2).sum(-1) for f in parts])  # (k+1, W, L)
    grads = np.stack([f.grad for f in parts])  # (k+1, W, L, d)
    within, between = (m.numpy() for m in scatter_matrices(torch.as_tensor(basis)))
    noise = np.einsum("iwld,jwld,d->ij", grads, grads, s2) / (basis.shape[1] * basis.shape[2])
    scale = np.sqrt(np.clip(np.diag(within + between), 1e-300, None))
    norm = np.outer(scale, scale)
    try:
        _, vecs = eigh((within - noise) / norm, (within + between - 2 * noise) / norm)
    except np.linalg.LinAlgError:
        return None
    a = vecs[:, 0] / scale
    if not np.all(np.isfinite(a)) or abs(a[0]) <= 1e-12 * np.abs(a).max():
        return None
    return (a[1:] / a[0]).tolist()


def modes(length: int) -> int:
    return max(2, min(MODES, length // 3))


def window_chi2(values: np.ndarray, var: np.ndarray, times: np.ndarray, k: int):
    """Per window, the weighted coefficients of Legendre modes 0..k of g ``(W, k+1)``, and the squares.

    g is centred on each window's weighted mean first (no cancellation when g
    is large and nearly constant). With ``c = Q' (g_c / sqrt(var))`` for the
    orthonormalised weighted Legendre basis, ``sum(c[1:]**2)`` is how much the
    modes above the mean explain; the weighted residual sum of squares about
    the mean is the sum of the returned squares ``(g_c / sqrt(var))**2`` (c[0] ~ 0).
    """
    span = np.ptp(times, axis=1, keepdims=True)
    u = 2.0 * (times - times[:, :1]) / np.where(span > 0, span, 1.0) - 1.0
    basis = np.polynomial.legendre.legvander(u, k)  # (W, L, k+1)
    w = 1.0 / np.sqrt(var)
    centred = values - (values * w**2).sum(1, keepdims=True) / (w**2).sum(1, keepdims=True)
    q, _ = np.linalg.qr(basis * w[..., None])
    return np.einsum("wlk,wl->wk", q, centred * w), (centred * w) ** 2


@dataclass
class Exactness:
    noise_ratio: float  # weighted chi2 / dof of g about each window's mean (1: all variation is noise)
    smooth_ratio: float  # the same for its smooth part (Legendre modes 1..k)
    p_exact: float
    drift: np.ndarray  # per window: weighted RSS after removing a linear drift, / dof


def exactness(p: Probe, noise: Noise, times: np.ndarray) -> Exactness:
    """Weighted chi-squares against the noise, with F tails: the noise variance is itself estimated."""
    var = noise_variance(p, noise.sigma)
    n_windows, length = p.values.shape
    k = modes(length)
    c, squares = window_chi2(p.values, var, times, k)
    total = squares.sum(1) - c[:, 0] ** 2
    chi2_total, dof_total = float(total.sum()), n_windows * (length - 1)
    chi2_smooth, dof_smooth = float((c[:, 1:] ** 2).sum()), n_windows * k
    p_total = special.fdtrc(dof_total, noise.dof, chi2_total / dof_total)
    p_smooth = special.fdtrc(dof_smooth, noise.dof, chi2_smooth / dof_smooth)
    drift = (total - c[:, 1] ** 2) / (length - 2)
    return Exactness(chi2_total / dof_total, chi2_smooth / dof_smooth,
                     float(min(1.0, 2.0 * min(p_total, p_smooth))), drift)  # fmt: skip
