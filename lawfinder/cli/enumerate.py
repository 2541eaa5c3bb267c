"""`lawfinder enumerate`: list every valid formula template up to a size."""

from __future__ import annotations

from pathlib import Path

import click

from lawfinder.cli.common import UNITS_HELP, parse_units
from lawfinder.errors import UserError


def checked_units(units: dict[str, str]) -> dict[str, str]:
    """Raise a one-line `UserError` for a bad variable name or unit string."""
    import dsl

    try:
        dsl.dimensions(units)
    except dsl.UnitError as err:
        raise UserError(str(err)) from None
    return units


@click.command("enumerate")
@click.option("--units", "--var", "variables", multiple=True, metavar="NAME=UNIT", help=UNITS_HELP)
@click.option("--system", help="Take the variables of a built-in system (see `lawfinder systems`).")
@click.option("--max-size", default=7, show_default=True, type=click.IntRange(1, 10), help="Largest formula size (nodes).")
@click.option("--ops", default=None, metavar="OP,OP,...",
              help="Operators to use (default: + - * / sin cos square; also sqrt, log, exp).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write summary.json and formulas.parquet here.")
def enumerate_cmd(variables, system, max_size, ops, out):
    """Enumerate every dimensionally valid formula template up to --max-size nodes."""
    import dsl

    ops = dsl.PAPER_OPS if ops is None else tuple(op.strip() for op in ops.split(",") if op.strip())
    unknown = sorted(set(ops) - set(dsl.OPERATORS))
    if unknown:
        raise UserError(f"--ops: unknown operator {', '.join(unknown)} (known: {', '.join(dsl.OPERATORS)})")

    if system and variables:
        raise UserError("give either --system or --units, not both")
    if system:
        from lawfinder.data.systems import get_system

        units = dict(get_system(system).units)
    elif variables:
        units = parse_units(variables)
    else:
        raise UserError("give the variables: --units q=rad --units p='kg*m**2/s' (or --system NAME)")
    checked_units(units)
    formulas = dsl.FormulaSet.enumerate(units, max_size, ops=ops)
    counts = formulas.summary_counts()
    seconds = formulas.enumeration.seconds
    click.echo(f"{counts['total']} formulas up to size {max_size} over {', '.join(f'{k} [{v}]' for k, v in units.items())} in {seconds:.2f} s")
    click.echo("by size: " + ", ".join(f"{k}: {v}" for k, v in counts["by_size"].items()))
    click.echo("pruned:  " + ", ".join(f"{k}: {v}" for k, v in counts["pruned"].items() if v))
    if out:
        import pandas as pd

        from lawfinder.runfolder import RunFolder, write_json, write_table
        from lawfinder.runs.metadata import run_metadata

        folder = RunFolder(out)
        write_table(folder.formulas, pd.DataFrame(formulas.records()))
        summary = {**run_metadata(), "system": system, "variables": units, "max_size": max_size,
                   "ops": list(ops), "counts": counts, "timings_s": {"enumerate": seconds}}  # fmt: skip
        write_json(folder.summary_json, summary)
        click.echo(f"wrote {folder.summary_json} and {folder.formulas}")
