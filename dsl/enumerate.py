"""Bottom-up enumeration of every valid formula up to a size bound, in canonical form.

Size counts nodes: ``p**2 + C*cos(q)`` and ``q**2 + C*p**2`` have 7. Sub-formulas
are hash-consed into a DAG of unique nodes (an integer id each; children are
older than parents), built size by size from the canonical nodes of smaller
sizes. A candidate is charged to the first rule that rejects it:

internal rules (the sub-formula is never built, so nothing above it is either)
  ``dimension``          sin/cos/log/exp of a non-dimensionless argument, ``+``/``-`` of unequal units
  ``no_input``           a sub-formula without inputs other than a lone parameter (``C*C``, ``sin(C)``)
  ``commutativity``      ``b + a`` / ``b * a`` when ``a + b`` / ``a * b`` is kept (order by node id)
  ``associativity``      sums and products in one normal form: left-leaning chains, at most one
                         ``-`` (``(a + b) - (c + d)``) or ``/`` (``(a * b) / (c * d)``) at the head
  ``trivial_identity``   ``a - a``, ``a / a``, ``a + a`` (in ``C*a``), ``a * a`` (is ``a**2``), ``a`` without parameters
  ``redundant_param``    a parameter another one absorbs: ``C*(C*x)``, ``(x + C) + (y + C)``,
                         ``(C*x)/(C*y)``, ``(C*x)**2`` (in ``C*x**2``), ``exp(x + C)`` (``C*exp(x)``)
  ``param_division``     ``a / C``, the same family as ``C * a``
  ``sign``               ``a - b`` where ``b``'s family is closed under negation (``a - C*b`` is ``a + C*b``)
  ``numeric_identity``   a parameter-free sub-formula equal, as a function, to an older (no larger) one
                         (``q**2*p/q`` is ``q*p``), found by evaluating both at random points
  ``numeric_constant``   a parameter-free sub-formula that is constant (``sin(q)**2 + cos(q)**2``)
top-level rules (the sub-formula is kept as a building block but not emitted as a law, because a
conserved quantity stays conserved under these transformations)
  ``top_no_input``       a lone parameter
  ``top_free_scale``     parameters can rescale the whole formula (``C*q*p``, ``C*q + C*p``)
  ``top_offset``         an additive parameter at the top (``f + C``)
  ``top_square``         ``f**2`` (conserved iff ``f`` is)
  ``top_invertible``     ``sqrt(f)``, ``log(f)``, ``exp(f)`` (likewise; counted only when those ops are used)
  ``top_sign``           ``a - b`` kept once of ``a - b`` / ``b - a``, and ``C*a - b`` (is ``b + C*a``)
  ``top_reciprocal``     ``a / b`` kept once of ``a / b`` / ``b / a``
  ``top_rescale``        ``C*t + u`` kept once of ``C*t + u`` / ``t + C*u`` (divide by C)

Angles are dimensionless, so ``sin(q)`` is valid when ``q`` is in radians. The operators
and their algebra come from `dsl.operators`; ``ops`` chooses them (default `PAPER_OPS`, the
paper's ``+ - * / sin cos square``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from dsl.dimension import Dimension
from dsl.nodes import Binary, Input, Node, Param, Unary
from dsl.operators import OPERATORS, PAPER_OPS, select

INTERNAL_RULES = (
    "dimension",
    "no_input",
    "commutativity",
    "associativity",
    "trivial_identity",
    "redundant_param",
    "param_division",
    "sign",
    "numeric_identity",
    "numeric_constant",
)
TOP_RULES = (
    "top_no_input",
    "top_free_scale",
    "top_offset",
    "top_square",
    "top_sign",
    "top_reciprocal",
    "top_rescale",
)
_PARAM = 0  # node id of the lone parameter
_N_POINTS = 4


@dataclass
class FormulaDag:
    """Unique sub-formulas: node ``i`` is ``op[i]`` applied to ``left[i]``, ``right[i]``.

    ``op`` is ``C`` (parameter), ``x`` (input number ``left[i]``) or an operator name of
    `dsl.operators`. ``dim[i]`` is the node's dimension as an exponent vector over
    ``basis`` (rational with sqrt), or None when parameters leave it free.
    """

    variables: tuple[str, ...]
    basis: tuple[str, ...]
    op: list[str] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    dim: list[tuple | None] = field(default_factory=list)
    has_param: list[bool] = field(default_factory=list)
    scale: list[bool] = field(default_factory=list)  # family closed under c*f, c > 0
    negate: list[bool] = field(default_factory=list)  # family closed under -f
    shift: list[bool] = field(default_factory=list)  # family closed under f + c

    values: list[tuple | None] = field(default_factory=list)  # at random points, parameter-free only
    _fingerprints: dict = field(default_factory=dict)

    def check_new(self, op: str, left: int, right: int) -> str | None:
        """Evaluate a parameter-free candidate at the random points; name the rule it breaks, if any.

        On success its values wait in ``self._pending`` for the `add` that follows.
        """
        self._pending = None
        a = self.values[left]
        b = self.values[right] if right >= 0 else None
        if a is None or (right >= 0 and b is None):
            return None
        fn = OPERATORS[op].math
        try:
            vals = tuple(fn(x, y) for x, y in zip(a, b)) if right >= 0 else tuple(map(fn, a))
        except (OverflowError, ValueError, ZeroDivisionError):
            return None
        if not all(math.isfinite(v) for v in vals):
            return None
        key = tuple(float(f"{v:.10g}") for v in vals)
        if len(set(key)) == 1:
            return "numeric_constant"
        if key in self._fingerprints:
            return "numeric_identity"
        self._pending = (vals, key)
        return None

    def add(self, op, left, right, size, dim, has_param, scale, negate, shift) -> int:
        for name, value in (
            ("op", op), ("left", left), ("right", right), ("size", size), ("dim", dim),
            ("has_param", has_param), ("scale", scale), ("negate", negate), ("shift", shift),
        ):  # fmt: skip
            getattr(self, name).append(value)
        i = len(self.op) - 1
        pending = getattr(self, "_pending", None)
        if pending is not None and not has_param:
            self.values.append(pending[0])
            self._fingerprints[pending[1]] = i
        else:
            self.values.append(None)
        self._pending = None
        return i

    def to_node(self, i: int, _memo: dict | None = None) -> Node:
        """The formula tree of node `i` (parameters anonymous)."""
        memo = self.__dict__.setdefault("_tree_memo", {}) if _memo is None else _memo
        if i in memo:
            return memo[i]
        op = self.op[i]
        if op == "C":
            out = Param(None)
        elif op == "x":
            out = Input(self.variables[self.left[i]])
        elif self.right[i] < 0:
            out = Unary(op, self.to_node(self.left[i], memo))
        else:
            out = Binary(op, self.to_node(self.left[i], memo), self.to_node(self.right[i], memo))
        memo[i] = out
        return out

    def dimension(self, i: int) -> Dimension | None:
        vec = self.dim[i]
        return None if vec is None else Dimension(dict(zip(self.basis, vec)))


@dataclass
class Enumeration:
    """What `enumerate_formulas` found: the DAG, the emitted roots, and the counts."""

    dag: FormulaDag
    roots: list[int]
    pruned: dict[str, int]
    by_size: dict[int, int]
    candidates: int
    seconds: float


def enumerate_formulas(
    dims: Mapping[str, Dimension], max_size: int = 7, progress=None, ops=PAPER_OPS
) -> Enumeration:
    """Enumerate all canonical, dimensionally valid formulas over `dims` with at most `max_size` nodes.

    `dims` maps each input variable name to its `Dimension`. `progress`, if given, is called
    with each finished size. `ops` names the operators (of `dsl.operators`) formulas may use.
    """
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    chosen = select(ops)
    unary = tuple(op for op in chosen if op.arity == 1)
    binary = tuple(op.name for op in chosen if op.arity == 2)
    start = time.perf_counter()
    variables = tuple(dims)
    basis = tuple(sorted({k for d in dims.values() for k in d.exponents}))
    dag = FormulaDag(variables, basis)
    extra = tuple(dict.fromkeys(op.top_rule for op in unary if op.top_rule))
    extra = tuple(rule for rule in extra if rule not in TOP_RULES)
    pruned = dict.fromkeys(INTERNAL_RULES + TOP_RULES + extra, 0)
    zero = (0,) * len(basis)
    by_size: dict[int, list[int]] = {1: []}
    dag.add("C", -1, -1, 1, None, True, True, True, True)
    by_size[1].append(_PARAM)
    for k, name in enumerate(variables):
        vec = tuple(int(dims[name].exponents.get(b, 0)) for b in basis)
        if any(v != dims[name].exponents.get(b, 0) for v, b in zip(vec, basis)):
            raise ValueError(f"variable {name!r} has a fractional dimension")
        rng = random.Random(1000 + k)
        dag._pending = (tuple(rng.uniform(0.3, 1.7) for _ in range(_N_POINTS)), ("x", k))
        by_size[1].append(dag.add("x", k, -1, 1, vec, False, False, False, False))
    candidates = len(by_size[1])
    for s in range(2, max_size + 1):
        by_size[s] = []
        candidates += _grow_unary(dag, unary, by_size[s - 1], by_size[s], s, zero, pruned)
        for s1 in range(1, s - 1):
            lefts, rights = by_size[s1], by_size[s - 1 - s1]
            candidates += _grow_binary(dag, binary, lefts, rights, by_size[s], s, pruned)
        if progress is not None:
            progress(s)
    roots = []
    counts: dict[int, int] = {}
    for s in range(1, max_size + 1):
        for i in by_size[s]:
            rule = _top_rule(dag, i)
            if rule:
                pruned[rule] += 1
            else:
                roots.append(i)
                counts[s] = counts.get(s, 0) + 1
    return Enumeration(dag, roots, pruned, counts, candidates, time.perf_counter() - start)


def _grow_unary(dag: FormulaDag, unary, children, out, s, zero, pruned) -> int:
    op_, left, dim = dag.op, dag.left, dag.dim
    flags = {"scale": dag.scale, "negate": dag.negate, "shift": dag.shift}
    for op in unary:
        for c in children:
            if c == _PARAM:
                pruned["no_input"] += 1
                continue
            if (op.pulls == "factor" and op_[c] in "*/" and left[c] == _PARAM) or (
                op.pulls == "shift" and dag.shift[c]
            ):
                pruned["redundant_param"] += 1
                continue
            d = dim[c]
            if op.power is not None:
                new_dim = None if d is None else tuple(_times(op.power, v) for v in d)
            elif d is not None and d != zero:
                pruned["dimension"] += 1
                continue
            else:
                new_dim = zero
            rule = dag.check_new(op.name, c, -1)
            if rule:
                pruned[rule] += 1
                continue
            got = {mine: flags[theirs][c] for mine, theirs in op.closure}
            out.append(dag.add(op.name, c, -1, s, new_dim, dag.has_param[c],
                               got.get("scale", False), got.get("negate", False), got.get("shift", False)))  # fmt: skip
    return len(unary) * len(children)


def _times(power, v):
    """``power * v`` as an int when whole (the paper's ops keep integer exponent vectors)."""
    out = power * v
    return int(out) if out.denominator == 1 else out


def _grow_binary(dag: FormulaDag, binary, lefts, rights, out, s, pruned) -> int:
    additive = tuple(op for op in "+-" if op in binary)
    multiplicative = tuple(op for op in "*/" if op in binary)
    op_, right, dim = dag.op, dag.right, dag.dim
    has_param, scale, negate, shift = dag.has_param, dag.scale, dag.negate, dag.shift
    add = dag.add
    for a in lefts:
        opa, da, pa = op_[a], dim[a], has_param[a]
        for b in rights:
            opb, db = op_[b], dim[b]
            if a == _PARAM and b == _PARAM:
                pruned["no_input"] += len(binary)
                continue
            same = a == b and not pa
            # + and -
            if da is not None and db is not None and da != db:
                pruned["dimension"] += len(additive)
            else:
                d = da if da is not None else db
                for op in additive:
                    if op == "+":
                        if opb == "+" or opa == "-" or opb == "-":
                            rule = "associativity"
                        elif (right[a] if opa == "+" else a) > b:
                            rule = "commutativity"
                        else:
                            rule = None
                    else:
                        rule = "associativity" if (opa == "-" or opb == "-") else None
                    if rule is None:
                        if same:
                            rule = "trivial_identity"
                        elif shift[a] and shift[b]:
                            rule = "redundant_param"
                        elif op == "-" and negate[b]:
                            rule = "sign"
                        else:
                            rule = dag.check_new(op, a, b)
                    if rule:
                        pruned[rule] += 1
                        continue
                    out.append(add(op, a, b, s, d, True if pa else has_param[b],
                        scale[a] and scale[b], negate[a] and negate[b], shift[a] or shift[b]))  # fmt: skip
            # * and /
            for op in multiplicative:
                if op == "*":
                    if opb == "*" or opa == "/" or opb == "/":
                        rule = "associativity"
                    elif (right[a] if opa == "*" else a) > b:
                        rule = "commutativity"
                    else:
                        rule = None
                else:
                    rule = "associativity" if (opa == "/" or opb == "/") else None
                if rule is None:
                    if same:
                        rule = "trivial_identity"
                    elif scale[a] and scale[b]:
                        rule = "redundant_param"
                    elif op == "/" and b == _PARAM:
                        rule = "param_division"
                    else:
                        rule = dag.check_new(op, a, b)
                if rule:
                    pruned[rule] += 1
                    continue
                if da is None or db is None:
                    d = None
                elif op == "*":
                    d = tuple(x + y for x, y in zip(da, db))
                else:
                    d = tuple(x - y for x, y in zip(da, db))
                out.append(add(op, a, b, s, d, True if pa else has_param[b],
                    scale[a] or scale[b], negate[a] or negate[b], False))  # fmt: skip
    return len(binary) * len(lefts) * len(rights)


def _top_rule(dag: FormulaDag, i: int) -> str | None:
    op, a, b = dag.op[i], dag.left[i], dag.right[i]
    if op == "C":
        return "top_no_input"
    if dag.dim[i] is None or dag.scale[i]:
        return "top_free_scale"
    if dag.shift[i]:
        return "top_offset"
    if b < 0 and op != "x" and OPERATORS[op].top_rule:
        return OPERATORS[op].top_rule
    if op == "-" and (a > b or dag.negate[a]):
        return "top_sign"
    if op == "/" and a > b:
        return "top_reciprocal"
    if op == "+" and dag.op[a] != "+":
        scaled_a = dag.op[a] == "*" and dag.left[a] == _PARAM
        scaled_b = dag.op[b] == "*" and dag.left[b] == _PARAM
        if scaled_a != scaled_b:
            t, u = (dag.right[a], b) if scaled_a else (dag.right[b], a)
            if t > u:
                return "top_rescale"
    return None
