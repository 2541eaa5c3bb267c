"""A normal form for formula trees under the value-preserving rewrites the enumerator uses.

`canonicalize` rewrites bottom-up: ``a / C`` -> ``C * a`` (parameter division,
C free); ``a - b`` -> ``a + b`` when b's family is closed under negation (a free
parameter absorbs the sign); sums and differences are flattened into
``(t1 + t2 + ...) - (n1 + n2 + ...)`` and products and quotients into
``(f1 * f2 * ...) / (g1 * g2 * ...)``, each side sorted (commutativity) and
rebuilt as a left-leaning chain (associativity). The result denotes the same
function family, and canonicalizing it again changes nothing.

The enumerator orders operands by node age instead of by text, so its
representatives can differ in operand order from this form; both are normal
forms of the same equivalence classes.
"""

from __future__ import annotations

from dsl.nodes import Binary, Node, Param, Unary, to_string
from dsl.operators import OPERATORS


def canonicalize(node: Node) -> Node:
    if isinstance(node, Unary):
        return Unary(node.op, canonicalize(node.arg))
    if not isinstance(node, Binary):
        return node
    left, right = canonicalize(node.left), canonicalize(node.right)
    if node.op in "+-":
        return _chain(Binary(node.op, left, right), "+", "-")
    return _chain(Binary(node.op, left, right), "*", "/")


def _chain(node: Node, plus: str, minus: str) -> Node:
    pos: list[Node] = []
    neg: list[Node] = []

    def collect(n: Node, positive: bool) -> None:
        if isinstance(n, Binary) and n.op == plus:
            collect(n.left, positive)
            collect(n.right, positive)
        elif isinstance(n, Binary) and n.op == minus:
            collect(n.left, positive)
            collect(n.right, not positive)
        else:
            (pos if positive else neg).append(n)

    collect(node, True)
    if plus == "+":  # a - b is a + b when a free parameter absorbs b's sign
        pos += [n for n in neg if _negation_closed(n)]
        neg = [n for n in neg if not _negation_closed(n)]
    else:  # a / C is C' * a for a free parameter
        pos += [n for n in neg if _free_param(n)]
        neg = [n for n in neg if not _free_param(n)]
    if not pos:  # keep the head positive: (-a) - b is not a DSL tree, so leave it as it was
        return node
    head = _fold(sorted(pos, key=_key), plus)
    return head if not neg else Binary(minus, head, _fold(sorted(neg, key=_key), plus))


def _fold(items: list[Node], op: str) -> Node:
    out = items[0]
    for item in items[1:]:
        out = Binary(op, out, item)
    return out


def _key(node: Node) -> tuple:
    return (isinstance(node, Param) and node.value is None) is False, to_string(node)


def _free_param(node: Node) -> bool:
    return isinstance(node, Param) and node.value is None


def _negation_closed(node: Node) -> bool:
    """Whether the family of `node` is closed under negation (some free parameter absorbs the sign)."""
    if _free_param(node):
        return True
    if isinstance(node, Unary):
        odd = ("negate", "negate") in OPERATORS[node.op].closure  # op(-a) = -op(a)
        return odd and _negation_closed(node.arg)
    if isinstance(node, Binary):
        if OPERATORS[node.op].sign:  # * and /
            return _negation_closed(node.left) or _negation_closed(node.right)
        return _negation_closed(node.left) and _negation_closed(node.right)
    return False
