"""`lawfinder tailor`: evaluate your own formula as a tailoring and meta-tailoring loss."""

from __future__ import annotations

import click

from lawfinder.cli.common import (
    data_options,
    echo_fn,
    prepare_run,
    rank_options,
    run_options,
    stage_progress,
)  # fmt: skip


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
    from lawfinder.runs.pipeline import SearchConfig, run_search
    from lawfinder.runs.report_text import print_summary

    run = prepare_run(system, data, units, noise, seed, device=device, backend=backend, scheduler=scheduler,
                      out=out, out_suffix="-tailor")  # fmt: skip
    dataset, out = run.dataset, run.out
    try:
        parsed = dsl.parse(formula, dataset.traj.units)
    except ValueError as err:
        raise UserError(str(err)) from None
    if any(v is None for v in parsed.param_values):
        raise UserError(f"--formula {formula!r}: give numbers for the parameters (C0, C1, ...)")
    config = SearchConfig(seed=seed, device=device, jobs=jobs, backend=run.backend,
                          scheduler=run.scheduler, top=top, epochs=epochs, seeds=seeds, noise=noise)  # fmt: skip
    progress, close = stage_progress(quiet)
    try:
        summary = run_search(dataset.traj, out, config, system=dataset.name, oracle=dataset.oracle,
                             oracle_fn=dataset.oracle_fn, resume=resume, formula=formula, log=echo_fn(quiet),
                             progress=progress)  # fmt: skip
    finally:
        close()
    print_summary(summary, out)
