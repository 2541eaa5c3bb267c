"""A run's folder and every file in it: where each one lives, atomic writes, the checked summary.

::

    run.json            the run's identity: --resume with anything different is refused
    formulas.parquet    every enumerated template
    chunks/             fit checkpoints, one file per chunk of formulas (+ config.json, their settings)
    candidates.parquet  fitted formulas with scores, ratios, acceptance and reasons
    predictors/         the pre-trained MLP of each seed (seed<S>.pt) and its rollouts (seed<S>.json)
    ranking_runs/       one checkpoint per seed and law, control, oracle or set (s<S>-<key>.json):
                        its runs at every setting, and the chosen one's refit and test rollouts
    ranking.parquet     every run's validation and test metrics
    summary.json        the run's summary (schema in the README)
    report.md           `lawfinder report`, with its plots

Every file is written whole or not at all (a temporary file, then a rename), so a run killed at any
moment leaves only finished files, and ``--resume`` continues from them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from lawfinder.errors import UserError

RANKED_KINDS = ("search", "tailor")


class RunFolder:
    """The folder of one run (`lawfinder search`, `fit`, `tailor`); paths of its files."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    run_json = property(lambda self: self.path / "run.json")
    formulas = property(lambda self: self.path / "formulas.parquet")
    chunks = property(lambda self: self.path / "chunks")
    candidates = property(lambda self: self.path / "candidates.parquet")
    predictors = property(lambda self: self.path / "predictors")
    ranking_runs = property(lambda self: self.path / "ranking_runs")
    ranking = property(lambda self: self.path / "ranking.parquet")
    summary_json = property(lambda self: self.path / "summary.json")
    report = property(lambda self: self.path / "report.md")

    def chunk(self, k: int) -> Path:
        return self.chunks / f"chunk-{k:05d}.parquet"

    def predictor(self, seed: int, suffix: str) -> Path:
        """``predictors/seed<S>.pt`` (its weights) or ``.json`` (its rollouts)."""
        return self.predictors / f"seed{seed}{suffix}"

    def ranking_run(self, seed: int, key: str) -> Path:
        return self.ranking_runs / f"s{seed}-{key}.json"

    def claim(self, identity: dict, resume: bool) -> None:
        """Create the folder and record the run's `identity` in ``run.json``.

        With `resume`, refuse a folder that holds another run (naming the settings that differ)
        or that is not a run folder.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if resume and self.run_json.exists():
            before = json.loads(self.run_json.read_text())
            if before != identity:
                now, then = _flat(identity), _flat(before)
                diff = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
                raise UserError(f"{self.path} holds another run (differs in {', '.join(diff)})", option="resume")
        elif resume and not self.run_json.exists() and any(self.path.iterdir()):
            raise UserError(f"{self.path} is not a lawfinder run folder (no run.json)", option="resume")
        write_json(self.run_json, identity)

    def check_settings(self, folder: Path, settings: dict, resume: bool) -> None:
        """Record `settings` in ``folder/config.json``; on `resume`, refuse checkpoints made with others."""
        mark = folder / "config.json"
        if resume and mark.exists():
            before = json.loads(mark.read_text())
            if before != settings:
                diff = sorted(k for k in settings.keys() | before.keys() if before.get(k) != settings.get(k))
                raise UserError(f"{self.path} holds a run with other settings ({', '.join(diff)})", option="resume")
        write_json(mark, settings)

    def load_summary(self) -> dict:
        """The summary of the finished search or tailor run in this folder.

        Raises
        ------
        UserError
            When the folder or its summary is missing, unreadable, or from another kind of run.
        """
        if not self.path.exists():
            raise UserError(f"{self.path}: no such run folder")
        if not self.path.is_dir():
            raise UserError(f"{self.path} is not a folder: give the run folder that holds summary.json")
        path = self.summary_json
        if not path.is_file():
            raise UserError(f"{self.path} has no summary.json: is it the folder of a finished search run?")
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


def run_folder(path: str | os.PathLike) -> RunFolder:
    """The run folder at `path`; a path to its ``summary.json`` is accepted too."""
    path = Path(path)
    return RunFolder(path.parent if path.is_file() and path.name == "summary.json" else path)


def run_kind(summary: dict) -> str | None:
    """The command that wrote `summary` (``"search"``, ``"tailor"``, ...), or None if unknown.

    Older or hand-written summaries without ``kind`` are read from their ``command`` field.
    """
    if summary.get("kind"):
        return str(summary["kind"])
    words = str(summary.get("command") or "").split()
    return words[1] if len(words) > 1 and words[0] == "lawfinder" else None


def write_json(path: str | os.PathLike, data) -> None:
    """Write `data` as JSON, whole or not at all (temporary file + rename)."""
    text = json.dumps(data, indent=2, default=_plain) + "\n"
    write_with(path, lambda tmp: tmp.write_text(text))


def write_table(path: str | os.PathLike, table) -> None:
    """Write a pandas DataFrame as Parquet, whole or not at all."""
    write_with(path, lambda tmp: table.to_parquet(tmp, index=False))


def write_with(path: str | os.PathLike, save: Callable[[Path], object]) -> None:
    """``save(temporary path)``, then rename it to `path`: the file is whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    save(tmp)
    os.replace(tmp, path)


def _plain(value):
    """numpy scalars as Python numbers; anything else JSON cannot hold as its text."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", None) == 0 else str(value)


def _flat(identity: dict, prefix: str = "") -> dict:
    """``{"ranking": {"seeds": 5}}`` -> ``{"ranking.seeds": 5}``, so a refusal names the setting."""
    flat = {}
    for key, value in identity.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
