"""Fit every template's parameters for conservation, on true data and on random sequences.

Two paths, chosen per skeleton (see `lawfinder.laws.compile`):

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

Several data sets of the same shape (the true windows and the random-sequence
control) are fitted together by `fit_chunk_many`: one batched evaluation per
skeleton step covers formulas x data sets, and each data set gets exactly the
grid, zooms and results that `fit_chunk` gives it alone. A zoom does not
re-evaluate the point it is centred on (its score is known from the step
before), and the result is not re-scored at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dsl import FormulaDag
from lawfinder.discovery.score import conservation_score, conservation_score_, solve_linear
from lawfinder.laws.compile import (
    evaluate_features,
    evaluate_part,
    evaluate_skeleton,
    group_formulas,
)


@dataclass(frozen=True)
class FitSettings:
    grid: int = 32  # starting points per formula on the search path (half of each sign)
    refine: int = 2  # best starts refined by zooming
    zoom_points: int = 9  # points per coordinate zoom (odd, so the current best stays in)
    zoom_rounds: int = 6  # each round shrinks the step 4x: ~6e-4 relative precision
    chunk_formulas: int = 64  # formulas that share one draw of the grid's pairing of parameters
    seed: int = 0
    batch_rows: int = 256  # formulas x data sets evaluated in one call on the search path (memory)


@dataclass
class ChunkFit:
    """Per formula of a chunk: best score, parameters, method and reject reason (or '')."""

    score: np.ndarray
    params: list[list[float]]
    method: list[str]
    reason: list[str]


def fit_chunk(dag: FormulaDag, roots: list[int], windows: torch.Tensor, settings: FitSettings) -> ChunkFit:
    """Fit the formulas `roots` on `windows` ``(W, L, d)``; everything batched per skeleton."""
    return fit_chunk_many(dag, roots, [windows], settings)[0]


@torch.no_grad()
def fit_chunk_many(
    dag: FormulaDag, roots: list[int], windows: list[torch.Tensor], settings: FitSettings
) -> list[ChunkFit]:
    """`fit_chunk` on each of `windows` (data sets of one shape), all fitted in the same batched calls."""
    if len({tuple(w.shape) for w in windows}) > 1:
        return [fit_chunk_many(dag, roots, [w], settings)[0] for w in windows]
    x = torch.stack(list(windows))  # (D, W, L, d)
    n_sets = x.shape[0]
    groups, feature_ids = group_formulas(dag, roots)
    features = evaluate_features(dag, feature_ids, x)  # (n_features, D, W, L)
    n = len(roots)
    outs = [ChunkFit(np.full(n, np.nan), [[] for _ in range(n)], [""] * n, [""] * n) for _ in range(n_sets)]
    for group in groups:
        refs = torch.tensor(group.feature_refs, dtype=torch.long)
        leaves = features[refs].movedim(2, 1).flatten(0, 1)  # (n_group * D, n_refs, W, L)
        if group.n_params == 0:
            score = conservation_score(leaves[:, 0])
            _store(outs, group.formulas, score, torch.zeros(len(score), 0), "none")
        elif group.linear is not None:
            _fit_exact(outs, group, leaves)
        else:
            log_mag, sign = _grid(group, settings, leaves.dtype)
            log_mag = log_mag.repeat_interleave(n_sets, 0)
            sign = sign.repeat_interleave(n_sets, 0)
            rows = max(n_sets, settings.batch_rows // n_sets * n_sets)
            scores, params = [], []
            for start in range(0, leaves.shape[0], rows):
                part = slice(start, start + rows)
                s, p = _fit_search(group.skeleton, leaves[part], log_mag[part], sign[part], settings)
                scores.append(s)
                params.append(p)
            _store(outs, group.formulas, torch.cat(scores), torch.cat(params), "search")
    return outs


def _fit_exact(outs: list[ChunkFit], group, leaves: torch.Tensor) -> None:
    base, derivs = group.linear
    basis = torch.stack([evaluate_part(e, leaves) for e in (base, *derivs)], dim=1)  # (rows, k+1, W, L)
    finite = torch.isfinite(basis).flatten(1).all(1)
    basis = torch.where(finite[:, None, None, None], basis, torch.zeros_like(basis))
    score, params, cancels = solve_linear(basis)
    score = torch.where(finite, score, torch.full_like(score, float("nan")))
    _store(outs, group.formulas, score, params, "exact", finite, cancels)


def _grid(group, settings: FitSettings, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per formula of the group, the starting grid ``(log-magnitude, sign)``, each ``(n, grid, k)``.

    The pairing of the parameters' values is one seeded shuffle per block of
    ``chunk_formulas`` formulas (the draw depends on the chunk's seed and the
    formula's position in its group, never on how the group is batched).
    """
    n, k = len(group.formulas), group.n_params
    half = settings.grid // 2
    base = torch.linspace(math.log(1e-2), math.log(1e2), half, dtype=dtype)
    values = torch.cat([base, base])
    signs = torch.cat([torch.ones(half), -torch.ones(half)]).to(dtype)
    gen = torch.Generator().manual_seed(settings.seed + len(group.skeleton))
    log_mag = torch.empty(n, 2 * half, k, dtype=dtype)
    sign = torch.empty_like(log_mag)
    for start in range(0, n, settings.chunk_formulas):
        part = slice(start, start + settings.chunk_formulas)
        for j in range(k):
            perm = torch.arange(2 * half) if j == 0 else torch.randperm(2 * half, generator=gen)
            log_mag[part, :, j] = values[perm]
            sign[part, :, j] = signs[perm]
    return log_mag, sign


def _fit_search(skeleton: tuple, leaves: torch.Tensor, log_mag, sign, settings: FitSettings) -> tuple:
    """Batched grid search, then coordinate-wise zooms in log-magnitude around the best starts."""
    n, k = leaves.shape[0], log_mag.shape[-1]
    leaves_b = leaves.unsqueeze(2)  # (n, refs, 1, W, L)
    score = _nan_last(_score(skeleton, leaves_b, sign * log_mag.exp()))
    best = score.argsort(dim=1)[:, : settings.refine]
    current = torch.gather(score, 1, best)  # (n, starts): the score at u, known from here on
    u = torch.gather(log_mag, 1, best.unsqueeze(-1).expand(-1, -1, k))
    s = torch.gather(sign, 1, best.unsqueeze(-1).expand(-1, -1, k))
    base = torch.linspace(math.log(1e-2), math.log(1e2), settings.grid // 2, dtype=leaves.dtype)
    step = float(base[1] - base[0])
    offsets = torch.linspace(-1.0, 1.0, settings.zoom_points, dtype=leaves.dtype)
    centre = settings.zoom_points // 2
    moves = torch.cat([offsets[:centre], offsets[centre + 1 :]])  # the centre's score is `current`
    starts = u.shape[1]
    rows, cols = torch.arange(n)[:, None], torch.arange(starts)
    signs = s.unsqueeze(2)
    for _ in range(settings.zoom_rounds):
        for j in range(k):
            trial = u.unsqueeze(2).repeat(1, 1, len(moves), 1)  # (n, starts, points - 1, k)
            trial[..., j] += step * moves
            trial_score = _nan_last(_score(skeleton, leaves_b, (signs * trial.exp()).flatten(1, 2)))
            trial_score = trial_score.view(n, starts, len(moves))
            trial_score = torch.cat([trial_score[..., :centre], current.unsqueeze(-1), trial_score[..., centre:]], -1)
            pick = trial_score.argmin(-1)  # (n, starts); ties keep the earliest point, as a full zoom does
            full = torch.cat([trial[:, :, :centre], u.unsqueeze(2), trial[:, :, centre:]], 2)
            u = full[rows, cols, pick]
            current = trial_score[rows, cols, pick]
        step *= 2.0 / (settings.zoom_points - 1)
    params = s * u.exp()
    pick = current.argmin(1)
    score = current[rows[:, 0], pick]
    score = torch.where(torch.isinf(score), torch.full_like(score, float("nan")), score)
    return score, params[rows[:, 0], pick]


def _nan_last(score: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(score, nan=math.inf)


BLOCK_POINTS = 1 << 17  # formula x setting x state values per evaluation: ~1 MiB, stays in the core's L2 cache


def _score(skeleton: tuple, leaves_b: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Scores ``(n, settings)``, evaluated a few formulas at a time (cache-sized blocks: 2-3x faster)."""
    n, settings = params.shape[:2]
    points = leaves_b.shape[-1] * leaves_b.shape[-2]
    rows = max(1, BLOCK_POINTS // (settings * points))
    params = params.unsqueeze(-1).unsqueeze(-1)
    out = torch.empty(n, settings, dtype=leaves_b.dtype, device=leaves_b.device)
    for start in range(0, n, rows):
        part = slice(start, start + rows)
        values = evaluate_skeleton(skeleton, leaves_b[part], params[part])
        out[part] = conservation_score_(values) if values.is_contiguous() else conservation_score(values)
    return out


def _store(outs: list[ChunkFit], formulas: list[int], score, params, method: str, finite=None, cancels=None) -> None:
    """Rows are formula-major: row ``i * D + d`` is formula ``formulas[i]`` on data set ``d``."""
    n_sets = len(outs)
    score = score.detach().double().cpu().numpy()
    params = params.detach().double().cpu().numpy()
    for row in range(len(score)):
        out, pos = outs[row % n_sets], formulas[row // n_sets]
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
