"""Load user trajectories from a CSV or Parquet table, with units, and validate them.

The table has one row per state: a ``trajectory`` id column, a time column
``t``, one column per state variable, and optionally a ``d_<name>`` column per
variable with its dx/dt target (all variables or none; without them, forward
finite differences are used). Rows of a trajectory may be interleaved with
other trajectories' rows but must be in time order. Every state column needs a
pint unit (``units``); ``t`` may have one too (default seconds).

Every problem raises `lawfinder.errors.UserError` with one line naming the
file and, where it applies, the row and column. Rows are *data rows*,
1-based, not counting the header line (nor blank lines of a CSV), so data
row 1 is line 2 of a CSV file.

Split: trajectories in order of first appearance, the first 80% train and
the rest test (at least one test trajectory when there are two or more). A
single trajectory is split in time instead, as the real pendulum is (see
`lawfinder.trajectories.split_in_time`).
"""

from __future__ import annotations

import csv
import functools
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from lawfinder.errors import UserError
from lawfinder.trajectories import Trajectories, split_in_time

TRAIN_FRACTION = 0.8
MIN_POINTS = 3
READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_NAN_WORDS = {"nan", "-nan", "+nan"}


@functools.cache
def _unit_registry():
    import pint

    return pint.UnitRegistry()


def check_unit(unit: str, variable: str) -> None:
    """Raise `UserError` unless `unit` is a pint unit expression (``"kg*m/s"``, ``"rad"``)."""
    try:
        _unit_registry().parse_units(unit)
    except Exception as err:  # noqa: BLE001 - pint's parser raises many unrelated types
        detail = str(err).strip().splitlines()[0] if str(err).strip() else "not a unit expression"
        raise UserError(f"unknown unit {unit!r} for variable {variable!r}: {detail}") from None


def parse_unit_options(items: Iterable[str]) -> dict[str, str]:
    """Turn ``("q=m", "p=kg*m/s")`` (repeated ``--units`` options) into a dict, checking each unit."""
    units: dict[str, str] = {}
    for item in items:
        name, sep, unit = item.partition("=")
        name, unit = name.strip(), unit.strip()
        if not sep or not name:
            raise UserError(f"--units {item!r}: expected NAME=UNIT, e.g. --units q=m")
        if name in units:
            raise UserError(f"--units: unit for {name!r} given twice")
        check_unit(unit, name)
        units[name] = unit
    return units


def load_table(path: str | Path, units: dict[str, str]) -> Trajectories:
    """Read trajectories from a CSV or Parquet file.

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.parquet`` or ``.pq`` file with columns ``trajectory``,
        ``t``, one per state variable and optional ``d_<name>`` columns.
    units : dict of str to str
        Pint unit string per state column (and optionally for ``t``).

    Returns
    -------
    Trajectories
        Named after the file; variables in column order.

    Examples
    --------
    A file ``orbits.csv``::

        trajectory,t,q,p
        a,0.0,1.0,0.0
        a,0.1,0.99,-0.2
        ...

    >>> data = load_table("orbits.csv", {"q": "m", "p": "kg*m/s"})  # doctest: +SKIP
    """
    path = Path(path)
    frame = _read(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    where = str(path)
    variables, deriv_cols = _check_columns(frame, where)
    time_unit = _check_units(units, variables, where)
    if len(frame) == 0:
        raise UserError(f"{where}: no data rows")

    ids = _trajectory_ids(frame["trajectory"], where)
    t = _numbers(frame["t"], where, "t")
    x = np.stack([_numbers(frame[v], where, v) for v in variables], axis=1)
    dx = None
    if deriv_cols:
        dx = np.stack([_numbers(frame[c], where, c) for c in deriv_cols], axis=1)

    codes, uniques = pd.factorize(ids)
    groups = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    for rows, name in zip(groups, uniques):
        _check_trajectory(rows, t[rows], name, where)

    unit_map = {v: units[v] for v in variables}
    if len(groups) == 1:
        rows = groups[0]
        return split_in_time(
            path.name,
            variables,
            unit_map,
            x[rows],
            t[rows],
            None if dx is None else dx[rows],
            TRAIN_FRACTION,
            time_unit,
        )
    n_train = max(1, int(TRAIN_FRACTION * len(groups)))
    return Trajectories(
        name=path.name,
        variables=variables,
        units=unit_map,
        states=tuple(x[rows] for rows in groups),
        times=tuple(t[rows] for rows in groups),
        derivatives=None if dx is None else tuple(dx[rows] for rows in groups),
        split=tuple("train" if k < n_train else "test" for k in range(len(groups))),
        time_unit=time_unit,
    )


def _read(path: Path) -> pd.DataFrame:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise UserError(
            f"{path}: unsupported file extension {path.suffix or '(none)'!r}; use .csv or .parquet"
        )
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skipinitialspace=True,
                index_col=False,
            )
    except pd.errors.ParserWarning:
        raise UserError(_field_count_problem(path)) from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: the file is empty") from None
    except Exception as err:  # noqa: BLE001 - pandas and pyarrow raise many types
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: cannot read as {kind.upper()}: {detail}") from None


def _field_count_problem(path: Path) -> str:
    with path.open(newline="") as handle:
        lines = (line for line in handle if line.strip())
        rows = csv.reader(lines, skipinitialspace=True)
        header = next(rows)
        for i, row in enumerate(rows, start=1):
            if len(row) > len(header):
                return (
                    f"{path}, data row {i} (header not counted): {len(row)} fields "
                    f"but the header has {len(header)}"
                )
    return f"{path}: some rows have more fields than the header"


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
            raise UserError(f"{where}: no unit for column {v!r}: pass --units {v}=UNIT")
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
