"""`lawfinder export` and `lawfinder report`: on a real (fast) search run, and on hand-written
summaries for the error cases and for formulas a fast run does not produce."""

import ast
import json
import re

import numpy as np
import pytest
import sympy
import torch
from click.testing import CliRunner

import dsl
from dsl.evaluate import array_function
from lawfinder.cli.app import cli, main
from lawfinder.data.trajectories import Trajectories
from lawfinder.laws.python_source import python_source
from lawfinder.runs.pipeline import SearchConfig, run_search
from tests.tolerance import assert_close

UNITS = {"q": "rad", "p": "kg*m**2/s"}
FORMULAS = [
    "p**2 - 3.0000004*cos(q)",
    "p**2/1.7 - 2.9e-05*sin(q)*p",
    "p**2/(1.25*(cos(q) - 4.0))",
]


def summary(**changes) -> dict:
    ranking = [
        {
            "rank": k + 1,
            "formula": text,
            "template": "p**2 + C0*cos(q)",
            "latex": "",
            "params": {"C0": {"value": -3.0000004, "unit": "kg**2*m**4/s**2"}},
            "conservation_ratio": 3.2e12 / 10**k,
            "train_mse": 0.001,
            "test_rmse": 0.05,
        }
        for k, text in enumerate(FORMULAS)
    ]
    data = {
        "command": "lawfinder search --system pendulum", "system": "pendulum", "variables": UNITS,
        "seed": 0, "device": "cpu", "versions": {"python": "3.11"}, "git_revision": "abc123",
        "kind": "search",
        "counts": {"enumerated": 8103, "fitted": 8103, "accepted": 3, "screened": 3, "meta_tailored": 3},
        "timings_s": {"enumerate": 0.2, "fit": 20.1, "screen": 5.0, "meta_tailor": 60.0, "total": 90.0},
        "ranking": ranking,
        "baselines": {"vanilla": {"test_rmse": 0.056}, "oracle": {"formula": "p**2 - 3*cos(q)", "test_rmse": 0.042}},
        "curves": {
            "t": [0.0, 0.1, 0.2],
            "mse": {"vanilla": [1e-4, 1e-3, 1e-2], "oracle": [1e-4, 2e-4, 4e-4], "rank 1": [1e-4, 3e-4, 6e-4]},
            "energy_drift": {"vanilla": [0, 0.1, 0.3], "oracle": [0, 0.01, 0.02], "rank 1": [0, 0.02, 0.03], "truth": [0, 0, 0]},
        },
    }  # fmt: skip
    data.update(changes)
    return data


def write_run(folder, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary(**changes)))
    return folder


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "run")


def quartic(n=12, seed=0) -> Trajectories:
    """A 3-variable system the project does not ship: x' = 4 y**3, y' = -4 x**3, z' = -z.

    ``x**4 + y**4`` is conserved; its printed form has 4th powers, which the formula parser
    reads back as squares of squares (ranking, export and report use the fitted tree).
    """
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1.5, 30)
    states = []
    for _ in range(n):
        r, a = rng.uniform(0.6, 1.2), rng.uniform(0, 2 * np.pi)
        x0 = [r * np.cos(a), r * np.sin(a), rng.uniform(0.5, 2)]
        sol = solve_ivp(lambda _, s: [4 * s[1] ** 3, -4 * s[0] ** 3, -s[2]], (0, t[-1]), x0,
                        t_eval=t, rtol=1e-10, atol=1e-10)  # fmt: skip
        states.append(sol.y.T)
    split = tuple("train" if k % 2 == 0 else "test" for k in range(n))
    return Trajectories("quartic", ("x", "y", "z"), {"x": "m", "y": "m", "z": "s"},
                        tuple(states), (t,) * n, None, split)  # fmt: skip


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A real search (fast settings) whose accepted law is the 4th-power ``x**4 + y**4``."""
    out = tmp_path_factory.mktemp("quartic")
    torch.set_num_threads(1)
    config = SearchConfig.from_options(max_size=7, seeds=2, epochs=2, predictor_steps=100)
    summary = run_search(quartic(), out, config, system="quartic", log=lambda _: None)
    assert summary["ranking"], "the fit accepted nothing"
    return out, summary


X, Y, Z = sympy.symbols("x y z")
STATES3 = np.random.default_rng(1).normal(size=(3, 40))


def test_real_run_ranks_and_exports_a_fourth_power_law(real_run):
    out, summary = real_run
    entry = summary["ranking"][0]
    law = sympy.sympify(entry["formula"])
    assert sympy.degree(sympy.expand(law), X) == 4 and sympy.degree(sympy.expand(law), Y) == 4
    assert entry["meta_tailored"] and entry["test_rmse"] is not None
    values = sympy.lambdify([X, Y, Z], law, "numpy")(*STATES3)
    text = export(out, "--format", "sympy")
    got = sympy.lambdify([X, Y, Z], sympy.sympify(text), "numpy")(*STATES3)
    np.testing.assert_allclose(got, values, rtol=1e-9)
    source = export(out, "--format", "python")
    namespace = {}
    exec(compile(source, "exported.py", "exec"), namespace)  # noqa: S102 - the point of the test
    x = torch.as_tensor(STATES3.T, dtype=torch.float64)
    assert_close(namespace["conserved_quantity"](x).numpy(), values)
    data = json.loads(export(out, "--format", "json"))
    assert data["formula"] == entry["formula"] and data["variables"] == {"x": "m", "y": "m", "z": "s"}
    assert "x^{4}" in export(out, "--format", "latex")
    parsed = dsl.parse(entry["formula"], {"x": "m", "y": "m", "z": "s"})  # sympy's text parses
    assert_close(array_function(parsed.root, ["x", "y", "z"], np)(STATES3.T)[..., 0], values)


def test_report_of_a_real_run_shows_its_numbers(real_run):
    out, summary = real_run
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    for name in ("mse_vs_horizon.png", "funnel.png"):  # no energy drift: the system has no oracle
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    entry, base = summary["ranking"][0], summary["baselines"]
    assert "x^{4}" in text and f"{entry['test_rmse']:.4g}" in text
    assert f"| vanilla (no tailoring) | {base['vanilla']['test_rmse']:.4g} |" in text
    assert "fine-tuned for the same epochs, no tailoring" in text
    assert summary["ranking_basis"] in text
    assert f"| templates enumerated | {summary['counts']['enumerated']} |" in text


def export(run_dir, *args) -> str:
    result = CliRunner().invoke(cli, ["export", str(run_dir), *args])
    assert result.exit_code == 0, result.output
    return result.stdout.rstrip("\n")


def numeric(expr: sympy.Expr):
    q, p = sympy.symbols("q p")
    return sympy.lambdify([q, p], expr, "numpy")


STATES = np.random.default_rng(0).normal(size=(2, 50))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_sympy_export_reads_back_as_the_ranked_formula(run_dir, rank):
    text = export(run_dir, "--rank", str(rank), "--format", "sympy")
    assert sympy.expand(sympy.sympify(text) - sympy.sympify(FORMULAS[rank - 1])) == 0


def _latex_parser():
    try:
        from sympy.parsing.latex import parse_latex

        parse_latex("x")
    except ImportError:
        return None
    return parse_latex


_NUMBER = re.compile(r"\d+(?:\.\d*)?(?: \\cdot 10\^\{(-?\d+)\})?")


def _shape_and_numbers(latex: str) -> tuple[str, list[float]]:
    numbers = []

    def take(match):
        numbers.append(float(match.group(0).split(" ")[0]) * 10.0 ** int(match.group(1) or 0))
        return "#"

    return _NUMBER.sub(take, latex), numbers


@pytest.mark.parametrize("digits", [2, 4])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_latex_export_parses_back_to_the_formula(run_dir, rank, digits):
    latex = export(run_dir, "--rank", str(rank), "--format", "latex", "--digits", str(digits))
    expected = sympy.sympify(FORMULAS[rank - 1])
    rtol = 10.0 ** (1 - digits)
    parse_latex = _latex_parser()
    if parse_latex is not None:
        parsed = parse_latex(latex)
        np.testing.assert_allclose(numeric(parsed)(*STATES), numeric(expected)(*STATES), rtol=rtol)
        return
    # No LaTeX parser (antlr4 missing): the export must be sympy's own LaTeX of the
    # formula, term for term, with each constant rounded to `digits` significant digits.
    shape, numbers = _shape_and_numbers(latex)
    want_shape, want_numbers = _shape_and_numbers(sympy.latex(expected))
    assert shape == want_shape
    np.testing.assert_allclose(numbers, want_numbers, rtol=rtol)
    rounded = [float(f"{x:.{digits}g}") for x in numbers]
    np.testing.assert_allclose(numbers, rounded, rtol=1e-12)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_python_export_is_self_contained_and_equals_the_formula(run_dir, rank):
    source = export(run_dir, "--rank", str(rank), "--format", "python")
    imports = [
        n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))
    ]
    assert [alias.name for n in imports for alias in n.names] == ["torch"]
    namespace = {}
    exec(compile(source, "exported.py", "exec"), namespace)  # noqa: S102 - the point of the test
    g = namespace["conserved_quantity"]
    assert FORMULAS[rank - 1] in namespace["__doc__"]
    assert (
        f"{3.2e12 / 10 ** (rank - 1):.4g}" in namespace["__doc__"]
        and str(run_dir) in namespace["__doc__"]
    )
    x = torch.randn(4, 7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(rank))
    value = g(x)
    assert value.shape == (4, 7)
    want = numeric(sympy.sympify(FORMULAS[rank - 1]))(x[..., 0].numpy(), x[..., 1].numpy())
    assert_close(value.numpy(), want)


def test_python_source_renames_variables_that_clash():
    import dsl

    formula = dsl.parse("x**2 + 2.0*x*x_", {"x": "m", "x_": "m"})
    namespace = {}
    exec(python_source(formula, ["x_", "x"]), namespace)  # noqa: S102 - generated code under test
    state = torch.tensor([[3.0, 2.0]], dtype=torch.float64)
    assert_close(namespace["conserved_quantity"](state).numpy(), [2.0**2 + 2 * 2.0 * 3.0])
    with pytest.raises(ValueError, match="free parameter"):
        python_source(formula.template(), ["x", "x_"])


def test_json_export_is_the_ranking_entry_with_variables(run_dir):
    data = json.loads(export(run_dir, "--rank", "2", "--format", "json"))
    assert data["rank"] == 2 and data["formula"] == FORMULAS[1]
    assert data["variables"] == UNITS and data["params"]["C0"]["unit"] == "kg**2*m**4/s**2"


def _fails(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda d: None, [], "no such run folder"),
        (lambda d: d.mkdir(), [], "has no summary.json"),
        (lambda d: write_run(d, kind="enumerate"), [], "from a `lawfinder enumerate` run, not a search"),
        (lambda d: write_run(d, kind=None, command="lawfinder enumerate --var q:rad"), [], "not a search or tailor run"),
        (lambda d: write_run(d), ["--rank", "4"], "this run ranked 3 formulas (choose 1 to 3)"),
        (lambda d: write_run(d), ["--rank", "0"], "--rank: 0 is out of range"),
        (lambda d: write_run(d, ranking=[]), [], "no conserved quantity was found in this run"),
        (lambda d: (d.mkdir(), (d / "summary.json").write_text("{oops")), [], "is not valid JSON"),
    ],
    ids=["missing", "no-summary", "enumerate-kind", "enumerate-command", "rank-high", "rank-zero", "empty", "bad-json"],
)  # fmt: skip
def test_export_errors_are_one_line_and_exit_2(tmp_path, capsys, make, args, message):
    folder = tmp_path / "run"
    make(folder)
    assert message in _fails(["export", str(folder), "--format", "sympy", *args], capsys)


def test_report_on_a_missing_folder_exits_2(tmp_path, capsys):
    assert "no such run folder" in _fails(["report", str(tmp_path / "nope")], capsys)


PLOTS = ("mse_vs_horizon.png", "energy_drift.png", "funnel.png")


def test_report_writes_markdown_and_plots(run_dir):
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    report = run_dir / "report.md"
    assert result.stdout.strip() == str(report)
    text = report.read_text()
    for name in PLOTS:
        assert f"]({name})" in text
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"
    assert r"$p^{2} - 3 \cos{\left(q \right)}$" in text
    for needle in (
        "abc123",
        "seed | 0",
        "| templates enumerated | 8103 |",
        "| meta_tailor | 60 |",
        "oracle: `p**2 - 3*cos(q)`",
    ):
        assert needle in text


def test_report_of_an_empty_run_says_so_and_skips_missing_plots(tmp_path):
    folder = write_run(
        tmp_path / "run", ranking=[], curves=None, baselines={"vanilla": {"test_rmse": 0.056}}
    )
    out = tmp_path / "elsewhere" / "empty.md"
    result = CliRunner().invoke(cli, ["report", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "No conserved quantity was found in this run" in text
    assert "MSE vs horizon: no plot, summary.json has no curves" in text
    assert "no known conserved quantity" in text
    assert (out.parent / "funnel.png").exists() and "](funnel.png)" in text
    assert not (out.parent / "mse_vs_horizon.png").exists()
    assert not (out.parent / "energy_drift.png").exists()


def test_terminal_summary_reports_the_independent_set_and_caps_round_off_ratios():
    from lawfinder.runs.report_text import summary_text

    entry = {"rank": 1, "formula": "x*vy - y*vx", "conservation_ratio": 3.8e299, "test_rmse": 0.69,
             "test_rmse_std": 0.05, "seeds_helped": 1}  # fmt: skip
    summary = {"system": "kepler", "device": "cpu", "seeds": [0, 1], "counts": {"enumerated": 7702, "accepted": 2},
               "timings_s": {"total": 100}, "ranking_basis": "conservation evidence and simplicity",
               "baselines": {"vanilla": {"test_rmse": 0.73}, "set": {"formulas": ["a", "b"], "test_rmse": 0.95,
                                                                    "beats_rank_1": False, "beaten_by_rank_1": True}},
               "ranking": [entry]}  # fmt: skip
    text = summary_text(summary, None)
    assert "the 2 independent laws together: test RMSE 0.95; helps less than rank 1 alone" in text
    assert ">1e18" in text and "3.8e+299" not in text


def test_summaries_say_how_many_seeds_diverged_instead_of_a_spread_of_one():
    """A mean over the finite seeds hides the others: the terminal table and the report count them."""
    from lawfinder.runs.report import _test
    from lawfinder.runs.report_text import rmse_text

    seeds = [{"seed": 0}, {"seed": 1}]
    one_left = {"test_rmse": 0.8335, "test_rmse_std": 0.0, "diverged_seeds": 1, "per_seed": seeds}
    none_left = {"test_rmse": None, "test_rmse_std": None, "diverged_seeds": 2, "per_seed": seeds}
    fine = {"test_rmse": 0.59, "test_rmse_std": 0.0078, "diverged_seeds": 0, "per_seed": seeds}
    assert rmse_text(one_left) == "0.8335, 1/2 diverged"
    assert rmse_text(none_left) == "2/2 diverged"
    assert rmse_text(fine) == "0.59 ± 0.0078"
    assert rmse_text({"test_rmse": None}) == "-"
    assert rmse_text({"test_rmse": 0.78, "test_rmse_std": 0.013}) == "0.78 ± 0.013"  # seeds not listed
    assert _test(one_left) == "0.8335 (1/2 diverged)" and _test(fine) == "0.59"
