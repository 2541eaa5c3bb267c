"""Print a benchmark's Markdown table and write it, with its data as JSON, under results/."""

from __future__ import annotations

import json
from pathlib import Path


def publish(text: str, data: dict, out: Path) -> None:
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.json')}")


def meta_line(meta: dict) -> dict:
    """The git revision and machine of `lawfinder.runs.metadata.run_metadata` as a report's header shows them."""
    return {"git": meta["git_revision"], "machine": f"{meta['machine']['cpus']} CPUs ({meta['machine']['platform']})"}
