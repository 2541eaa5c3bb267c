"""Sparse laws: conserved linear combinations of library terms, beyond what the enumeration reaches.

A law ``g = sum_j a_j T_j`` over the terms of `lawfinder.discovery.terms` is conserved
when its variation inside each window is what the measurement noise makes it.
With the within-window scatter ``W`` of the terms and their noise covariance
``N`` (the estimated noise of each variable propagated through the terms'
gradients, plus the integrator's precision), ``rho(a) = a'Wa / a'Na`` is about
1 for a law and much larger otherwise, so the laws span the eigenvectors of the
generalised problem ``W a = rho N a`` with small ``rho``. Coefficients are
solved exactly; nothing is enumerated but the terms. Steps:

1. Evaluate the library on the training windows; drop terms that are constant
   or a linear combination of simpler ones (``r**2`` beside ``x**2 + y**2``).
2. Candidate subspace: eigenvectors with ``rho <= rho_max``.
3. Rounds, until one keeps no new law. A basis of the subspace in simple terms:
   reduced row echelon form, pivoting on the costliest terms first, so each of
   them appears in one basis vector only and products or mixes of laws do not
   spread through the others; the costliest term of each law kept so far is a
   fixed pivot, so no row can hold that law again (at noise 0.01 the subspace
   of two-body has 12-14 directions and, without this, most rows sparsified onto
   the same law while others were never reached).
4. Each basis vector is made sparse: drop negligible terms, then remove terms,
   costliest first, while the law's own residual does not grow significantly (an
   F-type step at `level`, Bonferroni-corrected for the number of terms tried),
   refitting exactly on the remaining support.
5. A sparse law is kept if it is new to the ones before it (linearly
   independent coefficients), *identified* (the next best combination of its own
   terms has ``rho >= min_runner_up``: near-circular orbits make combinations of
   ``r12``, ``|p1 - p2|`` and ``1/r12`` conserved to second order in the
   eccentricity, so a law holding them is one of a family the noise cannot tell
   apart) and *jointly conserved* with the laws kept before it (every combination
   of them has ``rho <= rho_max``). It is returned if it is beyond the exhaustive
   enumeration (longer, or using an operator the enumeration does not), since
   shorter ones are fitted there already.

The results then face the same acceptance tests as every enumerated formula
(`lawfinder.discovery.acceptance`); `library_floor` gives their false-law test a
selection-aware reference: the least score any combination of the whole
library reaches on a surrogate set bounds every sparse law's score there.

Where the settings come from: ``rho_max``, ``max_score``, ``prune`` and
`RADIUS_MARGIN` were set while looking at seed 0 of kepler, coupled-oscillators,
two-body (clean and noise 0.01) and the coupled-ou control, the same data
`benchmarks/multivariable.py` reports, and checked on held-out systems and seeds
(`benchmarks/heldout.py`): there two-body at noise 0.01, seeds 1 and 2, missed
invariants and accepted a false law, and coupled-oscillators seed 1 kept a
spurious cubic term (1.1% coefficient error). The fix (rounds with fixed pivots,
costliest-first elimination, ``level`` with its Bonferroni correction replacing a
fixed per-step ``penalty`` of chi2(1) at 1e-3, ``min_runner_up`` and the joint
check) was designed on seeds 0-2 of those four systems and seed 0 of the
held-out ones: ``level`` is the old per-step level; ``min_runner_up`` = 30 lies
in the gap between the near-circular false laws (runner-up 1.5-6.9) and every
true law (141 and up) on those data, at 10 ``rho_max``. Its validation is seeds
3-5 of every system of `benchmarks/heldout.py`, declared before their first run
(results/heldout.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special
from scipy.linalg import eigh

from dsl.nodes import Node
from lawfinder.discovery.score import PRECISION
from lawfinder.discovery.terms import Term, beyond_enumeration, law_template

RADIUS_MARGIN = 10.0


@dataclass(frozen=True)
class SparseConfig:
    rho_max: float = 3.0  # a candidate varies at most this many times more than the noise explains
    max_terms: int = 12
    prune: float = 1e-4  # first drop of terms below this fraction of the largest (normalised) one
    level: float = 1e-3  # a term stays if dropping it grows the residual beyond chance at this level (Bonferroni)
    min_runner_up: float = 30.0  # the next best combination of a law's own terms varies at least this much more
    max_laws: int | None = None  # None: 2 x the number of variables
    max_score: float = 0.05  # and a candidate's windows differ: 10x better conserved than random data (0.5)


@dataclass
class SparseLaw:
    terms: list[Term]
    template: Node
    params: list[float]
    score: float  # the conservation score of `lawfinder.discovery.score`
    rho: float


@dataclass
class Library:
    terms: list[Term]
    values: np.ndarray  # (W, L, p)
    grads: np.ndarray | None  # (W, L, p, d)


def evaluate(terms: Sequence[Term], variables: Sequence[str], states: np.ndarray, grads: bool = True) -> Library:
    """Values (and gradients) of every term at the states ``(W, L, d)``."""
    from lawfinder.laws.compile import node_to_torch

    fns = [node_to_torch(t.node, variables) for t in terms]

    x = torch.as_tensor(states, dtype=torch.float64).reshape(-1, states.shape[-1]).requires_grad_(grads)
    columns, jac = [], []
    with torch.set_grad_enabled(grads):
        for f in fns:
            y = f(x)[..., 0]
            columns.append(y.detach())
            if grads:  # rows are independent, so d(sum of a term over rows)/dx is each row's gradient
                jac.append(torch.autograd.grad(y.sum(), x)[0] if y.requires_grad else torch.zeros_like(x))
    values = torch.stack(columns, -1).reshape(*states.shape[:-1], -1).numpy()
    g = torch.stack(jac, 1).reshape(*states.shape[:-1], len(terms), states.shape[-1]).numpy() if grads else None
    return Library(list(terms), values, g)


def _away_from_zero(terms: Sequence[Term], variables, states: np.ndarray, sigma: np.ndarray) -> list[Term]:
    """Terms whose norm, if any, stays `RADIUS_MARGIN` noise standard deviations away from zero."""
    from lawfinder.laws.compile import node_to_torch

    index = {v: i for i, v in enumerate(variables)}
    x = torch.as_tensor(states, dtype=torch.float64)
    smallest: dict = {}
    out = []
    for t in terms:
        if t.radius is not None:
            if t.radius not in smallest:
                smallest[t.radius] = float(node_to_torch(t.radius, variables)(x).min())
            if smallest[t.radius] < RADIUS_MARGIN * np.sqrt(sum(sigma[index[v]] ** 2 for v in t.members)):
                continue
        out.append(t)
    return out


def _usable(lib: Library) -> np.ndarray:
    """Columns that are finite, not constant, and not a linear combination of earlier (simpler) ones."""
    flat = lib.values.reshape(-1, lib.values.shape[-1])
    ok = np.all(np.isfinite(flat), 0) & (flat.std(0) > 1e-12 * np.abs(flat).max(0).clip(1e-300))
    if lib.grads is not None:
        ok &= np.all(np.isfinite(lib.grads.reshape(-1, *lib.grads.shape[-2:])), axis=(0, 2))
    idx = np.flatnonzero(ok)
    centred = flat[:, idx] - flat[:, idx].mean(0)
    centred /= np.linalg.norm(centred, axis=0)
    r = np.linalg.qr(centred, mode="r")
    return idx[np.abs(np.diag(r)) > 1e-7]


def scatter(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within and between scatter matrices ``(p, p)`` of term values ``(W, L, p)`` (as in `score`)."""
    n_windows, length = values.shape[:2]
    means = values.mean(1)
    centred = values - means[:, None]
    within = np.einsum("wli,wlj->ij", centred, centred) / (n_windows * (length - 1))
    spread = means - means.mean(0)
    between = length * spread.T @ spread / (n_windows - 1)
    return within, between


def _min_eig(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest generalised eigenvalue and its vector of batches of ``(a, b)``, b positive definite."""
    at, bt = torch.as_tensor(a), torch.as_tensor(b)
    eye = torch.eye(bt.shape[-1], dtype=bt.dtype)
    jitter = 1e-13 * torch.diagonal(bt, dim1=-2, dim2=-1).amax(-1)[..., None, None]
    chol, _ = torch.linalg.cholesky_ex(bt + jitter * eye)
    inv = torch.linalg.solve_triangular(chol, eye.expand_as(bt), upper=False)
    m = inv @ at @ inv.transpose(-1, -2)
    vals, vecs = torch.linalg.eigh((m + m.transpose(-1, -2)) / 2)
    vec = (inv.transpose(-1, -2) @ vecs[..., :1])[..., 0]
    return vals[..., 0].numpy(), vec.numpy()


def library_floor(terms: Sequence[Term], variables, states: np.ndarray) -> float:
    """The least conservation score any combination of `terms` reaches on windows ``(W, L, d)``."""
    lib = evaluate(terms, variables, states, grads=False)
    keep = _usable(lib)
    values = lib.values[..., keep]
    values = (values - values.mean((0, 1))) / values.std((0, 1))
    within, between = scatter(values)
    return float(max(_min_eig(within, within + between)[0], 0.0))


def search(terms: Sequence[Term], variables, states: np.ndarray, sigma: np.ndarray, max_size: int,
           config: SparseConfig = SparseConfig()) -> tuple[list[SparseLaw], list[Term]]:  # fmt: skip
    """Sparse laws on the windows ``(W, L, d)`` with noise `sigma` per variable.

    Returns the laws and the library terms used (for `library_floor`).
    """
    lib = evaluate(_away_from_zero(terms, variables, states, sigma), variables, states)
    keep = _usable(lib)
    values, grads = lib.values[..., keep], lib.grads[..., keep, :]
    used = [lib.terms[k] for k in keep]
    scale = values.std((0, 1))
    values = (values - values.mean((0, 1))) / scale
    grads = grads / scale[:, None]
    within, between = scatter(values)
    n_states = values.shape[0] * values.shape[1]
    noise = np.einsum("wlid,wljd,d->ij", grads, grads, sigma**2) / n_states
    raw = lib.values[..., keep] / scale  # uncentred: the precision floor scales with g's own size
    noise += PRECISION**2 * np.einsum("wli,wlj->ij", raw, raw) / n_states
    rho, vecs = eigh(within, noise + 1e-13 * np.diag(noise).max() * np.eye(len(used)))
    limit = config.max_laws or 2 * states.shape[-1]
    score = np.einsum("ik,ij,jk->k", vecs, within, vecs) / np.einsum("ik,ij,jk->k", vecs, within + between, vecs)
    basis = vecs[:, (rho <= config.rho_max) & (score <= config.max_score)][:, :limit]
    flat_grads = grads.reshape(-1, *grads.shape[-2:]) * sigma  # (N, p, d): noise-scaled gradients
    shape = values.shape[:2]

    costs = [t.cost for t in used]
    rank = np.empty(len(costs), int)
    rank[sorted(range(len(costs)), key=costs.__getitem__)] = np.arange(len(costs))

    def sparsify(a):
        support, a_s, rho_s = _sparsify(a, within, noise, _effective_dof(flat_grads, a, *shape), rank, config)
        if support is None or len(support) > config.max_terms or rho_s > config.rho_max:
            return None
        full = np.zeros(len(used))
        full[support] = a_s / np.linalg.norm(a_s)
        return full, rho_s

    kept: list[tuple[np.ndarray, float]] = []
    pivots: list[int] = []
    while basis.size:  # rounds, until one keeps no new law
        found = [f for a in _echelon(basis.T, costs, pivots) if (f := sparsify(a))]
        found.sort(key=lambda f: (np.count_nonzero(f[0]), sorted(costs[j] for j in np.flatnonzero(f[0]))))
        before = len(kept)
        for vector, rho_s in found:
            vectors = [v for v, _ in kept]
            reduced = _reduce(vector, vectors)
            if reduced is not vector and (again := sparsify(reduced)) is not None:
                vector, rho_s = again
            free = [j for j in np.flatnonzero(vector) if j not in pivots]
            if kept and np.linalg.svd(np.array(vectors + [vector]), compute_uv=False)[-1] < 1e-3:
                continue  # a linear combination of the laws kept
            if not free or _runner_up(vector, within, noise) < config.min_runner_up:
                continue
            if kept and _joint_rho(vectors + [vector], within, noise) > config.rho_max:
                continue
            kept.append((vector, rho_s))
            pivots.append(max(free, key=costs.__getitem__))
        if len(kept) == before:
            break
    laws = []
    for vector, rho_s in kept:
        support = np.flatnonzero(vector)
        law = _law([used[j] for j in support], vector[support] / scale[support], within, between, support,
                   vector[support], rho_s)  # fmt: skip
        if law is not None and beyond_enumeration(law.template, max_size):
            laws.append(law)
    return laws, used


def _runner_up(vector: np.ndarray, within: np.ndarray, noise: np.ndarray) -> float:
    """``rho`` of the second best combination of the law's own terms (inf for one term)."""
    support = np.flatnonzero(vector)
    if len(support) < 2:
        return float("inf")
    w, n = within[np.ix_(support, support)], noise[np.ix_(support, support)]
    return float(eigh(w, n, eigvals_only=True, subset_by_index=[1, 1])[0])


def _joint_rho(vectors: list[np.ndarray], within: np.ndarray, noise: np.ndarray) -> float:
    """The largest ``rho`` of any combination of the laws `vectors`: each may pass alone while a mix fails."""
    v = np.array(vectors).T
    return float(eigh(v.T @ within @ v, v.T @ noise @ v, eigvals_only=True)[-1])


def _reduce(vector: np.ndarray, laws: list[np.ndarray]) -> np.ndarray:
    """`vector` minus multiples of sparser `laws`, each cancelling as many terms as it can and adding none."""
    out = vector
    for law in laws:
        common = np.flatnonzero((law != 0) & (out != 0))
        if common.size == 0:
            continue
        tol = 1e-3 * np.abs(out).max()
        best, best_nnz = None, np.count_nonzero(np.abs(out) > tol)
        for j in common:
            trial = out - out[j] / law[j] * law
            keep = np.abs(trial) > tol
            nnz = np.count_nonzero(keep)
            if nnz < best_nnz and not np.any(keep & (out == 0)):  # cancel terms, never bring new ones
                best, best_nnz = trial, nnz
        if best is not None:
            out = np.where(np.abs(best) > tol, best, 0.0)
    return out


def _effective_dof(scaled_grads: np.ndarray, a: np.ndarray, n_windows: int, length: int) -> float:
    """Degrees of freedom of the unweighted within-window sum of squares when the noise varies by state."""
    var = np.einsum("npd,p->nd", scaled_grads, a) ** 2
    var = var.sum(-1)
    return float(n_windows * (length - 1) * var.mean() ** 2 / max((var**2).mean(), 1e-300))


def _echelon(rows: np.ndarray, costs: list, fixed: Sequence[int] = ()) -> list[np.ndarray]:
    """Reduced row echelon form of the subspace's basis, pivoting on the costliest large entry first.

    The columns `fixed` (the costliest terms of the laws kept so far) are pivots first, and their rows are
    left out: the rows returned are zero there, so they cannot hold those laws again.
    """
    rows = rows.copy()
    free = list(range(len(rows)))

    def eliminate(col: int) -> int:
        r = free[int(np.argmax(np.abs(rows[free, col])))]
        rows[r] /= rows[r, col]
        for other in range(len(rows)):
            if other != r:
                rows[other] -= rows[other, col] * rows[r]
        free.remove(r)
        return r

    for col in fixed:
        if free and np.abs(rows[free, col]).max() >= 1e-6 * np.abs(rows[free]).max():
            eliminate(col)
    order = sorted(set(range(rows.shape[1])) - set(fixed), key=lambda j: costs[j], reverse=True)
    out = []
    while free:
        peak = np.abs(rows[free]).max()
        col = next(j for j in order if np.abs(rows[free, j]).max() >= 0.3 * peak)
        out.append(eliminate(col))
        order.remove(col)
    return [rows[r] for r in out]


def _sparsify(a, within, noise, dof, rank: np.ndarray, config: SparseConfig):
    """Backward elimination of terms from vector `a`; returns (support, coefficients, rho) or Nones."""
    support = np.flatnonzero(np.abs(a) >= config.prune * np.abs(a).max())
    penalty = float(special.chdtri(1, config.level / len(support)))  # growth of the residual (x dof / residual)
    rho, vec = _fit(within, noise, support)
    if rho > config.rho_max:
        return None, None, None
    while len(support) > 1:
        subsets = np.array([np.delete(support, i) for i in range(len(support))])
        trial, _ = _min_eig(_sub(within, subsets), _sub(noise, subsets))
        with np.errstate(over="ignore"):
            growth = (trial - rho) / max(rho, 1e-300) * dof
        cheap = np.flatnonzero(growth <= penalty)
        if cheap.size == 0:
            break
        drop = cheap[np.argsort(-rank[support[cheap]])]  # costliest first
        for n in (len(drop) // 2, 1) if len(drop) > 3 else (1,):
            candidate = np.delete(support, drop[:n])
            new_rho, new_vec = _fit(within, noise, candidate)
            if (new_rho - rho) / max(rho, 1e-300) * dof <= penalty * n:
                support, rho, vec = candidate, new_rho, new_vec
                break
        else:
            break
    return support, vec, rho


def _sub(m: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    return m[subsets[:, :, None], subsets[:, None, :]]


def _fit(within, noise, support) -> tuple[float, np.ndarray]:
    rho, vec = _min_eig(within[np.ix_(support, support)], noise[np.ix_(support, support)])
    return float(rho), vec


def _law(terms, coef, within, between, support, a_norm, rho) -> SparseLaw | None:
    """The law in its simplest form: the cheapest term that can lead gets coefficient 1."""
    order = sorted(range(len(terms)), key=lambda j: terms[j].cost)
    lead = next((j for j in order if terms[j].can_lead), None)
    if lead is None:
        return None
    order.remove(lead)
    order.insert(0, lead)
    w, t = within[np.ix_(support, support)], (within + between)[np.ix_(support, support)]
    score = float(a_norm @ w @ a_norm / (a_norm @ t @ a_norm))
    params = [float(coef[j] / coef[lead]) for j in order[1:]]
    return SparseLaw([terms[j] for j in order], law_template([terms[j] for j in order]), params, score, rho)
