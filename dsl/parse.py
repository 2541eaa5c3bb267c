"""Read formulas from text such as ``"p**2 - 2.99*cos(q)"`` with Python's own parser.

Numbers become parameters with that value and ``C0, C1, ...`` become free
parameters; ``x**2`` is `square`; a unary minus before a non-number becomes a
multiplication by the parameter -1.
"""

from __future__ import annotations

import ast
import re

from dsl.nodes import Binary, Input, Node, Param, Unary

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_FREE_PARAM = re.compile(r"C\d+")


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
        if _FREE_PARAM.fullmatch(node.id) and (allowed is None or node.id not in allowed):
            return Param(None)
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
            exponent = node.right
            if isinstance(exponent, ast.Constant) and exponent.value == 2:
                return Unary("square", _convert(node.left, text, allowed))
            fail("the only power is **2 (square)")
        op = _BINOPS.get(type(node.op))
        if op is None:
            fail(f"unsupported operator {type(node.op).__name__}")
        return Binary(op, _convert(node.left, text, allowed), _convert(node.right, text, allowed))
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", None)
        if name in ("sin", "cos") and len(node.args) == 1 and not node.keywords:
            return Unary(name, _convert(node.args[0], text, allowed))
        if name == "square" and len(node.args) == 1:
            return Unary("square", _convert(node.args[0], text, allowed))
        fail(f"unsupported function {name or ast.unparse(node.func)!r} (use sin, cos, **2)")
    fail(f"unsupported syntax {ast.unparse(node)!r}")
