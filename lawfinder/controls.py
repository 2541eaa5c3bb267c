"""Random-sequence controls: data that look like the real data but carry no conservation law.

The acceptance test compares how well a formula is conserved along the true
trajectories with how well it is conserved along these controls. A control
sequence is built by drawing states i.i.d. (uniformly, with replacement) from
the pool of every state observed in the data, so it has the same marginal
distribution of states as the data but no temporal structure: any quantity
``g`` varies along it as much as it varies over the whole data set, while a
conserved ``g`` is constant along each true trajectory. The controls keep the
number of sequences, their lengths, times and split labels, so a score
computed per sequence (or per window) is directly comparable.
"""

from __future__ import annotations

import itertools

import numpy as np

from lawfinder.errors import UserError
from lawfinder.trajectories import Trajectories


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
    >>> from lawfinder.systems import get_system
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
