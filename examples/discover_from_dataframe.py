"""Discover the conserved quantity of your own trajectories, given as a pandas DataFrame.

The data: a mass on a spring (x'' = -4 x), 20 runs of 25 points, one row per state with
columns trajectory, t, x, v. lawfinder finds v**2 + 4*x**2 (up to a factor) with the unit of
its constant, and ranks it by how much it helps a neural predictor as a tailoring loss.

    python examples/discover_from_dataframe.py                 # the full search, a few minutes
    python examples/discover_from_dataframe.py --quick         # small settings, seconds
    python examples/discover_from_dataframe.py --out runs/osc  # keep the run folder there
"""

import argparse

import numpy as np
import pandas as pd

import lawfinder as lf


def spring_runs(n=20, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2, 25)
    rows = []
    for k in range(n):
        amp, phase = rng.uniform(0.3, 1.5), rng.uniform(0, 2 * np.pi)
        x, v = amp * np.sin(2 * t + phase), 2 * amp * np.cos(2 * t + phase)
        rows += [{"trajectory": k, "t": ti, "x": xi, "v": vi} for ti, xi, vi in zip(t, x, v)]
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings, for a first look")
    parser.add_argument("--out", help="the run folder [default: a temporary folder]")
    args = parser.parse_args()
    quick = dict(seeds=1, epochs=2, top=4, predictor_steps=100) if args.quick else {}

    result = lf.search(spring_runs(), units={"x": "m", "v": "m/s"}, out=args.out, **quick)
    print(result.summary())
    law = result.best
    print(f"\nbest law: {law}  ({law.status}, conserved {law.ratio:.3g}x better than on random sequences)")
    for name, param in law.params.items():
        print(f"  {name} = {param.value:.6g} [{param.unit}]")
    print(f"LaTeX: {law.latex()}")
    print(f"run folder: {result.folder}")


if __name__ == "__main__":
    main()
