"""Training and evaluation of the video predictor, with and without a meta-learned Noether loss.

All inner steps go through the shared core: :func:`lawfinder.tailoring.tailor` adapts the CN
layers (or the LSTM activation offsets) per example on :class:`VideoNoetherLoss`, and
:func:`lawfinder.tailoring.predict_with` makes the tailored prediction.

Meta-tailoring (Algorithm 1 of the paper): inner SGD step(s) on the Noether loss with
``create_graph=True``, then the task loss (per-frame pixel MSE) of the tailored prediction is
minimised by an outer Adam over the predictor's non-CN weights (unless ``freeze_predictor``, the
paper's controlled-pendulum protocol: pre-train the predictor, fix it, learn only g_phi) and g_phi,
whose gradients are clipped to norm ``clip_embedding`` (1000 in the paper).

Plain (baseline) steps use the model's own ``training_loss``: teacher forcing by default, as SVG
trains, or free-running rollouts; the SVG-LP model adds its KL term (``beta``) and draws the
latent noise here, outside the model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lawfinder.tailoring import predict_with, tailor
from lawfinder.video.models import FramePredictor, NoetherEmbedding, VideoConfig, VideoNoetherLoss
from lawfinder.video.stochastic import StochasticPredictor

__all__ = ["TrainConfig", "build", "evaluate", "lpips_status", "meta_step", "predict", "train"]


@dataclass
class TrainConfig:
    steps: int = 200
    batch: int = 8
    lr: float = 1e-3  # outer Adam (the paper: 1e-4, with far more steps)
    inner_lr: float = 1e-2
    inner_steps: int = 1
    adapt: str = "cn"  # "cn" (CNGRAD) or "lstm" (activations)
    form: str = "consecutive"
    clip_embedding: float = 1000.0
    freeze_predictor: bool = False
    teacher_forcing: bool = True  # baseline steps: feed true previous frames (SVG's training)
    beta: float = 1e-4  # KL weight of the stochastic (SVG-LP) model
    seed: int = 0


def _to(batch, device) -> tuple[Tensor, ...]:
    return tuple(torch.as_tensor(np.ascontiguousarray(b), dtype=torch.float32, device=device)
                 for b in batch)  # fmt: skip


def predict(model: FramePredictor, history: Tensor, actions: Tensor, *,
            embedding: NoetherEmbedding | None = None, steps: int = 1, lr: float = 1e-2,
            adapt: str = "cn", form: str = "consecutive", optimizer: str = "sgd",
            create_graph: bool = False) -> Tensor:  # fmt: skip
    """Predict ``(B, T, C, H, W)``; with an embedding, tailor each example first (shared core)."""
    if embedding is None or steps == 0:
        return model(history, actions)
    loss = VideoNoetherLoss(embedding, form)
    adapted = tailor(model, loss, (history, actions), params=model.adapt_names(adapt), steps=steps,
                     lr=lr, optimizer=optimizer, create_graph=create_graph)  # fmt: skip
    return predict_with(model, adapted, (history, actions))


def meta_step(model, embedding, opt, batch, cfg: TrainConfig) -> float:
    """One outer step; a baseline step when ``embedding`` is None."""
    history, actions, future = batch
    if embedding is None:
        noise = None
        if model.z_dim:
            steps = history.shape[1] + future.shape[1] - 1
            noise = torch.randn(len(history), steps, model.z_dim, device=history.device)
        loss, _ = model.training_loss(history, actions, future, noise,
                                      teacher_forcing=cfg.teacher_forcing, beta=cfg.beta)  # fmt: skip
    else:
        pred = predict(model, history, actions, embedding=embedding, steps=cfg.inner_steps,
                       lr=cfg.inner_lr, adapt=cfg.adapt, form=cfg.form, create_graph=True)  # fmt: skip
        loss = ((pred - future) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if embedding is not None:
        nn.utils.clip_grad_norm_(embedding.parameters(), cfg.clip_embedding)
    opt.step()
    return float(loss.detach())


def train(model: FramePredictor, sampler, cfg: TrainConfig, *, embedding=None, device="cpu",
          log=None) -> dict:  # fmt: skip
    """Train for ``cfg.steps`` outer steps on batches from ``sampler(rng, batch)``."""
    rng = np.random.default_rng(cfg.seed)
    params = [] if cfg.freeze_predictor else model.outer_parameters()
    if embedding is not None:
        params += list(embedding.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    losses, t0 = [], time.perf_counter()
    for step in range(cfg.steps):
        losses.append(meta_step(model, embedding, opt, _to(sampler(rng, cfg.batch), device), cfg))
        if log and (step + 1) % max(1, cfg.steps // 5) == 0:
            log(f"  step {step + 1}/{cfg.steps}: loss {np.mean(losses[-20:]):.5f}")
    return {"losses": losses, "seconds": time.perf_counter() - t0, "config": asdict(cfg)}


def lpips_status() -> str:
    """LPIPS needs pretrained network weights; they are never downloaded at run time."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return "skipped: the lpips package and its network weights are not installed (no download)"
    return "skipped: LPIPS weights are not bundled and are never downloaded at run time"


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    win = min(7, a.shape[-1] - (1 - a.shape[-1] % 2))
    return float(structural_similarity(a.transpose(1, 2, 0), b.transpose(1, 2, 0), data_range=1.0,
                                       channel_axis=-1, win_size=win))  # fmt: skip


def evaluate(model, history, actions, future, *, embedding=None, steps=1, lr=1e-2, adapt="cn",
             form="consecutive", optimizer="sgd", batch=16, device="cpu") -> dict:  # fmt: skip
    """Per-horizon MSE, PSNR and SSIM on test windows (numpy arrays); tailored with ``steps``."""
    preds = []
    for i in range(0, len(history), batch):
        h, a = _to((history[i : i + batch], actions[i : i + batch]), device)
        with torch.enable_grad() if embedding is not None and steps else torch.no_grad():
            p = predict(model, h, a, embedding=embedding, steps=steps, lr=lr, adapt=adapt,
                        form=form, optimizer=optimizer)  # fmt: skip
        preds.append(p.detach().cpu().numpy())
    pred = np.clip(np.concatenate(preds), 0, 1)
    err = ((pred - future) ** 2).reshape(*pred.shape[:2], -1).mean(-1)  # (N, T)
    psnr = 10 * np.log10(1.0 / np.maximum(err, 1e-10))
    ssim = np.array([[_ssim(pred[n, t], future[n, t]) for t in range(pred.shape[1])]
                     for n in range(len(pred))])  # fmt: skip
    return {
        "mse": err.mean(0).tolist(),
        "psnr": psnr.mean(0).tolist(),
        "ssim": ssim.mean(0).tolist(),
        "mse_mean": float(err.mean()),
        "psnr_mean": float(psnr.mean()),
        "ssim_mean": float(ssim.mean()),
        "n_sequences": int(len(pred)),
        "inner_steps": int(steps) if embedding is not None else 0,
        "lpips": lpips_status(),
    }


def build(cfg: VideoConfig, seed: int, device="cpu", z_dim: int = 0):
    """The predictor (SVG-LP with a ``z_dim`` latent when ``z_dim > 0``) and g_phi, seeded."""
    torch.manual_seed(seed)
    model = StochasticPredictor(cfg, z_dim) if z_dim > 0 else FramePredictor(cfg)
    return model.to(device), NoetherEmbedding(cfg).to(device)
