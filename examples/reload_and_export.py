"""Reload a finished run folder and export its best law: LaTeX, a torch module, a report, plots.

    python examples/reload_and_export.py results/runs/pendulum-20260101-120000
    python examples/reload_and_export.py RUN_DIR --to exported/   # where the files go [RUN_DIR]
"""

import argparse
from pathlib import Path

import lawfinder as lf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a folder written by `lawfinder search` or lf.search")
    parser.add_argument("--to", help="where to write the exported files [default: the run folder]")
    args = parser.parse_args()

    result = lf.SearchResult.load(args.run_dir)
    print(result.summary())
    if result.best is None:
        print("nothing to export: the run ranked no law")
        return
    to = Path(args.to or args.run_dir)
    to.mkdir(parents=True, exist_ok=True)
    law = result.best
    (to / "law.tex").write_text(law.latex(digits=6) + "\n")
    (to / "law.py").write_text(result.export(rank=1, format="python") + "\n")
    result.plot(to / "curves.png")
    print(f"rank 1: {law}  (params {', '.join(f'{k}={p.value:.6g} {p.unit}' for k, p in law.params.items())})")
    print(f"wrote {to / 'law.tex'}, {to / 'law.py'}, {to / 'curves.png'} and {result.report()}")


if __name__ == "__main__":
    main()
