"""Phase-randomised surrogates keep each variable's spectrum but not the relations between variables.

The false-law test (`lawfinder.discovery.acceptance`) refits the shortlisted formulas on
end-matched surrogates; on a 60-point random walk (lawless but autocorrelated,
so it passes the random-sequence shortlist) nothing is accepted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import dsl
from lawfinder.data import lawless
from lawfinder.data.systems import get_system
from lawfinder.data.trajectories import Trajectories
from lawfinder.discovery.controls import phase_randomised, shuffled_pairs
from lawfinder.discovery.stage import FitConfig, fit_conservation
from lawfinder.errors import UserError
from tests.conftest import PENDULUM_UNITS


def circles(n_points: int, n: int = 20) -> Trajectories:
    """``q = r cos t, p = r sin t`` (so q**2 + p**2 = r**2 is conserved), one radius per sequence."""
    t = np.linspace(0.0, 2 * np.pi, n_points, endpoint=False)
    radii = np.linspace(0.5, 1.5, n)
    states = tuple(np.stack([r * np.cos(t) + 0.2, r * np.sin(t) - 0.1], axis=1) for r in radii)
    return Trajectories(
        "circles", ("q", "p"), {"q": "m", "p": "m"}, states, (t,) * n, None, ("train",) * n
    )


def random_walk(n_points: int, seed: int, n: int = 50) -> Trajectories:
    """The lawless random walks (`lawfinder.data.lawless.random_walk`) with `n_points` per walk."""
    return lawless.random_walk(n_points, seed, n_sequences=n)


@pytest.mark.parametrize("n_points", [32, 45])  # even (a real Nyquist term) and odd lengths
def test_keeps_each_variables_amplitude_spectrum_and_mean(n_points):
    data = circles(n_points)
    surrogate = phase_randomised(data, seed=0)
    assert surrogate.name == "circles:surrogate"
    assert surrogate.lengths == data.lengths and surrogate.split == data.split
    assert surrogate.variables == data.variables and surrogate.units == data.units
    assert surrogate.derivatives is None
    for x, s in zip(data.states, surrogate.states):
        assert np.isrealobj(s) and s.shape == x.shape
        np.testing.assert_allclose(
            np.abs(np.fft.rfft(s, axis=0)), np.abs(np.fft.rfft(x, axis=0)), atol=1e-10
        )
        np.testing.assert_allclose(s.mean(0), x.mean(0), atol=1e-12)
        np.testing.assert_allclose(s.var(0), x.var(0), rtol=1e-10)  # Parseval: same variance too
        assert not np.allclose(s, x)


def test_keeps_the_sign_of_a_negative_mean_and_a_constant_variable():
    t = np.arange(10.0)
    x = np.stack([np.full(10, -3.0), np.sin(t) - 2.0], axis=1)
    s = phase_randomised(
        Trajectories("d", ("a", "b"), {"a": "m", "b": "m"}, (x,), (t,), None, ("train",)), 1
    )
    np.testing.assert_allclose(s.states[0][:, 0], -3.0, atol=1e-12)
    np.testing.assert_allclose(s.states[0][:, 1].mean(), x[:, 1].mean(), atol=1e-12)


def test_destroys_the_relation_between_variables():
    data = circles(40)
    surrogate = phase_randomised(data, seed=0)

    def spread(traj):  # relative fluctuation of q**2 + p**2 about each sequence's centre
        return max(np.std(((x - x.mean(0)) ** 2).sum(1)) / np.mean(((x - x.mean(0)) ** 2).sum(1))
                   for x in traj.states)  # fmt: skip

    assert spread(data) < 1e-12
    assert spread(surrogate) > 0.1


def test_seeded():
    data = get_system("pendulum").load().train().windows(45)
    a, b = phase_randomised(data, seed=5), phase_randomised(data, seed=5)
    np.testing.assert_array_equal(a.all_states(), b.all_states())
    assert not np.allclose(a.all_states(), phase_randomised(data, seed=6).all_states())


def test_empty_data_is_refused():
    empty = get_system("spring").load().subset("train").windows(100)
    with pytest.raises(UserError, match="no states"):
        phase_randomised(empty, seed=0)


@pytest.fixture(scope="module")
def walk_tables():
    """A 60-point random walk (seed 0) at size 6, with and without the surrogate control."""
    torch.set_num_threads(1)
    formulas = dsl.FormulaSet.enumerate(PENDULUM_UNITS, 6)
    data = random_walk(60, seed=0)
    return {
        on: fit_conservation(data, formulas, FitConfig(surrogate_control=on))
        for on in (False, True)
    }


def test_a_random_walk_is_shortlisted_but_nothing_is_accepted(walk_tables):
    off, on = walk_tables[False], walk_tables[True]
    assert (on.conservation_ratio >= 100).sum() > 0  # autocorrelation passes the paper's test
    assert on.accepted.sum() == 0
    tested = on[on.p_value.notna()]
    assert len(tested) > 0 and (tested.p_value > 0.01).all()
    assert tested.reject_reason.str.startswith("as well conserved on lawless surrogates").all()
    # without the false-law test nothing is exact, so the best approximation is all that is left
    assert off.p_value.isna().all()
    assert off.accepted.sum() == 1 and off.status[off.accepted].eq("approximate").all()
    assert (off.noise_ratio[off.accepted] > 2).all()  # far beyond the noise: no exact law
    same = ["template", "formula", "score_true", "score_random", "conservation_ratio", "noise_ratio"]
    on_sorted, off_sorted = (
        on.sort_values("root").reset_index(),
        off.sort_values("root").reset_index(),
    )
    pd.testing.assert_frame_equal(on_sorted[same], off_sorted[same])


def test_shuffled_pairs_keep_every_path_and_break_every_pairing():
    walk = random_walk(45, seed=1, n=6)
    shuffled = shuffled_pairs(walk, seed=0)
    x, s = np.stack(walk.states), np.stack(shuffled.states)
    np.testing.assert_array_equal(s[..., 0], x[..., 0])
    assert sorted(map(tuple, s[..., 1])) == sorted(map(tuple, x[..., 1]))  # the same paths, other partners
    assert not any(np.array_equal(s[i, :, 1], x[i, :, 1]) for i in range(len(x)))
    with pytest.raises(UserError, match="at least 3 sequences of one length"):
        shuffled_pairs(walk.replace(states=walk.states[:2], times=walk.times[:2], split=walk.split[:2]), seed=0)


def test_true_law_survives_the_surrogate_control():
    torch.set_num_threads(1)
    t = np.linspace(0.0, 4.0, 40)
    radii = np.linspace(0.5, 1.5, 20)
    states = tuple(np.stack([r * np.cos(2 * t + r), r * np.sin(2 * t + r)], axis=1) for r in radii)
    data = Trajectories(
        "circles", ("q", "p"), {"q": "m", "p": "m"}, states, (t,) * 20, None, ("train",) * 20
    )
    table = fit_conservation(data, dsl.FormulaSet.enumerate(data.units, 5), FitConfig())
    row = table[table.template == "q**2 + p**2"].iloc[0]
    assert row.accepted and row.reject_reason == "" and row.status == "law"
    assert row.surrogate_ratio > 1e6 and row.p_value < 1e-6
    assert np.isclose(row.surrogate_ratio, row.score_surrogate / row.score_true)


def test_resume_with_the_surrogate_control_switched_on(tmp_path, walk_tables):
    """The chunks do not depend on the surrogate control: a resumed run may switch it and still matches."""
    torch.set_num_threads(1)
    formulas = dsl.FormulaSet.enumerate(PENDULUM_UNITS, 6)
    data = random_walk(60, seed=0)
    fit_conservation(data, formulas, FitConfig(surrogate_control=False), out_dir=tmp_path)
    assert len(list((tmp_path / "chunks").glob("chunk-*.parquet"))) == 2
    resumed = fit_conservation(data, formulas, FitConfig(), out_dir=tmp_path, resume=True)
    pd.testing.assert_frame_equal(resumed, walk_tables[True])
    with pytest.raises(UserError, match="other settings"):
        fit_conservation(data, formulas, FitConfig(chunk_size=300), out_dir=tmp_path, resume=True)


def test_cli_switch(tmp_path):
    from click.testing import CliRunner

    from lawfinder.cli.app import cli

    walk = random_walk(60, seed=0)
    keep = list(range(32))  # the 25 training walks first: 80% of 32 are train, as in `walk`
    rows = [
        {"trajectory": f"w{k}", "t": t, "q": x[0], "p": x[1]}
        for k in keep
        for t, x in zip(walk.times[k], walk.states[k])
    ]
    data = tmp_path / "walk.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    args = ["fit", "--data", str(data), "--units", "q=rad", "--units", "p=kg*m**2/s"]
    args += ["--max-size", "6", "--quiet"]
    out = {}
    for flag in ("--surrogate-control", "--no-surrogate-control"):
        result = CliRunner().invoke(cli, [*args, flag, "--out", str(tmp_path / flag)])
        assert result.exit_code == 0, result.output
        out[flag] = pd.read_parquet(tmp_path / flag / "candidates.parquet")
    assert out["--no-surrogate-control"].p_value.isna().all()
    assert out["--surrogate-control"].p_value.notna().sum() > 0
    assert out["--surrogate-control"].accepted.sum() == 0
    assert out["--no-surrogate-control"].status.eq("law").sum() == 0
