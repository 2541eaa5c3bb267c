"""The operator table is the one source of operator facts: every consumer handles every entry.

Each check runs for every operator of `dsl.operators.OPERATORS` and for one registered
here only (``tanh``), which proves that an operator is added in one place.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import dsl
from dsl import nodes, operators
from dsl.dimension import DIMENSIONLESS, Dimension
from dsl.enumerate import enumerate_formulas
from dsl.evaluate import array_function
from dsl.export import to_latex, to_sympy
from dsl.nodes import Binary, Input, Param, Unary
from dsl.parse import parse_node
from dsl.units import DimensionError, infer
from lawfinder.laws.compile import (
    evaluate_features,
    evaluate_skeleton,
    group_formulas,
    node_to_torch,
)
from lawfinder.laws.python_source import torch_expression
from tests.tolerance import assert_close

TANH = operators.Operator("tanh", 1, math.tanh, "tanh", lambda sp, a: sp.tanh(a), "tanh({0})",
                          closure=(("negate", "negate"),))  # fmt: skip
X, Y = Input("x"), Input("y")
POINTS = np.array([[0.3, 1.1], [0.7, 0.4], [1.3, 1.9], [1.9, 0.8]])  # (x, y) in every op's domain
METRE = Dimension.from_units("m")


@pytest.fixture(params=[*operators.OPERATORS, "tanh"])
def op(request, monkeypatch):
    if request.param == "tanh":
        monkeypatch.setitem(operators.OPERATORS, "tanh", TANH)
    return operators.get(request.param)


def tree(op, left=X, right=Y):
    return Unary(op.name, left) if op.arity == 1 else Binary(op.name, left, right)


def expected(op) -> np.ndarray:
    return np.array([op.math(*row[: op.arity]) for row in POINTS])


def test_sympy_latex_and_text_forms(op):
    node = tree(op)
    fn = sympy.lambdify(["x", "y"], to_sympy(node), "numpy")
    assert_close(np.broadcast_to(fn(*POINTS.T), len(POINTS)), expected(op))
    latex = to_latex(node)
    assert latex and latex != to_latex(X)
    assert parse_node(nodes.to_string(node)) == node  # source form
    assert parse_node(sympy.sstr(to_sympy(node))) is not None  # what sympy prints
    assert nodes.from_dict(nodes.to_dict(node)) == node


def test_torch_compile_and_python_export(op):
    node = tree(op)
    x = torch.tensor(POINTS)
    assert_close(node_to_torch(node, ["x", "y"])(x)[..., 0].numpy(), expected(op))
    code = torch_expression(node, {"x": "x", "y": "y"})
    assert_close(eval(code, {"torch": torch, "x": x[:, 0], "y": x[:, 1]}).numpy(), expected(op))  # noqa: S307
    assert_close(array_function(node, ["x", "y"], np)(POINTS)[..., 0], expected(op))


def test_dimension_rule(op):
    free = {"x": DIMENSIONLESS, "y": DIMENSIONLESS}
    assert infer(tree(op), free).result == DIMENSIONLESS
    metres = {"x": METRE, "y": METRE}
    if op.arity == 2:
        mixed = {"x": METRE, "y": Dimension.from_units("s")}
        if op.sign == 0:
            assert infer(tree(op), metres).result == METRE
            with pytest.raises(DimensionError):
                infer(tree(op), mixed)
        else:
            assert infer(tree(op), mixed).result == METRE * mixed["y"] ** op.sign
    elif op.power is not None:
        assert infer(tree(op), metres).result == METRE**op.power
    else:
        with pytest.raises(DimensionError):
            infer(tree(op), metres)


def test_enumerator_uses_an_operator_only_when_asked(op):
    dims = {"x": DIMENSIONLESS, "y": DIMENSIONLESS}
    default = enumerate_formulas(dims, 3)
    assert (op.name in default.dag.op) == (op.name in operators.PAPER_OPS)
    chosen = enumerate_formulas(dims, 4, ops=set(operators.PAPER_OPS) | {op.name})
    assert op.name in chosen.dag.op
    for root in chosen.roots:
        infer(chosen.dag.to_node(root), dims)


def test_batched_compile_matches_the_tree_compiler(op):
    """Features, skeletons (in-place and not) and `node_to_torch` agree on formulas using the op."""
    dims = {"x": DIMENSIONLESS, "y": DIMENSIONLESS}
    e = enumerate_formulas(dims, 4, ops=set(operators.PAPER_OPS) | {op.name})
    roots = [r for r in e.roots if op.name in {n.op for n in nodes.walk(e.dag.to_node(r)) if hasattr(n, "op")}]
    assert roots
    x = torch.tensor(POINTS)
    groups, feature_ids = group_formulas(e.dag, roots)
    features = evaluate_features(e.dag, feature_ids, x)
    for group in groups:
        leaves = features[torch.tensor(group.feature_refs)].unsqueeze(2)
        params = torch.full((len(group.formulas), 1, group.n_params, 1), 0.6, dtype=x.dtype)
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                got = evaluate_skeleton(group.skeleton, leaves, params.requires_grad_(grad))[:, 0]
            for k, pos in enumerate(group.formulas):
                node = nodes.with_params(e.dag.to_node(roots[pos]), [0.6] * group.n_params)
                want = node_to_torch(node, ["x", "y"])(x)[..., 0]
                assert torch.allclose(got[k].detach(), want, equal_nan=True), nodes.to_string(node)


def test_default_search_keeps_the_papers_operators():
    assert operators.PAPER_OPS == ("+", "-", "*", "/", "sin", "cos", "square")
    e = enumerate_formulas({"q": DIMENSIONLESS, "p": METRE}, 5)
    assert set(e.dag.op) - {"C", "x"} == set(operators.PAPER_OPS)
    with pytest.raises(ValueError, match="unknown operator"):
        enumerate_formulas({"q": DIMENSIONLESS}, 3, ops=["+", "tan"])


@pytest.mark.parametrize(
    "text, want",
    [
        ("w1**4 + w2**4", "(w1**2)**2 + (w2**2)**2"),
        ("x**3", "x**2*x"),
        ("x**(-1)", "1.0/x"),
        ("x**-2", "1.0/x**2"),
        ("x**(3/2)", "x*sqrt(x)"),
        ("x**(-1/2)", "1.0/sqrt(x)"),
        ("x**(-3/2)", "1.0/(x*sqrt(x))"),
        ("x**0.5 + exp(-x)*log(x)", None),
    ],
)
def test_sympy_powers_are_read(text, want):
    node = parse_node(text)
    if want is not None:
        assert nodes.to_string(node) == want
    env = {"x": 1.7, "w1": 0.8, "w2": 1.3}
    value = eval(text, {"sqrt": math.sqrt, "exp": math.exp, "log": math.log}, env)  # noqa: S307
    assert_close(array_function(node, list(env), np)(np.array(list(env.values())))[0], value)


def _random_formula():
    names = ["q", "p"]
    value = st.floats(0.25, 3).flatmap(lambda v: st.sampled_from([v, -v]))
    leaf = st.one_of(st.sampled_from(names).map(Input), value.map(Param))
    unary, binary = operators.names(1), operators.names(2)
    return st.recursive(
        leaf,
        lambda kids: st.one_of(
            st.tuples(st.sampled_from(unary), kids).map(lambda t: Unary(*t)),
            st.tuples(st.sampled_from(binary), kids, kids).map(lambda t: Binary(*t)),
        ),
        max_leaves=6,
    )


@settings(max_examples=300, deadline=None)
@given(_random_formula())
def test_sympy_text_round_trip_keeps_values(node):
    """to_sympy -> sympy.sstr -> parse -> evaluate gives the original's values (where it is real)."""
    expr = to_sympy(node)
    assume(not expr.has(sympy.I, sympy.zoo, sympy.nan, sympy.oo, -sympy.oo))
    back = parse_node(sympy.sstr(expr), ["q", "p"])
    states = np.array([[0.4, 1.3], [1.2, 0.6], [-0.7, 0.9], [0.9, -1.4], [-1.1, -0.5]])
    with np.errstate(all="ignore"):
        a = array_function(node, ["q", "p"], np)(states)[..., 0]
        b = array_function(back, ["q", "p"], np)(states)[..., 0]
    ok = np.isfinite(a) & (np.abs(a) < 1e8)
    np.testing.assert_allclose(b[ok], a[ok], rtol=1e-7, atol=1e-7, err_msg=sympy.sstr(expr))


DIMENSION = st.builds(
    lambda a, b, c: Dimension({"[length]": a, "[time]": b, "[mass]": c}),
    *[st.fractions(-3, 3, max_denominator=2)] * 3,
)


@settings(max_examples=100, deadline=None)
@given(DIMENSION)
def test_sqrt_halves_and_square_doubles_the_dimension(d):
    x = {"x": d}
    assert infer(Unary("sqrt", Unary("square", X)), x).result == d
    assert infer(Unary("square", Unary("sqrt", X)), x).result == d
    assert infer(Unary("sqrt", X), x).result == d ** Fraction(1, 2)
    assert infer(Binary("*", Unary("sqrt", X), Unary("sqrt", X)), x).result == d


@settings(max_examples=100, deadline=None)
@given(DIMENSION, st.sampled_from(["log", "exp"]))
def test_log_and_exp_need_a_dimensionless_argument(d, name):
    x = {"x": d}
    if d.is_dimensionless:
        assert infer(Unary(name, X), x).result == DIMENSIONLESS
        assert infer(Unary("exp", Unary("log", X)), x).result == DIMENSIONLESS
    else:
        with pytest.raises(DimensionError):
            infer(Unary(name, X), x)
        with pytest.raises(DimensionError):
            infer(Unary("exp", Unary("log", X)), x)
    typing = infer(Unary(name, Binary("*", Param(None), X)), x)  # a parameter takes 1/x's unit
    assert typing.params == (d**-1,) and typing.result == DIMENSIONLESS


def test_units_from_pint_strings():
    assert dsl.parse("sqrt(x)", {"x": "m**2"}).unit == METRE
    assert dsl.parse("x**(3/2)", {"x": "m"}).unit == METRE ** Fraction(3, 2)
    assert dsl.parse("log(x/C0)", {"x": "m"}).param_units == (METRE,)
    with pytest.raises(DimensionError):
        dsl.parse("log(x)", {"x": "m"})
    with pytest.raises(DimensionError):
        dsl.parse("exp(x) + x", {"x": "s"})


CONSUMERS = ["dsl/nodes.py", "dsl/parse.py", "dsl/export.py", "dsl/units.py", "dsl/canonical.py",
             "dsl/enumerate.py", "dsl/evaluate.py", "dsl/formula.py", "lawfinder/laws/compile.py",
             "lawfinder/laws/python_source.py"]  # fmt: skip


@pytest.mark.parametrize("path", CONSUMERS)
def test_consumers_spell_no_operator_names(path):
    """Operator names appear as strings only in the table (docstrings aside)."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parent.parent / path).read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)}  # fmt: skip
    spelled = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docs}
    assert not spelled & set(operators.names(1)), path
