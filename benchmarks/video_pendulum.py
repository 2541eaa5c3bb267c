"""Controlled pixel pendulum: SVG-style baseline vs Noether Network vs baseline trained for more steps.

Protocol (the paper's, scaled down for a 2-core CPU): per seed, pre-train the deterministic
predictor with teacher forcing for ``--pretrain`` steps (the baseline); then, for ``--extra``
steps each, (a) fix it and meta-learn g_phi with one inner SGD step on the CN layers through
the shared ``tailor`` (the Noether Network), (b) continue the baseline's own training (the
paper's "more steps" control), and (c) fine-tune the baseline on free-running rollouts, the
Noether Network's outer loss without the conservation step (an extra control the paper lacks).
With ``--lstm``, (d) also meta-learns a g_phi that adapts the LSTM activations instead. On the
first seed, the "many inner steps with Adam" study evaluates the Noether Network with
``--adam-steps`` inner Adam steps. Seeds run in parallel processes (``--jobs``), one torch
thread each.

    python benchmarks/video_pendulum.py            # writes results/video_pendulum.{json,md,png}
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lawfinder.runfolder import write_json  # noqa: E402
from lawfinder.runs.metadata import run_metadata  # noqa: E402
from lawfinder.video.data import make_pendulum  # noqa: E402
from lawfinder.video.models import get_config  # noqa: E402
from lawfinder.video.train import TrainConfig, build, evaluate, train  # noqa: E402

METHODS = ("baseline", "noether", "baseline_more_steps")


def _data(args):
    return make_pendulum(args.cache, size=args.size, test_episodes=args.test_episodes)


def _config(args):
    return get_config("cpu", image_size=args.size)


def run_seed(seed, args, study):
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    log = lambda s: print(f"[seed {seed} {time.perf_counter() - t0:6.0f}s] {s}", flush=True)  # noqa: E731
    data, cfg = _data(args), _config(args)
    test = (data.test_history, data.test_actions, data.test_future)
    model, emb = build(cfg, seed)
    tc = dict(batch=args.batch, lr=args.lr)
    log(f"pre-train the baseline ({args.pretrain} teacher-forced steps)")
    hist = {
        "baseline": train(model, data.sample, TrainConfig(steps=args.pretrain, seed=seed, **tc))
    }
    res = {"baseline": evaluate(model, *test)}

    def meta(adapt):
        frozen, e = copy.deepcopy(model), copy.deepcopy(emb)
        inner_lr = args.inner_lr if adapt == "cn" else args.lstm_inner_lr
        cfg_ = TrainConfig(steps=args.extra, seed=seed + 1000, inner_lr=inner_lr, adapt=adapt,
                           freeze_predictor=True, batch=args.batch, lr=args.meta_lr)  # fmt: skip
        return frozen, e, train(frozen, data.sample, cfg_, embedding=e)

    def more(teacher_forcing):
        m = copy.deepcopy(model)
        cfg_ = TrainConfig(
            steps=args.extra, seed=seed + 1000, teacher_forcing=teacher_forcing, **tc
        )
        return m, train(m, data.sample, cfg_)

    log(f"Noether Network: frozen baseline, meta-learn g_phi ({args.extra} steps, CN)")
    noether, g_phi, hist["noether"] = meta("cn")
    for k in (1, 2, 4):
        res[f"noether_k{k}"] = evaluate(noether, *test, embedding=g_phi, steps=k, lr=args.inner_lr)
    res["noether"] = res["noether_k1"]
    log(f"baseline, {args.extra} more teacher-forced steps")
    m, hist["baseline_more_steps"] = more(True)
    res["baseline_more_steps"] = evaluate(m, *test)
    log(f"baseline fine-tuned on free-running rollouts ({args.extra} steps)")
    m, hist["finetune_free_running"] = more(False)
    res["finetune_free_running"] = evaluate(m, *test)
    if args.lstm:
        log(f"Noether Network adapting the LSTM activations ({args.extra} steps)")
        lstm, g_lstm, hist["noether_lstm"] = meta("lstm")
        res["noether_lstm"] = evaluate(lstm, *test, embedding=g_lstm, steps=1,
                                       lr=args.lstm_inner_lr, adapt="lstm")  # fmt: skip
    adam = {}
    if study:
        for k in args.adam_steps:
            log(f"many-steps study: {k} inner Adam steps (lr {args.adam_lr})")
            adam[str(k)] = evaluate(noether, *test, embedding=g_phi, steps=k, lr=args.adam_lr,
                                    optimizer="adam")  # fmt: skip
    for name, r in res.items():
        log(
            f"{name:22s} MSE {r['mse_mean']:.6f} PSNR {r['psnr_mean']:.3f} SSIM {r['ssim_mean']:.4f}"
        )
    return {"metrics": res, "adam_study": adam, "seconds": time.perf_counter() - t0,
            "train_seconds": {k: round(v["seconds"], 1) for k, v in hist.items()},
            "final_train_loss": {k: float(np.mean(v["losses"][-20:])) for k, v in hist.items()}}  # fmt: skip


LABELS = {
    "baseline": "SVG-style baseline (teacher forcing)",
    "noether": "Noether Network (1 inner step, CN)",
    "baseline_more_steps": "baseline, more steps",
    "finetune_free_running": "baseline fine-tuned free-running",
    "noether_lstm": "Noether Network (LSTM activations)",
}


def _stats(seeds, name, key):
    return np.array([s["metrics"][name][key] for s in seeds.values() if name in s["metrics"]])


def write_report(summary, out_md: Path, out_png: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = summary["seeds"]
    names = [n for n in LABELS if all(n in s["metrics"] for s in seeds.values())]
    study = next(iter(seeds.values()))["adam_study"]
    fig, axes = plt.subplots(1, 4 if study else 3, figsize=(18 if study else 14, 3.8))
    for ax, metric in zip(axes, ("mse", "psnr", "ssim")):
        for n in names:
            arr = _stats(seeds, n, metric)
            t = np.arange(1, arr.shape[1] + 1)
            ax.plot(t, arr.mean(0), label=LABELS[n])
            if len(arr) > 1:
                ax.fill_between(t, arr.min(0), arr.max(0), alpha=0.15)
        ax.set_xlabel("predicted frame")
        ax.set_title(metric.upper() + " per horizon (mean, min-max over seeds)", fontsize=9)
    axes[0].legend(fontsize=7)
    if study:
        ks = [0, *map(int, study)]
        base = next(iter(seeds.values()))["metrics"]["baseline"]["mse_mean"]
        axes[3].plot(ks, [base, *(r["mse_mean"] for r in study.values())], "o-")
        axes[3].set_xscale("symlog")
        axes[3].set_xlabel("inner Adam steps at test time")
        axes[3].set_title(
            "outer loss (test MSE) vs inner steps, seed " + next(iter(seeds)), fontsize=9
        )
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)

    rows = []
    for n in [*names, "noether_k2", "noether_k4"]:
        mse, ssim = _stats(seeds, n, "mse_mean"), _stats(seeds, n, "ssim_mean")
        last = np.array([m[-1] for m in _stats(seeds, n, "mse")])
        rows.append(f"| {LABELS.get(n, n)} | {mse.mean():.5f} ± {mse.std():.5f} | {last.mean():.5f} | "
                    f"{_stats(seeds, n, 'psnr_mean').mean():.2f} | {ssim.mean():.4f} ± {ssim.std():.4f} |")  # fmt: skip
    per_seed = []
    for s, r in seeds.items():
        cells = " | ".join(f"{r['metrics'][n]['mse_mean']:.5f}" for n in names)
        per_seed.append(f"| {s} | {cells} | {r['seconds']:.0f} |")
    study_rows = [f"| {k} | {r['mse_mean']:.5f} | {r['ssim_mean']:.4f} |" for k, r in study.items()]
    a, vc, ref = summary["args"], summary["video_config"], summary["reference_mse"]
    md = f"""# Controlled pixel pendulum: baseline vs Noether Network (CPU, scaled down)

Command: `{summary["command"]}` — total wall time {summary["wall_seconds"]:.0f} s on
{summary["machine"]["cpus"]} shared CPU cores ({a["jobs"]} seeds at a time, one torch thread each).

Setting: gymnasium `Pendulum-v1` rendered with its own `rgb_array` renderer (pygame, headless),
cropped to the rod's reach and resized to {a["size"]}x{a["size"]}; scripted policy (random
sinusoid + noise). 4 history frames + 26 actions -> 26 predicted frames. Training: 5 episodes of
200 frames. Test: **{summary["n_test"]} held-out episodes** (one 30-frame window each; the paper
uses 195). Predictor: config `cpu` (conv widths {vc["width"]}.., LSTM {vc["rnn_size"]}); g_phi
channels {vc["emb_c1"]}/{vc["emb_c2"]} -> {vc["emb_dim"]}. Per seed: baseline pre-trained for
{a["pretrain"]} teacher-forced Adam steps (batch {a["batch"]}, lr {a["lr"]}); then {a["extra"]}
steps for each of: the Noether Network (the baseline frozen, g_phi meta-learned by Adam at lr
{a["meta_lr"]} through one inner SGD step on the CN layers, inner lr {a["inner_lr"]}, eq. 2b), the
same with the LSTM activations adapted instead (inner lr {a["lstm_inner_lr"]}), the baseline trained
{a["extra"]} more steps, and the baseline fine-tuned on free-running rollouts (the Noether Network's
outer loss without the conservation step); the last two at the baseline's lr. Seeds:
{list(seeds)}. LPIPS: {summary["lpips"]}.

Reference levels on these test windows: predicting the mean training frame gives MSE
{ref["mean_frame"]:.5f}, copying the last history frame {ref["last_frame"]:.5f}.

## Mean over the 26 predicted frames (mean ± std over seeds)

| model | MSE | MSE at frame 26 | PSNR (dB) | SSIM |
|---|---|---|---|---|
{chr(10).join(rows)}

Noether k2/k4: the same Noether Network with 2 or 4 inner SGD steps at evaluation.

## Per seed (MSE mean over the horizon; seconds for the whole seed)

| seed | {" | ".join(names)} | s |
|---|{"---|" * len(names)}---|
{chr(10).join(per_seed)}

## Many inner steps with Adam at test time (seed {next(iter(seeds))}, lr {a["adam_lr"]})

| inner Adam steps | MSE | SSIM |
|---|---|---|
{chr(10).join(study_rows) or "| (not run) | | |"}

![per-horizon metrics]({out_png.name})

## Verdict

{summary["verdict"]}
"""
    out_md.write_text(md)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--pretrain", type=int, default=1000)
    p.add_argument("--extra", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--inner-lr", type=float, default=1e-3)
    p.add_argument("--meta-lr", type=float, default=1e-4, help="outer Adam rate for g_phi")
    p.add_argument("--lstm", action=argparse.BooleanOptionalAction, default=True,
                   help="also meta-learn a g_phi that adapts the LSTM activations")  # fmt: skip
    p.add_argument("--lstm-inner-lr", type=float, default=1e-2)
    p.add_argument("--adam-steps", type=int, nargs="*", default=[1, 3, 10, 30, 100])
    p.add_argument("--adam-lr", type=float, default=1e-4)
    p.add_argument("--test-episodes", type=int, default=64)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache/lawfinder/video")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    data = _data(args)  # render once, before the workers read the cache
    mean_frame = data.train_frames.mean((0, 1))
    reference = {"mean_frame": float(((data.test_future - mean_frame) ** 2).mean()),
                 "last_frame": float(((data.test_future - data.test_history[:, -1:]) ** 2).mean())}  # fmt: skip
    summary = {**run_metadata(), "command": " ".join(["python", "benchmarks/video_pendulum.py", *sys.argv[1:]]),
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "video_config": _config(args).to_dict(), "n_test": int(len(data.test_history)),
               "reference_mse": reference}  # fmt: skip
    runs = Parallel(n_jobs=args.jobs, verbose=0)(
        delayed(run_seed)(seed, args, i == 0) for i, seed in enumerate(args.seeds)
    )
    summary["seeds"] = {str(seed): r for seed, r in zip(args.seeds, runs)}
    summary["lpips"] = runs[0]["metrics"]["baseline"]["lpips"]
    means = {n: np.array([r["metrics"][n]["mse_mean"] for r in runs]) for n in METHODS}
    wins = int(
        np.sum(
            (means["noether"] < means["baseline"])
            & (means["noether"] < means["baseline_more_steps"])
        )
    )
    better = means["noether"].mean() < min(
        means["baseline"].mean(), means["baseline_more_steps"].mean()
    )
    summary["verdict"] = (
        f"Noether mean MSE {means['noether'].mean():.5f} ± {means['noether'].std():.5f}, baseline "
        f"{means['baseline'].mean():.5f} ± {means['baseline'].std():.5f}, baseline more steps "
        f"{means['baseline_more_steps'].mean():.5f} ± {means['baseline_more_steps'].std():.5f}. "
        + ("The Noether Network has the lowest mean MSE of the three" if better else
           "The bar (Noether lowest MSE of the three) is NOT met") +
        f"; it beats both in {wins} of {len(runs)} seeds."
    )  # fmt: skip
    summary["wall_seconds"] = time.perf_counter() - t0
    write_json(args.out / "video_pendulum.json", summary)
    write_report(summary, args.out / "video_pendulum.md", args.out / "video_pendulum_horizon.png")
    print(summary["verdict"])


if __name__ == "__main__":
    main()
