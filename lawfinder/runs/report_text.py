"""The terminal table that ends a run."""

from __future__ import annotations

from pathlib import Path

import click


def print_summary(summary: dict, out: Path, top: int = 5) -> None:
    click.echo(summary_text(summary, out, top))


def summary_text(summary: dict, out: Path | None, top: int = 5) -> str:
    """The table that ends a run: counts, baselines and the `top` ranked laws."""
    c, t = summary["counts"], summary["timings_s"]
    lines = [
        f"\n{summary['system']}: {c.get('enumerated', 0)} enumerated -> {c.get('accepted', 0)} accepted -> "
        f"{c.get('meta_tailored', 0)} meta-tailored in {t.get('total', 0):.0f} s on {summary['device']}"
    ]
    base = summary["baselines"]
    n = len(summary.get("seeds") or [summary.get("seed")])
    line = f"test RMSE, mean over {n} seed{'s' * (n != 1)}: vanilla MLP {rmse_text(base['vanilla'])}"
    if "control" in base:
        line += f"; fine-tuned without tailoring {rmse_text(base['control'])}"
    if "oracle" in base:
        line += f"; oracle ({base['oracle']['formula']}) {rmse_text(base['oracle'])}"
    lines.append(line)
    if "set" in base:
        lines.append(f"the {len(base['set']['formulas'])} independent laws together: test RMSE {rmse_text(base['set'])}; "
                     + set_verdict(base["set"]))  # fmt: skip
    ranking = summary["ranking"]
    if not ranking:
        surrogates = (summary.get("settings") or {}).get("surrogate_control")
        controls = "random sequences" + (" and phase-randomised surrogates" if surrogates else "")
        lines.append(f"No conserved quantity found: no formula was conserved well beyond what {controls} "
                     "allow. Nothing is ranked.")  # fmt: skip
    else:
        lines.append(f"ranked by {summary.get('ranking_basis', 'tailoring benefit')}")
        lines.append(f"{'rank':>4}  {'test RMSE (mean ± std)':>22}  {'helped':>6}  {'conserv.':>9}  formula")
        for entry in ranking[:top]:
            ratio = entry["conservation_ratio"]
            helped = f"{entry['seeds_helped']}/{n}" if "seeds_helped" in entry else "-"
            lines.append(
                f"{entry['rank']:>4}  {rmse_text(entry):>22}  {helped:>6}  "
                f"{_ratio(ratio):>9}  {short(entry['formula'])}"
            )
    if out is not None:
        lines.append(f"run folder: {out}  (summary.json, candidates.parquet; `lawfinder report {out}`)")
    return "\n".join(lines)


def _ratio(ratio: float | None) -> str:
    """A conservation ratio for display; beyond 1e18 it only measures float round-off."""
    if ratio is None:
        return "nan"
    return ">1e18" if ratio > 1e18 else f"{ratio:.3g}"


def set_verdict(entry: dict) -> str:
    """Whether tailoring with every independent law at once beat rank 1 alone (validation, paired)."""
    if entry.get("beats_rank_1"):
        return "helps more than rank 1 alone (validation, beyond the seed spread)"
    if entry.get("beaten_by_rank_1"):
        return "helps less than rank 1 alone (validation, beyond the seed spread)"
    return "not told apart from rank 1 alone (validation, within the seed spread)"


def rmse_text(entry: dict) -> str:
    """``mean ± std`` of an entry's test RMSE over the seeds where it is finite, and how many seeds
    diverged (selection run, refit or test rollout not finite); "-" when it has no test numbers."""
    mean, std = entry.get("test_rmse"), entry.get("test_rmse_std")
    bad, n = entry.get("diverged_seeds") or 0, len(entry.get("per_seed") or ())
    note = diverged_text(entry)
    if mean is None:
        return note or "-"
    one_seed = n > 0 and n - bad < 2  # a spread of one number is no spread
    text = f"{mean:.4g}" if std is None or one_seed else f"{mean:.4g} ± {std:.2g}"
    return f"{text}, {note}" if note else text


def diverged_text(entry: dict) -> str:
    """``"k/n diverged"`` when k of an entry's n seeds have no finite test numbers, else ""."""
    bad, n = entry.get("diverged_seeds") or 0, len(entry.get("per_seed") or ())
    return f"{bad}/{n} diverged" if bad and n else ""


def short(formula: str, digits: int = 4) -> str:
    """A formula with its constants rounded for display."""
    import sympy

    try:
        expr = sympy.sympify(formula)
    except (sympy.SympifyError, TypeError):
        return formula
    return str(expr.xreplace({f: sympy.Float(f, digits) for f in expr.atoms(sympy.Float)}))


def acceptance_line(acceptance: dict | None) -> str:
    """What the acceptance tests saw: the noise estimate, the level and the verdicts."""
    if not acceptance:
        return "acceptance: not run"
    noise = ", ".join(f"{k} {v:.2g}" for k, v in acceptance["noise_sigma"].items())
    return (f"acceptance at alpha {acceptance['alpha']:g} over {acceptance['formulas_tested']} formulas: "
            f"{acceptance['shortlisted']} shortlisted, {acceptance['laws']} exact laws, "
            f"{acceptance['approximate']} approximations; noise estimated from the data: {noise}")  # fmt: skip


def reason_counts(reasons) -> dict[str, int]:
    """Reject reasons counted by kind (the text before its numbers)."""
    kinds = reasons[reasons != ""].str.split(r" \(|:| p = ", regex=True).str[0]
    return kinds.value_counts().to_dict()
