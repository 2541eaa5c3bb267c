"""`lawfinder systems`: list the built-in systems with their variables, sizes and known laws."""

from __future__ import annotations

import json

import click

HEADERS = ("name", "variables [unit]", "trajectories", "points", "dx/dt samples")


def system_rows() -> list[dict[str, object]]:
    """One record per built-in system, with sizes counted from its default data (noise 0, seed 0)."""
    from lawfinder.data.systems import SYSTEMS

    rows = []
    for system in SYSTEMS.values():
        counts = system.load().summary()
        rows.append(
            {
                "name": system.name,
                "variables": {v: system.units[v] for v in system.variables},
                "trajectories": [counts["train_trajectories"], counts["test_trajectories"]],
                "points": [counts["train_points"], counts["test_points"]],
                "derivative_samples": [
                    counts["train_derivative_samples"],
                    counts["test_derivative_samples"],
                ],
                "oracle": system.oracle,
                "description": system.description,
            }
        )
    return rows


def _variables(units: dict[str, str]) -> str:
    by_unit: dict[str, list[str]] = {}
    for v, u in units.items():
        by_unit.setdefault(u, []).append(v)
    return "; ".join(f"{', '.join(vs)} [{u}]" for u, vs in by_unit.items())


def _table(rows: list[dict[str, object]]) -> str:
    cells = [
        (
            str(r["name"]),
            _variables(r["variables"]),
            "{}/{}".format(*r["trajectories"]),
            "{}/{}".format(*r["points"]),
            "{}/{}".format(*r["derivative_samples"]),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]
    indent = " " * (widths[0] + 2)
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c, r in zip(cells, rows):
        lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
        lines.append(
            f"{indent}oracle: {r['oracle'] or 'none (control: nothing should be accepted)'}"
        )
        lines.append(f"{indent}{r['description']}")
    lines.append(
        "(counts are train/test; points include, for a trajectory split in time, "
        "the boundary state shared by both parts)"
    )
    return "\n".join(lines)


@click.command("systems")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON instead of a table.")
def systems(as_json: bool) -> None:
    """List the built-in systems: variables with units, sizes, known energy (oracle) and description."""
    rows = system_rows()
    click.echo(json.dumps(rows, indent=2) if as_json else _table(rows))
