"""`lawfinder tailor`: evaluate your own formula as a tailoring and meta-tailoring loss."""

from __future__ import annotations

import click

from lawfinder.commands.common import (
    data_options,
    default_out,
    echo_fn,
    load_dataset,
    parallel_settings,
    run_options,
)  # fmt: skip


@click.command()
@data_options
@run_options
@click.option("--formula", required=True, help='The conserved quantity, e.g. "p**2 - 2.99*cos(q)".')
@click.option("--top", default=20, show_default=True, help="Meta-tailoring run budget.")
@click.option("--epochs", default=100, show_default=True, help="Meta-tailoring epochs.")
def tailor(system, data, units, noise, out, device, seed, jobs, backend, scheduler, resume, quiet, formula, top, epochs):
    """Compare vanilla, oracle (when known) and FORMULA as a tailoring loss; same summary as search."""
    import dsl
    from lawfinder.errors import UserError
    from lawfinder.pipeline import SearchConfig, run_search
    from lawfinder.predictor import resolve_device
    from lawfinder.report_text import print_summary

    resolve_device(device)
    backend, scheduler = parallel_settings(backend, scheduler)
    dataset = load_dataset(system, data, units, noise, seed)
    try:
        parsed = dsl.parse(formula, dataset.traj.units)
    except ValueError as err:
        raise UserError(str(err)) from None
    if any(v is None for v in parsed.param_values):
        raise UserError(f"--formula {formula!r}: give numbers for the parameters (C0, C1, ...)")
    out = out or default_out(f"{dataset.name}-tailor")
    config = SearchConfig(seed=seed, device=device, jobs=jobs, backend=backend, scheduler=scheduler,
                          top=top, epochs=epochs)  # fmt: skip
    summary = run_search(dataset.traj, out, config, system=dataset.name, oracle=dataset.oracle,
                         oracle_fn=dataset.oracle_fn, resume=resume, formula=formula, log=echo_fn(quiet))  # fmt: skip
    print_summary(summary, out)
