"""The Python API: its docstring examples run, data come in every documented form, errors are one line."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pandas as pd
import pytest

import lawfinder as lf
from lawfinder.data.userdata import load_table
from lawfinder.errors import UserError

API_MODULES = ["lawfinder", "lawfinder.api", "lawfinder.laws.law", "lawfinder.runs.results", "lawfinder.data.trajectories"]


@pytest.mark.parametrize("name", API_MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # lf.search's default run folder
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_package_exports_what_it_lists():
    for name in lf.__all__:
        assert getattr(lf, name) is not None
    assert {"search", "fit", "load_system", "Law", "SearchResult", "Trajectories"} <= set(lf.__all__)


def oscillator_frame(n=6, points=12) -> pd.DataFrame:
    t = np.linspace(0, 2, points)
    rows = [{"trajectory": f"run{k}", "t": ti, "x": a * np.sin(2 * ti), "v": 2 * a * np.cos(2 * ti)}
            for k, a in enumerate(np.linspace(0.5, 1.5, n)) for ti in t]  # fmt: skip
    return pd.DataFrame(rows)


def test_a_dataframe_arrays_and_a_file_give_the_same_trajectories(tmp_path):
    frame = oscillator_frame()
    units = {"x": "m", "v": "m/s"}
    frame.to_csv(tmp_path / "osc.csv", index=False)
    from_file = load_table(tmp_path / "osc.csv", units)
    from_frame = lf.Trajectories.from_dataframe(frame, units)
    groups = [g[["x", "v"]].to_numpy() for _, g in frame.groupby("trajectory", sort=False)]
    from_arrays = lf.Trajectories.from_arrays(groups, units, frame.t.unique())
    for data in (from_frame, from_arrays):
        assert data.variables == from_file.variables and data.split == from_file.split
        for a, b in zip(data.states, from_file.states):
            np.testing.assert_allclose(a, b)
    stacked = lf.Trajectories.from_arrays(np.stack(groups), units, dt=0.5)
    assert stacked.n_trajectories == 6 and np.allclose(np.diff(stacked.times[0]), 0.5)
    one = lf.Trajectories.from_arrays(groups[0], units)
    assert one.split == ("train", "test")  # one trajectory is split in time, as a file's is


@pytest.mark.parametrize(("call", "message"), [
    (lambda: lf.search("pendulum", units={"q": "rad"}), "units go with your own data"),
    (lambda: lf.search(oscillator_frame()), "give a unit per variable"),
    (lambda: lf.search("pendulum", max_sise=5), "unknown setting 'max_sise'"),
    (lambda: lf.search("pendulum", seeds=0), "seeds: must be a whole number >= 1, got 0"),
    (lambda: lf.search("pendulum", top=2.5), "top: must be a whole number >= 1, got 2.5"),
    (lambda: lf.fit("no-such-system"), "unknown system 'no-such-system'"),
    (lambda: lf.Trajectories.from_dataframe(oscillator_frame().drop(columns="t"), {"x": "m", "v": "m/s"}),
     "dataframe: missing column 't'"),
    (lambda: lf.Trajectories.from_arrays(np.zeros(5), {"x": "m"}), "states must be one (T, d) array"),
])  # fmt: skip
def test_mistakes_are_one_line_errors(call, message):
    with pytest.raises(UserError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_fit_gives_laws_with_parameters_units_and_evidence():
    result = lf.fit(oscillator_frame(), {"x": "m", "v": "m/s"}, max_size=7)
    law = result.best
    assert law.status == "law" and law.rank is None
    (name, param), = law.params.items()
    assert name == "C0" and param.unit == "s**-2"
    assert abs(param.value - 4.0) < 1e-3 or abs(param.value - 0.25) < 1e-4
    assert law.evidence["p_value"] <= 0.01 and law.ratio > 1e3
    assert "accepted" in result.summary() and len(result.candidates) > 100
    x = np.array([[0.3, 1.2], [1.0, 0.0]])
    np.testing.assert_allclose(law.evaluate(x), [float(law.sympy().subs({"x": a, "v": b})) for a, b in x])


def test_one_progress_hook_reports_every_stage(tmp_path):
    seen: dict[str, list[tuple[int, int]]] = {}

    def progress(stage, done, total):
        seen.setdefault(stage, []).append((done, total))

    lf.search("spring", out=tmp_path, max_size=5, seeds=1, epochs=1, predictor_steps=20, top=4, progress=progress)
    assert set(seen) == {"fit", "pretrain", "meta-tailor"}
    for stage, calls in seen.items():
        done, total = calls[-1]
        assert done == total > 0, stage
        assert [d for d, _ in calls] == sorted(d for d, _ in calls) or stage == "meta-tailor"
