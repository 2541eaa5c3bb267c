"""Simulated systems of 4-8 variables with several independent invariants, and a lawless control.

Each generator returns 50 trajectories (the first 25 for training), integrated
with ``solve_ivp`` at ``rtol=1e-10``; ``noise`` is Gaussian measurement noise
added to every state. Their invariants are listed in `lawfinder.data.systems`.

- ``kepler``: one body about a fixed centre (GM = 1) in relative coordinates
  ``x, y, vx, vy``: energy ``(vx^2 + vy^2)/2 - 1/r``, angular momentum
  ``x vy - y vx`` and the Laplace-Runge-Lenz vector (3 independent).
- ``two-body``: HNN's planetary orbits (unit masses, G = 1), each given a random
  boost and shift of its centre of mass, so that total momentum is a law the
  data show rather than a constant of the generator: energy, momentum x and y,
  angular momentum and the centre of mass's ``R x P`` (5 independent).
- ``coupled-oscillators``: two unit masses between three springs
  (``k = 1, 0.5, 1`` per unit mass): the two normal-mode energies (2 independent).
- ``coupled-ou``: four coupled Ornstein-Uhlenbeck processes with the units of
  ``kepler``: related, noisy, and nothing conserved.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from lawfinder.data.trajectories import Trajectories

N_TRAJECTORIES = 50
KEPLER_VARIABLES = ("x", "y", "vx", "vy")
KEPLER_UNITS = {"x": "m", "y": "m", "vx": "m/s", "vy": "m/s"}
TWO_BODY_VARIABLES = ("x1", "y1", "x2", "y2", "px1", "py1", "px2", "py2")
TWO_BODY_UNITS = {v: ("m" if v[0] in "xy" else "kg*m/s") for v in TWO_BODY_VARIABLES}
OSCILLATOR_VARIABLES = ("x1", "x2", "v1", "v2")
OSCILLATOR_UNITS = {"x1": "m", "x2": "m", "v1": "m/s", "v2": "m/s"}
SPRINGS = (1.0, 0.5, 1.0)  # outer, middle, outer; per unit mass, 1/s^2


def _trajectories(name, variables, units, t, states, derivs) -> Trajectories:
    half = len(states) // 2
    return Trajectories(
        name=name, variables=tuple(variables), units=dict(units), states=tuple(states),
        times=(t,) * len(states), derivatives=None if derivs is None else tuple(derivs),
        split=("train",) * half + ("test",) * (len(states) - half),
    )  # fmt: skip


def simulate(name, units, field, t, starts, rng, noise) -> Trajectories:
    """`N_TRAJECTORIES` solutions of ``x' = field(x)`` from ``starts()`` (variables in the order of
    `units`), with Gaussian measurement noise of sd `noise` added (drawn even at 0: same starts)."""
    variables = tuple(units)
    states, derivs = [], []
    for _ in range(N_TRAJECTORIES):
        sol = solve_ivp(lambda _, y: field(y), (t[0], t[-1]), starts(), t_eval=t, rtol=1e-10, atol=1e-12)
        x = sol.y.T.copy()
        states.append(x + rng.standard_normal(x.shape) * noise)
        derivs.append(field(x.T).T)
    return _trajectories(name, variables, units, t, states, derivs)


def kepler_field(y: np.ndarray) -> np.ndarray:
    x, yy, vx, vy = y
    r3 = (x**2 + yy**2) ** 1.5
    return np.stack([vx, vy, -x / r3, -yy / r3])


def kepler(noise: float, seed: int) -> Trajectories:
    """Bound orbits: semi-major axis 0.5-1.5, eccentricity 0-0.6, random orientation and start phase.

    60 points over 6 time units (about a period at a = 1).
    """
    rng = np.random.default_rng(seed)

    def start():
        a, e = rng.uniform(0.5, 1.5), rng.uniform(0.0, 0.6)
        anomaly, turn = rng.uniform(0, 2 * np.pi, 2)
        r = a * (1 - e**2) / (1 + e * np.cos(anomaly))
        speed_r = np.sqrt(1 / (a * (1 - e**2))) * e * np.sin(anomaly)
        speed_t = np.sqrt(1 / (a * (1 - e**2))) * (1 + e * np.cos(anomaly))
        angle = anomaly + turn
        radial, tangent = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        return np.concatenate([r * radial, speed_r * radial + speed_t * tangent])

    return simulate("kepler", KEPLER_UNITS, kepler_field, np.linspace(0, 6, 60), start, rng, noise)


def two_body_field(y: np.ndarray) -> np.ndarray:
    """Unit masses, G = 1: positions move with momenta, each body pulls the other."""
    x1, y1, x2, y2, px1, py1, px2, py2 = y
    dx, dy = x2 - x1, y2 - y1
    r3 = (dx**2 + dy**2) ** 1.5
    return np.stack([px1, py1, px2, py2, dx / r3, dy / r3, -dx / r3, -dy / r3])


def two_body(noise: float, seed: int) -> Trajectories:
    """HNN's ``random_config`` orbits (radii 0.5-1.5, speed noise 5%), 50 points over 20 time units.

    Then the centre of mass is moved uniformly in [-1, 1]^2 and boosted by a
    momentum uniform in [-0.2, 0.2]^2 per body.
    """
    rng = np.random.default_rng(seed)

    def start():
        pos = rng.uniform(0.5, 1.5, 2)
        r = np.sqrt(np.sum(pos**2))
        vel = np.flipud(pos) / (2 * r**1.5)
        vel[0] *= -1
        vel *= 1 + 5e-2 * rng.standard_normal()
        shift, boost = rng.uniform(-1, 1, 2), rng.uniform(-0.2, 0.2, 2)
        return np.concatenate([pos + shift, -pos + shift, vel + boost, -vel + boost])

    t = np.linspace(0, 20, 50)
    return simulate("two-body", TWO_BODY_UNITS, two_body_field, t, start, rng, noise)


def two_body_energy(x: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2, px1, py1, px2, py2 = np.moveaxis(np.asarray(x), -1, 0)
    return (px1**2 + py1**2 + px2**2 + py2**2) / 2 - 1 / np.sqrt((x1 - x2) ** 2 + (y1 - y2) ** 2)


def oscillator_field(y: np.ndarray) -> np.ndarray:
    k1, k2, k3 = SPRINGS
    x1, x2, v1, v2 = y
    return np.stack([v1, v2, -k1 * x1 - k2 * (x1 - x2), -k3 * x2 - k2 * (x2 - x1)])


def coupled_oscillators(noise: float, seed: int) -> Trajectories:
    """Positions and velocities uniform in [-1, 1], 60 points over 10 time units."""
    rng = np.random.default_rng(seed)
    return simulate("coupled-oscillators", OSCILLATOR_UNITS, oscillator_field,
                     np.linspace(0, 10, 60), lambda: rng.uniform(-1, 1, 4), rng, noise)  # fmt: skip


def oscillator_energy(x: np.ndarray) -> np.ndarray:
    k1, k2, k3 = SPRINGS
    x1, x2, v1, v2 = np.moveaxis(np.asarray(x, dtype=np.float64), -1, 0)
    return v1**2 + v2**2 + k1 * x1**2 + k2 * (x1 - x2) ** 2 + k3 * x2**2


def kepler_energy(x: np.ndarray) -> np.ndarray:
    x_, y, vx, vy = np.moveaxis(np.asarray(x, dtype=np.float64), -1, 0)
    return vx**2 + vy**2 - 2 / np.sqrt(x_**2 + y**2)


def coupled_ou(noise: float, seed: int) -> Trajectories:
    """``dX = A X dt + dW`` with A a random stable coupling (eigenvalues' real parts -0.2 to -1.2).

    60 points over 6 time units, started from the stationary law's scale.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 6, 60)
    dt = t[1] - t[0]
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    m = rng.standard_normal((4, 4))
    step = expm((q @ np.diag(-rng.uniform(0.2, 1.2, 4)) @ q.T + 0.4 * (m - m.T)) * dt)
    states = []
    for _ in range(N_TRAJECTORIES):
        x = np.empty((len(t), 4))
        x[0] = rng.standard_normal(4)
        for k in range(1, len(t)):
            x[k] = step @ x[k - 1] + np.sqrt(dt) * rng.standard_normal(4)
        states.append(x + rng.standard_normal(x.shape) * noise)
    return _trajectories("coupled-ou", KEPLER_VARIABLES, KEPLER_UNITS, t, states, None)
