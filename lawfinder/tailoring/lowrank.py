"""The ``"lowrank"`` tailoring engine: exact per-example SGD on ``nn.Linear`` layers.

The per-example gradient of a linear layer applied to one feature vector is the outer product
``delta a^T``, so after k steps the adapted weight is ``W - sum_j lr delta_j a_j^T`` and the adapted
layer computes ``W a' + b - sum_j lr delta_j (a_j . a' + 1)``. This is exact, costs about three
forward passes, and stores only activations: it is what makes screening hundreds of candidates and
meta-tailoring on a CPU affordable. It requires the model to map extra leading batch dimensions
through (true of MLPs). :func:`lawfinder.tailoring.tailored_predict` chooses between this engine
and the general ``"vmap"`` one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lawfinder.tailoring.batch import as_args, map_inputs

__all__ = ["NotLowRank", "lowrank_predict"]


class NotLowRank(Exception):
    """The model or the adapted parameters are outside what this engine handles."""


def _linear_layers(model: nn.Module, names: list[str]) -> dict[str, tuple[nn.Linear, bool, bool]]:
    layers, covered = {}, set()
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Linear):
            w, b = f"{prefix}.weight", f"{prefix}.bias"
            if w in names or b in names:
                layers[prefix] = (module, w in names, b in names)
                covered |= {w, b}
    if not set(names) <= covered:
        raise NotLowRank(f"parameters outside nn.Linear layers: {sorted(set(names) - covered)}")
    return layers


def lowrank_predict(run, model, loss, inputs, names, steps, lr, create_graph, bank) -> Tensor:
    """Predictions after ``steps`` SGD steps of rate ``lr`` on ``loss`` for every example.

    ``run`` calls the model (possibly with other parameters than its own); only the
    ``nn.Linear`` parameters in ``names`` adapt. ``bank`` is the number of losses in a bank,
    or None. Raises :class:`NotLowRank` when the model or ``names`` do not fit this engine.
    """
    layers = _linear_layers(model, names)
    factors: dict[str, list] = {name: [] for name in layers}
    rates = lr if isinstance(lr, Tensor) and lr.ndim == 1 else None
    x = inputs if bank is None else map_inputs(inputs, lambda t: t.expand(bank, *t.shape))
    lead = as_args(x)[0].shape[: 2 if bank else 1]
    record: dict[str, tuple[Tensor, Tensor]] | None = None
    seen: set[str] = set()

    def hook_for(name, adapt_w, adapt_b):
        def hook(module, args, out):
            a = args[0]
            if a.shape[:-1] != lead:
                raise NotLowRank(f"layer {name!r} sees inputs {tuple(a.shape)}, not one vector")
            if name in seen:
                raise NotLowRank(f"layer {name!r} is called more than once per forward pass")
            seen.add(name)
            for scale, a_j, d_j in factors[name]:
                coef = (a_j * a).sum(-1, keepdim=True) if adapt_w else torch.zeros_like(d_j[..., :1])
                out = torch.addcmul(out, d_j, (coef + 1.0 if adapt_b else coef) * scale, value=-1.0)
            if record is not None:
                probe = torch.zeros_like(out, requires_grad=True)
                record[name] = (a, probe)
                out = out + probe
            return out

        return hook

    handles = [m.register_forward_hook(hook_for(n, w, b)) for n, (m, w, b) in layers.items()]
    try:
        for step in range(steps):
            record = {}
            seen.clear()
            with torch.enable_grad():
                vals = loss(x, run(*as_args(x)))
                if bank is not None:
                    eye = torch.eye(bank, dtype=vals.dtype, device=vals.device)
                    vals = (vals * eye.reshape(bank, 1, bank)).sum(-1)
                probes = [record[n][1] for n in layers]
                deltas = torch.autograd.grad(vals.sum(), probes, create_graph=create_graph)
            for name, delta in zip(layers, deltas):
                a = record[name][0] if create_graph else record[name][0].detach()
                scale = lr
                if rates is not None:
                    scale = rates.reshape(-1, *([1] * (a.ndim - (1 if step else 0))))
                factors[name].append((scale, a, delta))
            record = None
            if step == 0 and rates is not None:
                x = map_inputs(x, lambda t: t.expand(len(rates), *t.shape))
                lead = (len(rates), *lead)
        if steps == 0 and rates is not None:
            x = map_inputs(x, lambda t: t.expand(len(rates), *t.shape))
            lead = (len(rates), *lead)
        seen.clear()
        return run(*as_args(x))
    finally:
        for h in handles:
            h.remove()
