"""Model inputs as one tensor or a tuple of tensors, with the batch in the leading dimension."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

Inputs = Tensor | tuple[Tensor, ...]


def map_inputs(inputs: Inputs, fn: Callable[[Tensor], Tensor]) -> Inputs:
    """Apply ``fn`` to the tensor, or to each tensor of the tuple."""
    return tuple(fn(t) for t in inputs) if isinstance(inputs, tuple) else fn(inputs)


def as_args(inputs: Inputs) -> tuple[Tensor, ...]:
    """The positional arguments of the model call."""
    return inputs if isinstance(inputs, tuple) else (inputs,)
