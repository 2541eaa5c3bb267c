"""The operator table: every fact about an operator that the rest of the project uses.

Each `Operator` gives its node name and arity, its dimension rule, and its forms:
``math`` (on Python floats), ``array`` (a function name that numpy and torch share,
so `dsl` stays torch-free: ``getattr(torch, op.array)``), ``sympy`` (a function of
the sympy module and the arguments) and ``text`` (the source that `dsl.parse` and
``sympy.sympify`` read back). LaTeX is sympy's printing of the sympy form.
The enumerator's algebra is here too: ``closure`` (which family properties of the
argument carry over), ``pulls`` (a parameter of the argument that comes out),
and ``top_rule``.

Adding an operator is one `Operator(...)` entry in `OPERATORS` (consumers read the
table when they run, so an entry added at run time works too); the enumerator only
uses it when a caller lists it in ``ops`` (default `PAPER_OPS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Operator:
    name: str
    arity: int
    math: Callable  # on Python floats
    array: str  # numpy's and torch's function name
    sympy: Callable  # (sympy module, *args) -> expression
    text: str  # source with {0}, {1} for the arguments
    # dimension rule. unary: the result is arg**power; power None: the argument must be
    # dimensionless and so is the result. binary: sign 0 needs equal sides, +1 multiplies, -1 divides
    power: Fraction | None = None
    sign: int = 0
    precedence: int = 3  # binary: 1 for + -, 2 for * /
    # enumerator algebra (unary): result property <- argument property ("scale": closed under
    # c*f, c > 0; "negate": under -f; "shift": under f + c)
    closure: tuple[tuple[str, str], ...] = ()
    pulls: str | None = None  # "factor": (C*a)**2 is C*a**2; "shift": exp(a + C) is C*exp(a)
    top_rule: str | None = None  # a root op(f), conserved iff f is, is not emitted: charged here


def _unary(name, math_fn, sympy_fn, text=None, **kw) -> Operator:
    return Operator(name, 1, math_fn, kw.pop("array", name), sympy_fn, text or name + "({0})", **kw)


def _binary(symbol, math_fn, array, sign, precedence) -> Operator:
    sympy_fn = lambda sp, a, b: math_fn(a, b)  # noqa: E731 - sympy overloads the operators
    return Operator(symbol, 2, math_fn, array, sympy_fn, "{0} " + symbol + " {1}",
                    sign=sign, precedence=precedence)  # fmt: skip


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        _binary("+", lambda a, b: a + b, "add", 0, 1),
        _binary("-", lambda a, b: a - b, "subtract", 0, 1),
        _binary("*", lambda a, b: a * b, "multiply", 1, 2),
        _binary("/", lambda a, b: a / b, "divide", -1, 2),
        _unary("sin", math.sin, lambda sp, a: sp.sin(a), closure=(("negate", "negate"),)),
        _unary("cos", math.cos, lambda sp, a: sp.cos(a)),
        _unary("square", lambda a: a * a, lambda sp, a: a**2, "{0}**2", power=Fraction(2),
               closure=(("scale", "scale"),), pulls="factor", top_rule="top_square"),
        _unary("sqrt", math.sqrt, lambda sp, a: sp.sqrt(a), power=Fraction(1, 2),
               closure=(("scale", "scale"),), top_rule="top_invertible"),
        _unary("log", math.log, lambda sp, a: sp.log(a), closure=(("shift", "scale"),),
               top_rule="top_invertible"),
        _unary("exp", math.exp, lambda sp, a: sp.exp(a), closure=(("scale", "shift"),), pulls="shift",
               top_rule="top_invertible"),
    )
}  # fmt: skip

PAPER_OPS = ("+", "-", "*", "/", "sin", "cos", "square")  # the default search's operators


def names(arity: int) -> tuple[str, ...]:
    """The operators of that arity, in table order (read at call time: the table is the registry)."""
    return tuple(name for name, op in OPERATORS.items() if op.arity == arity)


def arity(name: str) -> int | None:
    """1 or 2 for an operator, None for anything else (``x``, ``C`` in the enumeration's DAG)."""
    op = OPERATORS.get(name)
    return None if op is None else op.arity


def get(name: str) -> Operator:
    try:
        return OPERATORS[name]
    except KeyError:
        raise ValueError(f"unknown operator {name!r} (known: {', '.join(OPERATORS)})") from None


def select(names: Iterable[str]) -> tuple[Operator, ...]:
    """The named operators in table order (the enumerator's order: it decides node ids)."""
    wanted = set(names)
    for name in wanted:
        get(name)
    return tuple(op for name, op in OPERATORS.items() if name in wanted)


def by_power(power) -> Operator | None:
    """The unary operator that is ``arg**power`` (square for 2, sqrt for 1/2), if any."""
    return next((op for op in OPERATORS.values() if op.arity == 1 and op.power == power), None)
