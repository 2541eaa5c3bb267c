"""`lawfinder search`: enumerate, fit and accept, screen, meta-tailor and rank."""

from __future__ import annotations

import click

from lawfinder.cli.common import (
    data_options,
    fit_options,
    prepare_run,
    rank_options,
    run_options,
    search_and_print,
)


@click.command()
@data_options
@run_options
@fit_options
@rank_options
@click.option("--top", default=20, show_default=True, help="Meta-tailoring runs per seed (the paper's 20): laws x inner rates.")
@click.option("--epochs", default=100, show_default=True, help="Meta-tailoring epochs.")
def search(system, data, units, noise, out, device, seed, jobs, backend, scheduler, resume, quiet, max_size, window, threshold,
           alpha, surrogates, sparse, surrogate_control, seeds, top, epochs):  # fmt: skip
    """Find conserved quantities and rank them by how much they improve a predictor."""
    from lawfinder.runs.pipeline import SearchConfig

    run = prepare_run(system, data, units, noise, seed, device=device, backend=backend, scheduler=scheduler,
                      out=out)  # fmt: skip
    config = SearchConfig.from_options(
        max_size=max_size, seed=seed, sparse=sparse, device=device, jobs=jobs, backend=run.backend,
        scheduler=run.scheduler, window=window, threshold=threshold, top=top, epochs=epochs,
        surrogate_control=surrogate_control, alpha=alpha, surrogates=surrogates, seeds=seeds, noise=noise)  # fmt: skip
    search_and_print(run, config, quiet=quiet, resume=resume)
