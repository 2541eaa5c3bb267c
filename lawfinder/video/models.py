"""Video models: a deterministic SVG-style predictor with CN layers, and the Noether embedding g_phi.

Every module works on a batch of one under ``torch.func.vmap`` (layer norm instead of batch
norm, a hand-written LSTM cell made of ``nn.Linear``), so the shared tailoring core
(:func:`lawfinder.tailoring.tailor`) can adapt the conditional-normalisation (CN) layers per
example. CN parameters all live in modules named ``...cn``; :meth:`FramePredictor.cn_names`
lists them for ``tailor(params=...)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lawfinder.errors import UserError
from lawfinder.tailoring import NoetherLoss

__all__ = [
    "CONFIGS",
    "AdaptableMixin",
    "CondNorm",
    "FramePredictor",
    "NoetherEmbedding",
    "VideoConfig",
    "VideoNoetherLoss",
    "frame_pairs",
    "get_config",
]


@dataclass(frozen=True)
class VideoConfig:
    """Sizes of the predictor and of the embedding (defaults: small enough for a 2-core CPU)."""

    image_size: int = 32
    channels: int = 3
    width: int = 8  # channels of the first conv level (doubled per level, capped at 8x)
    g_dim: int = 32  # encoder output / LSTM output size
    rnn_size: int = 64
    rnn_layers: int = 1
    action_dim: int = 1
    n_past: int = 4
    n_future: int = 26
    emb_c1: int = 32
    emb_c2: int = 64
    emb_dim: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


CONFIGS = {
    "tiny": VideoConfig(
        image_size=16, width=4, g_dim=16, rnn_size=16, emb_c1=4, emb_c2=8, emb_dim=8
    ),
    "cpu": VideoConfig(emb_c1=8, emb_c2=16, emb_dim=32),  # the benchmark's sizes
    "cpu64": VideoConfig(image_size=64, emb_c1=8, emb_c2=16, emb_dim=32),
    # The paper's sizes (SVG-LP at 128x128: VGG widths 64..512, g_dim 128, 2-layer LSTM of 256).
    "paper": VideoConfig(image_size=128, width=64, g_dim=128, rnn_size=256, rnn_layers=2),
}


def get_config(name: str, **overrides) -> VideoConfig:
    if name not in CONFIGS:
        raise UserError(f"unknown video config {name!r}; choose one of {list(CONFIGS)}")
    return replace(CONFIGS[name], **{k: v for k, v in overrides.items() if v is not None})


def _norm(x: Tensor) -> Tensor:
    """Layer norm over all but the batch dimension, without affine parameters (CN follows)."""
    return F.layer_norm(x, x.shape[1:])


class CondNorm(nn.Module):
    """Conditional normalisation ``x * gamma + beta`` per channel; identity at initialisation.

    The outer optimiser never updates it, so every tailoring call starts from the identity and
    the inner step makes it per example.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.gamma.view(shape) + self.beta.view(shape)


class _Block(nn.Module):
    """conv -> layer norm -> CN -> leaky ReLU."""

    def __init__(self, conv: nn.Module, channels: int):
        super().__init__()
        self.conv = conv
        self.cn = CondNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.cn(_norm(self.conv(x))), 0.2)


def _widths(cfg: VideoConfig) -> list[int]:
    levels = int(math.log2(cfg.image_size // 4))
    if 2**levels * 4 != cfg.image_size or levels < 1:
        raise UserError(f"image_size must be a power of two >= 8, got {cfg.image_size}")
    return [cfg.width * min(2**i, 8) for i in range(levels)]


class Encoder(nn.Module):
    """Frame -> (vector of g_dim, skip features per level); each level halves the resolution."""

    def __init__(self, cfg: VideoConfig):
        super().__init__()
        widths = _widths(cfg)
        self.stem = _Block(nn.Conv2d(cfg.channels, widths[0], 3, 1, 1), widths[0])
        downs, prev = [], widths[0]
        for w in widths:
            downs.append(_Block(nn.Conv2d(prev, w, 4, 2, 1), w))
            prev = w
        self.downs = nn.ModuleList(downs)
        self.out = nn.Linear(prev * 16, cfg.g_dim)
        self.cn = CondNorm(cfg.g_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)
        skips = [h]
        for block in self.downs:
            h = block(h)
            skips.append(h)
        return torch.tanh(self.cn(_norm(self.out(h.flatten(1))))), skips

    def sequence(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Frames ``(B, N, C, H, W)`` -> encodings ``(B, N, g_dim)`` and skips ``(B, N, ...)``."""
        B, N = frames.shape[:2]
        enc, skips = self(frames.flatten(0, 1))
        return enc.view(B, N, -1), [s.view(B, N, *s.shape[1:]) for s in skips]


class Decoder(nn.Module):
    """(vector, skips of the last conditioning frame) -> frame in [0, 1]."""

    def __init__(self, cfg: VideoConfig):
        super().__init__()
        widths = _widths(cfg)
        self.top = widths[-1]
        self.inp = nn.Linear(cfg.g_dim, widths[-1] * 16)
        self.cn = CondNorm(widths[-1])
        ups, prev = [], widths[-1]
        for w_skip, w_out in zip(reversed(widths), list(reversed(widths))[1:] + [widths[0]]):
            ups.append(_Block(nn.ConvTranspose2d(prev + w_skip, w_out, 4, 2, 1), w_out))
            prev = w_out
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(prev + widths[0], cfg.channels, 3, 1, 1)

    def forward(self, z: Tensor, skips: list[Tensor]) -> Tensor:
        h = self.inp(z).view(z.shape[0], self.top, 4, 4)
        h = F.leaky_relu(self.cn(_norm(h)), 0.2)
        for block, skip in zip(self.ups, reversed(skips[1:])):
            h = block(torch.cat([h, skip], 1))
        return torch.sigmoid(self.head(torch.cat([h, skips[0]], 1)))


class ActivationOffset(nn.Module):
    """A zero-initialised offset added to the LSTM output activations at each predicted step.

    Adapting it per example with ``tailor(params="rnn.act")`` *is* adapting the LSTM activations
    (what the paper found best on the controlled pendulum) through the shared parameter API.
    """

    def __init__(self, steps: int, hidden: int):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(steps, hidden))

    def forward(self, h: Tensor, t: int) -> Tensor:
        return h + self.delta[t]


class LSTM(nn.Module):
    """A stack of LSTM cells built from ``nn.Linear`` (vmap-friendly), with linear in/out maps."""

    def __init__(self, n_in: int, n_out: int, hidden: int, layers: int, steps: int):
        super().__init__()
        self.embed = nn.Linear(n_in, hidden)
        self.cells = nn.ModuleList(nn.Linear(2 * hidden, 4 * hidden) for _ in range(layers))
        self.act = ActivationOffset(steps, hidden)
        self.out = nn.Linear(hidden, n_out)
        self.hidden = hidden

    def init_state(self, batch: int, like: Tensor) -> list[tuple[Tensor, Tensor]]:
        zero = like.new_zeros(batch, self.hidden)
        return [(zero, zero) for _ in self.cells]

    def forward(self, x: Tensor, state, t: int | None = None):
        h = self.embed(x)
        new = []
        for cell, (hp, cp) in zip(self.cells, state):
            i, f, g, o = cell(torch.cat([h, hp], -1)).chunk(4, -1)
            c = torch.sigmoid(f) * cp + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new.append((h, c))
        if t is not None:
            h = self.act(h, t)
            new[-1] = (h, new[-1][1])
        return torch.tanh(self.out(h)), new


class AdaptableMixin:
    """What the tailoring core may adapt in a video predictor, and what the outer loop trains."""

    def cn_names(self) -> list[str]:
        """Module prefixes of every CN layer, for ``tailor(params=...)``."""
        return [n for n, m in self.named_modules() if isinstance(m, CondNorm)]

    def adapt_names(self, mode: str) -> list[str]:
        """What the inner step adapts: ``"cn"`` (CNGRAD) or ``"lstm"`` (the LSTM activations)."""
        if mode == "cn":
            return self.cn_names()
        if mode == "lstm":
            return ["rnn.act"]
        raise UserError(f"unknown adaptation {mode!r}; choose 'cn' or 'lstm'")

    def outer_parameters(self) -> list[nn.Parameter]:
        """Everything the outer optimiser trains (all but the CN layers and activation offsets)."""
        inner = (CondNorm, ActivationOffset)
        skip = {id(p) for m in self.modules() if isinstance(m, inner) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in skip]


class FramePredictor(AdaptableMixin, nn.Module):
    """Deterministic SVG-style predictor: ``(history (B,P,C,H,W), actions (B,T,A)) -> (B,T,C,H,W)``.

    The history frames are encoded and fed to the LSTM (with zero actions); then each step feeds
    the encoding of the previous frame (the last history frame, then the model's own prediction)
    together with its action, and decodes the LSTM output with the skip features of the last
    conditioning frame.
    """

    z_dim = 0  # no stochastic latent (see lawfinder.video.stochastic)

    def __init__(self, cfg: VideoConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.rnn = LSTM(cfg.g_dim + cfg.action_dim, cfg.g_dim, cfg.rnn_size, cfg.rnn_layers,
                        cfg.n_future)  # fmt: skip

    def forward(self, history: Tensor, actions: Tensor, future: Tensor | None = None) -> Tensor:
        """Free-running prediction; with ``future``, teacher forcing (SVG's training mode).

        Teacher forcing feeds the encoding of the true previous frame instead of the model's own
        prediction, so every frame is encoded and decoded in one batch.
        """
        B, P = history.shape[:2]
        T = actions.shape[1]
        frames = history if future is None else torch.cat([history, future[:, :-1]], 1)
        enc, skips = self.encoder.sequence(frames)
        last_skips = [s[:, P - 1] for s in skips]
        state = self.rnn.init_state(B, history)
        no_action = actions.new_zeros(B, actions.shape[-1])
        for t in range(P - 1):
            _, state = self.rnn(torch.cat([enc[:, t], no_action], -1), state)
        if future is not None:
            zs = []
            for t in range(T):
                z, state = self.rnn(torch.cat([enc[:, P - 1 + t], actions[:, t]], -1), state, t)
                zs.append(z)
            tiled = [s.repeat_interleave(T, 0) for s in last_skips]
            decoded = self.decoder(torch.stack(zs, 1).flatten(0, 1), tiled)
            return decoded.view(B, T, *history.shape[2:])
        e, preds = enc[:, -1], []
        for t in range(T):
            z, state = self.rnn(torch.cat([e, actions[:, t]], -1), state, t)
            frame = self.decoder(z, last_skips)
            preds.append(frame)
            if t + 1 < T:
                e = self.encoder(frame)[0]
        return torch.stack(preds, 1)

    def training_loss(self, history: Tensor, actions: Tensor, future: Tensor, noise=None, *,
                      teacher_forcing: bool = True, beta: float = 0.0) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Pixel MSE of a (teacher-forced) prediction, and the prediction (``noise``, ``beta``:
        unused, the signature of :meth:`StochasticPredictor.training_loss`)."""
        pred = self(history, actions, future if teacher_forcing else None)
        return ((pred - future) ** 2).mean(), pred


class NoetherEmbedding(nn.Module):
    """g_phi: two consecutive frames stacked on channels -> an embedding of ``emb_dim``.

    conv5x5(c1)-ReLU-maxpool2-conv5x5(c2)-ReLU-maxpool2-linear(emb_dim). It accepts flattened
    pairs ``(..., 2*C*H*W)`` (the state layout of :class:`lawfinder.tailoring.NoetherLoss`) or
    images ``(N, 2C, H, W)``.
    """

    def __init__(self, cfg: VideoConfig):
        super().__init__()
        self.shape = (2 * cfg.channels, cfg.image_size, cfg.image_size)
        self.conv1 = nn.Conv2d(2 * cfg.channels, cfg.emb_c1, 5, 1, 2)
        self.conv2 = nn.Conv2d(cfg.emb_c1, cfg.emb_c2, 5, 1, 2)
        self.fc = nn.Linear(cfg.emb_c2 * (cfg.image_size // 4) ** 2, cfg.emb_dim)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.shape[-1] == math.prod(self.shape) and x.shape[-3:] != self.shape
        lead = x.shape[:-1] if flat else x.shape[:-3]
        h = x.reshape(-1, *self.shape)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc(h.flatten(1)).view(*lead, -1)


def frame_pairs(history: Tensor, predicted: Tensor) -> Tensor:
    """States for the sequence loss: consecutive frame pairs, flattened, ``(B, T+1, 2*C*H*W)``.

    Index 0 is the ground-truth pair of the last two history frames; then (last history frame,
    first prediction), (prediction 1, prediction 2), ...
    """
    frames = torch.cat([history[:, -2:], predicted], 1)
    return torch.cat([frames[:, :-1], frames[:, 1:]], 2).flatten(2)


@dataclass(frozen=True)
class VideoNoetherLoss:
    """The shared :class:`NoetherLoss` applied to frame pairs of a video prediction.

    ``g`` maps flattened pairs ``(..., 2*C*H*W)`` to ``(..., k)``: the neural embedding
    :class:`NoetherEmbedding`, or any formula of the pixels. ``form`` is eq. 2a (``"first"``) or
    eq. 2b (``"consecutive"``, the paper's choice for video); the loss is summed over time and
    embedding dimensions, as in the paper's eq. 2.
    """

    g: object
    form: str = "consecutive"

    def __call__(self, inputs, outputs: Tensor) -> Tensor:
        history = inputs[0] if isinstance(inputs, tuple) else inputs
        states = frame_pairs(history, outputs)
        return NoetherLoss(self.g, self.form)(states[:, 0], states[:, 1:])
