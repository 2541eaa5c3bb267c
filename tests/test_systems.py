"""Built-in systems reproduce the HNN protocol; the Trajectories container behaves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from scipy.integrate import solve_ivp

import lawfinder
from lawfinder.data.systems import SYSTEMS, get_system, real_pendulum_table, split_in_time
from lawfinder.data.trajectories import Trajectories
from lawfinder.data.userdata import check_unit
from lawfinder.errors import UserError

torch.set_num_threads(1)

SOLVER_TOL = 1e-4


def hnn_reference(kind: str, noise_std: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A line-by-line transcription of HNN's get_dataset for its spring and pendulum."""
    if kind == "spring":
        timescale, radius_fn = 10, (lambda rs: rs.rand() * 0.9 + 0.1)

        def dynamics_fn(t, coords):
            q, p = np.split(coords, 2)
            return np.concatenate([2 * p, -2 * q])
    else:
        timescale, radius_fn = 15, (lambda rs: rs.rand() + 1.3)

        def dynamics_fn(t, coords):
            q, p = np.split(coords, 2)
            return np.concatenate([2 * p, -3 * np.sin(q)])

    rs = np.random.RandomState(seed)
    xs, dxs = [], []
    for _ in range(50):
        t_span = [0, 3]
        t_eval = np.linspace(t_span[0], t_span[1], int(timescale * (t_span[1] - t_span[0])))
        y0 = rs.rand(2) * 2 - 1
        radius = radius_fn(rs)
        y0 = y0 / np.sqrt((y0**2).sum()) * radius
        ivp = solve_ivp(fun=dynamics_fn, t_span=t_span, y0=y0, t_eval=t_eval, rtol=1e-10)
        q, p = ivp["y"][0], ivp["y"][1]
        dydt = np.stack([dynamics_fn(None, y) for y in ivp["y"].T]).T
        dqdt, dpdt = np.split(dydt, 2)
        q += rs.randn(*q.shape) * noise_std
        p += rs.randn(*p.shape) * noise_std
        xs.append(np.stack([q, p]).T)
        dxs.append(np.stack([dqdt, dpdt]).T)
    return np.concatenate(xs), np.concatenate(dxs).squeeze()


def test_registry_lists_all_systems():
    assert set(SYSTEMS) == {"spring", "pendulum", "real-pendulum", "random-walk", "rigid-body", "two-body", "kepler",
                            "coupled-oscillators", "coupled-ou"}
    for name, system in SYSTEMS.items():
        assert system.name == name
        assert "\n" not in system.description and system.description
        assert set(system.units) == set(system.variables)


def test_unknown_system_lists_valid_names():
    with pytest.raises(UserError, match="unknown system 'pendel'; choose one of: spring, pendulum"):
        get_system("pendel")


def test_units_parse_with_pint():
    for system in SYSTEMS.values():
        for variable, unit in system.units.items():
            check_unit(unit, variable)


@pytest.mark.parametrize("name", [n for n, s in SYSTEMS.items() if s.oracle is not None])
def test_oracle_text_matches_oracle_fn(name):
    system = SYSTEMS[name]
    symbols = sympy.symbols(system.variables)
    expr = sympy.sympify(system.oracle, locals=dict(zip(system.variables, symbols)))
    assert expr.free_symbols <= set(symbols)
    f = sympy.lambdify(symbols, expr, "numpy")
    x = np.random.default_rng(0).uniform(0.3, 1.5, size=(20, len(symbols)))
    np.testing.assert_allclose(f(*x.T), system.oracle_fn(x), rtol=1e-12)


@pytest.mark.parametrize("name, steps, points", [("spring", 30, 750), ("pendulum", 45, 1125)])
def test_hnn_shapes_grids_and_split(name, steps, points):
    data = get_system(name).load()
    assert data.n_trajectories == 50
    assert data.lengths == (steps,) * 50
    assert data.variables == ("q", "p")
    for t in data.times:
        np.testing.assert_array_equal(t, np.linspace(0, 3, steps))
    assert data.split == ("train",) * 25 + ("test",) * 25
    assert data.train().n_points == data.test().n_points == points
    for part in (data.train(), data.test()):
        x, dx = part.derivative_pairs()
        assert x.shape == dx.shape == (points, 2)


def test_spring_energy_range_and_units():
    system = get_system("spring")
    data = system.load()
    energy = np.array([system.oracle_fn(x[0]) for x in data.states])
    assert np.all((energy >= 0.01) & (energy < 1.0))
    assert data.units == {"q": "m", "p": "kg*m/s"}
    assert np.diff(data.times[0])[0] == pytest.approx(3 / 29)


def test_pendulum_initial_radius_range_and_units():
    data = get_system("pendulum").load()
    radius = np.array([np.hypot(*x[0]) for x in data.states])
    assert np.all((radius >= 1.3) & (radius < 2.3))
    assert data.units == {"q": "rad", "p": "kg*m**2/s"}
    assert np.diff(data.times[0])[0] == pytest.approx(3 / 44)


@pytest.mark.parametrize("name", ["spring", "pendulum", "two-body", "rigid-body"])
def test_true_energy_conserved_to_solver_tolerance(name):
    system = get_system(name)
    for x in system.load().states:
        energy = system.oracle_fn(x)
        assert np.ptp(energy) < SOLVER_TOL * max(1.0, np.abs(energy).max())


@pytest.mark.parametrize("name", ["spring", "pendulum"])
def test_clean_targets_are_the_analytic_field(name):
    data = get_system(name).load()
    x, dx = data.derivative_pairs()
    force = -2 * x[:, 0] if name == "spring" else -3 * np.sin(x[:, 0])
    np.testing.assert_allclose(dx, np.stack([2 * x[:, 1], force], axis=1), atol=1e-12)


@pytest.mark.parametrize("name", ["spring", "pendulum"])
def test_matches_hnn_code_draw_for_draw(name):
    x_ref, dx_ref = hnn_reference(name, noise_std=0.1)
    x, dx = get_system(name).load(noise=0.1).derivative_pairs()
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["spring", "pendulum"])
def test_noise_level_is_what_was_asked(name):
    system = get_system(name)
    clean, noisy = system.load(), system.load(noise=0.1)
    residual = noisy.all_states() - clean.all_states()
    assert residual.std() == pytest.approx(0.1, rel=0.05)
    assert abs(residual.mean()) < 0.01
    np.testing.assert_array_equal(noisy.derivative_pairs()[1], clean.derivative_pairs()[1])


def test_seeds_and_fresh_copies():
    system = get_system("spring")
    a, b = system.load(seed=0), system.load(seed=0)
    np.testing.assert_array_equal(a.all_states(), b.all_states())
    a.states[0][:] = 99.0
    assert not np.any(system.load().states[0] == 99.0)
    assert not np.allclose(system.load(seed=1).states[0], b.states[0])


@pytest.mark.parametrize("noise, seed", [(-0.1, 0), (float("nan"), 0), (0.0, -1), (0.0, 1.5)])
def test_load_rejects_bad_noise_and_seed(noise, seed):
    with pytest.raises(UserError, match="noise must be|seed must be"):
        get_system("spring").load(noise=noise, seed=seed)


def test_real_pendulum_raw_file():
    table = real_pendulum_table()
    assert table.shape == (556, 4)
    assert table[0, 1] == pytest.approx(5.0) and table[-1, 1] == pytest.approx(99.5)
    steps = np.diff(table[:, 1])
    assert np.sum(~np.isclose(steps, 1 / 6)) == 10
    assert resources.files("lawfinder").joinpath("data", "real_pend_h_1.txt").is_file()
    assert resources.files("lawfinder").joinpath("data", "README.md").is_file()


def test_real_pendulum_split_in_time():
    data = get_system("real-pendulum").load()
    table = real_pendulum_table()
    assert data.variables == ("q", "v") and data.units == {"q": "rad", "v": "rad/s"}
    assert data.split == ("train", "test")
    train_x, train_dx = data.train().derivative_pairs()
    test_x, test_dx = data.test().derivative_pairs()
    assert len(train_x) == 444 and len(test_x) == 111
    raw = table[:, 2:4]
    fd = np.diff(raw, axis=0) / np.diff(table[:, 1])[:, None]
    np.testing.assert_allclose(np.concatenate([train_dx, test_dx]), fd, rtol=1e-12)
    np.testing.assert_array_equal(np.concatenate([train_x, test_x]), raw[:-1])
    np.testing.assert_array_equal(data.states[0][-1], data.states[1][0])
    assert data.n_points == 557


def test_real_pendulum_loads_from_a_copied_package(tmp_path):
    package = Path(lawfinder.__file__).parent
    shutil.copytree(package, tmp_path / "lawfinder", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import lawfinder, lawfinder.data.systems as s; "
        "d = s.get_system('real-pendulum').load(); "
        "print(lawfinder.__file__, len(d.train().derivative_pairs()[0]))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    file, n_train = out.stdout.split()
    assert file.startswith(str(tmp_path)) and n_train == "444"


def test_random_walk_is_a_control():
    system = get_system("random-walk")
    assert system.oracle is None and system.oracle_fn is None
    data = system.load()
    assert data.n_trajectories == 50 and data.lengths == (45,) * 50
    assert data.derivatives is None
    assert data.units == get_system("pendulum").units


@pytest.mark.parametrize("name", ["two-body", "kepler", "coupled-oscillators"])
def test_many_variable_systems_conserve_every_listed_invariant(name):
    system = get_system(name)
    data = system.load()
    assert data.n_trajectories == 50 and data.dims == len(system.variables)
    symbols = sympy.symbols(system.variables)
    for text in (system.oracle, *system.also_conserved):
        f = sympy.lambdify(symbols, sympy.sympify(text), "numpy")
        values = [f(*x.T) for x in data.states]
        spread = np.std([v.mean() for v in values])
        assert spread > 0.01, text  # differs between trajectories: the data can show it
        assert max(np.ptp(v) for v in values) < 1e-6 * spread, text


def test_two_body_momentum_is_a_law_of_the_data_not_of_the_generator():
    data = get_system("two-body").load()
    momentum = np.array([x[0, 4] + x[0, 6] for x in data.states])
    assert np.std(momentum) > 0.05  # random total momentum (HNN's generator starts every orbit at zero)
    nodes = list(sympy.preorder_traversal(sympy.sympify(get_system("two-body").oracle)))
    assert len(nodes) > 7  # its energy is beyond the size-7 search


def test_coupled_ou_control_has_no_listed_law():
    system = get_system("coupled-ou")
    assert system.oracle is None and system.load().dims == 4


def make(lengths=(4, 3), derivatives=False, split=None) -> Trajectories:
    rng = np.random.default_rng(0)
    states = tuple(rng.normal(size=(n, 2)) for n in lengths)
    times = tuple(np.cumsum(rng.uniform(0.1, 1.0, size=n)) for n in lengths)
    return Trajectories(
        name="toy",
        variables=("q", "p"),
        units={"q": "m", "p": "kg*m/s"},
        states=states,
        times=times,
        derivatives=tuple(s * 2 for s in states) if derivatives else None,
        split=split or ("train",) * (len(lengths) - 1) + ("test",),
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"units": {"q": "m"}}, "units must name exactly the variables"),
        ({"states": (np.zeros((4, 3)), np.zeros((3, 2)))}, r"shape \(4, 3\), expected \(T, 2\)"),
        ({"states": (np.full((4, 2), np.nan), np.zeros((3, 2)))}, "contain NaN or inf"),
        (
            {"times": (np.array([0.0, 1.0, 1.0, 2.0]), np.arange(3.0))},
            "not strictly increasing at point 2",
        ),
        ({"times": (np.arange(3.0), np.arange(3.0))}, r"times have shape \(3,\), expected \(4,\)"),
        ({"split": ("train", "validation")}, "split label 'validation'"),
        ({"derivatives": (np.zeros((3, 2)), np.zeros((3, 2)))}, "derivatives have shape"),
        ({"variables": ("q", "q")}, "non-empty and distinct"),
        (
            {
                "states": (np.zeros((1, 2)), np.zeros((3, 2))),
                "times": (np.zeros(1), np.arange(3.0)),
            },
            "at least 2",
        ),
    ],
)
def test_container_validation(change, message):
    with pytest.raises(UserError, match=message):
        make().replace(**change)


def test_subset_windows_and_pairs():
    data = make(lengths=(7, 5, 2), split=("train", "test", "train"))
    assert data.train().lengths == (7, 2) and data.test().lengths == (5,)
    with pytest.raises(UserError, match="unknown split"):
        data.subset("val")
    windows = data.windows(3, stride=2)
    assert windows.lengths == (3,) * 5
    assert windows.split == ("train",) * 3 + ("test",) * 2
    np.testing.assert_array_equal(windows.states[1], data.states[0][2:5])
    assert data.windows(3).lengths == (3, 3, 3)
    x, dx = data.derivative_pairs()
    assert x.shape == (11, 2) == dx.shape
    expected = (data.states[0][1] - data.states[0][0]) / (data.times[0][1] - data.times[0][0])
    np.testing.assert_allclose(dx[0], expected)
    with pytest.raises(UserError, match="window length"):
        data.windows(1)


def test_to_torch_pads_with_last_row_and_masks():
    data = make(lengths=(4, 2), derivatives=True)
    batch = data.to_torch()
    assert batch.states.shape == (2, 4, 2) and batch.states.dtype == torch.float64
    assert batch.mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.lengths.tolist() == [4, 2]
    np.testing.assert_array_equal(batch.states[1, 3].numpy(), data.states[1][-1])
    assert batch.derivatives.shape == (2, 4, 2)
    assert data.to_torch(dtype=torch.float32).times.dtype == torch.float32


def test_split_in_time_edges():
    t = np.arange(3.0)
    x = np.zeros((3, 2))
    units = {"q": "m", "p": "m"}
    short = split_in_time("s", ("q", "p"), units, x, t)
    assert short.lengths == (2, 2) and short.n_derivative_samples == 2
    kept = split_in_time("s", ("q", "p"), units, x, t, derivatives=x)
    assert kept.split == ("train",)
    disjoint = split_in_time(
        "s", ("q", "p"), units, np.zeros((10, 2)), np.arange(10.0), np.zeros((10, 2))
    )
    assert disjoint.lengths == (8, 2)


def test_systems_command_lists_every_system():
    from click.testing import CliRunner

    from lawfinder.cli.app import cli

    result = CliRunner().invoke(cli, ["systems"])
    assert result.exit_code == 0, result.output
    for name, system in SYSTEMS.items():
        assert name in result.output and system.description in result.output
        if system.oracle:
            assert f"oracle: {system.oracle}" in result.output
    assert "444/111" in result.output and "750/750" in result.output
    as_json = CliRunner().invoke(cli, ["systems", "--json"])
    assert '"derivative_samples": [\n      444,\n      111\n    ]' in as_json.output


def test_rigid_body_conserves_energy_and_angular_momentum_and_has_its_field():
    system = get_system("rigid-body")
    data = system.load()
    assert data.variables == ("w1", "w2", "w3") and data.lengths == (60,) * 50
    momentum = sympy.lambdify(sympy.symbols(data.variables), sympy.sympify(system.also_conserved[0]), "numpy")
    for x, dx in zip(data.states, data.derivatives):
        assert np.ptp(momentum(*x.T)) < 1e-8
        np.testing.assert_allclose(np.gradient(x, data.times[0], axis=0)[5:-5], dx[5:-5], atol=2e-2)


def test_oracles_are_valid_formulas_within_the_dsl():
    import dsl
    from lawfinder.data.systems import SYSTEMS

    for system in SYSTEMS.values():  # the ranking stage parses every oracle with the system's units
        if system.oracle is not None:
            dsl.parse(system.oracle, system.units)
