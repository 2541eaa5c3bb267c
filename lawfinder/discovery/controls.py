"""Controls: data that look like the real data but carry no conservation law.

The acceptance test compares how well a formula is conserved along the true
trajectories with how well it is conserved along these controls. A control
sequence is built by drawing states i.i.d. (uniformly, with replacement) from
the pool of every state observed in the data, so it has the same marginal
distribution of states as the data but no temporal structure: any quantity
``g`` varies along it as much as it varies over the whole data set, while a
conserved ``g`` is constant along each true trajectory. The controls keep the
number of sequences, their lengths, times and split labels, so a score
computed per sequence (or per window) is directly comparable.

Random sequences destroy all temporal structure, so a lawless but
autocorrelated signal (a slowly drifting state, e.g. a random walk) already
looks "conserved" against them: any smooth function of it varies little
inside a short window. Two controls keep that structure and destroy only the
relations between variables. `shuffled_pairs` (the one the acceptance test
uses) pairs each variable's whole path with the other variables of other
sequences; `phase_randomised` keeps each variable's mean and amplitude
spectrum (so its autocorrelation) but draws independent random Fourier
phases. A quantity that is conserved because of a relation between the
variables (``p**2 + q**2``) is not conserved on these surrogates; one that is
"conserved" only because every variable drifts slowly still is. Shuffled
pairs are exchangeable with data whose variables are independent processes;
phase-randomised surrogates of short, non-periodic windows are not (measured
in `lawfinder.discovery.acceptance`'s notes).
"""

from __future__ import annotations

import itertools

import numpy as np

from lawfinder.data.trajectories import Trajectories
from lawfinder.errors import UserError


def random_sequences(traj: Trajectories, seed: int) -> Trajectories:
    """Sequences of states drawn at random from all observed states of `traj`.

    Parameters
    ----------
    traj : Trajectories
        The data; its states form the pool (all trajectories, both splits).
    seed : int
        Seed of the ``numpy.random.Generator`` that draws the states.

    Returns
    -------
    Trajectories
        Named ``"<name>:random"``, with the same number of sequences, lengths,
        times, split labels, variables and units as `traj`. Each state is an
        independent uniform draw (with replacement) from the pool. When `traj`
        stores dx/dt targets, each drawn state keeps its own target, so the
        pairs stay valid samples of the vector field; otherwise the result has
        none (finite differences of random sequences mean nothing).

    Examples
    --------
    >>> from lawfinder.data.systems import get_system
    >>> data = get_system("spring").load()
    >>> control = random_sequences(data, seed=0)
    >>> control.lengths == data.lengths
    True
    """
    if traj.n_points == 0:
        raise UserError(f"{traj.name}: no states to draw random sequences from")
    rng = np.random.default_rng(seed)
    pool = traj.all_states()
    pool_derivs = None if traj.derivatives is None else np.concatenate(traj.derivatives)
    picks = rng.integers(0, pool.shape[0], size=traj.n_points)
    bounds = np.cumsum((0,) + traj.lengths)
    pieces = [picks[a:b] for a, b in itertools.pairwise(bounds)]
    return traj.replace(
        name=f"{traj.name}:random",
        states=tuple(pool[k] for k in pieces),
        derivatives=None if pool_derivs is None else tuple(pool_derivs[k] for k in pieces),
    )


def phase_randomised(traj: Trajectories, seed: int) -> Trajectories:
    """Phase-randomised surrogates: every variable of every sequence with new, independent Fourier phases.

    Parameters
    ----------
    traj : Trajectories
        The data; each sequence (trajectory or window) is randomised on its own.
    seed : int
        Seed of the ``numpy.random.Generator`` that draws the phases.

    Returns
    -------
    Trajectories
        Named ``"<name>:surrogate"``, with the same number of sequences,
        lengths, times, split labels, variables and units as `traj`. For each
        sequence and each variable, the real FFT along time keeps its
        amplitudes while every phase is replaced by an independent uniform
        draw from [0, 2 pi); the DC term (the mean) and, for an even length,
        the Nyquist term stay real and unchanged, so the inverse FFT is real,
        has the same mean, amplitude spectrum and circular autocorrelation as
        the variable, but no relation to the other variables. The result has
        no dx/dt targets (the surrogates follow no vector field).

    Examples
    --------
    >>> from lawfinder.data.systems import get_system
    >>> data = get_system("spring").load()
    >>> surrogate = phase_randomised(data, seed=0)
    >>> surrogate.lengths == data.lengths
    True
    """
    if traj.n_points == 0:
        raise UserError(f"{traj.name}: no states to build phase-randomised surrogates from")
    rng = np.random.default_rng(seed)
    states = []
    for x in traj.states:
        n = x.shape[0]
        spectrum = np.fft.rfft(x, axis=0)  # (n // 2 + 1, d)
        phases = rng.uniform(0.0, 2.0 * np.pi, size=spectrum.shape)
        phases[0] = 0.0  # the mean
        if n % 2 == 0:
            phases[-1] = 0.0  # the Nyquist term of an even length is real
        # adding a uniform phase to each coefficient makes its phase uniform and keeps its amplitude;
        # the DC and Nyquist terms keep their sign
        states.append(np.fft.irfft(spectrum * np.exp(1j * phases), n=n, axis=0))
    return traj.replace(name=f"{traj.name}:surrogate", states=tuple(states), derivatives=None)


def shuffled_pairs(traj: Trajectories, seed: int) -> Trajectories:
    """Sequences whose variables come from different sequences: every variable keeps its own path.

    Variable 0 of sequence i stays; variable k > 0 is taken whole from sequence
    ``perm_k(i)``, a random derangement (no sequence keeps its own partner), one
    per variable. If the variables of a data set are independent processes,
    these surrogates are draws from the same distribution as the data
    (exchangeable with it), while any relation between the variables, a law
    among them, is gone. All sequences must have one length (windows do).

    Examples
    --------
    >>> from lawfinder.data.systems import get_system
    >>> windows = get_system("spring").load().train().windows(30)
    >>> shuffled_pairs(windows, seed=0).lengths == windows.lengths
    True
    """
    lengths = set(traj.lengths)
    if len(lengths) != 1 or len(traj.states) < 3:
        raise UserError(f"{traj.name}: shuffled surrogates need at least 3 sequences of one length")
    rng = np.random.default_rng(seed)
    n = len(traj.states)
    states = np.stack(traj.states).copy()
    for k in range(1, states.shape[-1]):
        perm = rng.permutation(n)
        while np.any(perm == np.arange(n)):
            perm = rng.permutation(n)
        states[..., k] = states[perm, :, k]
    return traj.replace(name=f"{traj.name}:shuffled", states=tuple(states), derivatives=None)
