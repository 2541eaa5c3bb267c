"""`lawfinder video`: train and evaluate video predictors with a meta-learned Noether embedding."""

from __future__ import annotations

from pathlib import Path

import click

DATASETS = ("pendulum-pixels", "phys101")


def _common(fn):
    options = [
        click.option("--dataset", type=click.Choice(DATASETS), default="pendulum-pixels", show_default=True),
        click.option("--data-root", type=click.Path(path_type=Path), help="phys101: the folder holding scenarios/ramp/..."),
        click.option("--noether/--baseline", "noether", default=True, show_default=True, help="With or without the Noether embedding."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder [default: results/runs/video-<dataset>-<timestamp>]."),
        click.option("--config", "config_name", default="cpu", show_default=True, help="Model sizes: tiny, cpu, cpu64 or paper (128x128)."),
        click.option("--size", type=int, help="Frame size (overrides the config's)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--inner-lr", type=float, default=1e-3, show_default=True, help="Inner SGD rate (0.1 and 0.01 degraded the pixel-pendulum predictor)."),
        click.option("--inner-steps", type=int, default=1, show_default=True, help="Inner steps at evaluation."),
        click.option("--adapt", type=click.Choice(["cn", "lstm"]), default="cn", show_default=True, help="Adapt the CN layers or the LSTM activations."),
        click.option("--test-episodes", type=int, default=64, show_default=True, help="pendulum-pixels: held-out episodes."),
        click.option("--cache", type=click.Path(path_type=Path), default=Path.home() / ".cache/lawfinder/video", show_default=True),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group()
def video():
    """Video prediction with a meta-learned conservation loss (Noether Networks, section 4.2)."""


def _load(dataset, data_root, size, n_past, n_future, test_episodes, cache, seed):
    from lawfinder.errors import UserError
    from lawfinder.video.data import load_phys101, make_pendulum

    if dataset == "pendulum-pixels":
        data = make_pendulum(
            cache, size=size, test_episodes=test_episodes, seed=seed, log=click.echo
        )
        test = (data.test_history, data.test_actions, data.test_future)
        return data.sample, test, 1
    if data_root is None:
        raise UserError(
            "--dataset phys101 needs --data-root (the folder that holds scenarios/ramp)"
        )
    import numpy as np

    d = load_phys101(data_root, size=size, n_past=n_past, n_future=n_future, seed=seed, cache=cache)
    train_seqs = d["train"]

    def sample(rng, batch):
        seq = train_seqs[rng.integers(0, len(train_seqs), batch)]
        flip = rng.random(batch) < 0.5  # random horizontal flip per sequence
        seq = np.where(flip[:, None, None, None, None], seq[..., ::-1], seq)
        return seq[:, :n_past], np.zeros((batch, n_future, 0), np.float32), seq[:, n_past:]

    test = d["test"]
    return (
        sample,
        (test[:, :n_past], np.zeros((len(test), n_future, 0), np.float32), test[:, n_past:]),
        0,
    )


def _setup(dataset, data_root, device, out, config_name, size, seed, test_episodes, cache):
    import torch

    from lawfinder.cli.common import default_out
    from lawfinder.tailoring.predictor import resolve_device
    from lawfinder.video.models import get_config

    dev = resolve_device(device)
    torch.set_num_threads(1) if dev.type == "cpu" else None
    n_past, n_future = (4, 26) if dataset == "pendulum-pixels" else (2, 20)
    base = get_config(config_name)
    size = size or base.image_size
    sample, test, action_dim = _load(
        dataset, data_root, size, n_past, n_future, test_episodes, cache, seed
    )
    cfg = get_config(
        config_name, image_size=size, n_past=n_past, n_future=n_future, action_dim=action_dim
    )
    out = out or default_out(f"video-{dataset}")
    out.mkdir(parents=True, exist_ok=True)
    return dev, cfg, sample, test, out


def _eval_and_write(out, model, emb, test, args, dev, extra):
    from lawfinder.runfolder import write_json
    from lawfinder.runs.metadata import run_metadata
    from lawfinder.video.train import evaluate

    results = {"baseline" if emb is None else "noether": evaluate(
        model, *test, embedding=emb, steps=args["inner_steps"], lr=args["inner_lr"],
        adapt=args["adapt"], device=dev)}  # fmt: skip
    if emb is not None:
        results["noether_untailored"] = evaluate(model, *test, device=dev)
    summary = {**run_metadata(args["seed"], str(dev)), "kind": "video", **extra, "options": args,
               "results": results}  # fmt: skip
    write_json(out / "summary.json", summary)
    for name, r in results.items():
        click.echo(f"{name:20s} MSE {r['mse_mean']:.6f}  PSNR {r['psnr_mean']:.2f}  SSIM {r['ssim_mean']:.4f}"
                   f"  ({r['n_sequences']} test sequences)")  # fmt: skip
    click.echo(f"LPIPS {results[next(iter(results))]['lpips']}")
    click.echo(f"wrote {out / 'summary.json'}")


@video.command()
@_common
@click.option(
    "--steps",
    type=int,
    default=1000,
    show_default=True,
    help="Outer training steps (pre-training for --noether).",
)
@click.option(
    "--noether-steps",
    type=int,
    default=300,
    show_default=True,
    help="Meta-tailoring steps of g_phi after pre-training.",
)
@click.option("--batch", type=int, default=8, show_default=True)
@click.option(
    "--lr",
    type=float,
    default=1e-3,
    show_default=True,
    help="Adam rate of the predictor's training.",
)
@click.option("--meta-lr", type=float, default=1e-4, show_default=True, help="Adam rate of the meta-tailoring steps (g_phi); 1e-3 made the inner step destructive.")  # fmt: skip
@click.option("--freeze/--no-freeze", default=True, show_default=True, help="Fix the pre-trained predictor while learning g_phi (the paper's pendulum protocol).")  # fmt: skip
@click.option("--teacher-forcing/--free-running", default=True, show_default=True, help="Predictor training: feed the true previous frame (SVG) or the model's own prediction.")  # fmt: skip
@click.option("--z-dim", type=click.IntRange(min=0), default=0, show_default=True, help="Stochastic latent size (SVG-LP with a learned prior); 0: deterministic.")  # fmt: skip
@click.option("--beta", type=float, default=1e-4, show_default=True, help="KL weight of the stochastic latent.")  # fmt: skip
def train(dataset, data_root, noether, device, out, config_name, size, seed, inner_lr, inner_steps,
          adapt, test_episodes, cache, steps, noether_steps, batch, lr, meta_lr, freeze, teacher_forcing,
          z_dim, beta):  # fmt: skip
    """Train a baseline (or pre-train, then meta-learn g_phi) and evaluate; writes summary.json."""
    import torch

    from lawfinder.video.train import TrainConfig, build
    from lawfinder.video.train import train as run_train

    dev, cfg, sample, test, out = _setup(dataset, data_root, device, out, config_name, size, seed,
                                         test_episodes, cache)  # fmt: skip
    model, emb = build(cfg, seed, dev, z_dim=z_dim)
    click.echo(f"training the predictor: {steps} steps on {dev}")
    pcfg = TrainConfig(
        steps=steps, batch=batch, lr=lr, seed=seed, teacher_forcing=teacher_forcing, beta=beta
    )
    hist = {"predictor": run_train(model, sample, pcfg, device=dev, log=click.echo)}
    if noether:
        click.echo(f"meta-learning g_phi: {noether_steps} steps")
        ncfg = TrainConfig(steps=noether_steps, batch=batch, lr=meta_lr, seed=seed + 1000, inner_lr=inner_lr,
                           adapt=adapt, freeze_predictor=freeze)  # fmt: skip
        hist["noether"] = run_train(model, sample, ncfg, embedding=emb, device=dev, log=click.echo)
    torch.save({"config": cfg.to_dict(), "z_dim": z_dim, "model": model.state_dict(),
                "embedding": emb.state_dict() if noether else None}, out / "model.pt")  # fmt: skip
    args = dict(dataset=dataset, noether=noether, seed=seed, inner_lr=inner_lr, inner_steps=inner_steps,
                adapt=adapt, steps=steps, noether_steps=noether_steps, batch=batch, lr=lr, meta_lr=meta_lr,
                teacher_forcing=teacher_forcing, z_dim=z_dim, beta=beta)  # fmt: skip
    extra = {"video_config": cfg.to_dict(),
             "train_seconds": {k: round(v["seconds"], 1) for k, v in hist.items()}}  # fmt: skip
    _eval_and_write(out, model, emb if noether else None, test, args, dev, extra)


@video.command()
@_common
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="model.pt written by `lawfinder video train`.")  # fmt: skip
def evaluate(dataset, data_root, noether, device, out, config_name, size, seed, inner_lr, inner_steps,
             adapt, test_episodes, cache, model_path):  # fmt: skip
    """Evaluate a trained model (tailored with --inner-steps when it has an embedding)."""
    import torch

    from lawfinder.errors import UserError
    from lawfinder.video.models import VideoConfig
    from lawfinder.video.train import build

    ckpt = torch.load(model_path, map_location="cpu", weights_only=False)
    cfg = VideoConfig(**ckpt["config"])
    dev, _, _, test, out = _setup(dataset, data_root, device, out, config_name, cfg.image_size, seed,
                                  test_episodes, cache)  # fmt: skip
    model, emb = build(cfg, seed, dev, z_dim=ckpt.get("z_dim", 0))
    model.load_state_dict(ckpt["model"])
    if noether:
        if ckpt["embedding"] is None:
            raise UserError(f"{model_path} has no Noether embedding; use --baseline")
        emb.load_state_dict(ckpt["embedding"])
    else:
        emb = None
    args = dict(dataset=dataset, noether=noether, seed=seed, inner_lr=inner_lr,
                inner_steps=inner_steps, adapt=adapt, model=str(model_path))  # fmt: skip
    _eval_and_write(out, model, emb, test, args, dev, {"video_config": cfg.to_dict()})
