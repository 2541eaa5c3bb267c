"""Lawless data: generators with no conserved quantity, to measure how often a search invents one.

Each generator returns `Trajectories` shaped like the paper's pendulum data
(50 sequences over t in [0, 3], the first half for training; variables
``q`` in rad and ``p`` in kg m^2/s, so the same 8,103 formulas are tried), and
is seeded. `FAMILIES` names them for benchmarks: ``random-walk`` is the
calibration family of the acceptance test (`lawfinder.discovery.acceptance`); the
others are held out from it.

- ``random-walk``: Gaussian random walks (the built-in control's law-free drift).
- ``ornstein-uhlenbeck``: mean-reverting noise, a random rate per data set.
- ``ar2``: quasi-periodic AR(2) processes (damped random oscillations).
- ``smooth-paths``: sums of random sinusoids, independent per variable, with
  their exact derivatives: smooth, noise-free, and still lawless.
- ``phase-resets``: each variable a sinusoid of its own frequency whose phase
  jumps at random times.
- ``noisy-rotation``: a damped, noise-driven rotation (coupled
  Ornstein-Uhlenbeck): the variables are related, and q^2 + p^2 changes
  slowly, but nothing is conserved.
- ``ar1-drift``: ``x_k = c + phi x_{k-1} + e_k`` per variable, independent,
  phi near 1 (slow, random-walk-like) and a drift c; added after the others
  had been run and declared held out before it was (no rule was chosen on it).
- ``correlated-walks``: random walks whose q and p steps are correlated
  (related variables, like the noisy rotation, but with no rotation).
- ``shuffled-pendulum``: the HNN pendulum's trajectories with each p taken
  from another trajectory (smooth, realistic oscillations whose pairing is
  broken), plus measurement noise 0.01.

``correlated-walks`` and ``shuffled-pendulum`` were added (and declared held
out) before any fit on them, together with the approximations' margin of the
acceptance test; ``noisy-rotation`` then joined the calibration families,
since its false approximations had been seen when that margin was proposed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lawfinder.data.trajectories import Trajectories

N_SEQUENCES = 50
UNITS = {"q": "rad", "p": "kg*m**2/s"}


def _trajectories(name: str, t: np.ndarray, states: list, derivatives: list | None = None) -> Trajectories:
    half = len(states) // 2
    return Trajectories(
        name=name, variables=("q", "p"), units=dict(UNITS), states=tuple(states),
        times=(t,) * len(states), derivatives=None if derivatives is None else tuple(derivatives),
        split=("train",) * half + ("test",) * (len(states) - half),
    )  # fmt: skip


def random_walk(n_points: int = 45, seed: int = 0, n_sequences: int = N_SEQUENCES) -> Trajectories:
    """Gaussian random walks, unit diffusion, starts uniform in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    step = np.sqrt(np.diff(t))[:, None]
    states = []
    for _ in range(n_sequences):
        x0 = rng.uniform(-0.5, 0.5, size=(1, 2))
        states.append(np.concatenate([x0, x0 + np.cumsum(rng.standard_normal((n_points - 1, 2)) * step, 0)]))
    return _trajectories("random-walk", t, states)


def ornstein_uhlenbeck(n_points: int = 45, seed: int = 0) -> Trajectories:
    """``dx = -theta x dt + dW`` per variable, theta log-uniform in [0.3, 3], started stationary."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    dt = t[1] - t[0]
    theta = np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=2))
    decay = np.exp(-theta * dt)
    kick = np.sqrt((1 - decay**2) / (2 * theta))
    states = []
    for _ in range(N_SEQUENCES):
        x = np.empty((n_points, 2))
        x[0] = rng.standard_normal(2) / np.sqrt(2 * theta)
        for k in range(1, n_points):
            x[k] = decay * x[k - 1] + kick * rng.standard_normal(2)
        states.append(x)
    return _trajectories("ornstein-uhlenbeck", t, states)


def ar2(n_points: int = 45, seed: int = 0) -> Trajectories:
    """``x_k = a1 x_{k-1} + a2 x_{k-2} + e_k`` with complex roots (radius 0.8-0.97, angle 0.1-0.6)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    radius, angle = rng.uniform(0.8, 0.97, 2), rng.uniform(0.1, 0.6, 2)
    a1, a2 = 2 * radius * np.cos(angle), -(radius**2)
    states = []
    for _ in range(N_SEQUENCES):
        x = np.zeros((n_points + 50, 2))  # 50 steps of burn-in
        e = rng.standard_normal(x.shape) * 0.1
        for k in range(2, len(x)):
            x[k] = a1 * x[k - 1] + a2 * x[k - 2] + e[k]
        states.append(x[50:])
    return _trajectories("ar2", t, states)


def smooth_paths(n_points: int = 45, seed: int = 0) -> Trajectories:
    """Three random sinusoids per variable (0.2-1.5 Hz), independent, with exact dx/dt."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    states, derivs = [], []
    for _ in range(N_SEQUENCES):
        freq = 2 * np.pi * rng.uniform(0.2, 1.5, size=(3, 2))
        amp, phase = rng.uniform(0.1, 0.6, size=(3, 2)), rng.uniform(0, 2 * np.pi, size=(3, 2))
        arg = freq[None] * t[:, None, None] + phase[None]
        states.append((amp * np.sin(arg)).sum(1) + rng.uniform(-0.5, 0.5, 2))
        derivs.append((amp * freq * np.cos(arg)).sum(1))
    return _trajectories("smooth-paths", t, states, derivs)


def phase_resets(n_points: int = 45, seed: int = 0) -> Trajectories:
    """``A sin(w t + phi)`` per variable, own w in [1, 4] rad/s; phi redrawn at rate 1/s."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    states = []
    for _ in range(N_SEQUENCES):
        omega, amp = rng.uniform(1, 4, 2), rng.uniform(0.2, 1.0, 2)
        resets = rng.random((n_points, 2)) < (t[1] - t[0])
        resets[0] = True
        phase = np.where(resets, rng.uniform(0, 2 * np.pi, (n_points, 2)), 0.0)
        segment = np.maximum.accumulate(np.where(resets, np.arange(n_points)[:, None], 0), axis=0)
        phase = np.take_along_axis(phase, segment, axis=0)
        states.append(amp * np.sin(omega * t[:, None] + phase))
    return _trajectories("phase-resets", t, states)


def noisy_rotation(n_points: int = 45, seed: int = 0) -> Trajectories:
    """``dx = (A x) dt + s dW`` with A = [[-g, w], [-w, -g]]: w in [1, 4] rad/s, g in [0.1, 1], s in [0.1, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    dt = t[1] - t[0]
    omega, gamma, s = rng.uniform(1, 4), rng.uniform(0.1, 1.0), rng.uniform(0.1, 0.5)
    c, si = np.cos(omega * dt), np.sin(omega * dt)
    step = np.exp(-gamma * dt) * np.array([[c, si], [-si, c]])
    kick = s * np.sqrt((1 - np.exp(-2 * gamma * dt)) / (2 * gamma))
    states = []
    for _ in range(N_SEQUENCES):
        x = np.empty((n_points, 2))
        angle = rng.uniform(0, 2 * np.pi)
        x[0] = rng.uniform(0.3, 1.0) * np.array([np.cos(angle), np.sin(angle)])
        for k in range(1, n_points):
            x[k] = step @ x[k - 1] + kick * rng.standard_normal(2)
        states.append(x)
    return _trajectories("noisy-rotation", t, states)


def ar1_drift(n_points: int = 45, seed: int = 0) -> Trajectories:
    """AR(1) with drift per variable: phi uniform in [0.8, 1], c in [-0.05, 0.05] per step, innovations 0.1."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 3, n_points)
    phi, drift = rng.uniform(0.8, 1.0, 2), rng.uniform(-0.05, 0.05, 2)
    states = []
    for _ in range(N_SEQUENCES):
        x = np.empty((n_points, 2))
        x[0] = rng.uniform(-0.5, 0.5, 2)
        for k in range(1, n_points):
            x[k] = drift + phi * x[k - 1] + 0.1 * rng.standard_normal(2)
        states.append(x)
    return _trajectories("ar1-drift", t, states)


def correlated_walks(n_points: int = 45, seed: int = 0) -> Trajectories:
    """Random walks with step correlation rho between q and p, |rho| uniform in [0.5, 0.95], random sign."""
    rng = np.random.default_rng(seed)
    rho = rng.uniform(0.5, 0.95) * rng.choice([-1.0, 1.0])
    mix = np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
    t = np.linspace(0, 3, n_points)
    step = np.sqrt(np.diff(t))[:, None]
    states = []
    for _ in range(N_SEQUENCES):
        x0 = rng.uniform(-0.5, 0.5, size=(1, 2))
        steps = rng.standard_normal((n_points - 1, 2)) @ mix.T * step
        states.append(np.concatenate([x0, x0 + np.cumsum(steps, 0)]))
    return _trajectories("correlated-walks", t, states)


def shuffled_pendulum(n_points: int = 45, seed: int = 0) -> Trajectories:
    """HNN pendulum trajectories (seed `seed`), p of each from another one (a derangement), noise 0.01."""
    from lawfinder.data.systems import get_system

    clean = get_system("pendulum").load(noise=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    n = len(clean.states)
    perm = rng.permutation(n)
    while np.any(perm == np.arange(n)):
        perm = rng.permutation(n)
    pick = np.linspace(0, clean.states[0].shape[0] - 1, n_points).round().astype(int)
    states = [np.stack([clean.states[i][pick, 0], clean.states[perm[i]][pick, 1]], 1) for i in range(n)]
    states = [x + 0.01 * rng.standard_normal(x.shape) for x in states]
    return _trajectories("shuffled-pendulum", clean.times[0][pick], states)


FAMILIES: dict[str, Callable[..., Trajectories]] = {
    "random-walk": random_walk,
    "ornstein-uhlenbeck": ornstein_uhlenbeck,
    "ar2": ar2,
    "smooth-paths": smooth_paths,
    "phase-resets": phase_resets,
    "noisy-rotation": noisy_rotation,
    "ar1-drift": ar1_drift,
    "correlated-walks": correlated_walks,
    "shuffled-pendulum": shuffled_pendulum,
}
CALIBRATION = ("random-walk", "noisy-rotation")
