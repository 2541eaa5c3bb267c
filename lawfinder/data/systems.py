"""Built-in systems: the paper's data sets and two controls, in a string-keyed registry.

``SYSTEMS[name].load(noise, seed)`` returns a `Trajectories`. Each system knows
its energy as a formula string over its variable names (`System.oracle`,
plain text that ``sympy.sympify`` reads and ``dsl.parse`` turns into a
formula) and as a numpy function (`System.oracle_fn`).

- ``spring`` and ``pendulum`` follow the Hamiltonian Neural Networks (HNN)
  data code exactly: the same random stream (legacy ``RandomState(seed)``,
  drawn in HNN's order, noise always drawn and scaled by ``noise``), ODEs,
  time grids, ``solve_ivp`` settings and clean analytic dx/dt targets. With
  ``noise=0.1`` the states equal HNN's default noisy data set; the default
  ``noise=0`` is the noise-free data of the Noether Networks paper.
- ``real-pendulum`` is the Schmidt & Lipson measurement shipped in
  ``lawfinder/data`` (see its README), split in time as in HNN.
- ``random-walk`` is a control with no conserved quantity (more lawless
  generators in `lawfinder.data.lawless`).
- ``rigid-body`` is a torque-free rigid body (Euler's equations, principal
  moments 1, 2, 3): three variables and two independent invariants, the
  energy and the squared angular momentum.
- ``two-body``, ``kepler``, ``coupled-oscillators`` (several independent
  invariants, some beyond a size-7 search) and the lawless ``coupled-ou``
  live in `lawfinder.data.manybody`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
from scipy.integrate import solve_ivp

from lawfinder.data import manybody
from lawfinder.data.tables import split_arrays
from lawfinder.data.trajectories import Trajectories
from lawfinder.errors import UserError

HNN_TRAJECTORIES = 50
REAL_PENDULUM_FILE = "real_pend_h_1.txt"


@dataclass(frozen=True)
class System:
    """A built-in data set with its known conserved quantity.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"pendulum"``.
    description : str
        One line for listings.
    variables : tuple of str
        State variable names.
    units : dict of str to str
        Pint unit string per variable.
    oracle : str or None
        The known energy as formula text over the variables (up to an
        additive constant), or None for a control without a law.
    oracle_fn : callable or None
        ``oracle_fn(states)`` evaluates `oracle` on an ``(..., d)`` array.
    also_conserved : tuple of str
        Further known invariants, as formula text (e.g. angular momentum).
    """

    name: str
    description: str
    variables: tuple[str, ...]
    units: dict[str, str]
    oracle: str | None
    oracle_fn: Callable[[np.ndarray], np.ndarray] | None
    generate: Callable[[float, int], Trajectories] = field(repr=False)
    also_conserved: tuple[str, ...] = ()

    def load(self, noise: float = 0.0, seed: int = 0) -> Trajectories:
        """Build the data set.

        Parameters
        ----------
        noise : float
            Standard deviation of Gaussian noise added to every state (not to
            the dx/dt targets).
        seed : int
            Seed of the random stream (initial states and noise).

        Returns
        -------
        Trajectories
            A fresh copy: generated data are cached, so loading again is cheap.
        """
        if not np.isfinite(noise) or noise < 0:
            raise UserError(f"noise must be a finite number >= 0, got {noise}")
        if int(seed) != seed or seed < 0:
            raise UserError(f"seed must be an integer >= 0, got {seed}")
        return self.generate(float(noise), int(seed)).replace()


def _hnn_oscillator(
    name: str,
    units: dict[str, str],
    field_fn: Callable[[np.ndarray], np.ndarray],
    n_steps: int,
    radius_scale: float,
    radius_offset: float,
    noise: float,
    seed: int,
) -> Trajectories:
    """HNN's ``get_dataset`` for its spring and pendulum, kept draw for draw."""
    rng = np.random.RandomState(seed)
    t_eval = np.linspace(0, 3, n_steps)
    states, derivs = [], []
    for _ in range(HNN_TRAJECTORIES):
        y0 = rng.rand(2) * 2 - 1
        radius = rng.rand() * radius_scale + radius_offset
        y0 = y0 / np.sqrt((y0**2).sum()) * radius
        sol = solve_ivp(
            fun=lambda t, y: field_fn(y), t_span=[0, 3], y0=y0, t_eval=t_eval, rtol=1e-10
        )
        x = sol.y.T.copy()
        derivs.append(field_fn(x.T).T)
        x[:, 0] += rng.randn(n_steps) * noise
        x[:, 1] += rng.randn(n_steps) * noise
        states.append(x)
    half = HNN_TRAJECTORIES // 2
    return Trajectories(
        name=name,
        variables=("q", "p"),
        units=units,
        states=tuple(states),
        times=(t_eval,) * HNN_TRAJECTORIES,
        derivatives=tuple(derivs),
        split=("train",) * half + ("test",) * (HNN_TRAJECTORIES - half),
    )


def _spring_field(y: np.ndarray) -> np.ndarray:
    q, p = y
    return np.stack([2 * p, -2 * q])


def _pendulum_field(y: np.ndarray) -> np.ndarray:
    q, p = y
    return np.stack([2 * p, -3 * np.sin(q)])


@functools.lru_cache(maxsize=8)
def _spring(noise: float, seed: int) -> Trajectories:
    units = {"q": "m", "p": "kg*m/s"}
    return _hnn_oscillator("spring", units, _spring_field, 30, 0.9, 0.1, noise, seed)


@functools.lru_cache(maxsize=8)
def _pendulum(noise: float, seed: int) -> Trajectories:
    units = {"q": "rad", "p": "kg*m**2/s"}
    return _hnn_oscillator("pendulum", units, _pendulum_field, 45, 1.0, 1.3, noise, seed)


def real_pendulum_table() -> np.ndarray:
    """The raw measurements, ``(556, 4)``: trial, t [s], angle [rad], angular velocity [rad/s]."""
    text = resources.files("lawfinder").joinpath("data", REAL_PENDULUM_FILE).read_text()
    return np.loadtxt(io.StringIO(text), comments="%")


def split_in_time(name: str, variables: tuple[str, ...], units: dict[str, str], states: np.ndarray,
                  times: np.ndarray, derivatives: np.ndarray | None = None, train_fraction: float = 0.8,
                  time_unit: str = "s") -> Trajectories:  # fmt: skip
    """Split one long trajectory in time into a train part and a test part.

    Follows the HNN protocol for the real pendulum: of the derivative samples,
    the first ``int(train_fraction * n)`` are train and the rest test, in time
    order.

    - Finite differences (`derivatives` None): the train part is rows
      ``0..k`` and the test part rows ``k..T-1``; they share row ``k``, which
      is the end point of the last training difference, exactly as in HNN.
      Then ``derivative_pairs`` gives ``k`` train and ``T - 1 - k`` test samples.
    - Stored derivatives: rows ``0..k-1`` and ``k..T-1``, disjoint; ``k`` is
      kept in ``[2, T - 2]`` so both parts have two points; a trajectory of 3
      points stays whole in train.
    """
    parts = split_arrays([states], [times], None if derivatives is None else [derivatives], train_fraction)
    return Trajectories(name, variables, units, *parts, time_unit)


@functools.lru_cache(maxsize=8)
def _real_pendulum(noise: float, seed: int) -> Trajectories:
    table = real_pendulum_table()
    x = table[:, 2:4].copy()
    x += np.random.default_rng(seed).standard_normal(x.shape) * noise
    return split_in_time(
        "real-pendulum", ("q", "v"), {"q": "rad", "v": "rad/s"}, x, table[:, 1], None, 0.8
    )


@functools.lru_cache(maxsize=8)
def _random_walk(noise: float, seed: int) -> Trajectories:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, 45)
    step = np.sqrt(np.diff(t))[:, None]
    states = []
    for _ in range(HNN_TRAJECTORIES):
        x0 = rng.uniform(-0.5, 0.5, size=(1, 2))
        walk = np.cumsum(rng.standard_normal((t.size - 1, 2)) * step, axis=0)
        x = np.concatenate([x0, x0 + walk])
        states.append(x + rng.standard_normal(x.shape) * noise)
    half = HNN_TRAJECTORIES // 2
    return Trajectories(
        name="random-walk",
        variables=("q", "p"),
        units={"q": "rad", "p": "kg*m**2/s"},
        states=tuple(states),
        times=(t,) * HNN_TRAJECTORIES,
        derivatives=None,
        split=("train",) * half + ("test",) * half,
    )


RIGID_BODY_MOMENTS = np.array([1.0, 2.0, 3.0])


def _rigid_body_field(w: np.ndarray) -> np.ndarray:
    i1, i2, i3 = RIGID_BODY_MOMENTS
    w1, w2, w3 = w
    return np.stack([(i2 - i3) / i1 * w2 * w3, (i3 - i1) / i2 * w3 * w1, (i1 - i2) / i3 * w1 * w2])


@functools.lru_cache(maxsize=8)
def _rigid_body(noise: float, seed: int) -> Trajectories:
    """Body-frame angular velocities, 50 spins of 60 points over 6 s, each starting uniform in [-1, 1]^3."""
    rng = np.random.default_rng(seed)
    t_eval = np.linspace(0, 6, 60)
    states, derivs = [], []
    for _ in range(HNN_TRAJECTORIES):
        sol = solve_ivp(lambda t, w: _rigid_body_field(w), (0, 6), rng.uniform(-1, 1, 3), t_eval=t_eval,
                        rtol=1e-10, atol=1e-12)  # fmt: skip
        x = sol.y.T.copy()
        derivs.append(_rigid_body_field(x.T).T)
        states.append(x + rng.standard_normal(x.shape) * noise)
    half = HNN_TRAJECTORIES // 2
    return Trajectories(
        name="rigid-body", variables=("w1", "w2", "w3"), units={w: "rad/s" for w in ("w1", "w2", "w3")},
        states=tuple(states), times=(t_eval,) * HNN_TRAJECTORIES, derivatives=tuple(derivs),
        split=("train",) * half + ("test",) * half,
    )  # fmt: skip


def _rigid_body_energy(x: np.ndarray) -> np.ndarray:
    return (RIGID_BODY_MOMENTS * np.asarray(x, dtype=np.float64) ** 2).sum(-1)


def _columns(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.asarray(x, dtype=np.float64), -1, 0)


def _spring_energy(x: np.ndarray) -> np.ndarray:
    q, p = _columns(x)
    return q**2 + p**2


def _pendulum_energy(x: np.ndarray) -> np.ndarray:
    q, p = _columns(x)
    return p**2 - 3 * np.cos(q)


def _real_pendulum_energy(x: np.ndarray) -> np.ndarray:
    q, v = _columns(x)
    return v**2 - 2.4 * np.cos(q)


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            name="spring",
            description="ideal mass-spring (HNN): H = q^2 + p^2, 50 trajectories of 30 steps",
            variables=("q", "p"),
            units={"q": "m", "p": "kg*m/s"},
            oracle="q**2 + 1.0*p**2",
            oracle_fn=_spring_energy,
            generate=_spring,
        ),
        System(
            name="pendulum",
            description="ideal pendulum (HNN): H = 3(1 - cos q) + p^2, 50 trajectories of 45 steps",
            variables=("q", "p"),
            units={"q": "rad", "p": "kg*m**2/s"},
            oracle="p**2 - 3*cos(q)",
            oracle_fn=_pendulum_energy,
            generate=_pendulum,
        ),
        System(
            name="real-pendulum",
            description="measured pendulum (Schmidt & Lipson 2009), one 94.5 s trial, split in time",
            variables=("q", "v"),
            units={"q": "rad", "v": "rad/s"},
            oracle="v**2 - 2.4*cos(q)",
            oracle_fn=_real_pendulum_energy,
            generate=_real_pendulum,
        ),
        System(
            name="random-walk",
            description="control: Gaussian random walks with the pendulum's shapes, no conserved law",
            variables=("q", "p"),
            units={"q": "rad", "p": "kg*m**2/s"},
            oracle=None,
            oracle_fn=None,
            generate=_random_walk,
        ),
        System(
            name="rigid-body",
            description="torque-free rigid body (moments 1, 2, 3): energy and |L|^2, 50 spins of 60 steps",
            variables=("w1", "w2", "w3"),
            units={w: "rad/s" for w in ("w1", "w2", "w3")},
            oracle="w1**2 + 2.0*w2**2 + 3.0*w3**2",
            oracle_fn=_rigid_body_energy,
            generate=_rigid_body,
            also_conserved=("w1**2 + 4.0*w2**2 + 9.0*w3**2",),
        ),
        System(
            name="two-body",
            description="planetary two-body orbits (HNN), random centre of mass and boost: 5 invariants",
            variables=manybody.TWO_BODY_VARIABLES,
            units=manybody.TWO_BODY_UNITS,
            oracle="(px1**2 + py1**2 + px2**2 + py2**2)/2 - 1/sqrt((x1 - x2)**2 + (y1 - y2)**2)",
            oracle_fn=manybody.two_body_energy,
            generate=functools.lru_cache(maxsize=8)(manybody.two_body),
            also_conserved=("px1 + px2", "py1 + py2", "x1*py1 - y1*px1 + x2*py2 - y2*px2",
                            "(x1 + x2)*(py1 + py2) - (y1 + y2)*(px1 + px2)"),  # fmt: skip
        ),
        System(
            name="kepler",
            description="Kepler orbits in relative coordinates: energy (1/r), angular momentum, Runge-Lenz",
            variables=manybody.KEPLER_VARIABLES,
            units=manybody.KEPLER_UNITS,
            oracle="vx**2 + vy**2 - 2/sqrt(x**2 + y**2)",
            oracle_fn=manybody.kepler_energy,
            generate=functools.lru_cache(maxsize=8)(manybody.kepler),
            also_conserved=("x*vy - y*vx", "vy*(x*vy - y*vx) - x/sqrt(x**2 + y**2)",
                            "-vx*(x*vy - y*vx) - y/sqrt(x**2 + y**2)"),  # fmt: skip
        ),
        System(
            name="coupled-oscillators",
            description="two masses, three springs (1, 0.5, 1): energy and a normal-mode energy",
            variables=manybody.OSCILLATOR_VARIABLES,
            units=manybody.OSCILLATOR_UNITS,
            oracle="v1**2 + v2**2 + 1.5*x1**2 + 1.5*x2**2 - 1.0*x1*x2",
            oracle_fn=manybody.oscillator_energy,
            generate=functools.lru_cache(maxsize=8)(manybody.coupled_oscillators),
            also_conserved=("(v1 + v2)**2 + (x1 + x2)**2",),
        ),
        System(
            name="coupled-ou",
            description="control: four coupled Ornstein-Uhlenbeck processes (kepler's units), no law",
            variables=manybody.KEPLER_VARIABLES,
            units=manybody.KEPLER_UNITS,
            oracle=None,
            oracle_fn=None,
            generate=functools.lru_cache(maxsize=8)(manybody.coupled_ou),
        ),
    )
}


def get_system(name: str) -> System:
    """The built-in system called `name`; an unknown name lists the valid ones."""
    try:
        return SYSTEMS[name]
    except KeyError:
        raise UserError(f"unknown system {name!r}; choose one of: {', '.join(SYSTEMS)}") from None
