"""`lawfinder report`: write a Markdown report with PNG plots for a search or tailor run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report here instead of DIR/report.md; the plots go beside it.")  # fmt: skip
def report(run_dir: Path, out: Path | None) -> None:
    """Write DIR/report.md (run, funnel, timings, ranking, baselines) and its PNG plots."""
    from lawfinder.runs.report import write_report

    click.echo(str(write_report(run_dir, out)))
