"""What `lawfinder.search` and `lawfinder.discovery.fit` return: laws as objects, with their run's numbers.

A `SearchResult` wraps a finished run's ``summary.json`` (and its folder); `SearchResult.load`
reads one back. A `FitResult` holds the accepted laws and the candidates table of a fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lawfinder.errors import UserError
from lawfinder.laws.law import Law, law_from_entry, laws_from_table

__all__ = ["EXPORT_FORMATS", "FitResult", "SearchResult", "render_entry"]

EXPORT_FORMATS = ("latex", "sympy", "json", "python")


@dataclass
class SearchResult:
    """A finished search (or tailor) run: its ranked laws and everything the run measured.

    Attributes
    ----------
    laws : list of Law
        Ranked laws, best first (`Law.rank` 1, 2, ...); empty when nothing was accepted.
    record : dict
        The run's ``summary.json`` (schema in the README).
    folder : Path or None
        The run folder (``candidates.parquet``, ``ranking.parquet``, checkpoints, ...).
    """

    laws: list[Law]
    record: dict
    folder: Path | None = None

    @classmethod
    def from_summary(cls, summary: dict, folder: Path | None = None) -> SearchResult:
        units = summary.get("variables") or {}
        laws = []
        for position, entry in enumerate(summary.get("ranking") or [], start=1):
            try:
                law = law_from_entry(entry, units)
            except (KeyError, TypeError, ValueError) as err:
                raise UserError(f"rank {entry.get('rank', position)} in summary.json: {err}") from None
            laws.append(law if law.rank is not None else law.with_rank(position, law.tailoring))
        return cls(laws, summary, None if folder is None else Path(folder))

    @classmethod
    def load(cls, folder: str | Path) -> SearchResult:
        """The result of the finished search or tailor run in `folder` (or its ``summary.json``).

        Raises `lawfinder.errors.UserError` when the folder is not a finished run.
        """
        from lawfinder.runfolder import run_folder

        run = run_folder(folder)
        return cls.from_summary(run.load_summary(), run.path)

    @property
    def best(self) -> Law | None:
        """The rank-1 law, or None when the search accepted nothing."""
        return self.laws[0] if self.laws else None

    @property
    def baselines(self) -> dict:
        """Test numbers of the vanilla predictor, the fine-tuned control and the oracle (if known)."""
        return self.record.get("baselines") or {}

    @property
    def candidates(self) -> pd.DataFrame:
        """Every fitted formula with its scores and verdict (the run's ``candidates.parquet``)."""
        from lawfinder.runfolder import RunFolder

        path = None if self.folder is None else RunFolder(self.folder).candidates
        if path is None or not path.is_file():
            raise UserError("this run has no candidates table (a tailor run, or no run folder)")
        return pd.read_parquet(path)

    def summary(self, top: int = 5) -> str:
        """The run's table as the command line prints it: counts, baselines, the `top` laws."""
        from lawfinder.runs.report_text import summary_text

        return summary_text(self.record, self.folder, top).lstrip("\n")

    def plot(self, path: str | Path | None = None):
        """MSE against the rollout horizon and the drift of the law; a matplotlib ``Figure``.

        With `path`, the figure is also saved there (PNG, PDF, ... by its suffix).
        """
        from lawfinder.runs.report import plot_run

        fig = plot_run(self.record)
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def report(self) -> Path:
        """Write ``report.md`` and its plots into the run folder; returns the report's path."""
        from lawfinder.runs.report import write_report

        if self.folder is None:
            raise UserError("this result has no run folder to write a report into")
        return write_report(self.folder)

    def export(self, rank: int = 1, format: str = "latex", digits: int = 4) -> str:
        """The rank-`rank` law as `lawfinder export` prints it: LaTeX, sympy text, JSON or Python."""
        return render_entry(self.folder, self.record, ranked_entry(self.record, rank), format, digits)

    def __repr__(self) -> str:
        best = "no law" if self.best is None else f"best {self.best.name!r}"
        return f"SearchResult({self.record.get('system')!r}, {len(self.laws)} laws, {best}, folder={self.folder})"


@dataclass
class FitResult:
    """The fit stage's result: accepted laws (exact ones first), the candidates table, counts.

    Attributes
    ----------
    laws : list of Law
        Accepted laws, exact within the noise first, then approximations, best-conserved first.
    candidates : pandas.DataFrame
        Every fitted formula: scores, ratios, acceptance numbers, ``status`` and reasons.
    acceptance : dict
        The noise estimated per variable, the level and the verdict counts.
    folder : Path or None
        Where the candidates table and the fit checkpoints were written, if anywhere.
    """

    laws: list[Law]
    candidates: pd.DataFrame = field(repr=False)
    acceptance: dict = field(default_factory=dict, repr=False)
    folder: Path | None = None

    @classmethod
    def from_table(cls, table: pd.DataFrame, dag, units, folder: Path | None = None) -> FitResult:
        laws = laws_from_table(table[table.accepted], dag, units)
        return cls(laws, table, table.attrs.get("acceptance") or {}, folder)

    @property
    def best(self) -> Law | None:
        """The first accepted law (exact before approximate, then by conservation), or None."""
        return self.laws[0] if self.laws else None

    def summary(self, top: int = 10) -> str:
        """Counts, the acceptance line and the first `top` accepted laws."""
        from lawfinder.runs.report_text import acceptance_line, short

        lines = [f"{len(self.candidates)} fitted, {len(self.laws)} accepted",
                 acceptance_line(self.acceptance or None)]  # fmt: skip
        for law in self.laws[:top]:
            noise = law.evidence.get("noise_ratio")
            noise = "-" if noise is None else f"{noise:.3g}"
            lines.append(f"  {law.status or '?':11s} {law.ratio:10.3g}  noise x{noise:<8} {short(law.name)}")
        if not self.laws:
            lines.append("No conserved quantity found: no shortlisted formula passed the acceptance tests.")
        return "\n".join(lines)


def ranked_entry(summary: dict, rank: int) -> dict:
    """The ranking entry with rank `rank` (1 is best), or a `UserError` saying what exists."""
    ranking = summary["ranking"]
    if not ranking:
        raise UserError("no conserved quantity was found in this run: the ranking is empty")
    for position, entry in enumerate(ranking, start=1):
        if entry.get("rank", position) == rank:
            return entry
    n = len(ranking)
    choices = "only rank 1" if n == 1 else f"choose 1 to {n}"
    formulas = "formula" if n == 1 else "formulas"
    raise UserError(f"{rank} is out of range: this run ranked {n} {formulas} ({choices})", option="rank")


def render_entry(run_dir: Path | None, summary: dict, entry: dict, fmt: str, digits: int = 4) -> str:
    """The text `lawfinder export` prints for one ranking entry of a run's summary."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "json":
        extra = {"system": summary.get("system"), "variables": summary.get("variables") or {}}
        return json.dumps({**entry, **extra}, indent=2)
    rank = entry.get("rank", "?")
    if not isinstance(entry.get("tree"), dict) and not isinstance(entry.get("formula"), str):
        raise UserError(f"rank {rank} has no 'formula' string in summary.json")
    try:
        law = law_from_entry(entry, summary.get("variables") or {})
    except (KeyError, TypeError, ValueError) as err:
        what = " has a bad 'tree'" if isinstance(entry.get("tree"), dict) else ""
        raise UserError(f"rank {rank} in summary.json{what}: {err}") from None
    if fmt == "latex":
        return law.latex(digits)
    if fmt == "sympy":
        return law.formula.to_string()
    from lawfinder.laws.python_source import python_source

    about = (
        f"Rank {rank} of the {summary.get('kind', 'search')} run in {run_dir}\n"
        f"(system {summary.get('system')}, seed {summary.get('seed')}, "
        f"revision {summary.get('git_revision')}).\n"
        f"Conservation ratio: {_num(entry.get('conservation_ratio'))}; "
        f"test RMSE when tailoring with it: {_num(entry.get('test_rmse'))}."
    )
    variables = list(summary.get("variables") or {})
    params = entry.get("params") if isinstance(entry.get("params"), dict) else None
    source = python_source(law.formula, variables, about, params, entry.get("template"))
    return source.rstrip("\n")


def _num(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
