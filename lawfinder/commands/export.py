"""`lawfinder export`: print a ranked formula of a run as LaTeX, sympy, JSON or Python/torch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lawfinder.errors import UserError

FORMATS = ("latex", "sympy", "json", "python")


def ranked_formula(summary: dict, entry: dict):
    """The entry's fitted formula as a `dsl.Formula` over the run's variables."""
    import dsl
    from dsl import nodes

    if isinstance(entry.get("tree"), dict):  # the fitted tree: never re-parse printed text
        try:
            return dsl.Formula(nodes.from_dict(entry["tree"]), summary.get("variables") or {})
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"rank {entry.get('rank', '?')} in summary.json has a bad 'tree': {err}") from None
    text = entry.get("formula")
    if not isinstance(text, str):
        raise UserError(f"rank {entry.get('rank', '?')} has no 'formula' string in summary.json")
    try:
        return dsl.parse(text, summary.get("variables") or {})
    except ValueError as err:
        raise UserError(f"rank {entry.get('rank', '?')} in summary.json: {err}") from None


def render(run_dir: Path, summary: dict, entry: dict, fmt: str, digits: int) -> str:
    """The text `lawfinder export` prints for one ranking entry."""
    if fmt == "json":
        extra = {"system": summary.get("system"), "variables": summary.get("variables") or {}}
        return json.dumps({**entry, **extra}, indent=2)
    formula = ranked_formula(summary, entry)
    if fmt == "latex":
        return formula.to_latex(digits)
    if fmt == "sympy":
        return formula.to_string()
    from lawfinder.export_python import python_source

    about = (
        f"Rank {entry.get('rank', '?')} of the {summary.get('kind', 'search')} run in {run_dir}\n"
        f"(system {summary.get('system')}, seed {summary.get('seed')}, "
        f"revision {summary.get('git_revision')}).\n"
        f"Conservation ratio: {_num(entry.get('conservation_ratio'))}; "
        f"test RMSE when tailoring with it: {_num(entry.get('test_rmse'))}."
    )
    variables = list(summary.get("variables") or {})
    params = entry.get("params") if isinstance(entry.get("params"), dict) else None
    source = python_source(formula, variables, about, params, entry.get("template"))
    return source.rstrip("\n")


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command("export")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--rank", default=1, show_default=True, type=int, help="Which ranked formula (1 is best)."
)
@click.option(
    "--format", "fmt", required=True, type=click.Choice(FORMATS),
    help="latex: for papers; sympy: text sympy.sympify reads; json: the ranking entry; "
    "python: a self-contained torch function.",
)  # fmt: skip
@click.option("--digits", default=4, show_default=True, type=click.IntRange(1, 17),
              help="Significant digits of constants in the LaTeX output.")  # fmt: skip
def export(run_dir: Path, rank: int, fmt: str, digits: int) -> None:
    """Print the rank-N formula of the search or tailor run in DIR, to stdout."""
    from lawfinder.runfolder import load_summary, ranked_entry

    summary = load_summary(run_dir)
    entry = ranked_entry(summary, rank)
    click.echo(render(run_dir, summary, entry, fmt, digits))
