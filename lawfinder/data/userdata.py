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
`lawfinder.data.systems.split_in_time`).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pandas as pd

from lawfinder.data.tables import check_unit
from lawfinder.data.trajectories import Trajectories
from lawfinder.errors import UserError

__all__ = ["check_unit", "load_table"]

TRAIN_FRACTION = 0.8
READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


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
    return Trajectories.from_dataframe(_read(path), units, name=path.name, source=str(path),
                                       train_fraction=TRAIN_FRACTION)  # fmt: skip


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
