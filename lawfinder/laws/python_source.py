"""Write a fitted formula as a small, self-contained Python/torch function.

The generated module imports only torch and defines
``conserved_quantity(x) -> Tensor``, where ``x[..., k]`` is the k-th variable.
Constants are written with ``repr(float)``, so the function evaluates the
formula exactly as fitted, and the tree's grouping is kept.

Examples
--------
>>> import dsl
>>> f = dsl.parse("p**2 - 3.0*cos(q)", {"q": "rad", "p": "kg*m**2/s"})
>>> torch_expression(f.root, {"q": "q", "p": "p"})
'torch.square(p) - 3.0 * torch.cos(q)'
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping, Sequence

from dsl import Formula
from dsl.nodes import Input, Node, Param, Unary, inputs
from dsl.operators import OPERATORS

_ATOM = 3
_RESERVED = {"x", "torch", "VARIABLES", "conserved_quantity"}


def local_names(variables: Sequence[str]) -> dict[str, str]:
    """A safe local name per variable: itself unless it is a keyword or clashes with ours."""
    taken = set(_RESERVED)
    names = {}
    for name in variables:
        local = name
        while keyword.iskeyword(local) or local in taken:
            local += "_"
        taken.add(local)
        names[name] = local
    return names


def torch_expression(node: Node, names: Mapping[str, str]) -> str:
    """Python source of `node` over torch tensors bound to `names` (variable -> local name)."""

    def emit(n: Node) -> tuple[str, int]:
        if isinstance(n, Input):
            return names[n.name], _ATOM
        if isinstance(n, Param):
            if n.value is None:
                raise ValueError("the formula has a free parameter: export a fitted formula")
            text = repr(float(n.value))
            if not math.isfinite(n.value):
                text = f"float({text!r})"
            return (f"({text})" if text.startswith("-") else text), _ATOM
        if isinstance(n, Unary):
            return f"torch.{OPERATORS[n.op].array}({emit(n.arg)[0]})", _ATOM
        prec = OPERATORS[n.op].precedence
        left, left_prec = emit(n.left)
        right, right_prec = emit(n.right)
        if left_prec < prec:
            left = f"({left})"
        if right_prec <= prec:
            right = f"({right})"
        return f"{left} {n.op} {right}", prec

    return emit(node)[0]


def python_source(
    formula: Formula,
    variables: Sequence[str],
    description: str = "",
    params: Mapping[str, Mapping] | None = None,
    template: str | None = None,
) -> str:
    """Source of a module defining ``conserved_quantity(x: torch.Tensor) -> torch.Tensor``.

    Parameters
    ----------
    formula
        A fitted formula (every parameter has a value).
    variables
        The state layout: ``x[..., k]`` is ``variables[k]``.
    description
        Extra docstring paragraph, e.g. the run and its conservation ratio.
    params, template
        The parameters (name -> ``{"value", "unit"}``) and template as the run reported
        them; by default they are read off `formula`.

    Returns
    -------
    str
        Python source that imports only torch; ``exec`` it or save it as a ``.py`` file.
    """
    variables = list(variables)
    missing = sorted(inputs(formula.root) - set(variables))
    if missing:
        raise ValueError(f"formula uses {', '.join(missing)}, not among the variables {variables}")
    names = local_names(variables)
    used = inputs(formula.root)
    body = [f"    {names[v]} = x[..., {k}]" for k, v in enumerate(variables) if v in used]
    expression = torch_expression(formula.root, names)
    if not used:
        expression = f"torch.full_like(x[..., 0], {expression})"
    doc = _docstring(formula, variables, description, params, template)
    return "\n".join(
        [
            f'"""{doc}"""',
            "",
            "import torch",
            "",
            f"VARIABLES = {tuple(variables)!r}",
            "",
            "",
            "def conserved_quantity(x: torch.Tensor) -> torch.Tensor:",
            '    """The conserved quantity at states ``x[..., len(VARIABLES)]``; shape ``x.shape[:-1]``."""',
            *body,
            f"    return {expression}",
            "",
        ]
    )


def _docstring(
    formula: Formula,
    variables: Sequence[str],
    description: str,
    params: Mapping[str, Mapping] | None,
    template: str | None,
) -> str:
    units = formula.units
    try:
        param_units = [d.to_units() for d in formula.param_units]
        result_unit = formula.unit.to_units()
    except ValueError:
        param_units, result_unit = ["?"] * formula.n_params, "?"
    if params is None:
        values = formula.param_values
        params = {
            f"C{j}": {"value": v, "unit": u} for j, (v, u) in enumerate(zip(values, param_units))
        }
    lines = [
        "Conserved quantity found by lawfinder.",
        "",
        f"    {formula.to_string()}",
        "",
        f"Template: {template or formula.template().to_string()}",
        "Variables, x[..., k]:",
        *(f"    {k}: {v} [{units.get(v, '?')}]" for k, v in enumerate(variables)),
    ]
    if params:
        lines.append("Parameters:")
        lines += [f"    {k} = {p.get('value')!r} [{p.get('unit', '?')}]" for k, p in params.items()]
    lines.append(f"Unit of the result: {result_unit}")
    if description:
        lines += ["", description.strip()]
    text = "\n".join(lines) + "\n"
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
