"""Evaluate a fitted formula tree on arrays of any numpy-like module (numpy, torch).

The module is passed in, so `dsl` imports neither torch nor anything that does;
each operator's ``array`` name in `dsl.operators` is looked up on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from dsl.nodes import Input, Node, Param, Unary, walk
from dsl.operators import OPERATORS


def array_function(node: Node, variables: Sequence[str], xp):
    """``g(x) -> (..., 1)`` for states ``x[..., k]`` = ``variables[k]``, computed with module `xp`."""
    index = {name: k for k, name in enumerate(variables)}
    missing = {n.name for n in walk(node) if isinstance(n, Input)} - set(index)
    if missing:
        raise ValueError(f"formula uses unknown variables {sorted(missing)}")
    if any(isinstance(n, Param) and n.value is None for n in walk(node)):
        raise ValueError("formula has free parameters; fit or give values first")
    fns = {name: getattr(xp, op.array) for name, op in OPERATORS.items()}

    def run(n: Node, x):
        if isinstance(n, Input):
            return x[..., index[n.name]]
        if isinstance(n, Param):
            return xp.full_like(x[..., 0], n.value)
        if isinstance(n, Unary):
            return fns[n.op](run(n.arg, x))
        return fns[n.op](run(n.left, x), run(n.right, x))

    def g(x):
        return run(node, x)[..., None]

    return g
