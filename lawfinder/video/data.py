"""Video data: the controlled pixel pendulum (generated locally) and the Physics 101 ramp loader.

Both produce float32 arrays of frames in [0, 1], laid out ``(N, T, C, H, W)``.

Controlled pixel pendulum
    Episodes of gymnasium's ``Pendulum-v1`` (the swing-up task) driven by a scripted policy
    (a seeded random sinusoid plus noise, clipped to the torque limit), rendered with its own
    ``rgb_array`` renderer (pygame, headless through ``SDL_VIDEODRIVER=dummy``), cropped to the
    rod's reach and resized with anti-aliasing. Training: 5 episodes of 200 frames, sampled as
    windows of 4 history frames + 26 actions -> 26 frames. Test: held-out episodes, one window
    each. Cached as ``.npz``.

Physics 101 ramp
    ``<root>/scenarios/ramp/<object>/20_<setting>/<trial>/Kinect_RGB_1.mp4`` (20-degree only):
    subsampled to 15 fps, centre square crop at full height, resized, the middle 22 frames,
    a horizontal flip drawn per sequence, and a seeded 80/20 train/test split of sequences.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lawfinder.errors import UserError

__all__ = [
    "PendulumData",
    "load_phys101",
    "make_pendulum",
    "pendulum_episode",
    "resize_frames",
]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, size, size)`` float32 in [0, 1] (anti-aliased)."""
    from skimage.transform import resize

    frames = np.asarray(frames)
    out = resize(frames, (len(frames), size, size, frames.shape[-1]), anti_aliasing=True,
                 preserve_range=True)  # fmt: skip
    out = out / 255.0 if frames.dtype == np.uint8 else out
    return np.clip(out, 0, 1).astype(np.float32).transpose(0, 3, 1, 2)


def _policy(rng: np.random.Generator, length: int) -> np.ndarray:
    """The scripted policy: a random sinusoid in [-2, 2] plus noise, one torque per step."""
    amp, freq, phase = rng.uniform(0.8, 2.0), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * np.pi)
    t = np.arange(length)
    u = amp * np.sin(freq * t + phase) + 0.3 * rng.standard_normal(length)
    return np.clip(u, -2.0, 2.0).astype(np.float32)


# The rod (length 1 plus half its width 0.1) reaches 1.1 of the renderer's half-width 2.2.
PENDULUM_CROP = 0.55


def pendulum_episode(seed: int, length: int, size: int,
                     crop: float = PENDULUM_CROP) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One episode: frames ``(length, 3, size, size)`` and actions ``(length, 1)``.

    ``actions[i]`` is the torque applied after ``frames[i]`` (it produced ``frames[i+1]``).
    Frames are cropped to the central ``crop`` fraction (default: the rod's reach plus a small
    margin, so the pendulum fills the frame instead of a fifth of it) before resizing.
    """
    if not 0 < crop <= 1:
        raise UserError(f"crop must be in (0, 1], got {crop}")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        import gymnasium as gym
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise UserError(
            "the pixel pendulum needs gymnasium with rendering: pip install 'gymnasium[classic-control]'"
        ) from err
    env = gym.make("Pendulum-v1", render_mode="rgb_array")
    try:
        env.reset(seed=seed)
        actions = _policy(np.random.default_rng(seed), length)
        raw = []
        for i in range(length):
            raw.append(env.render())
            env.step(actions[i : i + 1])
    finally:
        env.close()
    raw = np.stack(raw)
    side = int(round(crop * raw.shape[1]))
    lo = (raw.shape[1] - side) // 2
    raw = raw[:, lo : lo + side, lo : lo + side]
    return resize_frames(raw, size), actions[:, None] / 2.0  # torque scaled to [-1, 1]


@dataclass
class PendulumData:
    """Training episodes and held-out test windows of the controlled pixel pendulum."""

    train_frames: np.ndarray  # (E, L, 3, S, S)
    train_actions: np.ndarray  # (E, L, 1)
    test_history: np.ndarray  # (N, n_past, 3, S, S)
    test_actions: np.ndarray  # (N, n_future, 1)
    test_future: np.ndarray  # (N, n_future, 3, S, S)
    n_past: int
    n_future: int

    def sample(self, rng: np.random.Generator, batch: int):
        """A batch of random training windows: history, actions, future."""
        E, L = self.train_frames.shape[:2]
        span = self.n_past + self.n_future
        ep = rng.integers(0, E, batch)
        start = rng.integers(0, L - span + 1, batch)
        idx = start[:, None] + np.arange(span)
        frames = self.train_frames[ep[:, None], idx]
        acts = self.train_actions[ep[:, None], idx[:, self.n_past - 1 : span - 1]]
        return frames[:, : self.n_past], acts, frames[:, self.n_past :]


def make_pendulum(cache: Path, *, size: int = 32, train_episodes: int = 5, episode_length: int = 200,
                  test_episodes: int = 32, n_past: int = 4, n_future: int = 26, seed: int = 0,
                  crop: float = PENDULUM_CROP, log=None) -> PendulumData:  # fmt: skip
    """Generate (or load from ``cache``) the controlled pixel pendulum data set.

    Training episodes use seeds ``seed*10000 + i``; test episodes seeds ``seed*10000 + 5000 + j``
    (disjoint), each rendered for a random burn-in then one window of ``n_past + n_future``.
    """
    span = n_past + n_future
    if episode_length < span:
        raise UserError(f"episode_length must be >= {span}, got {episode_length}")
    cache = Path(cache)
    name = f"pendulum_s{size}_e{train_episodes}x{episode_length}_t{test_episodes}_{n_past}+{n_future}_crop{crop:g}_seed{seed}.npz"  # fmt: skip
    path = cache / name
    if path.exists():
        z = np.load(path)
        return PendulumData(*(z[k] for k in ("train_frames", "train_actions", "test_history",
                            "test_actions", "test_future")), n_past, n_future)  # fmt: skip
    frames, actions = [], []
    for i in range(train_episodes):
        f, a = pendulum_episode(seed * 10000 + i, episode_length, size, crop)
        frames.append(f)
        actions.append(a)
        if log:
            log(f"rendered training episode {i + 1}/{train_episodes}")
    hist, tact, fut = [], [], []
    rng = np.random.default_rng(seed + 12345)
    for j in range(test_episodes):
        burn = int(rng.integers(0, 40))
        f, a = pendulum_episode(seed * 10000 + 5000 + j, burn + span, size, crop)
        f, a = f[burn:], a[burn:]
        hist.append(f[:n_past])
        tact.append(a[n_past - 1 : span - 1])
        fut.append(f[n_past:])
    data = PendulumData(np.stack(frames), np.stack(actions), np.stack(hist), np.stack(tact),
                        np.stack(fut), n_past, n_future)  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / (name + ".tmp.npz")
    np.savez_compressed(tmp, train_frames=data.train_frames, train_actions=data.train_actions,
                        test_history=data.test_history, test_actions=data.test_actions,
                        test_future=data.test_future)  # fmt: skip
    os.replace(tmp, path)
    return data


# ---------------------------------------------------------------------------------------------
# Physics 101


def _read_video(path: Path) -> tuple[np.ndarray, float]:
    try:
        import imageio.v2 as imageio
    except ImportError as err:  # pragma: no cover
        raise UserError(
            "reading Physics 101 videos needs: pip install imageio imageio-ffmpeg"
        ) from err
    try:
        reader = imageio.get_reader(str(path), "ffmpeg")
        fps = float(reader.get_meta_data().get("fps", 30.0))
        frames = np.stack([f for f in reader])
        reader.close()
    except Exception as err:  # noqa: BLE001 - any decoder failure is a problem with the file
        raise UserError(f"cannot read video {path}: {err}") from err
    return frames, fps


def _phys101_sequence(
    path: Path, size: int, length: int, fps: float, flip: bool
) -> np.ndarray | None:
    frames, src_fps = _read_video(path)
    step = max(1, int(round(src_fps / fps)))
    frames = frames[::step]
    if len(frames) < length:
        return None
    mid = (len(frames) - length) // 2
    frames = frames[mid : mid + length]
    H, W = frames.shape[1:3]
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    frames = frames[:, top : top + side, left : left + side]
    out = resize_frames(frames, size)
    return out[..., ::-1].copy() if flip else out


def load_phys101(root: Path, *, size: int = 32, n_past: int = 2, n_future: int = 20,
                 fps: float = 15.0, train_fraction: float = 0.8, seed: int = 0,
                 cache: Path | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Load the Physics 101 ramp scenario (20 degrees) as ``{"train": (N,T,3,S,S), "test": ...}``.

    ``root`` is the folder that holds ``scenarios/``. Videos shorter than ``n_past + n_future``
    frames after subsampling are skipped. The split is over sequences (seeded permutation).
    """
    root = Path(root)
    pattern = "scenarios/ramp/*/20_*/*/Kinect_RGB_1.mp4"
    paths = sorted(root.glob(pattern))
    if not paths:
        raise UserError(f"no Physics 101 ramp videos found under {root}/{pattern}")
    length = n_past + n_future
    key = f"phys101_s{size}_{n_past}+{n_future}_fps{fps:g}_n{len(paths)}_seed{seed}.npz"
    if cache is not None and (Path(cache) / key).exists():
        z = np.load(Path(cache) / key)
        return {"train": z["train"], "test": z["test"]}
    rng = np.random.default_rng(seed)
    flips = rng.random(len(paths)) < 0.5
    seqs = [_phys101_sequence(p, size, length, fps, bool(f)) for p, f in zip(paths, flips)]
    seqs = [s for s in seqs if s is not None]
    if len(seqs) < 2:
        raise UserError(f"need at least 2 ramp videos with >= {length} frames at {fps:g} fps")
    order = rng.permutation(len(seqs))
    n_train = min(len(seqs) - 1, max(1, int(round(train_fraction * len(seqs)))))
    data = np.stack(seqs)
    out = {"train": data[order[:n_train]], "test": data[order[n_train:]]}
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(Path(cache) / key, **out)
    return out
