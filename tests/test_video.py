"""Video Noether models on the shared tailoring core (tiny sizes, a few seconds in all)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lawfinder.errors import UserError
from lawfinder.tailoring import predict_with, tailor
from lawfinder.video.models import (
    FramePredictor,
    NoetherEmbedding,
    VideoNoetherLoss,
    frame_pairs,
    get_config,
)
from lawfinder.video.train import TrainConfig, build, evaluate, meta_step

torch.set_num_threads(1)
CFG = get_config("tiny", n_past=3, n_future=4)  # 16x16 frames


def _batch(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(B, CFG.n_past, 3, 16, 16, generator=g)
    a = torch.randn(B, CFG.n_future, 1, generator=g)
    y = torch.rand(B, CFG.n_future, 3, 16, 16, generator=g)
    return h, a, y


@pytest.fixture()
def models():
    torch.manual_seed(0)
    return FramePredictor(CFG), NoetherEmbedding(CFG)


def test_shapes(models):
    model, emb = models
    h, a, _ = _batch(3)
    out = model(h, a)
    assert out.shape == (3, CFG.n_future, 3, 16, 16)
    assert 0 <= out.min() and out.max() <= 1
    pairs = frame_pairs(h, out)
    assert pairs.shape == (3, CFG.n_future + 1, 2 * 3 * 16 * 16)
    assert emb(pairs).shape == (3, CFG.n_future + 1, CFG.emb_dim)
    assert emb(torch.rand(5, 6, 16, 16)).shape == (5, CFG.emb_dim)
    assert get_config("paper").image_size == 128
    with pytest.raises(UserError):
        get_config("nope")


def test_cn_layers_start_as_identity_and_are_selectable(models):
    model, _ = models
    names = model.cn_names()
    assert len(names) >= 6 and all(n.endswith("cn") for n in names)
    for n in names:
        cn = model.get_submodule(n)
        assert torch.equal(cn.gamma, torch.ones_like(cn.gamma))
        assert torch.equal(cn.beta, torch.zeros_like(cn.beta))
    outer = {id(p) for p in model.outer_parameters()}
    cn_ids = {id(p) for n in names for p in model.get_submodule(n).parameters()}
    assert not outer & cn_ids and outer | cn_ids | {id(model.rnn.act.delta)} == {
        id(p) for p in model.parameters()
    }


def test_formula_and_embedding_losses_through_the_same_tailor_call(models):
    """The shared-core bar: a formula of the pixels and g_phi are interchangeable losses."""
    model, emb = models
    h, a, _ = _batch(2)

    def brightness(pairs):  # a hand-written "formula": total intensity of the second frame
        return pairs[..., pairs.shape[-1] // 2 :].mean(-1, keepdim=True)

    base = model(h, a)
    for g in (brightness, emb):
        loss = VideoNoetherLoss(g, "consecutive")
        adapted = tailor(model, loss, (h, a), params=model.cn_names(), lr=1.0, steps=1)
        assert set(adapted) == {f"{n}.{p}" for n in model.cn_names() for p in ("gamma", "beta")}
        assert adapted["decoder.cn.gamma"].shape == (2, *model.decoder.cn.gamma.shape)
        pred = predict_with(model, adapted, (h, a))
        assert pred.shape == base.shape
        assert not torch.allclose(pred, base)
        # the tailored loss went down for every example
        before = loss((h, a), base)
        after = torch.stack(
            [loss((h[i : i + 1], a[i : i + 1]), pred[i : i + 1])[0] for i in range(2)]
        )
        assert (after < before).all()
    # eq. 2a works through the same loss class, and lstm-activation adaptation through `params`
    adapted = tailor(
        model, VideoNoetherLoss(emb, "first"), (h, a), params=model.adapt_names("lstm")
    )
    assert set(adapted) == {"rnn.act.delta"}


def test_one_meta_tailoring_step_updates_embedding_not_cn(models):
    model, emb = models
    batch = _batch(2)
    cfg = TrainConfig(batch=2, inner_lr=1.0)
    opt = torch.optim.Adam(model.outer_parameters() + list(emb.parameters()), lr=1e-3)
    w0 = emb.fc.weight.detach().clone()
    enc0 = model.encoder.out.weight.detach().clone()
    loss = meta_step(model, emb, opt, batch, cfg)
    assert np.isfinite(loss)
    assert not torch.equal(emb.fc.weight, w0)
    assert not torch.equal(model.encoder.out.weight, enc0)
    assert torch.equal(model.decoder.cn.gamma, torch.ones_like(model.decoder.cn.gamma))
    res = evaluate(model, *(b.numpy() for b in batch), embedding=emb, steps=1, lr=1.0)
    assert len(res["mse"]) == CFG.n_future and len(res["ssim"]) == CFG.n_future
    assert res["mse_mean"] > 0 and "skipped" in res["lpips"]


def test_teacher_forcing_on_own_predictions_equals_free_running(models):
    model, _ = models
    h, a, y = _batch(2)
    with torch.no_grad():
        free = model(h, a)
        torch.testing.assert_close(model.training_loss(h, a, free)[1], free)
        forced = model.training_loss(h, a, y)[1]
    assert not torch.allclose(forced, free)


@pytest.mark.parametrize("z_dim", [0, 4])
def test_baseline_steps_train_both_predictors(z_dim):
    model, _ = build(CFG, 0, z_dim=z_dim)
    frame, a, _ = _batch(2)
    h = frame[:, :1].repeat(1, CFG.n_past, 1, 1, 1)  # a static video: learnable in a few steps
    y = frame[:, :1].repeat(1, CFG.n_future, 1, 1, 1)
    opt = torch.optim.Adam(model.outer_parameters(), lr=1e-2)
    cfg = TrainConfig(beta=1e-4)
    losses = [meta_step(model, None, opt, (h, a, y), cfg) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0]
    if z_dim:
        with pytest.raises(UserError, match="teacher forcing"):
            meta_step(model, None, opt, (h, a, y), TrainConfig(teacher_forcing=False))


def _write_mp4(path, frames, fps):
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=1,
                            ffmpeg_log_level="error") as w:  # fmt: skip
        for f in frames:
            w.append_data(f)


def _write_ramp_videos(root):
    rng = np.random.default_rng(0)
    for obj, angle, trial, n in [("box", 20, 1, 50), ("box", 20, 2, 60), ("ball", 20, 1, 48),
                                 ("ball", 20, 2, 50), ("ball", 10, 1, 50), ("cube", 20, 1, 20)]:  # fmt: skip
        frames = np.zeros((n, 48, 64, 3), np.uint8)
        for t in range(n):  # a bright square sliding right, on the left half at the start
            frames[t, 20:28, 2 + t : 10 + t] = 255
        frames[..., 2] = rng.integers(0, 20, frames.shape[:3])
        _write_mp4(root / f"scenarios/ramp/{obj}/{angle}_wood/{trial}/Kinect_RGB_1.mp4", frames, 30)


def test_phys101_loader_on_synthetic_videos(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from lawfinder.video.data import load_phys101

    _write_ramp_videos(tmp_path)
    data = load_phys101(tmp_path, size=16, seed=0)
    # 10-degree video ignored; the 20-frame video is too short at 15 fps (10 frames < 22)
    assert len(data["train"]) + len(data["test"]) == 4
    assert len(data["train"]) == 3 and len(data["test"]) == 1
    assert data["train"].shape[1:] == (22, 3, 16, 16)
    assert data["train"].dtype == np.float32 and data["train"].max() <= 1
    with pytest.raises(UserError):
        load_phys101(tmp_path / "empty")


def test_cli_video_rejects_missing_cuda_and_root(tmp_path):
    from click.testing import CliRunner

    from lawfinder.cli.video import video

    if not torch.cuda.is_available():
        r = CliRunner().invoke(video, ["train", "--device", "cuda", "--out", str(tmp_path)])
        assert isinstance(r.exception, UserError)
    r = CliRunner().invoke(video, ["train", "--dataset", "phys101", "--device", "cpu",
                                   "--out", str(tmp_path)])  # fmt: skip
    assert isinstance(r.exception, UserError) and "--data-root" in str(r.exception)


def test_pendulum_pixels_small(tmp_path):
    pytest.importorskip("gymnasium")
    pytest.importorskip("pygame")
    from lawfinder.video.data import make_pendulum

    data = make_pendulum(tmp_path, size=16, train_episodes=1, episode_length=8, test_episodes=1,
                         n_past=2, n_future=3)  # fmt: skip
    assert data.train_frames.shape == (1, 8, 3, 16, 16)
    assert data.test_history.shape == (1, 2, 3, 16, 16) and data.test_future.shape == (
        1,
        3,
        3,
        16,
        16,
    )
    assert data.test_actions.shape == (1, 3, 1) and np.abs(data.train_actions).max() <= 1
    assert data.train_frames.std() > 0.01  # the pendulum is visible
    h, a, y = data.sample(np.random.default_rng(0), 4)
    assert h.shape == (4, 2, 3, 16, 16) and a.shape == (4, 3, 1) and y.shape == (4, 3, 3, 16, 16)
    again = make_pendulum(
        tmp_path, size=16, train_episodes=1, episode_length=8, test_episodes=1, n_past=2, n_future=3
    )  # fmt: skip  (from the cache)
    np.testing.assert_array_equal(again.train_frames, data.train_frames)


def test_cli_trains_a_stochastic_noether_model_and_evaluates_it(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import json

    from click.testing import CliRunner

    from lawfinder.cli.video import video

    _write_ramp_videos(tmp_path / "data")
    common = ["--dataset", "phys101", "--data-root", str(tmp_path / "data"), "--config", "tiny",
              "--device", "cpu", "--cache", str(tmp_path / "cache")]  # fmt: skip
    r = CliRunner().invoke(video, ["train", *common, "--out", str(tmp_path / "run"), "--z-dim", "4",
                                   "--steps", "2", "--noether-steps", "1", "--batch", "2"])  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["options"]["z_dim"] == 4 and len(summary["results"]["noether"]["mse"]) == 20
    r = CliRunner().invoke(video, ["evaluate", *common, "--model", str(tmp_path / "run/model.pt"),
                                   "--out", str(tmp_path / "eval")])  # fmt: skip
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "eval/summary.json").read_text())["results"]["noether"]
    assert again["mse_mean"] == pytest.approx(summary["results"]["noether"]["mse_mean"], rel=1e-5)
