"""User tables: good files load with the documented split; every bad input gets one clear line."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from lawfinder.cli.common import parse_units
from lawfinder.data.userdata import load_table
from lawfinder.errors import UserError

UNITS = {"q": "m", "p": "kg*m/s"}


def table(n_traj: int = 5, n_points: int = 4, derivatives: bool = False) -> pd.DataFrame:
    rows = []
    for k in range(n_traj):
        for i in range(n_points):
            t = 0.1 * i * (k + 1)
            row = {"trajectory": f"run{k}", "t": t, "q": np.cos(t) * (k + 1), "p": -np.sin(t)}
            if derivatives:
                row |= {"d_q": 2 * row["p"], "d_p": -2 * row["q"]}
            rows.append(row)
    return pd.DataFrame(rows)


def write_csv(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def expect_error(path, units, *pieces):
    with pytest.raises(UserError) as info:
        load_table(path, units)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for piece in pieces:
        assert piece in message, message
    return message


GOOD_HEADER = "trajectory,t,q,p\n"
GOOD_ROWS = (
    "a,0.0,1.0,0.0\na,0.1,0.9,0.1\na,0.2,0.8,0.2\nb,0.0,1.0,0.0\nb,0.1,0.9,0.1\nb,0.2,0.8,0.2\n"
)


def test_csv_loads_with_split_by_first_appearance(tmp_path):
    path = tmp_path / "runs.csv"
    frame = table(n_traj=5)
    frame.sample(frac=1.0, random_state=0).sort_values("t", kind="stable").to_csv(path, index=False)
    data = load_table(path, UNITS)
    assert data.name == "runs.csv"
    assert data.variables == ("q", "p") and data.units == UNITS
    assert data.n_trajectories == 5 and data.lengths == (4,) * 5
    assert data.split == ("train",) * 4 + ("test",)
    assert data.derivatives is None and data.time_unit == "s"
    first = frame[frame.trajectory == "run0"]
    order = pd.unique(
        frame.sample(frac=1.0, random_state=0).sort_values("t", kind="stable").trajectory
    )
    k = list(order).index("run0")
    np.testing.assert_allclose(data.states[k], first[["q", "p"]].to_numpy())


def test_parquet_with_derivatives_and_time_unit(tmp_path):
    path = tmp_path / "runs.parquet"
    table(n_traj=2, derivatives=True).to_parquet(path)
    data = load_table(path, {**UNITS, "t": "ms"})
    assert data.split == ("train", "test")
    assert data.time_unit == "ms"
    x, dx = data.derivative_pairs()
    np.testing.assert_allclose(dx, np.stack([2 * x[:, 1], -2 * x[:, 0]], axis=1))


def test_single_trajectory_is_split_in_time(tmp_path):
    path = tmp_path / "long.csv"
    table(n_traj=1, n_points=11).to_csv(path, index=False)
    data = load_table(path, UNITS)
    assert data.split == ("train", "test")
    assert len(data.train().derivative_pairs()[0]) == 8
    assert len(data.test().derivative_pairs()[0]) == 2


def test_columns_may_be_in_any_order_with_spaces(tmp_path):
    path = write_csv(tmp_path, "t, p, trajectory, q\n0, 1, x, 2\n1, 1, x, 2\n2, 1, x, 2\n")
    assert load_table(path, UNITS).variables == ("p", "q")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.csv", UNITS, "no such file")


def test_unsupported_extension(tmp_path):
    path = write_csv(tmp_path, GOOD_HEADER + GOOD_ROWS, name="data.xlsx")
    expect_error(path, UNITS, "unsupported file extension '.xlsx'; use .csv or .parquet")


def test_empty_file(tmp_path):
    expect_error(write_csv(tmp_path, ""), UNITS, "the file is empty")


def test_no_data_rows(tmp_path):
    expect_error(write_csv(tmp_path, GOOD_HEADER), UNITS, "no data rows")


@pytest.mark.parametrize("column", ["trajectory", "t"])
def test_missing_required_column(tmp_path, column):
    frame = pd.read_csv(write_csv(tmp_path, GOOD_HEADER + GOOD_ROWS)).drop(columns=column)
    path = tmp_path / "cut.csv"
    frame.to_csv(path, index=False)
    expect_error(path, UNITS, f"missing column '{column}'", "found:")


def test_state_column_without_unit(tmp_path):
    path = write_csv(tmp_path, GOOD_HEADER + GOOD_ROWS)
    expect_error(path, {"q": "m"}, "no unit for column 'p' (give it as p=UNIT)")


def test_unit_for_missing_column(tmp_path):
    path = write_csv(tmp_path, GOOD_HEADER + GOOD_ROWS)
    expect_error(
        path, {**UNITS, "r": "m"}, "a unit was given for 'r' but there is no state column 'r'"
    )


def test_unknown_unit_string(tmp_path):
    path = write_csv(tmp_path, GOOD_HEADER + GOOD_ROWS)
    expect_error(path, {"q": "m", "p": "kg*m/sex"}, "unknown unit 'kg*m/sex' for variable 'p'")


def test_derivative_column_without_state(tmp_path):
    path = write_csv(tmp_path, "trajectory,t,q,p,d_r\n" + GOOD_ROWS.replace("\n", ",1\n"))
    expect_error(path, UNITS, "derivative column 'd_r' has no state column 'r'")


def test_derivative_columns_must_cover_all_states(tmp_path):
    path = write_csv(tmp_path, "trajectory,t,q,p,d_q\n" + GOOD_ROWS.replace("\n", ",1\n"))
    expect_error(path, UNITS, "missing 'd_p'")


def test_bad_variable_name(tmp_path):
    path = write_csv(tmp_path, "trajectory,t,q,p-x\n" + GOOD_ROWS)
    expect_error(path, {"q": "m", "p-x": "m"}, "column 'p-x' is not a valid variable name")


def test_non_numeric_value(tmp_path):
    rows = GOOD_ROWS.replace("a,0.1,0.9,0.1", "a,0.1,abc,0.1")
    path = write_csv(tmp_path, GOOD_HEADER + rows)
    expect_error(path, UNITS, "data row 2 (header not counted), column 'q': 'abc' is not a number")


def test_nan_value(tmp_path):
    rows = GOOD_ROWS.replace("b,0.1,0.9,0.1", "b,0.1,0.9,NaN")
    expect_error(
        write_csv(tmp_path, GOOD_HEADER + rows), UNITS, "data row 5", "column 'p': NaN value"
    )


def test_empty_value(tmp_path):
    rows = GOOD_ROWS.replace("b,0.1,0.9,0.1", "b,,0.9,0.1")
    expect_error(
        write_csv(tmp_path, GOOD_HEADER + rows), UNITS, "data row 5", "column 't': missing value"
    )


def test_inf_value(tmp_path):
    rows = GOOD_ROWS.replace("a,0.2,0.8,0.2", "a,0.2,-inf,0.2")
    expect_error(
        write_csv(tmp_path, GOOD_HEADER + rows),
        UNITS,
        "data row 3",
        "column 'q': infinite value '-inf'",
    )


def test_nan_in_parquet(tmp_path):
    frame = table(n_traj=2)
    frame.loc[6, "p"] = np.nan
    path = tmp_path / "runs.parquet"
    frame.to_parquet(path)
    expect_error(path, UNITS, "data row 7 (header not counted), column 'p'")


def test_time_not_strictly_increasing(tmp_path):
    rows = GOOD_ROWS.replace("b,0.2,0.8,0.2", "b,0.1,0.8,0.2")
    message = expect_error(
        write_csv(tmp_path, GOOD_HEADER + rows), UNITS, "data row 6", "column 't'"
    )
    assert "time 0.1 is not after 0.1 (data row 5)" in message
    assert "trajectory 'b'" in message


def test_trajectory_too_short(tmp_path):
    rows = GOOD_ROWS + "c,0.0,1.0,0.0\nc,0.1,1.0,0.0\n"
    message = expect_error(
        write_csv(tmp_path, GOOD_HEADER + rows), UNITS, "data row 7", "column 'trajectory'"
    )
    assert "trajectory 'c' has 2 point(s); at least 3 are needed" in message


def test_empty_trajectory_id(tmp_path):
    rows = GOOD_ROWS.replace("b,0.0", ",0.0")
    expect_error(
        write_csv(tmp_path, GOOD_HEADER + rows), UNITS, "data row 4", "empty trajectory id"
    )


def test_row_with_too_many_fields(tmp_path):
    path = write_csv(tmp_path, GOOD_HEADER + "a,0.0,1.0,0.0,7,8\n")
    expect_error(path, UNITS, "data row 1 (header not counted): 6 fields but the header has 4")


def test_parse_units_one_syntax_with_an_alias():
    assert parse_units(["q=m", "p = kg*m/s"]) == UNITS
    assert parse_units(["q:m", "p:kg*m/s"]) == UNITS  # the enumerate command's old syntax, still read
    with pytest.raises(UserError, match=re.escape("'q': expected NAME=UNIT")) as err:
        parse_units(["q"])
    assert err.value.cli_text().startswith("--units: ")
    with pytest.raises(UserError, match="given twice"):
        parse_units(["q=m", "q=s"])
    with pytest.raises(UserError, match="unknown unit '3\\*m' for variable 'q'"):
        parse_units(["q=3*m"])


def test_row_with_too_few_fields(tmp_path):
    path = write_csv(tmp_path, GOOD_HEADER + "a,0.0,1.0\n" + GOOD_ROWS)
    expect_error(path, UNITS, "data row 1 (header not counted), column 'p': missing value")
