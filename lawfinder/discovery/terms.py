"""The term library of the sparse search: parameter-free, units-typed sub-formulas, simplest first.

A law found by `lawfinder.discovery.sparse` is ``T0 + C1*T1 + ... + Ck*Tk`` over these
terms. The library holds

- monomials in the variables up to `degree` (3 for up to 4 variables, else 2);
- ``sin v`` and ``cos v`` of dimensionless variables (angles), ``log v`` of
  dimensionless variables that are positive on the data;
- radial terms of variables that share a unit: the norm ``r = sqrt(a^2 + b^2)``
  of each pair, the distance ``sqrt((a1 - a2)^2 + (b1 - b2)^2)`` of two disjoint
  pairs, each as ``r`` and ``1/r`` and times each variable it is made of
  (``x/r`` is in the Laplace-Runge-Lenz vector). The sparse search drops a
  radial term whose norm comes near zero on the data (within 10 noise
  standard deviations), where propagating the noise through it breaks down.

Each term has a `cost` that orders the library (simpler first): the number of
distinct variables it multiplies, then its kind, then its degree. The sparse
search eliminates costly terms first, so a law is written in the simplest terms
that express it (``v1**2 + v2**2 + ...`` rather than a mix of normal modes).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dsl.nodes import Binary, Input, Node, Param, Unary, from_dict
from dsl.operators import PAPER_OPS

ENUMERATED_OPS = frozenset(PAPER_OPS)  # what the exhaustive search uses by default


@dataclass(frozen=True)
class Term:
    """``numerator / denominator`` (either may be None: 1)."""

    numerator: Node | None
    denominator: Node | None
    cost: tuple
    radius: Node | None = None  # the norm inside a radial term
    members: tuple[str, ...] = ()  # the variables of that norm

    @property
    def node(self) -> Node:
        """The term alone, for evaluation (a lone ``1/r`` is ``C/r`` with C = 1)."""
        top = self.numerator if self.numerator is not None else Param(1.0)
        return top if self.denominator is None else Binary("/", top, self.denominator)

    @property
    def can_lead(self) -> bool:
        """A law's first term has no coefficient, so it must not be a bare ``1/r``."""
        return self.numerator is not None

    def scaled(self) -> Node:
        """``C * term`` as a template piece with one free parameter."""
        if self.numerator is None:
            return Binary("/", Param(None), self.denominator)
        top = Binary("*", Param(None), self.numerator)
        return top if self.denominator is None else Binary("/", top, self.denominator)


def monomial(variables: Sequence[str], powers: Sequence[int]) -> Node:
    factors = []
    for name, k in zip(variables, powers):
        x = Input(name)
        factors += [Unary("square", x)] * (k // 2) + [x] * (k % 2)
    out = factors[0]
    for f in factors[1:]:
        out = Binary("*", out, f)
    return out


def _norm(a: Node, b: Node) -> Node:
    return Unary("sqrt", Binary("+", Unary("square", a), Unary("square", b)))


def library(
    variables: Sequence[str], dims: Mapping[str, object], positive: Sequence[str] = (), degree: int | None = None
) -> list[Term]:
    """Every term over `variables` with dimensions `dims` (`dsl.dimensions`), ordered by cost."""
    variables = list(variables)
    if degree is None:
        degree = 3 if len(variables) <= 4 else 2
    terms: list[Term] = []
    for total in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(len(variables)), total):
            powers = [combo.count(i) for i in range(len(variables))]
            distinct = sum(p > 0 for p in powers)
            terms.append(Term(monomial(variables, powers), None, (distinct, 0, total, combo)))
    for i, v in enumerate(variables):
        if dims[v].is_dimensionless:
            for k, op in enumerate(("cos", "sin")):
                terms.append(Term(Unary(op, Input(v)), None, (1, 1, k, (i,))))
            if v in positive:
                terms.append(Term(Unary("log", Input(v)), None, (1, 1, 2, (i,))))
    terms += _radial(variables, dims)
    return sorted(terms, key=lambda t: t.cost)


def _radial(variables: list[str], dims) -> list[Term]:
    out: list[Term] = []
    groups: dict[object, list[int]] = {}
    for i, v in enumerate(variables):
        groups.setdefault(dims[v], []).append(i)
    for members in groups.values():
        pairs = list(itertools.combinations(members, 2))
        shapes = [((a,), (b,), _norm(Input(variables[a]), Input(variables[b]))) for a, b in pairs]
        for (a1, b1), (a2, b2) in itertools.combinations(pairs, 2):
            if len({a1, b1, a2, b2}) < 4:
                continue
            for c, d in ((a2, b2), (b2, a2)):
                diff = [Binary("-", Input(variables[p]), Input(variables[q])) for p, q in ((a1, c), (b1, d))]
                shapes.append(((a1, c), (b1, d), _norm(*diff)))
        for first, second, r in shapes:
            used = sorted(set(first + second))
            kind, names = 2 if len(used) == 2 else 3, tuple(variables[i] for i in used)
            out.append(Term(r, None, (len(used), kind, 0, tuple(used)), r, names))
            out.append(Term(None, r, (len(used), kind, 1, tuple(used)), r, names))
            for i in used:
                out.append(Term(Input(variables[i]), r, (len(used), kind, 2, tuple(used) + (i,)), r, names))
    return out


def law_template(terms: Sequence[Term]) -> Node:
    """``T0 + C1*T1 + ...``: the first term leads (it must `can_lead`)."""
    lead = terms[0]
    out = lead.numerator if lead.denominator is None else Binary("/", lead.numerator, lead.denominator)
    for term in terms[1:]:
        out = Binary("+", out, term.scaled())
    return out


def beyond_enumeration(node: Node, max_size: int) -> bool:
    """True unless an exhaustive search of size `max_size` over the paper's operators holds this formula."""
    from dsl.nodes import size, walk

    ops = {n.op for n in walk(node) if isinstance(n, (Unary, Binary))}
    return size(node) > max_size or not ops <= ENUMERATED_OPS


def template_of(dag, root, tree):
    """A candidate's template: its enumeration DAG node, or (sparse laws) its stored tree."""
    if isinstance(tree, str):
        return from_dict(json.loads(tree))
    return dag.to_node(int(root))
