"""`lawfinder fit`: enumerate, fit every formula for conservation, accept against random sequences and surrogates."""

from __future__ import annotations

import click

from lawfinder.cli.common import (
    data_options,
    echo_fn,
    fit_options,
    prepare_run,
    run_options,
    stage_progress,
)  # fmt: skip


@click.command()
@data_options
@run_options
@fit_options
def fit(system, data, units, noise, out, device, seed, jobs, backend, scheduler, resume, quiet, max_size, window, threshold,
        alpha, surrogates, sparse, surrogate_control):  # fmt: skip
    """Fit and accept: write candidates.parquet and summary.json."""
    from lawfinder.discovery.stage import FitConfig, default_max_size
    from lawfinder.runfolder import write_json
    from lawfinder.runs.metadata import run_metadata
    from lawfinder.runs.pipeline import claim_run_folder, fit_counts, fit_identity, fit_stage
    from lawfinder.runs.report_text import acceptance_line, reason_counts, short

    run = prepare_run(system, data, units, noise, seed, device=device, backend=backend, scheduler=scheduler,
                      out=out)  # fmt: skip
    dataset, dev, out = run.dataset, run.device, run.out
    cfg = FitConfig(window=window, threshold=threshold, seed=seed, jobs=jobs, device=str(dev),
                    backend=run.backend, scheduler=run.scheduler, surrogate_control=surrogate_control,
                    alpha=alpha, surrogates=surrogates, sparse=sparse)  # fmt: skip
    max_size = max_size or default_max_size(dataset.traj.units)
    folder = claim_run_folder(out, fit_identity(dataset.traj, cfg, max_size, dataset.name), resume)
    progress, close = stage_progress(quiet)
    timings: dict[str, float] = {}
    try:
        formulas, table = fit_stage(dataset.traj, max_size, cfg, out=out, resume=resume, log=echo_fn(quiet),
                                    progress=progress, timings=timings)  # fmt: skip
    finally:
        close()
    accepted = table[table.accepted]
    counts = {**fit_counts(formulas, table), "rejected": reason_counts(table.reject_reason),
              "methods": table.method.value_counts().to_dict()}  # fmt: skip
    columns = ["formula", "template", "status", "conservation_ratio", "p_value", "noise_ratio", "p_exact", "independent"]
    summary = {**run_metadata(seed, str(dev)), "kind": "fit", "system": dataset.name,
               "variables": dict(dataset.traj.units), "counts": counts,
               "acceptance": table.attrs.get("acceptance"),
               "timings_s": {"enumerate": round(timings["enumerate"], 3), "fit": round(timings["fit"], 3),
                             "stages": {k: round(v, 3) for k, v in table.attrs.get("timings_s", {}).items()}},
               "accepted": accepted[columns].to_dict("records")}  # fmt: skip
    write_json(folder.summary_json, summary)
    click.echo(f"{counts['fitted']} fitted, {len(accepted)} accepted in {timings['fit']:.1f} s on {dev}")
    click.echo(acceptance_line(table.attrs.get("acceptance")))
    for row in accepted.head(10).itertuples():
        click.echo(f"  {row.status:11s} {row.conservation_ratio:10.3g}  noise x{row.noise_ratio:<8.3g} {short(row.formula)}")
    if accepted.empty:
        click.echo("No conserved quantity found: no shortlisted formula passed the acceptance tests.")
    elif not (accepted.status == "law").any():
        click.echo("No formula is conserved within the noise: the accepted ones are approximations "
                   "(dissipative data, or a law beyond the search).")  # fmt: skip
    click.echo(f"wrote {folder.formulas}, {folder.candidates} and {folder.summary_json}")
