"""Controlled pixel pendulum: SVG-style baseline vs Noether Network vs baseline trained for more steps.

Protocol (the paper's, scaled down for a 2-core CPU): per seed, pre-train the deterministic
predictor for ``--pretrain`` steps (the baseline); then (a) fix it and meta-learn g_phi for
``--extra`` steps with one inner SGD step on the CN layers through the shared ``tailor`` (the
Noether Network), and (b) continue training the baseline for the same ``--extra`` steps
(baseline, more steps). All three are evaluated on the same held-out test episodes.

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lawfinder.runinfo import run_metadata, write_json  # noqa: E402
from lawfinder.video.data import make_pendulum  # noqa: E402
from lawfinder.video.models import get_config  # noqa: E402
from lawfinder.video.train import TrainConfig, build, evaluate, train  # noqa: E402

METHODS = ("baseline", "noether", "baseline_more_steps")


def run_seed(seed, data, cfg, args, log):
    model, emb = build(cfg, seed)
    base_cfg = TrainConfig(steps=args.pretrain, batch=args.batch, lr=args.lr, seed=seed)
    log(f"seed {seed}: pre-train baseline ({args.pretrain} steps)")
    hist = {"baseline": train(model, data.sample, base_cfg, log=log)}
    more = copy.deepcopy(model)
    noether = copy.deepcopy(model)
    log(f"seed {seed}: Noether (frozen predictor, learn g_phi, {args.extra} steps)")
    ncfg = TrainConfig(steps=args.extra, batch=args.batch, lr=args.lr, seed=seed + 1000,
                       inner_lr=args.inner_lr, adapt=args.adapt, freeze_predictor=True)  # fmt: skip
    hist["noether"] = train(noether, data.sample, ncfg, embedding=emb, log=log)
    log(f"seed {seed}: baseline, more steps (+{args.extra})")
    mcfg = TrainConfig(steps=args.extra, batch=args.batch, lr=args.lr, seed=seed + 1000)
    hist["baseline_more_steps"] = train(more, data.sample, mcfg, log=log)
    test = (data.test_history, data.test_actions, data.test_future)
    res = {
        "baseline": evaluate(model, *test),
        "noether": evaluate(
            noether, *test, embedding=emb, steps=1, lr=args.inner_lr, adapt=args.adapt
        ),
        "baseline_more_steps": evaluate(more, *test),
    }
    # the same frozen predictor without the inner step: isolates the effect of tailoring
    res["noether_untailored"] = evaluate(noether, *test)
    for k in (1, 2, 4):
        res[f"noether_k{k}"] = evaluate(noether, *test, embedding=emb, steps=k, lr=args.inner_lr,
                                        adapt=args.adapt)  # fmt: skip
    for name, r in res.items():
        log(
            f"seed {seed}: {name:22s} MSE {r['mse_mean']:.6f} PSNR {r['psnr_mean']:.3f} SSIM {r['ssim_mean']:.4f}"
        )
    train_s = {k: round(v["seconds"], 1) for k, v in hist.items()}
    return {"metrics": res, "train_seconds": train_s,
            "final_train_loss": {k: float(np.mean(v["losses"][-20:])) for k, v in hist.items()}}  # fmt: skip


def write_report(summary, out_md: Path, out_png: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = summary["seeds"]
    names = ["baseline", "noether", "baseline_more_steps"]
    labels = {"baseline": "SVG-style baseline", "noether": "Noether Network (1 inner step)",
              "baseline_more_steps": "baseline, more steps"}  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, metric in zip(axes, ("mse", "psnr", "ssim")):
        for n in names:
            arr = np.array([s["metrics"][n][metric] for s in seeds.values()])
            t = np.arange(1, arr.shape[1] + 1)
            ax.plot(t, arr.mean(0), label=labels[n])
            if len(arr) > 1:
                ax.fill_between(t, arr.min(0), arr.max(0), alpha=0.15)
        ax.set_xlabel("predicted frame")
        ax.set_title(metric.upper() + " per horizon (mean, min-max over seeds)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)

    rows = []
    allnames = [*names, "noether_untailored", "noether_k1", "noether_k2", "noether_k4"]
    for n in allnames:
        vals = {m: np.array([s["metrics"][n][f"{m}_mean"] for s in seeds.values()])
                for m in ("mse", "psnr", "ssim")}  # fmt: skip
        last = np.array([s["metrics"][n]["mse"][-1] for s in seeds.values()])
        rows.append(f"| {n} | {vals['mse'].mean():.5f} ± {vals['mse'].std():.5f} | "
                    f"{last.mean():.5f} | {vals['psnr'].mean():.2f} | {vals['ssim'].mean():.4f} |")  # fmt: skip
    per_seed = []
    for s, r in seeds.items():
        m = {n: r["metrics"][n]["mse_mean"] for n in names}
        per_seed.append(f"| {s} | {m['baseline']:.5f} | {m['noether']:.5f} | "
                        f"{m['baseline_more_steps']:.5f} | {r['train_seconds']} |")  # fmt: skip
    a = summary["args"]
    md = f"""# Controlled pixel pendulum: baseline vs Noether Network (CPU, scaled down)

Command: `{summary["command"]}` — total wall time {summary["wall_seconds"]:.0f} s on
{summary["machine"]["cpus"]} shared CPU cores (torch threads = 1).

Setting: gymnasium `Pendulum-v1` rendered with its own `rgb_array` renderer (pygame, headless),
resized to {a["size"]}x{a["size"]}; scripted policy (random sinusoid + noise). 4 history frames +
26 actions -> 26 predicted frames. Training: 5 episodes of 200 frames. Test:
**{summary["n_test"]} held-out episodes** (one 30-frame window each; the paper uses 195).
Model config `cpu` (conv widths {summary["video_config"]["width"]}.., LSTM {summary["video_config"]["rnn_size"]}),
embedding channels {summary["video_config"]["emb_c1"]}/{summary["video_config"]["emb_c2"]} -> {summary["video_config"]["emb_dim"]}.
Per seed: baseline pre-trained for {a["pretrain"]} Adam steps (batch {a["batch"]}, lr {a["lr"]});
Noether Network = that baseline, frozen, plus g_phi meta-learned for {a["extra"]} steps (one inner
SGD step on the CN layers, inner lr {a["inner_lr"]}, eq. 2b); baseline-more-steps = that baseline
trained {a["extra"]} further steps. Seeds: {list(seeds)}. LPIPS: {summary["lpips"]}.

## Mean over the 26 predicted frames (mean ± std over seeds)

| model | MSE | MSE at frame 26 | PSNR (dB) | SSIM |
|---|---|---|---|---|
{chr(10).join(rows)}

`noether_untailored` is the Noether model's (frozen) predictor without the inner step, i.e. the
baseline itself; `noether_kK` tailors with K inner steps at evaluation.

## Per seed (MSE mean over horizon; training seconds)

| seed | baseline | Noether | baseline more steps | train s |
|---|---|---|---|---|
{chr(10).join(per_seed)}

![per-horizon metrics]({out_png.name})

## Verdict

{summary["verdict"]}
"""
    out_md.write_text(md)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--pretrain", type=int, default=300)
    p.add_argument("--extra", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--inner-lr", type=float, default=0.1)
    p.add_argument("--adapt", default="cn", choices=["cn", "lstm"])
    p.add_argument("--test-episodes", type=int, default=32)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache/lawfinder/video")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    log = lambda s: print(f"[{time.perf_counter() - t0:7.1f}s] {s}", flush=True)  # noqa: E731
    data = make_pendulum(args.cache, size=args.size, test_episodes=args.test_episodes, log=log)
    cfg = get_config("cpu", image_size=args.size, emb_c1=8, emb_c2=16, emb_dim=32)
    summary = {**run_metadata(), "command": " ".join(["python", "benchmarks/video_pendulum.py", *sys.argv[1:]]), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "video_config": cfg.to_dict(), "n_test": int(len(data.test_history)), "seeds": {}}  # fmt: skip
    out_json = args.out / "video_pendulum.json"
    for seed in args.seeds:
        summary["seeds"][str(seed)] = run_seed(seed, data, cfg, args, log)
        summary["wall_seconds"] = time.perf_counter() - t0
        write_json(out_json, summary)
    means = {n: np.array([s["metrics"][n]["mse_mean"] for s in summary["seeds"].values()])
             for n in METHODS}  # fmt: skip
    wins = int(
        np.sum(
            (means["noether"] < means["baseline"])
            & (means["noether"] < means["baseline_more_steps"])
        )
    )
    better = means["noether"].mean() < min(
        means["baseline"].mean(), means["baseline_more_steps"].mean()
    )
    summary["lpips"] = summary["seeds"][str(args.seeds[0])]["metrics"]["baseline"]["lpips"]
    summary["verdict"] = (
        f"Noether mean MSE {means['noether'].mean():.5f} ± {means['noether'].std():.5f}, baseline "
        f"{means['baseline'].mean():.5f} ± {means['baseline'].std():.5f}, baseline more steps "
        f"{means['baseline_more_steps'].mean():.5f} ± {means['baseline_more_steps'].std():.5f}. "
        + ("The Noether Network has the lowest mean MSE" if better else
           "The bar (Noether lowest MSE) is NOT met") +
        f"; it beats both controls in {wins} of {len(means['noether'])} seeds."
    )  # fmt: skip
    summary["wall_seconds"] = time.perf_counter() - t0
    write_json(out_json, summary)
    write_report(summary, args.out / "video_pendulum.md", args.out / "video_pendulum_horizon.png")
    log(summary["verdict"])


if __name__ == "__main__":
    main()
