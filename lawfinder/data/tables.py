"""Check a trajectory table and cut it into one array per trajectory.

The table (a DataFrame, from a file or built in Python) has one row per state: a
``trajectory`` id column, a time column ``t``, one column per state variable and
optionally a ``d_<name>`` dx/dt column per variable (all or none). Every problem
raises `lawfinder.errors.UserError` with one line naming the source and, where it
applies, the data row (1-based, header not counted) and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dsl import unit_registry
from lawfinder.errors import UserError

MIN_POINTS = 3
_NAN_WORDS = {"nan", "-nan", "+nan"}


@dataclass(frozen=True)
class TableArrays:
    """A checked table: variables in column order, their units, and per-trajectory arrays."""

    variables: tuple[str, ...]
    units: dict[str, str]
    time_unit: str
    states: list[np.ndarray]
    times: list[np.ndarray]
    derivatives: list[np.ndarray] | None


def table_arrays(frame: pd.DataFrame, units: dict[str, str], where: str) -> TableArrays:
    """Check `frame` and `units` (pint units per state column, optionally ``t``); split it by trajectory.

    Trajectories come in order of first appearance; `where` names the data in error messages.
    """
    frame = frame.rename(columns=lambda c: str(c).strip())
    variables, deriv_cols = _check_columns(frame, where)
    time_unit = _check_units(units, variables, where)
    if len(frame) == 0:
        raise UserError(f"{where}: no data rows")
    ids = _trajectory_ids(frame["trajectory"], where)
    t = _numbers(frame["t"], where, "t")
    x = np.stack([_numbers(frame[v], where, v) for v in variables], axis=1)
    dx = np.stack([_numbers(frame[c], where, c) for c in deriv_cols], axis=1) if deriv_cols else None
    codes, uniques = pd.factorize(ids)
    groups = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    for rows, name in zip(groups, uniques):
        _check_trajectory(rows, t[rows], name, where)
    return TableArrays(variables, {v: units[v] for v in variables}, time_unit, [x[r] for r in groups],
                       [t[r] for r in groups], None if dx is None else [dx[r] for r in groups])  # fmt: skip


def as_array_list(arrays, what: str, ndim: int) -> list[np.ndarray]:
    """One array of `ndim` dimensions, a stack of them (`ndim` + 1), or a sequence: a list of arrays."""
    if isinstance(arrays, Sequence) and not isinstance(arrays, str) and arrays and np.ndim(arrays[0]) == ndim:
        return [np.asarray(a, dtype=np.float64) for a in arrays]
    a = np.asarray(arrays, dtype=np.float64)
    if a.ndim == ndim:
        return [a]
    if a.ndim == ndim + 1:
        return list(a)
    shapes = "(T, d) array, an (n, T, d) array" if ndim == 2 else "(T,) array, an (n, T) array"
    raise UserError(f"{what} must be one {shapes} or a list of them, got shape {a.shape}")


def split_arrays(states: list, times: list, derivatives: list | None, train_fraction: float) -> tuple:
    """``(states, times, derivatives, split)`` tuples: the first `train_fraction` of the
    trajectories train, the rest test; a single trajectory split in time
    (`lawfinder.data.systems.split_in_time` says how)."""
    if len(states) > 1:
        n_train = max(1, int(train_fraction * len(states)))
        split = tuple("train" if k < n_train else "test" for k in range(len(states)))
        return tuple(states), tuple(times), None if derivatives is None else tuple(derivatives), split
    x, t = np.asarray(states[0], dtype=np.float64), np.asarray(times[0], dtype=np.float64)
    dx = None if derivatives is None else np.asarray(derivatives[0])
    n = x.shape[0]
    if n < (3 if dx is None else 4):
        return (x,), (t,), None if dx is None else (dx,), ("train",)
    if dx is None:
        k = min(max(int(train_fraction * (n - 1)), 1), n - 2)
        parts = [slice(0, k + 1), slice(k, n)]
    else:
        k = min(max(int(train_fraction * n), 2), n - 2)
        parts = [slice(0, k), slice(k, n)]
    return (tuple(x[p] for p in parts), tuple(t[p] for p in parts),
            None if dx is None else tuple(dx[p] for p in parts), ("train", "test"))  # fmt: skip


def check_unit(unit: str, variable: str) -> None:
    """Raise `UserError` unless `unit` is a pint unit expression (``"kg*m/s"``, ``"rad"``)."""
    try:
        unit_registry().parse_units(unit)
    except Exception as err:  # noqa: BLE001 - pint's parser raises many unrelated types
        detail = str(err).strip().splitlines()[0] if str(err).strip() else "not a unit expression"
        raise UserError(f"unknown unit {unit!r} for variable {variable!r}: {detail}") from None


def _check_columns(frame: pd.DataFrame, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    columns = list(frame.columns)
    for required in ("trajectory", "t"):
        if required not in columns:
            raise UserError(
                f"{where}: missing column {required!r} (found: {', '.join(columns)}); "
                "expected trajectory, t, then one column per state variable"
            )
    rest = [c for c in columns if c not in ("trajectory", "t")]
    variables = tuple(c for c in rest if not c.startswith("d_"))
    derivs = [c for c in rest if c.startswith("d_")]
    if not variables:
        raise UserError(f"{where}: no state columns besides 'trajectory' and 't'")
    for v in variables:
        if not v.isidentifier():
            raise UserError(
                f"{where}: column {v!r} is not a valid variable name "
                "(letters, digits and _, not starting with a digit)"
            )
    for c in derivs:
        if c[2:] not in variables:
            raise UserError(f"{where}: derivative column {c!r} has no state column {c[2:]!r}")
    if derivs:
        missing = [f"d_{v}" for v in variables if f"d_{v}" not in derivs]
        if missing:
            raise UserError(
                f"{where}: derivative columns must cover every state variable or none; "
                f"missing {', '.join(repr(m) for m in missing)}"
            )
    return variables, tuple(f"d_{v}" for v in variables) if derivs else ()


def _check_units(units: dict[str, str], variables: tuple[str, ...], where: str) -> str:
    for name in units:
        if name not in variables and name != "t":
            raise UserError(
                f"{where}: a unit was given for {name!r} but there is no state column {name!r} "
                f"(state columns: {', '.join(variables)})"
            )
    for v in variables:
        if v not in units:
            raise UserError(f"{where}: no unit for column {v!r} (give it as {v}=UNIT)", option="units")
    for name, unit in units.items():
        try:
            check_unit(unit, name)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
    return units.get("t", "s")


def _at(where: str, index: int, column: str) -> str:
    return f"{where}, data row {index + 1} (header not counted), column {column!r}"


def _trajectory_ids(series: pd.Series, where: str) -> np.ndarray:
    missing = series.isna().to_numpy() | (series.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        raise UserError(f"{_at(where, int(np.argmax(missing)), 'trajectory')}: empty trajectory id")
    return series.to_numpy()


def _numbers(series: pd.Series, where: str, column: str) -> np.ndarray:
    """The column as float64, or a `UserError` at its first missing, non-numeric, NaN or inf value."""
    missing = series.isna().to_numpy().copy()
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        text = series.astype(str).str.strip()
    else:
        text = series.astype(str).str.strip()
        missing |= (text == "").to_numpy()
        values = pd.to_numeric(text.where(~missing, "nan"), errors="coerce").to_numpy(np.float64)
    nan_word = text.str.lower().isin(_NAN_WORDS).to_numpy()
    not_number = np.isnan(values) & ~missing & ~nan_word
    bad = missing | np.isnan(values) | np.isinf(values)
    if not bad.any():
        return values
    i = int(np.argmax(bad))
    if not_number[i]:
        problem = f"{text.iloc[i]!r} is not a number"
    elif missing[i]:
        problem = "missing value"
    elif np.isnan(values[i]):
        problem = "NaN value"
    else:
        problem = f"infinite value {text.iloc[i]!r}"
    raise UserError(f"{_at(where, i, column)}: {problem}")


def _check_trajectory(rows: np.ndarray, t: np.ndarray, name: object, where: str) -> None:
    if len(rows) < MIN_POINTS:
        raise UserError(
            f"{_at(where, int(rows[0]), 'trajectory')}: trajectory '{name}' has {len(rows)} "
            f"point(s); at least {MIN_POINTS} are needed"
        )
    steps = np.diff(t)
    if np.any(steps <= 0):
        k = int(np.argmax(steps <= 0)) + 1
        raise UserError(
            f"{_at(where, int(rows[k]), 't')}: time {t[k]:g} is not after {t[k - 1]:g} "
            f"(data row {int(rows[k - 1]) + 1}); times must increase strictly within "
            f"trajectory '{name}'"
        )
