"""Read formulas from text such as ``"p**2 - 2.99*cos(q)"`` with Python's own parser.

Numbers become parameters with that value and ``C0, C1, ...`` become free
parameters; every unary op of `dsl.operators` is read as a call (``sqrt(x)``,
``square(x)``); a unary minus before a non-number becomes a multiplication by
the parameter -1. Powers are what sympy prints: ``x**2`` is `square`, other
integer powers are built from square and ``*`` (``x**3`` is ``x**2*x``),
negative ones as ``1/...``, half-integer ones with sqrt (``x**(3/2)`` is
``x*sqrt(x)``; ``x**(1/4)`` is ``sqrt(sqrt(x))``). sympy's ``E`` and ``pi`` are
numbers unless they are variables.
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction

from dsl.nodes import PARAM_NAME, Binary, Input, Node, Param, Unary
from dsl.operators import OPERATORS, arity, by_power, names

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_MAX_POWER = 1024
_MAX_ROOTS = 8  # exponents are multiples of 1/2**8
_CONSTANTS = {"E": math.e, "pi": math.pi}  # as sympy prints them


class FormulaSyntaxError(ValueError):
    """Text that is not a formula of the DSL."""


def parse_node(text: str, variables=None) -> Node:
    """Parse `text` into a formula tree; `variables`, when given, lists the allowed input names."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise FormulaSyntaxError(f"cannot parse formula {text!r}: {err.msg}") from None
    allowed = None if variables is None else set(variables)
    return _convert(tree.body, text, allowed)


def _convert(node: ast.AST, text: str, allowed) -> Node:
    def fail(why: str):
        raise FormulaSyntaxError(f"formula {text!r}: {why}")

    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            fail(f"unsupported constant {node.value!r}")
        return Param(float(node.value))
    if isinstance(node, ast.Name):
        if PARAM_NAME.fullmatch(node.id) and (allowed is None or node.id not in allowed):
            return Param(None)
        if node.id in _CONSTANTS and allowed is not None and node.id not in allowed:
            return Param(_CONSTANTS[node.id])
        if allowed is not None and node.id not in allowed:
            fail(f"unknown variable {node.id!r} (known: {', '.join(sorted(allowed))})")
        return Input(node.id)
    if isinstance(node, ast.UnaryOp):
        arg = _convert(node.operand, text, allowed)
        if isinstance(node.op, ast.UAdd):
            return arg
        if isinstance(node.op, ast.USub):
            if isinstance(arg, Param) and arg.value is not None:
                return Param(-arg.value)
            return Binary("*", Param(-1.0), arg)
        fail("only unary + and - are supported")
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            exponent = _number(node.right)
            if exponent is None:
                fail(f"the exponent {ast.unparse(node.right)!r} is not a number")
            try:
                return power(_convert(node.left, text, allowed), exponent)
            except FormulaSyntaxError as err:
                fail(str(err))
        op = _BINOPS.get(type(node.op))
        if op is None:
            fail(f"unsupported operator {type(node.op).__name__}")
        return Binary(op, _convert(node.left, text, allowed), _convert(node.right, text, allowed))
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", None)
        if arity(name) == 1 and len(node.args) == 1 and not node.keywords:
            return Unary(name, _convert(node.args[0], text, allowed))
        known = ", ".join(names(1))
        fail(f"unsupported function {name or ast.unparse(node.func)!r} (use {known}, **)")
    fail(f"unsupported syntax {ast.unparse(node)!r}")


def power(base: Node, exponent: float) -> Node:
    """``base**exponent`` from square, sqrt, * and / for a dyadic exponent (``3``, ``-1/2``, ``3/4``).

    ``x**(n + b1/2 + b2/4 + ...)`` is ``x**n * sqrt(x)**b1 * sqrt(sqrt(x))**b2 ...`` (bits b):
    real where sympy's principal power is.
    """
    square, sqrt = by_power(2), by_power(Fraction(1, 2))
    e = abs(Fraction(exponent))
    if not 0 < e <= _MAX_POWER or e.denominator > 2**_MAX_ROOTS or e.denominator & (e.denominator - 1):
        why = f"the power {exponent:g} is not a non-zero multiple of 1/{2**_MAX_ROOTS} up to {_MAX_POWER}"
        raise FormulaSyntaxError(why)
    whole, rest = int(e), e - int(e)
    out = _int_power(base, whole, square.name) if whole else None
    root = base
    while rest:
        root, rest = Unary(sqrt.name, root), 2 * rest
        if rest >= 1:
            out, rest = (root if out is None else Binary("*", out, root)), rest - 1
    return Binary("/", Param(1.0), out) if exponent < 0 else out


def _int_power(base: Node, n: int, square: str) -> Node:
    if n == 1:
        return base
    if n % 2 == 0:
        return Unary(square, _int_power(base, n // 2, square))
    return Binary("*", _int_power(base, n - 1, square), base)


def _number(node: ast.AST) -> float | None:
    """The value of a constant expression such as ``2``, ``-1/2`` or ``(3/2)``, else None."""
    if isinstance(node, ast.Constant):
        ok = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        return float(node.value) if ok else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _number(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _number(node.left), _number(node.right)
        if a is None or b is None or (isinstance(node.op, ast.Div) and b == 0):
            return None
        return OPERATORS[_BINOPS[type(node.op)]].math(a, b)
    return None
