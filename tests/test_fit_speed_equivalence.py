"""The fit stage's speed work must not change what it computes.

* the structural affine test finds exactly the skeletons sympy's derivative test found, with the
  same parts;
* fitting several data sets in one batch gives each exactly what fitting it alone gives;
* the zoom that reuses its centre's score picks what the full zoom (the former code, re-implemented
  here) picks;
* the known laws keep their coefficients.
"""

import math

import numpy as np
import pytest
import torch

from lawfinder.laws.compile import (
    _linear_parts_sympy,
    evaluate_part,
    evaluate_skeleton,
    evaluate_sympy_on_leaves,
    group_formulas,
)
from lawfinder.discovery.stage import FitConfig, window_arrays
from lawfinder.discovery.fit import FitSettings, _fit_search, _grid, fit_chunk, fit_chunk_many
from lawfinder.discovery.score import conservation_score
from lawfinder.data.systems import get_system


@pytest.fixture(scope="module")
def windows():
    true_w, random_w, _ = window_arrays(get_system("pendulum").load(), FitConfig())
    return [torch.as_tensor(w, dtype=torch.float64) for w in (true_w, random_w)]


def test_structural_affine_test_agrees_with_sympy(pendulum_set, windows):
    """Same affine skeletons, and parts that give the very same floating-point numbers on the data."""
    from lawfinder.laws.compile import evaluate_features

    groups, feature_ids = group_formulas(pendulum_set.dag, pendulum_set.enumeration.roots)
    features = evaluate_features(pendulum_set.dag, feature_ids, windows[0])
    n_affine = 0
    for group in groups:
        reference = _linear_parts_sympy(group.skeleton, group.n_params)
        assert (group.linear is None) == (reference is None), group.skeleton
        if reference is None:
            continue
        n_affine += 1
        leaves = features[torch.tensor(group.feature_refs)]
        for part, expr in zip((group.linear[0], *group.linear[1]), (reference[0], *reference[1])):
            got, want = evaluate_part(part, leaves), evaluate_sympy_on_leaves(expr, leaves)
            assert ((got == want) | (got.isnan() & want.isnan())).all(), (group.skeleton, part, expr)
    assert n_affine == sum(1 for g in groups if g.linear is not None) and n_affine > 10


def _sample(pendulum_set, n=400):
    roots = pendulum_set.enumeration.roots
    return [roots[i] for i in np.random.default_rng(3).choice(len(roots), n, replace=False)]


def test_one_batch_for_several_data_sets_equals_separate_fits(pendulum_set, windows):
    roots = _sample(pendulum_set)
    settings = FitSettings(seed=5)
    together = fit_chunk_many(pendulum_set.dag, roots, windows, settings)
    assert {"none", "exact", "search"} <= set(together[0].method)
    for w, fit in zip(windows, together):
        alone = fit_chunk(pendulum_set.dag, roots, w, settings)
        np.testing.assert_allclose(fit.score, alone.score, rtol=1e-12, atol=0)
        for a, b in zip(fit.params, alone.params):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
        assert fit.reason == alone.reason and fit.method == alone.method


def _full_zoom(skeleton, leaves, log_mag, sign, settings):
    """The search as it was: every zoom scores all its points, the result is re-scored at the end."""
    n, k = leaves.shape[0], log_mag.shape[-1]
    leaves_b = leaves.unsqueeze(2)

    def score(params):
        return conservation_score(evaluate_skeleton(skeleton, leaves_b, params.unsqueeze(-1).unsqueeze(-1)))

    best = torch.nan_to_num(score(sign * log_mag.exp()), nan=math.inf).argsort(dim=1)[:, : settings.refine]
    u = torch.gather(log_mag, 1, best.unsqueeze(-1).expand(-1, -1, k))
    s = torch.gather(sign, 1, best.unsqueeze(-1).expand(-1, -1, k))
    base = torch.linspace(math.log(1e-2), math.log(1e2), settings.grid // 2, dtype=leaves.dtype)
    step, offsets = float(base[1] - base[0]), torch.linspace(-1.0, 1.0, settings.zoom_points, dtype=leaves.dtype)
    rows = torch.arange(n)[:, None]
    for _ in range(settings.zoom_rounds):
        for j in range(k):
            trial = u.unsqueeze(2).repeat(1, 1, len(offsets), 1)
            trial[..., j] += step * offsets
            trial = trial.flatten(1, 2)
            signs = s.unsqueeze(2).expand(-1, -1, len(offsets), -1).flatten(1, 2)
            trial_score = torch.nan_to_num(score(signs * trial.exp()), nan=math.inf).view(n, -1, len(offsets))
            u = trial.view(n, -1, len(offsets), k)[rows, torch.arange(u.shape[1]), trial_score.argmin(-1)]
        step *= 2.0 / (settings.zoom_points - 1)
    params = s * u.exp()
    final = score(params)
    pick = torch.nan_to_num(final, nan=math.inf).argmin(1)
    return final[rows[:, 0], pick], params[rows[:, 0], pick]


def test_zoom_reusing_its_centre_picks_what_the_full_zoom_picks(pendulum_set, windows):
    roots = _sample(pendulum_set, 600)
    groups, feature_ids = group_formulas(pendulum_set.dag, roots)
    from lawfinder.laws.compile import evaluate_features

    features = evaluate_features(pendulum_set.dag, feature_ids, windows[0])
    settings = FitSettings(seed=1)
    searched = 0
    for group in [g for g in groups if g.n_params and g.linear is None][:40]:
        leaves = features[torch.tensor(group.feature_refs)]
        log_mag, sign = _grid(group, settings, leaves.dtype)
        got_score, got_params = _fit_search(group.skeleton, leaves, log_mag, sign, settings)
        want_score, want_params = _full_zoom(group.skeleton, leaves, log_mag, sign, settings)
        np.testing.assert_allclose(got_score, want_score, rtol=1e-12, atol=0)
        np.testing.assert_allclose(got_params, want_params, rtol=1e-12, atol=0)
        searched += len(group.formulas)
    assert searched > 50


def test_known_laws_keep_their_coefficients_and_degenerate_forms_their_reason(pendulum_set, windows):
    from dsl import nodes

    wanted = {"p**2 + C0*cos(q)": None, "cos(q) + cos(C0*p)": None, "q*(q + C0/q)": None}
    for root in pendulum_set.enumeration.roots:
        text = nodes.to_string(pendulum_set.dag.to_node(root))
        if text in wanted:
            wanted[text] = root
    assert all(v is not None for v in wanted.values()), wanted
    roots = list(wanted.values())
    fit = fit_chunk(pendulum_set.dag, roots, windows[0], FitSettings(seed=0))
    # values of the fit before the speed work (the former results/fit.md): exact path, then search path
    np.testing.assert_allclose(fit.params[0], [-3.0000004287051469], rtol=1e-6)
    assert fit.method[0] == "exact" and fit.score[0] < 1e-10
    np.testing.assert_allclose(np.abs(fit.params[1]), [0.938135617905096], rtol=1e-6)
    assert fit.method[1] == "search"
    assert fit.reason[2] == "terms cancel: constant on the data"  # its C0 part is q/q: exactly 1, as sympy had it
