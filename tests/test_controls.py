"""Random-sequence controls keep the data's shape, draw only observed states, and carry no law."""

from __future__ import annotations

import numpy as np
import pytest

from lawfinder.data.systems import get_system
from lawfinder.discovery.controls import random_sequences
from lawfinder.errors import UserError


def within_variance_ratio(values: list[np.ndarray]) -> float:
    """Mean variance along each sequence over the variance of all values pooled."""
    return float(np.mean([v.var() for v in values]) / np.concatenate(values).var())


def test_keeps_number_lengths_times_split_and_units():
    data = get_system("real-pendulum").load()
    control = random_sequences(data, seed=0)
    assert control.name == "real-pendulum:random"
    assert control.lengths == data.lengths == (445, 112)
    assert control.split == data.split
    assert control.variables == data.variables and control.units == data.units
    for a, b in zip(control.times, data.times):
        np.testing.assert_array_equal(a, b)
    assert control.derivatives is None


def test_draws_only_observed_states_with_their_targets():
    data = get_system("spring").load()
    control = random_sequences(data, seed=3)
    pool = {tuple(row) for row in data.all_states()}
    assert all(tuple(row) in pool for row in control.all_states())
    x, dx = control.derivative_pairs()
    np.testing.assert_allclose(dx, np.stack([2 * x[:, 1], -2 * x[:, 0]], axis=1), atol=1e-12)


def test_seeded():
    data = get_system("pendulum").load()
    a, b = random_sequences(data, seed=7), random_sequences(data, seed=7)
    np.testing.assert_array_equal(a.all_states(), b.all_states())
    assert not np.array_equal(a.all_states(), random_sequences(data, seed=8).all_states())


def test_true_law_is_conserved_on_data_but_not_on_controls():
    system = get_system("spring")
    data = system.load()
    control = random_sequences(data, seed=0)
    on_data = within_variance_ratio([system.oracle_fn(x) for x in data.states])
    on_control = within_variance_ratio([system.oracle_fn(x) for x in control.states])
    assert on_control > 0.5
    assert on_control / on_data > 1e6


@pytest.mark.parametrize(
    "quantity",
    [
        lambda x: x[:, 0],
        lambda x: x[:, 1],
        lambda x: x[:, 0] ** 2 + x[:, 1] ** 2,
        lambda x: x[:, 1] ** 2 - 3 * np.cos(x[:, 0]),
    ],
    ids=["q", "p", "q2+p2", "pendulum-energy"],
)
def test_random_walk_has_no_law_against_its_controls(quantity):
    data = get_system("random-walk").load()
    control = random_sequences(data, seed=0)
    on_data = within_variance_ratio([quantity(x) for x in data.states])
    on_control = within_variance_ratio([quantity(x) for x in control.states])
    assert on_control / on_data < 10


def test_empty_data_is_refused():
    empty = get_system("spring").load().subset("train").windows(100)
    with pytest.raises(UserError, match="no states"):
        random_sequences(empty, seed=0)
