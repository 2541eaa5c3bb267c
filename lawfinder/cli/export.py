"""`lawfinder export`: print a ranked formula of a run as LaTeX, sympy, JSON or Python/torch."""

from __future__ import annotations

from pathlib import Path

import click

FORMATS = ("latex", "sympy", "json", "python")  # lawfinder.runs.results.EXPORT_FORMATS, without its imports


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
    from lawfinder.runfolder import run_folder
    from lawfinder.runs.results import ranked_entry, render_entry

    run = run_folder(run_dir)
    summary = run.load_summary()
    click.echo(render_entry(run.path, summary, ranked_entry(summary, rank), fmt, digits))
