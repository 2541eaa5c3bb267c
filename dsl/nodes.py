"""Formula trees: `Input`, `Param`, `Unary` and `Binary` nodes over the ops of `dsl.operators`.

Nodes are frozen dataclasses: immutable, hashable, compared structurally.
A `Param` without a value is a free parameter of a *template*; parameters are
anonymous, so two templates that differ only in parameter names are equal.
When printed they are numbered ``C0, C1, ...`` in depth-first order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from dsl.operators import OPERATORS, arity


@dataclass(frozen=True, slots=True)
class Input:
    name: str


@dataclass(frozen=True, slots=True)
class Param:
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    arg: "Node"


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: "Node"
    right: "Node"


Node = Input | Param | Unary | Binary


def walk(node: Node) -> Iterator[Node]:
    """All nodes in depth-first, left-to-right order (the order parameters are numbered in)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, Unary):
            stack.append(n.arg)
        elif isinstance(n, Binary):
            stack.append(n.right)
            stack.append(n.left)


def size(node: Node) -> int:
    return sum(1 for _ in walk(node))


def params(node: Node) -> list[Param]:
    return [n for n in walk(node) if isinstance(n, Param)]


def inputs(node: Node) -> set[str]:
    return {n.name for n in walk(node) if isinstance(n, Input)}


def with_params(node: Node, values) -> Node:
    """The same tree with its parameters, in depth-first order, set to `values` (None frees them)."""
    it = iter(values)

    def rebuild(n: Node) -> Node:
        if isinstance(n, Param):
            return Param(None if (v := next(it)) is None else float(v))
        if isinstance(n, Unary):
            return Unary(n.op, rebuild(n.arg))
        if isinstance(n, Binary):
            left = rebuild(n.left)
            return Binary(n.op, left, rebuild(n.right))
        return n

    out = rebuild(node)
    if next(it, _END) is not _END:
        raise ValueError("more parameter values than parameters")
    return out


_END = object()


def to_string(node: Node) -> str:
    """Plain text that `sympy.sympify` and `dsl.parse` read back (``p**2 + C0*cos(q)``)."""
    counter = iter(range(10**9))

    def fmt(n: Node, parent_prec: int = 0, right: bool = False) -> str:
        if isinstance(n, Input):
            return n.name
        if isinstance(n, Param):
            return f"C{next(counter)}" if n.value is None else _param_text(n.value)
        op = OPERATORS[n.op]
        if isinstance(n, Unary):
            if op.text.startswith("{0}"):  # postfix (x**2): the argument binds tighter
                base = fmt(n.arg, 3)
                nested = isinstance(n.arg, Unary) and OPERATORS[n.arg.op].text.startswith("{0}")
                return op.text.format(f"({base})" if nested else base)
            return op.text.format(fmt(n.arg))
        prec = op.precedence
        sep = f" {n.op} " if prec == 1 else n.op
        text = f"{fmt(n.left, prec)}{sep}{fmt(n.right, prec, right=True)}"
        needs = prec < parent_prec or (right and prec == parent_prec and parent_prec in (1, 2))
        return f"({text})" if needs else text

    return fmt(node)


def fill_params(text: str, values) -> str:
    """`to_string` of a template with its parameters set to `values`, from the template's own text.

    Equal to ``to_string(with_params(template, values))``: a parameter prints the same wherever it is
    (unless a variable is named like a parameter, ``C0``).
    """
    texts = [_param_text(float(v)) for v in values]
    try:
        out, n = _PARAM.subn(lambda m: texts[int(m.group(1))], text)
    except IndexError:
        n = -1
    if n != len(texts):
        raise ValueError(f"{text!r} does not have {len(texts)} parameters")
    return out


PARAM_NAME = re.compile(r"C(\d+)")  # a free parameter's name, as printed and parsed
_PARAM = re.compile(r"(?<![A-Za-z0-9_])C(\d+)(?![A-Za-z0-9_])")


def _param_text(value: float) -> str:
    text = _fmt_float(value)
    return f"({text})" if value < 0 or text.startswith("-") else text


def _fmt_float(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    return repr(float(value))


def to_dict(node: Node) -> dict:
    """A JSON-ready nested dict."""
    if isinstance(node, Input):
        return {"input": node.name}
    if isinstance(node, Param):
        return {"param": node.value}
    if isinstance(node, Unary):
        return {"op": node.op, "args": [to_dict(node.arg)]}
    return {"op": node.op, "args": [to_dict(node.left), to_dict(node.right)]}


def from_dict(data: dict) -> Node:
    if "input" in data:
        return Input(str(data["input"]))
    if "param" in data:
        value = data["param"]
        return Param(None if value is None else float(value))
    op, args = data["op"], data["args"]
    if arity(op) == 1 and len(args) == 1:
        return Unary(op, from_dict(args[0]))
    if arity(op) == 2 and len(args) == 2:
        return Binary(op, from_dict(args[0]), from_dict(args[1]))
    raise ValueError(f"not a formula node: {data!r}")
