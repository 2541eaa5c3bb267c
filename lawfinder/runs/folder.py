"""Read a finished run's folder for `export` and `report`: its checked ``summary.json``.

Only search and tailor runs carry a ranking. A summary's ``kind`` says which
run wrote it; when ``kind`` is absent it is read from the ``command`` field
(``"lawfinder search ..."``), so hand-written or older summaries still load.
"""

from __future__ import annotations

import json
from pathlib import Path

from lawfinder.errors import UserError

RANKED_KINDS = ("search", "tailor")


def run_kind(summary: dict) -> str | None:
    """The command that wrote `summary` (``"search"``, ``"tailor"``, ...), or None if unknown."""
    if summary.get("kind"):
        return str(summary["kind"])
    words = str(summary.get("command") or "").split()
    return words[1] if len(words) > 1 and words[0] == "lawfinder" else None


def load_summary(run_dir: Path) -> dict:
    """The summary of the search or tailor run in `run_dir`.

    Parameters
    ----------
    run_dir
        The run folder (a path to its ``summary.json`` is accepted too).

    Raises
    ------
    UserError
        When the folder or its summary is missing, unreadable, or from another kind of run.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.name == "summary.json":
        run_dir = run_dir.parent
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder: give the run folder that holds summary.json")
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UserError(
            f"{run_dir} has no summary.json: is it the folder of a finished search run?"
        )
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path} is not a run summary (expected a JSON object)")
    kind = run_kind(summary)
    if kind not in RANKED_KINDS:
        what = f"a `lawfinder {kind}` run" if kind else "an unknown kind of run"
        raise UserError(f"{path} is from {what}, not a search or tailor run: it has no ranking")
    if not isinstance(summary.get("ranking"), list):
        raise UserError(f"{path} has no 'ranking' list: the run may not have finished")
    return summary


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
