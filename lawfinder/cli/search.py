"""`lawfinder search`: enumerate, fit and accept, screen, meta-tailor and rank."""

from __future__ import annotations

import click

from lawfinder.cli.common import (
    data_options,
    echo_fn,
    fit_options,
    prepare_run,
    rank_options,
    run_options,
    stage_progress,
)  # fmt: skip


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
    from lawfinder.runs.pipeline import SearchConfig, run_search
    from lawfinder.runs.report_text import print_summary

    run = prepare_run(system, data, units, noise, seed, device=device, backend=backend, scheduler=scheduler,
                      out=out)  # fmt: skip
    dataset, out = run.dataset, run.out
    config = SearchConfig(max_size=max_size, seed=seed, sparse=sparse, device=device, jobs=jobs, backend=run.backend,
                          scheduler=run.scheduler, window=window, threshold=threshold, top=top, epochs=epochs,
                          surrogate_control=surrogate_control, alpha=alpha, surrogates=surrogates, seeds=seeds, noise=noise)  # fmt: skip
    progress, close = stage_progress(quiet)
    try:
        summary = run_search(dataset.traj, out, config, system=dataset.name, oracle=dataset.oracle,
                             oracle_fn=dataset.oracle_fn, resume=resume, log=echo_fn(quiet), progress=progress)  # fmt: skip
    finally:
        close()
    print_summary(summary, out)
