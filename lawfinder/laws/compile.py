"""Compile formulas to batched torch code.

A set of templates is evaluated as a graph of unique sub-formulas: every
parameter-free sub-formula of the enumeration DAG (``cos(q)``, ``p**2``) is a
*feature*, computed once on the data. What is left of a formula is its
*skeleton*: the tree above its features, e.g. ``F0 + C0*F1``. Formulas with
the same skeleton form a `Group` and are evaluated together, in one tensor op
per skeleton node, over all formulas x parameter settings x data points. The
Python loop runs over skeletons (hundreds), never over formulas (thousands).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import torch

from dsl import FormulaDag
from dsl.evaluate import array_function
from dsl.nodes import Binary, Node
from dsl.operators import OPERATORS, arity, names

if TYPE_CHECKING:
    import sympy


def _torch(name: str, in_place: bool = False):
    """The torch function of operator `name` (``torch.sqrt``; ``torch.sqrt_`` in place, unary only)."""
    return getattr(torch, OPERATORS[name].array + ("_" if in_place else ""))


@dataclass
class Group:
    """Formulas sharing one skeleton: nested tuples of ``("F", k)``, ``("C", j)`` and ops."""

    skeleton: tuple
    formulas: list[int]  # positions in the chunk
    feature_refs: list[list[int]]  # per formula, the feature ids its ``("F", k)`` leaves stand for
    n_params: int
    linear: tuple | None = None  # (F0 skeleton, [dF/dC_j skeletons]) when affine in the parameters


def skeleton_of(dag: FormulaDag, node: int, features: dict[int, int]) -> tuple[tuple, list[int], int]:
    """The skeleton of DAG node `node`, its feature ids (in leaf order) and its parameter count."""
    refs: list[int] = []
    n_params = 0

    def build(i: int) -> tuple:
        nonlocal n_params
        if not dag.has_param[i]:
            refs.append(features.setdefault(i, len(features)))
            return ("F", len(refs) - 1)
        op = dag.op[i]
        if op == "C":
            n_params += 1
            return ("C", n_params - 1)
        if arity(op) == 1:
            return (op, build(dag.left[i]))
        left = build(dag.left[i])
        return (op, left, build(dag.right[i]))

    return build(node), refs, n_params


def group_formulas(dag: FormulaDag, roots: Sequence[int]) -> tuple[list[Group], list[int]]:
    """Group `roots` by skeleton; returns the groups and the DAG ids of the features used."""
    features: dict[int, int] = {}
    by_skeleton: dict[tuple, Group] = {}
    for pos, root in enumerate(roots):
        skel, refs, n_params = skeleton_of(dag, root, features)
        group = by_skeleton.get(skel)
        if group is None:
            group = by_skeleton[skel] = Group(skel, [], [], n_params)
        group.formulas.append(pos)
        group.feature_refs.append(refs)
    groups = list(by_skeleton.values())
    for group in groups:
        group.linear = _linear_parts(group.skeleton, group.n_params)
    ordered = sorted(features, key=features.get)
    return groups, ordered


def by_skeleton(dag: FormulaDag, roots: Sequence[int]) -> list[int]:
    """`roots` reordered so that formulas sharing a skeleton (`skeleton_of`) are adjacent, skeletons in
    first-seen order.

    The fit's cost per pass is mostly per skeleton (one tensor op per node), so chunks cut from this
    order hold whole groups: at size 7 the pendulum's 3,214 search formulas have 810 skeletons, which
    chunks of 1,500 formulas in enumeration order split into 1,132 groups.
    """
    first: dict[tuple, int] = {}
    features: dict[int, int] = {}
    rank = [first.setdefault(skeleton_of(dag, root, features)[0], len(first)) for root in roots]
    return [roots[i] for i in sorted(range(len(roots)), key=rank.__getitem__)]


def evaluate_features(dag: FormulaDag, feature_ids: Sequence[int], x: torch.Tensor) -> torch.Tensor:
    """Values of parameter-free DAG nodes at states ``x[..., d]`` -> ``(n_features, ...)``."""
    cache: dict[int, torch.Tensor] = {}

    def value(i: int) -> torch.Tensor:
        if i in cache:
            return cache[i]
        op = dag.op[i]
        if op == "x":
            out = x[..., dag.left[i]]
        elif arity(op) == 1:
            out = _torch(op)(value(dag.left[i]))
        else:
            out = _torch(op)(value(dag.left[i]), value(dag.right[i]))
        cache[i] = out
        return out

    for i in sorted(set(feature_ids)):  # children before parents: ids are topological
        value(i)
    return torch.stack([cache[i] for i in feature_ids]) if feature_ids else x.new_zeros((0,) + x.shape[:-1])


def evaluate_skeleton(skeleton: tuple, leaves: torch.Tensor, params: torch.Tensor,
                      out: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Evaluate a skeleton for a batch of formulas.

    `leaves` is ``(n_formulas, n_refs, 1, *points)`` feature values, `params`
    ``(n_formulas, n_settings, n_params, *ones)``; the result is
    ``(n_formulas, n_settings, *points)``, written into `out` if given (no autograd).
    Without autograd, ops overwrite temporaries of their result's shape (the same numbers).
    """
    in_place = out is not None or not (torch.is_grad_enabled() and (leaves.requires_grad or params.requires_grad))
    if skeleton[0] in ("F", "C"):
        value = leaves[:, skeleton[1]] if skeleton[0] == "F" else params[:, :, skeleton[1]]
        value = value.expand(value.shape[0], params.shape[1], *leaves.shape[3:])
        return value if out is None else out.copy_(value)
    values: list[torch.Tensor] = []
    refs = {"F": leaves.unbind(1), "C": params.unbind(2), "T": values}
    for fn, fn_, args, reuse, full in _steps(skeleton):
        inputs = [refs[kind][i] for kind, i in args]
        if out is not None and full:
            values.append(fn(*inputs, out=out))
        elif in_place and reuse is not None:
            target = values[reuse]
            values.append(fn_(target) if len(inputs) == 1 else fn(*inputs, out=target))
        else:
            values.append(fn(*inputs))
    value = values[-1]
    if out is not None:
        return value if value is out else out.copy_(value)
    return value.expand(value.shape[0], params.shape[1], *leaves.shape[3:])


@cache
def _steps(skeleton: tuple) -> tuple:
    """`_plan` with each op's torch function and, for unary ops, its in-place form."""
    return tuple((_torch(name), _torch(name, True) if arity(name) == 1 else None, args, reuse, full)
                 for name, args, reuse, full in _plan(skeleton))  # fmt: skip


@cache
def _plan(skeleton: tuple) -> tuple:
    """The skeleton as straight-line steps ``(op, operands, temporary it may overwrite, writes the root)``.

    Operands are ``("F", k)``, ``("C", j)`` or ``("T", step)``. A value varies over the points if a
    feature is below it and over the settings if a parameter is: an op may overwrite an operand
    that is an earlier step's value of the result's shape; only the root, if it varies over both,
    may be written into the caller's buffer.
    """
    steps: list = []

    def visit(node: tuple) -> tuple[tuple, frozenset, bool]:
        kind = node[0]
        if kind in ("F", "C"):
            return (kind, node[1]), frozenset({"points" if kind == "F" else "settings"}), False
        operands = [visit(child) for child in node[1:]]
        varies = frozenset().union(*(v for _, v, _ in operands))
        reuse = next((ref[1] for ref, v, temp in operands if temp and v == varies), None)
        steps.append([kind, tuple(ref for ref, _, _ in operands), reuse, False])
        return ("T", len(steps) - 1), varies, True

    _, varies, _ = visit(skeleton)
    if steps:
        steps[-1][3] = varies == {"points", "settings"}
    return tuple(tuple(step) for step in steps)


@cache
def parity(skeleton: tuple, j: int) -> str | None:
    """``"even"`` if the skeleton's value is unchanged by ``C_j -> -C_j``, ``"odd"`` if it is negated, else None.

    Structural (so exact in floating point too: ``(-a)*b == -(a*b)``, ``sin(-x) == -sin(x)``);
    either way the score, which ignores g's sign, is the same at ``C_j`` and ``-C_j``.
    """
    kind = skeleton[0]
    if kind == "C":
        return "odd" if skeleton[1] == j else "even"
    if kind == "F":
        return "even"
    if len(skeleton) == 2:
        inner = parity(skeleton[1], j)
        return inner if inner in (None, "even") else _symmetry(kind)  # an odd argument: as the op treats -x
    a, b = parity(skeleton[1], j), parity(skeleton[2], j)
    if a is None or b is None:
        return None
    if OPERATORS[kind].sign == 0:  # + and -
        return a if a == b else None
    return "even" if a == b else "odd"


@cache
def _symmetry(name: str) -> str | None:
    """How unary op `name` treats ``-x``: ``"even"`` (``f(-x) = f(x)``), ``"odd"`` (``-f(x)``) or None.

    Read off the operator table's float function at a few points (the table states no symmetry);
    `tests/test_fit_speed_equivalence.py` checks that torch's functions agree bit for bit.
    """
    fn = OPERATORS[name].math
    try:
        pairs = [(fn(x), fn(-x)) for x in (0.3, 1.7, 2.9, 11.0)]
    except (ValueError, OverflowError):
        return None
    if all(b == a for a, b in pairs):
        return "even"
    return "odd" if all(b == -a for a, b in pairs) else None


ZERO, ONE = ("0",), ("1",)  # constant parts of an affine decomposition


@cache
def _linear_parts(skeleton: tuple, n_params: int):
    """If the skeleton is affine in its parameters: (value at C=0, (dF/dC_j, ...)) as skeletons, else None.

    A structural test (no algebra): every parameter occurs once, so the skeleton
    is affine exactly when no parameter sits under a unary op, under a product
    of two parameter-dependent factors, or in a denominator. The parts are
    skeletons over the ``("F", k)`` leaves and the constants `ZERO` / `ONE`
    (and ``("neg", e)``), evaluated by `evaluate_part`.
    """
    if n_params == 0:
        return None
    parts = _affine(skeleton)
    if parts is None:
        return None
    return (parts.get(None, ZERO), tuple(parts.get(j, ZERO) for j in range(n_params)))


def _has_param(node: tuple) -> bool:
    return node[0] == "C" or (node[0] not in ("F",) and any(_has_param(c) for c in node[1:]))


def _affine(node: tuple) -> dict | None:
    """``{None: base, j: coefficient of C_j}`` for an affine skeleton, None when it is not affine."""
    kind = node[0]
    if kind == "C":
        return {node[1]: ONE}
    if not _has_param(node):
        return {None: node}
    if len(node) == 2:  # a unary op of something with a parameter
        return None
    a, b = node[1], node[2]
    if kind in ("+", "-"):
        pa, pb = _affine(a), _affine(b)
        if pa is None or pb is None:
            return None
        out = dict(pa)
        for key, part in pb.items():
            if key in out:
                out[key] = (kind, out[key], part)
            else:
                out[key] = part if kind == "+" else ("neg", part)
        return out
    if kind == "*" and _has_param(a) and _has_param(b):
        return None
    if kind == "*":
        inner, other = (a, b) if _has_param(a) else (b, a)
        pi = _affine(inner)
        return None if pi is None else {key: _times(part, other) for key, part in pi.items()}
    if kind == "/" and not _has_param(b):
        pa = _affine(a)
        return None if pa is None else {key: ("/", part, b) for key, part in pa.items()}
    return None


def _times(part: tuple, other: tuple) -> tuple:
    """``part * other``, written as sympy writes it (``a/X * b`` as ``a*b/X``): the same floating-point numbers."""
    if part == ONE:
        return other
    if part[0] == "neg":
        return ("neg", _times(part[1], other))
    if part[0] == "/":
        return ("/", _times(part[1], other), part[2])
    return ("*", part, other)


def evaluate_part(part: tuple, leaves: torch.Tensor) -> torch.Tensor:
    """A parameter-free part of `_linear_parts` on ``leaves[:, k]`` ``(n, n_refs, *points)`` -> ``(n, *points)``."""

    def run(node: tuple) -> torch.Tensor:
        kind = node[0]
        if kind == "F":
            return leaves[:, node[1]]
        if node in (ZERO, ONE):
            return torch.full_like(leaves[:, 0], float(kind))
        if kind == "neg":
            return -run(node[1])
        return _torch(kind)(*map(run, node[1:]))

    return run(part).expand_as(leaves[:, 0])


def _to_sympy(skeleton: tuple) -> sympy.Expr:
    import sympy

    kind = skeleton[0]
    if kind in ("F", "C"):
        return sympy.Symbol(f"{kind}{skeleton[1]}")
    return OPERATORS[kind].sympy(sympy, *map(_to_sympy, skeleton[1:]))


def _linear_parts_sympy(skeleton: tuple, n_params: int):
    """The former sympy test (kept for the equivalence test): (base, derivatives) as sympy or None."""
    import sympy

    if n_params == 0:
        return None
    expr = _to_sympy(skeleton)
    cs = [sympy.Symbol(f"C{j}") for j in range(n_params)]
    derivs = [sympy.diff(expr, c) for c in cs]
    if any(d.free_symbols & set(cs) for d in derivs):
        return None
    return (expr.subs({c: 0 for c in cs}), tuple(derivs))


def evaluate_sympy_on_leaves(expr: sympy.Expr, leaves: torch.Tensor) -> torch.Tensor:
    """Evaluate a parameter-free sympy expression of ``F0, F1, ...`` on ``leaves[:, k]``."""
    import sympy

    n_refs = leaves.shape[1]
    symbols = [sympy.Symbol(f"F{k}") for k in range(n_refs)]
    fn = _lambdify(tuple(symbols), expr)
    out = fn(*[leaves[:, k] for k in range(n_refs)])
    if not isinstance(out, torch.Tensor):
        out = torch.full_like(leaves[:, 0], float(out))
    return out.expand_as(leaves[:, 0])


@cache
def _lambdify(symbols: tuple, expr: sympy.Expr):
    import sympy

    return sympy.lambdify(symbols, expr, modules=[{OPERATORS[n].array: _torch(n) for n in names(1)}])


def node_to_torch(node: Node, variables: Sequence[str]):
    """A torch function ``g(x) -> (..., 1)`` of states ``x[..., d]`` for one formula tree with fitted values."""
    return array_function(node, variables, torch)


def formula_to_torch(formula, variables: Sequence[str]):
    """``g(x) -> (..., 1)`` for a `dsl.Formula` with fitted parameter values."""
    return node_to_torch(formula.root, variables)


__all__ = [
    "Group",
    "by_skeleton",
    "evaluate_features",
    "evaluate_skeleton",
    "formula_to_torch",
    "group_formulas",
    "node_to_torch",
    "parity",
    "skeleton_of",
    "Binary",
]
