"""Dimension inference: every parameter takes whatever unit makes its formula valid.

Each sub-formula's dimension is affine in the unknown parameter dimensions,
``D0 * prod_i U_i**a_i``, by the rules of `dsl.operators` (sin/cos/log/exp
arguments dimensionless, ``square``/``sqrt`` powers 2 and 1/2, the two sides of
``+``/``-`` equal). That is a linear system over the rationals (one per
base dimension, all with the same matrix), solved by Gaussian elimination with
`Dimension` as the vector type. Unknowns the system leaves free are set to
dimensionless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from dsl.dimension import DIMENSIONLESS, Dimension
from dsl.nodes import Input, Node, Param, Unary
from dsl.operators import OPERATORS


class DimensionError(ValueError):
    """A formula that no choice of parameter units makes dimensionally valid."""


@dataclass(frozen=True)
class Typing:
    """The inferred dimensions of one formula."""

    result: Dimension
    params: tuple[Dimension, ...]  # one per parameter, depth-first order
    free_result: bool  # True when parameters can give the result any unit (a redundant scale)


_Affine = tuple[Dimension, dict[int, Fraction]]


def infer(node: Node, dims: Mapping[str, Dimension]) -> Typing:
    """Infer parameter and result dimensions of `node`; raise `DimensionError` if impossible."""
    constraints: list[tuple[dict[int, Fraction], Dimension, str]] = []
    counter = [0]

    def equal(a: _Affine, b: _Affine, what: str) -> None:
        coeffs = dict(a[1])
        for k, v in b[1].items():
            coeffs[k] = coeffs.get(k, 0) - v
        constraints.append(({k: v for k, v in coeffs.items() if v}, b[0] / a[0], what))

    def visit(n: Node) -> _Affine:
        if isinstance(n, Input):
            if n.name not in dims:
                raise DimensionError(f"no unit for variable {n.name!r}")
            return dims[n.name], {}
        if isinstance(n, Param):
            i = counter[0]
            counter[0] += 1
            return DIMENSIONLESS, {i: Fraction(1)}
        op = OPERATORS[n.op]
        if isinstance(n, Unary):
            a = visit(n.arg)
            if op.power is not None:
                return a[0] ** op.power, {k: op.power * v for k, v in a[1].items()}
            equal(a, (DIMENSIONLESS, {}), f"argument of {n.op} must be dimensionless")
            return DIMENSIONLESS, {}
        a, b = visit(n.left), visit(n.right)
        if op.sign == 0:
            equal(a, b, f"both sides of {n.op} need the same unit")
            return a
        coeffs = dict(a[1])
        for k, v in b[1].items():
            coeffs[k] = coeffs.get(k, 0) + op.sign * v
        return a[0] * b[0] ** op.sign, coeffs

    d0, coeffs = visit(node)
    solution, pivots = _solve(constraints, counter[0])
    result = d0
    for k, v in coeffs.items():
        result = result * solution[k] ** v
    free = _is_free(coeffs, pivots, constraints, counter[0])
    return Typing(result, tuple(solution), free)


def _solve(constraints, n: int):
    """Reduced row echelon form; returns unknown values (free ones dimensionless) and pivot rows."""
    rows = [(dict(c), rhs, what) for c, rhs, what in constraints]
    pivots: dict[int, tuple[dict[int, Fraction], Dimension]] = {}
    for coeffs, rhs, what in rows:
        for col, (pc, prhs) in pivots.items():
            if col in coeffs:
                factor = coeffs[col]
                for k, v in pc.items():
                    coeffs[k] = coeffs.get(k, 0) - factor * v
                rhs = rhs / prhs**factor
                coeffs = {k: v for k, v in coeffs.items() if v}
        if not coeffs:
            if not rhs.is_dimensionless:
                raise DimensionError(what)
            continue
        col = min(coeffs)
        scale = coeffs[col]
        coeffs = {k: v / scale for k, v in coeffs.items()}
        rhs = rhs ** (1 / scale)
        for other, (oc, orhs) in list(pivots.items()):
            if col in oc:
                factor = oc[col]
                new = {k: oc.get(k, 0) - factor * coeffs.get(k, 0) for k in set(oc) | set(coeffs)}
                pivots[other] = ({k: v for k, v in new.items() if v}, orhs / rhs**factor)
        pivots[col] = (coeffs, rhs)
    solution = [DIMENSIONLESS] * n
    for col, (_, rhs) in pivots.items():
        solution[col] = rhs  # free unknowns are dimensionless, so only the constant remains
    return solution, pivots


def _is_free(coeffs, pivots, constraints, n) -> bool:
    """Whether the result's dimension can still change: its coefficient row is outside the row space."""
    row = {k: Fraction(v) for k, v in coeffs.items() if v}
    for col, (pc, _) in pivots.items():
        if col in row:
            factor = row[col]
            for k, v in pc.items():
                row[k] = row.get(k, 0) - factor * v
            row = {k: v for k, v in row.items() if v}
    return bool(row)
