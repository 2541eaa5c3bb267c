"""`lawfinder tailor`: evaluate your own formula as a tailoring and meta-tailoring loss."""

from __future__ import annotations

import click

from lawfinder.cli.common import (
    data_options,
    prepare_run,
    rank_options,
    run_options,
    search_and_print,
)


@click.command()
@data_options
@run_options
@click.option("--formula", required=True, help='The conserved quantity, e.g. "p**2 - 2.99*cos(q)".')
@rank_options
@click.option("--top", default=20, show_default=True, help="Meta-tailoring run budget.")
@click.option("--epochs", default=100, show_default=True, help="Meta-tailoring epochs.")
def tailor(system, data, units, noise, out, device, seed, jobs, backend, scheduler, resume, quiet, formula, seeds, top, epochs):
    """Compare vanilla, oracle (when known) and FORMULA as a tailoring loss; same summary as search."""
    import dsl
    from lawfinder.errors import UserError
    from lawfinder.runs.pipeline import SearchConfig

    run = prepare_run(system, data, units, noise, seed, device=device, backend=backend, scheduler=scheduler,
                      out=out, out_suffix="-tailor")  # fmt: skip
    try:
        parsed = dsl.parse(formula, run.dataset.traj.units)
    except ValueError as err:
        raise UserError(str(err)) from None
    if any(v is None for v in parsed.param_values):
        raise UserError(f"--formula {formula!r}: give numbers for the parameters (C0, C1, ...)")
    config = SearchConfig.from_options(seed=seed, device=device, jobs=jobs, backend=run.backend,
                                       scheduler=run.scheduler, top=top, epochs=epochs, seeds=seeds, noise=noise)  # fmt: skip
    search_and_print(run, config, quiet=quiet, resume=resume, formula=formula)
