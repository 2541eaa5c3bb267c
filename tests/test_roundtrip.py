"""A search never dies on a law the fit produced: every accepted formula of a 3-variable search
goes through ranking, the run folder, reloading, every export and the report, as its fitted tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lawfinder as lf
from dsl import nodes
from dsl.nodes import Binary, Input, Param, Unary
from lawfinder.cli.app import cli


@pytest.fixture(scope="module")
def rigid_body(tmp_path_factory):
    out = tmp_path_factory.mktemp("rigid-body")
    torch.set_num_threads(1)
    result = lf.search("rigid-body", out=out, seeds=1, epochs=1, predictor_steps=50, top=4)
    assert result.laws, "the fit accepted nothing"
    return result


def states(n=50):
    return np.random.default_rng(0).normal(size=(n, 3))


def same_values(law, x):
    import sympy

    symbols = sympy.symbols(law.variables)
    by_sympy = sympy.lambdify(symbols, law.sympy(), "numpy")(*x.T)
    np.testing.assert_allclose(np.broadcast_to(by_sympy, len(x)), law.evaluate(x), rtol=1e-9, atol=1e-12)
    namespace = {}
    exec(compile(law.python(), "law.py", "exec"), namespace)  # noqa: S102 - the export under test
    np.testing.assert_allclose(namespace["conserved_quantity"](torch.as_tensor(x)).numpy(), law.evaluate(x))


def test_every_accepted_formula_reaches_the_ranking(rigid_body):
    accepted = rigid_body.candidates.query("accepted")
    ranked = {law.name for law in rigid_body.laws} | {d for law in rigid_body.laws for d in law.duplicates}
    assert set(accepted.formula) <= ranked
    assert [law.rank for law in rigid_body.laws] == list(range(1, len(rigid_body.laws) + 1))
    for law in rigid_body.laws:
        assert law.status in ("law", "approximate") and law.evidence["status"] == law.status
        assert all(p.unit is not None for p in law.params.values())
        same_values(law, states())


def test_a_reloaded_run_gives_the_same_laws_and_exports_them(rigid_body):
    folder = rigid_body.folder
    loaded = lf.SearchResult.load(folder)
    assert [law.node for law in loaded.laws] == [law.node for law in rigid_body.laws]
    assert [law.params for law in loaded.laws] == [law.params for law in rigid_body.laws]
    assert loaded.summary() == rigid_body.summary()
    for rank, law in enumerate(loaded.laws, start=1):
        for fmt in ("latex", "sympy", "json", "python"):
            result = CliRunner().invoke(cli, ["export", str(folder), "--rank", str(rank), "--format", fmt])
            assert result.exit_code == 0, result.output
            assert result.stdout.rstrip("\n") == loaded.export(rank, fmt)
        assert json.loads(loaded.export(rank, "json"))["tree"] == nodes.to_dict(law.node)
    assert loaded.report().is_file()
    fig = loaded.plot(folder / "curves.png")
    assert len(fig.axes) == 2 and (folder / "curves.png").is_file()


def test_a_law_whose_printed_form_is_beyond_the_parser_is_ranked_and_exported(tmp_path):
    """``w1**4 + 2.0*w2**4`` as the fit builds it, ``square(square(w))``: never re-parsed."""
    from lawfinder.ranking.config import RankingConfig
    from lawfinder.ranking.stage import evaluate_candidates

    quartic = Binary("+", Unary("square", Unary("square", Input("w1"))),
                     Binary("*", Param(2.0), Unary("square", Unary("square", Input("w2")))))  # fmt: skip
    traj = lf.load_system("rigid-body")
    law = lf.Law(name="w1**4 + 2.0*w2**4", node=quartic, ratio=1e3, exact=True, units=traj.units)
    config = RankingConfig(seeds=1, epochs=1, predictor_steps=20, top=4)
    ranked = evaluate_candidates(traj, [law], config, out=tmp_path, device=torch.device("cpu"), oracle=None,
                                 oracle_fn=None, resume=False, log=lambda _: None, timings={})  # fmt: skip
    summary = {"kind": "search", "system": "rigid-body", "variables": traj.units, "device": "cpu",
               "counts": {"accepted": 1}, "timings_s": {}, **ranked}  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    loaded = lf.SearchResult.load(tmp_path)
    assert loaded.best.node == quartic and loaded.best.params["C0"].unit == "dimensionless"
    assert "w_{1}^{4}" in loaded.export(1, "latex")
    same_values(loaded.best, states())
    assert "w1**4" in loaded.summary()
