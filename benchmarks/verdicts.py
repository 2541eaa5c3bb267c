"""Do the acceptance benchmark's verdicts survive a change of the fit? Rerun a sample, compare with results/acceptance.json.

The full acceptance benchmark (`benchmarks/acceptance.py`) takes about three hours on this project's
2-core machine. After a change that moves fitted numbers but is not meant to move verdicts (e.g. the
float32 grid and zooms of the search path), this reruns a declared sample of its data sets at the
current code and compares, per data set, what was accepted (formula text, status) and the right
law's status and coefficient with the committed results. The sample (fixed here, not chosen after
looking): the power part's noise seed 0 of every system and noise level, and the lawless part's
size-7 data sets of the held-out families, the random walks and the first four noisy rotations.

Usage::

    python benchmarks/verdicts.py       # writes results/verdicts.md and .json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

from joblib import Parallel, delayed  # noqa: E402

from benchmarks.acceptance import lawless_task, power_task  # noqa: E402
from benchmarks.publish import publish  # noqa: E402


def sample(reference: dict) -> list[tuple[str, dict]]:
    power = [("power", r) for r in reference["power"] if r["seed"] == 0]
    rotations = [r for r in reference["lawless"] if r["family"] == "noisy-rotation"][:4]
    size7 = [r for r in reference["lawless"] if r["max_size"] == 7 and r["family"] != "noisy-rotation"]
    return power + [("lawless", r) for r in size7 + rotations]


def rerun(part: str, ref: dict) -> dict:
    if part == "power":
        return power_task(ref["system"], ref["noise"], ref["seed"])
    return lawless_task(ref["family"], ref["points"], ref["seed"], ref["max_size"])


def compare(part: str, ref: dict, new: dict) -> dict:
    name = (f"{ref['system']} noise {ref['noise']:g}" if part == "power"
            else f"{ref['family']} {ref['points']} pts seed {ref['seed']} size {ref['max_size']}")  # fmt: skip
    row = {"part": part, "data": name, "accepted_before": list(zip(ref["accepted"], ref["statuses"])),
           "accepted_now": list(zip(new["accepted"], new["statuses"])), "seconds_now": new["seconds"]}  # fmt: skip
    row["same_verdicts"] = [s for _, s in row["accepted_before"]] == [s for _, s in row["accepted_now"]]
    row["same_formulas"] = row["accepted_before"] == row["accepted_now"]
    if part == "power":
        row["right_law_status"] = [ref["status"], new["status"]]
        row["coefficient"] = [ref["coefficient"], new["coefficient"]]
        row["same_verdicts"] &= ref["status"] == new["status"]
    return row


def markdown(data: dict) -> str:
    rows = data["rows"]
    same = sum(r["same_verdicts"] for r in rows)
    exact = sum(r["same_formulas"] for r in rows)
    lines = ["# Verdicts of a sample of the acceptance benchmark at the current fit", "",
             f"`{data['command']}` at git `{data['meta']['git_revision']}` ({data['meta']['machine']['platform']}), compared with "
             f"results/acceptance.json (git `{data['reference_git']}`). Sample: the power part's noise seed 0 of "
             "every system and level, and the lawless part's size-7 data sets (held-out families, random walks, "
             "the first four noisy rotations); see `benchmarks/verdicts.py`.", "",
             f"**Same verdicts (accepted formulas' statuses, and for the power part the right law's status) on "
             f"{same} of {len(rows)} data sets; same accepted formulas, digit for digit, on {exact}.**", "",
             "| part | data | accepted before | accepted now | right law before -> now | same verdicts | same text |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        fmt = lambda acc: "; ".join(f"`{f}` ({s})" for f, s in acc) or "nothing"  # noqa: E731
        right = " -> ".join(r["right_law_status"]) if "right_law_status" in r else "-"
        lines.append(f"| {r['part']} | {r['data']} | {fmt(r['accepted_before'])} | {fmt(r['accepted_now'])} | "
                     f"{right} | {'yes' if r['same_verdicts'] else '**no**'} | {'yes' if r['same_formulas'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "verdicts.md")
    args = parser.parse_args(argv)
    from lawfinder.runs.metadata import run_metadata

    reference = json.loads((ROOT / "results" / "acceptance.json").read_text())
    todo = sample(reference)
    found = Parallel(n_jobs=args.jobs, verbose=5)(delayed(rerun)(part, ref) for part, ref in todo)
    data = {"meta": run_metadata(seed=0, device="cpu"), "command": "python benchmarks/verdicts.py",
            "reference_git": reference["meta"]["git_revision"],
            "rows": [compare(part, ref, new) for (part, ref), new in zip(todo, found)]}  # fmt: skip
    publish(markdown(data), data, args.out)


if __name__ == "__main__":
    main()
