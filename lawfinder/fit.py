"""Fit every template's parameters for conservation, on true data and on random sequences.

Two paths, chosen per skeleton (see `lawfinder.compile`):

* ``exact``: formulas affine in their parameters (``p**2 + C*cos(q)``) are
  solved in closed form as a generalised eigenvalue problem (`solve_linear`).
* ``search``: the rest (``sin(C*q) + p``) start from a seeded grid of
  parameter values (log-spaced magnitudes 1e-2..1e2, both signs; a seeded
  shuffle pairs the values of several parameters), evaluated in one batch;
  the best starts are refined by coordinate-wise zooms in log-magnitude,
  each zoom one batched evaluation. It is derivative-free on purpose: the
  landscapes are multimodal (periodic in ``C`` inside sin/cos), and forward
  passes are far cheaper than Adam steps here (measured: 80 s -> a few s at size 7).

Formulas that give NaN/inf or are constant on the data get a reject reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dsl import FormulaDag
from lawfinder.compile import (
    Group,
    evaluate_features,
    evaluate_skeleton,
    evaluate_sympy_on_leaves,
    group_formulas,
)
from lawfinder.score import conservation_score, solve_linear


@dataclass(frozen=True)
class FitSettings:
    grid: int = 32  # starting points per formula on the search path (half of each sign)
    refine: int = 2  # best starts refined by zooming
    zoom_points: int = 9  # points per coordinate zoom (odd, so the current best stays in)
    zoom_rounds: int = 6  # each round shrinks the step 4x: ~6e-4 relative precision
    chunk_formulas: int = 64  # formulas evaluated together on the search path
    seed: int = 0


@dataclass
class ChunkFit:
    """Per formula of a chunk: best score, parameters, method and reject reason (or '')."""

    score: np.ndarray
    params: list[list[float]]
    method: list[str]
    reason: list[str]


@torch.no_grad()
def fit_chunk(dag: FormulaDag, roots: list[int], windows: torch.Tensor, settings: FitSettings) -> ChunkFit:
    """Fit the formulas `roots` on `windows` ``(W, L, d)``; everything batched per skeleton."""
    groups, feature_ids = group_formulas(dag, roots)
    features = evaluate_features(dag, feature_ids, windows)  # (n_features, W, L)
    n = len(roots)
    out = ChunkFit(np.full(n, np.nan), [[] for _ in range(n)], [""] * n, [""] * n)
    for group in groups:
        refs = torch.tensor(group.feature_refs, dtype=torch.long)
        leaves = features[refs]  # (n_group, n_refs, W, L)
        if group.n_params == 0:
            score = conservation_score(leaves[:, 0])
            _store(out, group, score, torch.zeros(len(group.formulas), 0), "none")
        elif group.linear is not None:
            _fit_exact(out, group, leaves)
        else:
            gen = torch.Generator().manual_seed(settings.seed + len(group.skeleton))
            for start in range(0, len(group.formulas), settings.chunk_formulas):
                part = slice(start, start + settings.chunk_formulas)
                score, params = _fit_search(group, leaves[part], settings, gen)
                sub = Group(group.skeleton, group.formulas[part], [], group.n_params)
                _store(out, sub, score, params, "search")
    return out


def _fit_exact(out: ChunkFit, group: Group, leaves: torch.Tensor) -> None:
    base, derivs = group.linear
    parts = [evaluate_sympy_on_leaves(e, leaves) for e in (base, *derivs)]
    basis = torch.stack(parts, dim=1)  # (n, k+1, W, L)
    finite = torch.isfinite(basis).flatten(1).all(1)
    basis = torch.where(finite[:, None, None, None], basis, torch.zeros_like(basis))
    score, params, cancels = solve_linear(basis)
    score = torch.where(finite, score, torch.full_like(score, float("nan")))
    _store(out, group, score, params, "exact", finite, cancels)


def _fit_search(group: Group, leaves: torch.Tensor, settings: FitSettings, gen) -> tuple:
    """Batched grid search, then coordinate-wise zooms in log-magnitude around the best starts."""
    n, k = leaves.shape[0], group.n_params
    half = settings.grid // 2
    base = torch.linspace(math.log(1e-2), math.log(1e2), half, dtype=leaves.dtype)
    log_mag = torch.empty(n, 2 * half, k, dtype=leaves.dtype)
    sign = torch.empty_like(log_mag)
    for j in range(k):
        perm = torch.arange(2 * half) if j == 0 else torch.randperm(2 * half, generator=gen)
        log_mag[:, :, j] = torch.cat([base, base])[perm]
        sign[:, :, j] = torch.cat([torch.ones(half), -torch.ones(half)]).to(leaves.dtype)[perm]
    leaves_b = leaves.unsqueeze(2)  # (n, refs, 1, W, L)
    score = _score(group, leaves_b, sign * log_mag.exp())
    best = _nan_last(score).argsort(dim=1)[:, : settings.refine]
    u = torch.gather(log_mag, 1, best.unsqueeze(-1).expand(-1, -1, k))
    s = torch.gather(sign, 1, best.unsqueeze(-1).expand(-1, -1, k))
    step = float(base[1] - base[0])
    offsets = torch.linspace(-1.0, 1.0, settings.zoom_points, dtype=leaves.dtype)
    rows = torch.arange(n)[:, None]
    for _ in range(settings.zoom_rounds):
        for j in range(k):
            trial = u.unsqueeze(2).repeat(1, 1, len(offsets), 1)  # (n, starts, points, k)
            trial[..., j] += step * offsets
            trial = trial.flatten(1, 2)
            signs = s.unsqueeze(2).expand(-1, -1, len(offsets), -1).flatten(1, 2)
            trial_score = _score(group, leaves_b, signs * trial.exp())
            trial_score = _nan_last(trial_score).view(n, -1, len(offsets))
            pick = trial_score.argmin(-1)  # (n, starts)
            u = trial.view(n, -1, len(offsets), k)[rows, torch.arange(u.shape[1]), pick]
        step *= 2.0 / (settings.zoom_points - 1)
    params = s * u.exp()
    score = _score(group, leaves_b, params)
    pick = _nan_last(score).argmin(1)
    return score[rows[:, 0], pick], params[rows[:, 0], pick]


def _nan_last(score: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(score, nan=math.inf)


def _score(group: Group, leaves_b: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    values = evaluate_skeleton(group.skeleton, leaves_b, params.unsqueeze(-1).unsqueeze(-1))
    return conservation_score(values)


def _store(out: ChunkFit, group: Group, score, params, method: str, finite=None, cancels=None) -> None:
    score = score.detach().double().cpu().numpy()
    params = params.detach().double().cpu().numpy()
    for row, pos in enumerate(group.formulas):
        out.score[pos] = score[row]
        out.params[pos] = params[row].tolist()
        out.method[pos] = method
        if finite is not None and not bool(finite[row]):
            out.reason[pos] = "not finite on the data"
        elif cancels is not None and bool(cancels[row]):
            out.reason[pos] = "terms cancel: constant on the data"
        elif not np.all(np.isfinite(params[row])):
            out.reason[pos] = "degenerate: the optimum drops a term"
        elif not np.isfinite(score[row]):
            out.reason[pos] = "constant or not finite on the data"
