"""A Markdown report of a search or tailor run, with PNG plots, readable on its own.

`write_report` reads ``DIR/summary.json`` and writes ``report.md`` next to
three plots: ``mse_vs_horizon.png``, ``energy_drift.png`` and ``funnel.png``.
A plot whose data the summary lacks is skipped, and the report says so.
Plots are drawn on a bare `matplotlib.figure.Figure` (Agg), so no pyplot
state or GUI backend is touched.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from pathlib import Path

from lawfinder.runfolder import run_folder

STAGES = ("enumerated", "fitted", "accepted", "screened", "meta_tailored")
TIMED_STAGES = ("enumerate", "fit", "screen", "meta_tailor")
STAGE_TEXT = {
    "enumerated": "templates enumerated",
    "fitted": "templates fitted",
    "accepted": "accepted as conserved",
    "screened": "screened by tailoring",
    "meta_tailored": "meta-tailored",
}


def write_report(run_dir: Path, out: Path | None = None, digits: int = 4) -> Path:
    """Write the report of the run in `run_dir` and its plots; return the report's path.

    Parameters
    ----------
    run_dir
        A search or tailor run folder holding ``summary.json``.
    out
        Where to write the Markdown (default ``run_dir/report.md``); plots go beside it.
    digits
        Significant digits of fitted constants in the LaTeX formulas.
    """
    run = run_folder(run_dir)
    summary = run.load_summary()
    out = Path(out) if out else run.report
    out.parent.mkdir(parents=True, exist_ok=True)
    plots = {name: draw(summary, out.parent / name) for name, draw in PLOTS.items()}
    when = dt.datetime.fromtimestamp(run.summary_json.stat().st_mtime).astimezone()
    out.write_text(render_markdown(summary, run.path, when, plots, digits))
    return out


def render_markdown(
    summary: dict,
    run_dir: Path,
    when: dt.datetime,
    plots: Mapping[str, str | None],
    digits: int = 4,
) -> str:
    """The report text; `plots` maps a PNG name to None (written) or why it was skipped."""
    kind = summary.get("kind") or "search"
    system = summary.get("system") or "user data"
    parts = [
        f"# lawfinder {kind} report: {system}",
        _run_section(summary, run_dir, when),
        _funnel_section(summary, plots),
        _ranking_section(summary, digits),
        _baselines_section(summary),
        _curves_section(plots),
        f"_Report written {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by `lawfinder report`._",
    ]
    return "\n\n".join(p.rstrip() for p in parts) + "\n"


def _run_section(summary: dict, run_dir: Path, when: dt.datetime) -> str:
    variables = summary.get("variables") or {}
    versions = summary.get("versions") or {}
    rows = [
        ("command", f"`{summary.get('command', '?')}`"),
        ("run folder", f"`{run_dir}`"),
        ("finished", f"{when:%Y-%m-%d %H:%M %Z} (when summary.json was written)"),
        ("system", summary.get("system") or "user data"),
        ("variables", ", ".join(f"`{v}` [{u}]" for v, u in variables.items()) or "?"),
        ("seed", summary.get("seed")),
        ("device", summary.get("device")),
        ("git revision", f"`{summary.get('git_revision')}`"),
        ("settings", ", ".join(f"{k}={v}" for k, v in (summary.get("settings") or {}).items())),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "?"),
    ]
    return "## The run\n\n" + _table(("", ""), rows)


def _funnel_section(summary: dict, plots: Mapping[str, str | None]) -> str:
    counts = summary.get("counts") or {}
    timings = summary.get("timings_s") or {}
    first = counts.get("enumerated") or None
    rows = []
    for stage in _ordered(counts, STAGES):
        n = counts[stage]
        share = f"{100 * n / first:.3g} %" if first and isinstance(n, (int, float)) else ""
        rows.append((STAGE_TEXT.get(stage, stage), n, share))
    text = "## Candidates per stage\n\n"
    text += _table(("stage", "count", "of enumerated"), rows) if rows else "_No counts recorded._"
    text += "\n\n" + _image("funnel.png", "Candidates per stage", plots)
    if timings:
        total = timings.get("total")
        trows = [
            (
                stage,
                f"{timings[stage]:.3g}",
                f"{100 * timings[stage] / total:.1f} %" if total else "",
            )
            for stage in _ordered(timings, TIMED_STAGES)
            if stage != "total" and isinstance(timings[stage], (int, float))
        ]
        if isinstance(total, (int, float)):
            trows.append(("**total**", f"**{total:.3g}**", ""))
        text += "\n\n### Time per stage\n\n" + _table(("stage", "seconds", "share"), trows)
    return text


def _ranking_section(summary: dict, digits: int) -> str:
    ranking = summary.get("ranking") or []
    if not ranking:
        return (
            "## Ranking\n\n**No conserved quantity was found in this run.** "
            "No candidate formula passed every stage, so there is nothing to rank or export."
        )
    rows = []
    for position, entry in enumerate(ranking, start=1):
        params = entry.get("params") or {}
        rows.append(
            (
                entry.get("rank", position),
                f"${_latex(entry, summary, digits)}$",
                "<br>".join(
                    f"{k} = {_num(p.get('value'))} [{p.get('unit', '?')}]"
                    for k, p in params.items()
                ),
                _num(entry.get("conservation_ratio")),
                _num(entry.get("val_mse", entry.get("train_mse"))),
                _test(entry),
                str(entry.get("ranked_by", "")),
            )
        )
    header = (
        "rank",
        "formula",
        "parameters [unit]",
        "conservation ratio",
        "validation MSE",
        "test RMSE",
        "ranked by",
    )
    note = (
        "Best first. The conservation ratio is the formula's conservation score on random "
        "sequences of states divided by its score on the true trajectories (higher: better "
        "conserved); validation MSE (held-out part of the training data, where laws and rates are "
        "chosen) and test RMSE are rollout errors of the predictor meta-tailored with the formula, "
        "means over the predictor seeds. "
        f"Ranked by {summary.get('ranking_basis', 'tailoring benefit')}."
    )
    formulas = "\n".join(f"{r[0]}. `{e.get('formula')}`" for r, e in zip(rows, ranking))
    return f"## Ranking\n\n{note}\n\n{_table(header, rows)}\n\nAs text:\n\n{formulas}"


def _baselines_section(summary: dict) -> str:
    baselines = summary.get("baselines") or {}
    vanilla = (baselines.get("vanilla") or {}).get("test_rmse")
    rows = []
    if vanilla is not None:
        rows.append(("vanilla (no tailoring)", _num(vanilla), "1"))
    control = baselines.get("control")
    if control and control.get("test_rmse") is not None:
        rows.append(("fine-tuned for the same epochs, no tailoring", _num(control.get("test_rmse")),
                     _rel(control, vanilla)))  # fmt: skip
    oracle = baselines.get("oracle")
    if oracle:
        rows.append(
            (
                f"oracle: `{oracle.get('formula')}`",
                _test(oracle),
                _rel(oracle, vanilla),
            )
        )
    joint = baselines.get("set")
    if joint:
        from lawfinder.runs.report_text import set_verdict

        rows.append((f"the {len(joint['formulas'])} independent laws together ({set_verdict(joint)})",
                     _test(joint), _rel(joint, vanilla)))  # fmt: skip
    for position, entry in enumerate(summary.get("ranking") or [], start=1):
        rank = entry.get("rank", position)
        rows.append(
            (f"tailored with rank {rank}", _test(entry), _rel(entry, vanilla))
        )
    if not rows:
        return "## Baselines\n\n_No baselines recorded._"
    text = "## Test error against baselines\n\n" + _table(
        ("predictor", "test RMSE", "vs vanilla"), rows
    )
    if not oracle:
        text += "\n\nNo oracle: this system has no known conserved quantity."
    return text


def _curves_section(plots: Mapping[str, str | None]) -> str:
    return "\n\n".join(
        [
            "## Error and drift along the rollout",
            _image("mse_vs_horizon.png", "MSE vs horizon", plots),
            _image("energy_drift.png", "Drift of the conserved quantity", plots),
        ]
    )


def _latex(entry: dict, summary: dict, digits: int) -> str:
    import dsl
    from dsl.export import to_latex

    try:
        if isinstance(entry.get("tree"), dict):
            return to_latex(dsl.nodes.from_dict(entry["tree"]), digits)
        return dsl.parse(entry["formula"], summary.get("variables") or {}).to_latex(digits)
    except (KeyError, TypeError, ValueError):
        return str(entry.get("latex") or entry.get("formula"))


def _image(name: str, title: str, plots: Mapping[str, str | None]) -> str:
    why = plots.get(name, "not drawn")
    return f"![{title}]({name})" if why is None else f"_{title}: no plot, {why}._"


def _table(header: tuple, rows: list[tuple]) -> str:
    def cell(value) -> str:
        return str("" if value is None else value).replace("|", r"\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _ordered(data: Mapping, known: tuple) -> list:
    return [k for k in known if k in data] + [k for k in data if k not in known]


def _num(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else str(value)
    if math.isnan(value):
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _test(entry: Mapping) -> str:
    """The mean test RMSE over the seeds where it is finite, and how many diverged (if any)."""
    from lawfinder.runs.report_text import diverged_text

    note = diverged_text(entry)
    return f"{_num(entry.get('test_rmse'))} ({note})" if note else _num(entry.get("test_rmse"))


def _rel(entry: Mapping, vanilla) -> str:
    value = entry.get("test_rmse")
    if not isinstance(value, (int, float)) or not isinstance(vanilla, (int, float)) or not vanilla:
        return ""
    return f"{value / vanilla:.3f}"


def _series(summary: dict, key: str) -> tuple[list, dict] | str:
    """(t, {label: values}) of ``curves[key]``, or why they cannot be plotted."""
    curves = summary.get("curves") or {}
    t, series = curves.get("t"), curves.get(key)
    if not curves:
        return "summary.json has no curves"
    if not t or not series:
        return f"summary.json has no curves.{key}" if t else "summary.json has no curves.t"
    return t, series


def _plot_curves(summary: dict, path: Path, key: str, ylabel: str, log: bool) -> str | None:
    data = _series(summary, key)
    if isinstance(data, str):
        return data
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    draw_curves(fig.add_subplot(), data, ylabel, log)
    fig.savefig(path, dpi=120)
    return None


def draw_curves(ax, data: tuple[list, dict], ylabel: str, log: bool) -> None:
    """Draw `_series`' ``(t, {label: values})`` on matplotlib axes `ax`."""
    import numpy as np

    t, series = data
    for label, values in series.items():
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        n = min(len(t), len(y))
        ax.plot(
            np.asarray(t[:n], dtype=float), y[:n], label=label, lw=2 if label == "truth" else 1.5
        )
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="time since the rollout started", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_run(summary: dict):
    """A `matplotlib.figure.Figure`: MSE against the rollout horizon, and the drift of the law."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    for ax, (key, ylabel, log) in zip(fig.subplots(1, 2), CURVES):
        data = _series(summary, key)
        if isinstance(data, str):
            ax.text(0.5, 0.5, data, ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        else:
            draw_curves(ax, data, ylabel, log)
    return fig


CURVES = (("mse", "MSE", True), ("energy_drift", "drift of the conserved quantity", False))


def plot_mse(summary: dict, path: Path) -> str | None:
    """MSE of each predictor against the rollout horizon (log y); None, or why it was skipped."""
    return _plot_curves(summary, path, "mse", "MSE", log=True)


def plot_drift(summary: dict, path: Path) -> str | None:
    """Drift of the conserved quantity along each rollout; None, or why it was skipped."""
    return _plot_curves(summary, path, "energy_drift", "drift of the conserved quantity", log=False)


def plot_funnel(summary: dict, path: Path) -> str | None:
    """Bar chart of the candidates left after each stage (log y); None, or why it was skipped."""
    counts = {k: v for k, v in (summary.get("counts") or {}).items() if isinstance(v, (int, float))}
    if not counts:
        return "summary.json has no counts"
    from matplotlib.figure import Figure

    stages = _ordered(counts, STAGES)
    values = [counts[s] for s in stages]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar([s.replace("_", "\n") for s in stages], values)
    ax.bar_label(bars, labels=[f"{v:g}" for v in values])
    ax.set_yscale("log")
    ax.set_ylim(0.5, 4 * max([*values, 1]))
    ax.set(ylabel="candidates (log)", title="Candidates per stage")
    fig.savefig(path, dpi=120)
    return None


PLOTS: dict[str, Callable[[dict, Path], str | None]] = {
    "mse_vs_horizon.png": plot_mse,
    "energy_drift.png": plot_drift,
    "funnel.png": plot_funnel,
}
