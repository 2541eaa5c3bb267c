"""Export formula trees to sympy and LaTeX (floats printed with a chosen number of digits)."""

from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter

from dsl.nodes import Input, Node, Param, Unary
from dsl.operators import OPERATORS


def to_sympy(node: Node) -> sympy.Expr:
    """A sympy expression; free parameters become symbols ``C0, C1, ...``, fitted ones Floats."""
    counter = iter(range(10**9))

    def build(n: Node) -> sympy.Expr:
        if isinstance(n, Input):
            return sympy.Symbol(n.name)
        if isinstance(n, Param):
            return sympy.Symbol(f"C{next(counter)}") if n.value is None else sympy.Float(n.value)
        if isinstance(n, Unary):
            return OPERATORS[n.op].sympy(sympy, build(n.arg))
        a = build(n.left)
        return OPERATORS[n.op].sympy(sympy, a, build(n.right))

    return build(node)


class _DigitsLatexPrinter(LatexPrinter):
    def __init__(self, digits: int):
        super().__init__({"mul_symbol": None})
        self._digits = digits

    def _print_Float(self, expr):
        value = float(expr)
        text = f"{value:.{self._digits}g}"
        if "e" in text:
            mantissa, exp = text.split("e")
            return rf"{mantissa} \cdot 10^{{{int(exp)}}}"
        return text


def to_latex(node: Node, digits: int = 4) -> str:
    """LaTeX with `digits` significant digits for fitted constants."""
    return _DigitsLatexPrinter(digits).doprint(to_sympy(node))
