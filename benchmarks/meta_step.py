"""Meta-tailoring's inner step written out (`lawfinder.tailoring.mlp_step`) against the ``"lowrank"`` engine.

The ranking meta-tailors every law at every setting of `lawfinder.ranking.stage.SETTINGS`; each epoch
is a tailored prediction of all the fit pairs and its second-order gradient. ``method="auto"`` now
writes the HNN MLP's inner step out (slopes of the law at the training states computed once per run);
``method="lowrank"`` is the engine it replaces there. Both are run here on the same predictor, law,
data and settings, alternating which goes first, one torch thread, and compared: CPU seconds per epoch
and how far apart the runs end (final tailored loss, weights). The predictor is pre-trained for
`PRETRAIN_STEPS` only (an epoch's cost does not depend on the weights' values).

    python benchmarks/meta_step.py          # writes results/meta_step.md and results/meta_step.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.publish import meta_line, publish  # noqa: E402

PRETRAIN_STEPS = 300
CASES = (("pendulum", ("p**2 - 3*cos(q)",)), ("real-pendulum", ("v**2 - 2.4*cos(q)",)),
         ("kepler", ("vx**2 + vy**2 - 2.0/sqrt(x**2 + y**2)",)),
         ("kepler", ("vx**2 + vy**2 - 2.0/sqrt(x**2 + y**2)", "x*vy - y*vx",
                     "vx**2*y - vx*vy*x - 1.0*y/sqrt(x**2 + y**2)")))  # fmt: skip
"""(system, laws): one law, or a set tailored together (the sum of their losses)."""


def case(system: str, laws: tuple[str, ...], epochs: int, reps: int) -> list[dict]:
    from dsl.parse import parse_node
    from lawfinder.data.systems import get_system
    from lawfinder.ranking import stage as st
    from lawfinder.ranking.config import RankingConfig
    from lawfinder.ranking.tasks import _pairs, law_function
    from lawfinder.tailoring import NoetherLoss
    from lawfinder.tailoring.meta import meta_tailor
    from lawfinder.tailoring.predictor import MLP, adam_fit

    traj = get_system(system).load()
    select, _ = st.contexts(traj, RankingConfig(), "cpu")
    nodes = tuple(parse_node(text, dict(traj.units)) for text in laws)
    g = law_function(nodes if len(nodes) > 1 else nodes[0], select["variables"])
    x, y = _pairs(select)
    torch.manual_seed(0)
    model = MLP(x.shape[1])
    adam_fit(model, x, y, steps=PRETRAIN_STEPS, weight_decay=select["wd"])
    rows = []
    for outer, form, lr in st.SETTINGS:
        loss = NoetherLoss(g, form, select["dt"], scale=select["scale"])
        cpu = {"auto": 0.0, "lowrank": 0.0}
        runs = {}
        for rep in range(reps):
            for method in ("auto", "lowrank") if rep % 2 == 0 else ("lowrank", "auto"):
                start = time.process_time()
                runs[method] = meta_tailor(model, loss, x, y, inner_lr=lr, epochs=epochs, outer_lr=outer, method=method)
                cpu[method] += time.process_time() - start
        a, b = runs["auto"], runs["lowrank"]
        weights = max(float((p - q).abs().max() / q.abs().max().clamp_min(1e-30))
                      for p, q in zip(a.model.parameters(), b.model.parameters()))  # fmt: skip
        rows.append({"system": system, "laws": list(laws), "pairs": int(x.shape[0]), "outer_lr": outer, "form": form,
                     "inner_lr": lr, "epochs": epochs, "reps": reps,
                     "ms_per_epoch": {k: 1e3 * v / (epochs * reps) for k, v in cpu.items()},
                     "final_loss": {"auto": a.final_loss, "lowrank": b.final_loss},
                     "status": {"auto": a.status, "lowrank": b.status},
                     "final_loss_rel_diff": abs(a.final_loss - b.final_loss) / abs(b.final_loss),
                     "weights_rel_diff": weights})  # fmt: skip
        r = rows[-1]
        print(f"{system} {len(laws)} law(s) {form} outer {outer:g} inner {lr:g}: "
              f"{r['ms_per_epoch']['auto']:.1f} vs {r['ms_per_epoch']['lowrank']:.1f} ms/epoch", flush=True)
    return rows


def markdown(data: dict) -> str:
    rows = data["rows"]
    total = {k: sum(r["ms_per_epoch"][k] for r in rows) for k in ("auto", "lowrank")}
    lines = ["# Meta-tailoring: the inner step written out against the lowrank engine", "",
             f"`{data['command']}` at git `{data['meta']['git']}`, {data['meta']['machine']}, one torch thread, "
             f"1-minute load average {data['load'][0]:.1f} at the start and {data['load'][1]:.1f} at the end. Each "
             f"setting of the ranking (`SETTINGS`) run {rows[0]['epochs']} epochs x {rows[0]['reps']} times per "
             f"method, alternating which goes first, from one predictor pre-trained {PRETRAIN_STEPS} steps on the "
             "fit part of the data; CPU time. *Written out*: `meta_tailor(method='auto')` "
             "(`lawfinder.tailoring.mlp_step`); *lowrank*: `method='lowrank'`, what `auto` was before.", "",
             f"**Summed over all rows: {total['auto']:.0f} against {total['lowrank']:.0f} ms per epoch "
             f"({total['lowrank'] / total['auto']:.2f}x).** Runs end apart by at most "
             f"{max(r['final_loss_rel_diff'] for r in rows):.1e} in the final tailored loss and "
             f"{max(r['weights_rel_diff'] for r in rows):.1e} in any weight (relative to the layer's largest), "
             "float32 rounding carried through the epochs.", "",
             "| system | laws | pairs | outer lr | form | inner lr | written out ms/epoch | lowrank ms/epoch | ratio | "
             "final loss rel. diff | weights rel. diff |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        ms = r["ms_per_epoch"]
        laws = "; ".join(f"`{t}`" for t in r["laws"])
        lines.append(f"| {r['system']} | {laws} | {r['pairs']} | {r['outer_lr']:g} | {r['form']} | {r['inner_lr']:g} | "
                     f"{ms['auto']:.1f} | {ms['lowrank']:.1f} | {ms['lowrank'] / ms['auto']:.2f}x | "
                     f"{r['final_loss_rel_diff']:.1e} | {r['weights_rel_diff']:.1e} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "meta_step.md")
    args = parser.parse_args(argv)
    from lawfinder.runs.metadata import run_metadata

    torch.set_num_threads(1)
    load = [os.getloadavg()[0]]
    rows = [r for system, laws in CASES for r in case(system, laws, args.epochs, args.reps)]
    load.append(os.getloadavg()[0])
    data = {"meta": meta_line(run_metadata(seed=0, device="cpu")), "command": "python benchmarks/meta_step.py",
            "load": load, "rows": rows}  # fmt: skip
    publish(markdown(data), data, args.out)


if __name__ == "__main__":
    main()
