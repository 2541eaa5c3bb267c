"""Rank accepted laws by what they do for a predictor, on held-out data, over several seeds.

Protocol (every choice below says what it was tuned on):

* **Three parts of the data.** The training data are split again (`split_validation`): the
  predictor is pre-trained and meta-tailored on the *fit* part only; laws and inner rates are
  chosen on the *validation* part, which none of them saw (a split in time, the last
  ``VAL_FRACTION`` of the points, for one long trajectory like the real pendulum; the last
  ``VAL_FRACTION`` of the trajectories when there are many). The test data are only reported.
* **Selection metric** = the reported metric on validation: the rollout MSE over the whole
  horizon (the square of the reported test RMSE), each rollout started at the first state of a
  validation trajectory and tailored at every evaluation, as on test.
* **Seeds.** For each of ``seeds`` predictor seeds: pre-train the MLP, then meta-tailor every
  law at every setting of ``SETTINGS`` (outer Adam rate, loss form and inner rate; one is chosen
  per law and seed on validation), the oracle the same way, and a *control* that fine-tunes the predictor
  for the same epochs without tailoring (at each outer rate, chosen on validation too).
  `lawfinder.ranking.compare.order_laws` then ranks laws by paired per-seed comparisons.
* **Refit, then test.** At the setting chosen on validation, each law's run (and the control's,
  the oracle's and the vanilla predictor) is continued on *all* the training data (fit +
  validation, the paper's amount of data) with its Adam moments: ``REFIT_FRACTION`` of its
  selection budget (500 more pre-training steps, 25 more epochs at the defaults); only these
  final models are rolled out on test, so the test data decide nothing. ``REFIT_FRACTION`` was
  chosen on training data only (`benchmarks/refit.py`, results/refit.md; pendulum, spring, real
  pendulum, seeds 0-1): the smallest share (of 0, 0.1, 0.25, 0.5 epochs) at which the continued
  meta runs fit all the training pairs at least as well, in geometric mean, as runs retrained from
  scratch on them (0.1: 1.01x, 0.25: 0.96x); the predictor continued that share is at 0.78x.
  Before, every final model was retrained from scratch: twice the pre-training, 40% more
  meta-tailoring.
* **Every run to the end.** Stopping a law's worse runs early (successive halving at 25 and 50
  of 100 epochs) was measured on validation data and not adopted: it kept the run that full
  training chooses in only 27 of 42 (law, seed) pairs (`benchmarks/halving.py`, results/halving.md).
* **Budget.** ``top`` meta-tailoring runs per seed (the paper's 20), spent on the
  ``top // len(SETTINGS)`` best-conserved distinct laws (conservation evidence, never test
  data), so the best-conserved law always reaches the ranked list; the others are listed after.
* ``SETTINGS`` (outer rate, loss form, inner rate) were chosen on validation data only
  (`benchmarks/search.py --sweep`, results/search.sweep.md: the oracle law at all nine paper
  rates, both outer rates and both loss forms, validation rollout MSE, predictor seeds 0 and 1).
  The infinitesimal form ``(dt grad g . f)^2`` is best on the real pendulum (inner 0.1, outer
  1e-3: 400x below vanilla; the normalised form at best 3.5x) but on kepler it is worse than
  vanilla at every inner rate and diverges from 0.0032 up (the 1/r term's slope grows without bound where a rollout drifts
  inwards); the normalised form (that divided by ``|sigma * grad g|^2``, sigma the training
  states' standard deviations; the same for g, 2 g or g^3, so a sum over several laws weighs
  them alike) is best on kepler (0.1) and the ideal pendulum (1.0), and on the spring every
  setting at outer 1e-4 is within 1% of the best. The four settings are the best of each
  system. Checked on a system none of this saw (`benchmarks/unseen_pendulum.py`: theta/omega,
  g/l 9.81, noise 0.02): its energy ranked first, 14% below vanilla on test. Before, two inner
  rates x two outer rates of the infinitesimal form; before that, rates had been adopted after
  looking at test results.
* The independent laws (at least two) are also meta-tailored together, the sum of their losses
  (``"set"``), and reported beside rank 1.
* An oracle that is a meta-tailored law up to a constant (the exact pendulum law) is not run
  twice: its runs are that law's (the same computation; the summary says so in ``runs_of``).

Work and checkpoints. Each seed's pre-training is one task, and each law's (and the control's)
runs for that seed one more, started as soon as that seed's predictor is there
(`lawfinder.parallel.executor`: ``--jobs``, ``--backend dask``). A law's runs at the four settings
are meta-tailored one after the other (their arithmetic, not call overhead, dominates), then
rolled out on validation together (`lawfinder.tailoring.stacked.StackedMLP`: a rollout is a few
hundred calls on a handful of states, so one call for all four is ~3x cheaper: 1.1 against
3.2-3.8 CPU s on the pendulum, 2.6-2.8 against 7.2-7.7 on the real pendulum); the chosen run
is continued and rolled out on test in the same task. Each task is checkpointed
(``predictors/seed<S>.*``, ``ranking_runs/s<S>-<key>.json``) as it ends, so ``--resume`` loses at
most the tasks in flight.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lawfinder.data.trajectories import Trajectories
from lawfinder.laws.compile import node_to_torch
from lawfinder.ranking.tasks import FORM, group_task, pretrain_task
from lawfinder.runfolder import RunFolder, write_json, write_table, write_with

VAL_FRACTION = 0.25
OUTER_LRS = (1e-4, 1e-3)
SETTINGS = ((1e-3, "infinitesimal", 0.1), (1e-4, "infinitesimal", 0.1), (1e-3, "normalised", 0.1),
            (1e-3, "normalised", 1.0))  # fmt: skip
"""(outer rate, loss form, inner rate) per meta-tailoring run; one is chosen per law and seed."""
REFIT_FRACTION = 0.25
"""The refit on all the training data continues each chosen run for this share of its budget."""


def split_validation(train: Trajectories, fraction: float = VAL_FRACTION) -> tuple[Trajectories, Trajectories]:
    """(fit, validation) parts of the training data: in time for one trajectory, else by trajectory."""
    if train.n_trajectories == 1:
        x, t = train.states[0], train.times[0]
        k = len(x) - max(3, int(round(fraction * len(x))))
        d = train.derivatives

        def part(sl):
            return train.replace(states=(x[sl],), times=(t[sl],), split=("train",),
                                 derivatives=None if d is None else (d[0][sl],))  # fmt: skip

        return part(slice(0, k)), part(slice(k, None))
    n_val = min(train.n_trajectories - 1, max(1, int(round(fraction * train.n_trajectories))))
    keep = list(range(train.n_trajectories - n_val))
    return train._select(keep), train._select(list(range(len(keep), train.n_trajectories)))


def rollout_set(part: Trajectories) -> tuple[list, list]:
    """States and times to roll out from: whole trajectories, cut to the shortest when uneven."""
    if len(set(part.lengths)) > 1:
        part = part.windows(min(part.lengths))
    return list(part.states), list(part.times)


def data_hash(traj: Trajectories) -> str:
    """A short hash of the data (states, times, derivatives, split): part of the run identity."""
    import hashlib

    h = hashlib.sha256()
    for arrays in (traj.states, traj.times, traj.derivatives or ()):
        for a in arrays:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    h.update(json.dumps([list(traj.variables), traj.split]).encode())
    return h.hexdigest()[:16]


def state_scale(traj: Trajectories) -> tuple[float, ...]:
    """Each variable's standard deviation over all states: the metric of the normalised loss."""
    return tuple(float(v) for v in np.concatenate(traj.states).std(0))


def data_dt(traj: Trajectories) -> float:
    """The typical time step of the data (median over all intervals)."""
    return float(np.median(np.concatenate([np.diff(t) for t in traj.times])))


def weight_decay(config, fit: Trajectories) -> float:
    """HNN's: 1e-5 for one long trajectory, 1e-4 otherwise (unless set)."""
    if config.weight_decay is not None:
        return config.weight_decay
    return 1e-5 if fit.n_trajectories == 1 else 1e-4


def independent_set(laws) -> list:
    """The exact, mutually independent laws when there are at least two (else empty)."""
    members = [law for law in laws if law.evidence.get("independent") is True and law.exact is not False]
    return members if len(members) >= 2 else []


# --- the stage ----------------------------------------------------------------------------------


def _report(progress, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def _run_all(select: dict, final: dict, seeds, groups: dict, config, out: Path, resume: bool, progress=None):
    """Every seed's pre-training, then (as soon as it is there) its groups of runs, on the chosen back end.

    Returns ``({seed: pretrain result}, {(seed, key): group result}, {kind of work: task seconds})``
    (seconds summed over the tasks this call ran, whichever worker ran them); each result is checkpointed
    (``predictors/seed<S>.*``, ``ranking_runs/s<S>-<key>.json``) when it arrives, so ``resume``
    redoes only the tasks that were in flight.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from lawfinder.parallel import executor

    folder = RunFolder(out)
    pre, done, pending, seconds = {}, {}, {}, {}
    n_runs = len(seeds) * sum(len(settings) for _, settings in groups.values())
    counted = {"pretrain": 0, "meta-tailor": 0}

    def count(stage: str, n: int) -> None:
        counted[stage] += n
        _report(progress, stage, counted[stage], len(seeds) if stage == "pretrain" else n_runs)

    _report(progress, "pretrain", 0, len(seeds))
    _report(progress, "meta-tailor", 0, n_runs)
    with executor(config.jobs, config.backend, config.scheduler) as pool:

        def start_groups(s: int) -> None:
            for key, (node, settings) in groups.items():
                path = folder.ranking_run(s, key)
                if resume and path.exists():
                    done[s, key] = json.loads(path.read_text())
                    count("meta-tailor", len(settings))
                else:
                    pending[pool.submit(group_task, select, final, pre[s]["state"], s, key, node, settings)] = (s, key)

        for s in seeds:
            pt, js = folder.predictor(s, ".pt"), folder.predictor(s, ".json")
            if resume and pt.exists() and js.exists():
                pre[s] = {"state": torch.load(pt, map_location="cpu"), **json.loads(js.read_text())}
                count("pretrain", 1)
                start_groups(s)
            else:
                pending[pool.submit(pretrain_task, select, final, s)] = (s, None)
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in finished:
                s, key = pending.pop(future)
                result = future.result()
                for kind, t in result["seconds"].items():
                    seconds[kind] = seconds.get(kind, 0.0) + t
                if key is None:
                    pre[s] = result
                    write_with(folder.predictor(s, ".pt"), lambda tmp, r=result: torch.save(r["state"], tmp))
                    write_json(folder.predictor(s, ".json"), {k: v for k, v in result.items() if k != "state"})
                    count("pretrain", 1)
                    start_groups(s)
                else:
                    done[s, key] = result
                    write_json(folder.ranking_run(s, key), result)
                    count("meta-tailor", len(result["rows"]))
    return pre, done, seconds


def same_function(a, b, states: np.ndarray, variables: list[str], tol: float = 1e-9) -> bool:
    """True when laws ``a`` and ``b`` (trees) differ by a constant on ``states``: then tailoring with
    either is the same computation (unlike ``2 g`` or ``-g``, which change the inner step)."""
    x = torch.as_tensor(states, dtype=torch.float64)
    with torch.no_grad():
        va, vb = (node_to_torch(n, variables)(x).reshape(-1).numpy() for n in (a, b))
    da, db = va - va.mean(), vb - vb.mean()
    return bool(np.isfinite(da).all() and np.isfinite(db).all() and np.abs(da - db).max() <= tol * np.abs(da).max())


def evaluate_candidates(traj, laws, config, *, out: Path, device, oracle, oracle_fn, resume, log,
                        timings, progress=None) -> dict:  # fmt: skip
    """Rank `laws` (`lawfinder.ranking.compare.Law`) on held-out data; return the summary's parts.

    ``progress(stage, done, total)``, when given, is called at the start (``done`` 0, or what a
    resumed run has already) and as the predictors are pre-trained (stage ``"pretrain"``) and the
    meta-tailoring runs finish (``"meta-tailor"``); the two stages interleave.
    """
    from lawfinder.ranking.compare import best_runs, dedupe, rank_summary

    train = traj.train()
    fit, val = split_validation(train)
    energy = None if oracle_fn is None else (lambda x: oracle_fn(np.asarray(x)))
    select, final = contexts(traj, config, device, energy)
    seeds = [config.seed + k for k in range(config.seeds)]
    states = np.concatenate(train.states)
    distinct, dupes = dedupe(laws, states, list(traj.variables))
    n_meta = max(1, config.top // len(SETTINGS))
    chosen = distinct[:n_meta]
    log(f"rank: {len(laws)} accepted, {len(distinct)} distinct up to sign and affine rewrites; "
        f"meta-tailoring {len(chosen)} x {len(SETTINGS)} settings x {len(seeds)} seeds on the fit part "
        f"({fit.n_points} points), choosing on validation ({val.n_points} points)")  # fmt: skip
    groups = {"control": (None, [(o, FORM, 0.0) for o in OUTER_LRS]),
              **{f"law{k}": (law.node, SETTINGS) for k, law in enumerate(chosen)}}  # fmt: skip
    twin = None
    if oracle is not None:
        import dsl

        node = dsl.parse(oracle, dict(traj.units)).root
        twin = next((k for k, law in enumerate(chosen) if same_function(law.node, node, states, list(traj.variables))), None)
        if twin is None:
            groups["oracle"] = (node, SETTINGS)
        else:
            log(f"rank: the oracle is {chosen[twin].name} up to a constant: its runs are that law's")
    members = independent_set(distinct)
    if members:
        groups["set"] = (tuple(law.node for law in members), SETTINGS)
        log(f"rank: the {len(members)} independent laws also together (the sum of their losses)")
    t = time.perf_counter()
    pre, done, seconds = _run_all(select, final, seeds, groups, config, out, resume, progress)
    if twin is not None:
        for s in seeds:
            law_runs = done[s, f"law{twin}"]
            done[s, "oracle"] = {"rows": [{**r, "key": "oracle"} for r in law_runs["rows"]],
                                 "final": {**law_runs["final"], "key": "oracle"}}  # fmt: skip
    timings["rank"] = time.perf_counter() - t
    run_keys = [*groups, *(["oracle"] if twin is not None else [])]  # in a fixed order: the table's rows follow it
    table = pd.DataFrame([pre[s]["row"] for s in seeds] + [r for s in seeds for k in run_keys for r in done[s, k]["rows"]])
    # The test rollouts of the run chosen on validation per key and seed (refitted on all the training data).
    table["final_diverged"] = False
    test_cols = ["test_mse", "test_rmse", "test_end_mse", "mse_curve", "drift_curve", "times", "true_drift"]
    keys = sorted(set(table.key) - {"vanilla"})
    picks = [(s, key, row, done[s, key]["final"]) for key in keys for s, row in zip(seeds, best_runs(table, key, seeds))]
    picks += [(s, "vanilla", pre[s]["row"], pre[s]["final"]) for s in seeds]
    for s, key, row, fin in picks:
        i = table.index[(table.seed == s) & (table.key == key) & (table.lr == row["lr"])
                        & (table.outer_lr == row["outer_lr"]) & (table.form == row["form"])][0]  # fmt: skip
        for col in test_cols:
            if col not in table:
                table[col] = None
            table.at[i, col] = fin.get(col)
        table.at[i, "final_diverged"] = bool(fin["diverged"])
    write_table(RunFolder(out).ranking, table.drop(columns=["mse_curve", "drift_curve", "true_drift", "times"], errors="ignore"))
    result = rank_summary(table, distinct, chosen, dupes, seeds, oracle, members)
    if twin is not None:
        result["baselines"]["oracle"]["runs_of"] = chosen[twin].name
    result["counts"] = {"distinct": len(distinct), "meta_tailored": len(chosen)}
    result["ranking_work_s"] = {kind: round(v, 3) for kind, v in sorted(seconds.items())}  # CPU in the tasks, all workers
    log(f"ranked {len(distinct)} laws over {len(seeds)} seeds ({timings['rank']:.1f} s): {result['ranking_basis']}")
    return result


def contexts(traj: Trajectories, config, device, energy=None) -> tuple[dict, dict]:
    """What the ranking's tasks get: the selection context (pairs of the fit part, validation
    rollouts) and the final one (all the training pairs, test rollouts, refit lengths)."""
    train = traj.train()
    fit, val = split_validation(train)
    fit_x, fit_y = fit.derivative_pairs()
    select = {"fit_x": fit_x, "fit_y": fit_y, "val": rollout_set(val), "test": None,
              "variables": list(traj.variables), "dt": data_dt(train), "epochs": config.epochs,
              "wd": weight_decay(config, fit), "device": str(device), "steps": config.predictor_steps,
              "energy": energy, "scale": state_scale(fit)}  # fmt: skip
    full_x, full_y = train.derivative_pairs()
    final = {**select, "fit_x": full_x, "fit_y": full_y, "val": None, "test": rollout_set(traj.test()),
             "wd": weight_decay(config, train), "scale": state_scale(train),
             "refit_steps": refit_length(config.predictor_steps), "refit_epochs": refit_length(config.epochs)}  # fmt: skip
    return select, final


def refit_length(selection: int) -> int:
    """Steps (or epochs) of the refit on all the training data for a selection run of ``selection``."""
    return int(math.ceil(REFIT_FRACTION * selection))
