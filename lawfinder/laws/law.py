"""A conservation law as an object: its fitted `dsl` tree, parameters with units, evidence and rank.

Every stage passes `Law` objects built from the tree the fit produced (the candidates table's
``root`` or ``tree`` with its fitted ``params``), never from printed text: sympy, LaTeX, torch
and Python source are all made from the tree, and the parameters and their units are read off
it, so a law the fit produced reaches the ranking, the run folder and the exports whatever its
printed form (``w1**4`` is ``square(square(w1))`` here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

import dsl
from dsl import nodes
from dsl.nodes import Node

__all__ = ["EVIDENCE", "Law", "Parameter", "law_from_entry", "laws_from_table"]

EVIDENCE = ("status", "conservation_ratio", "p_value", "noise_ratio", "p_exact", "surrogate_ratio",
            "smooth_ratio", "independent", "method")  # fmt: skip
"""Columns of the candidates table a law carries as its `Law.evidence`."""


@dataclass(frozen=True)
class Parameter:
    """A fitted constant: its value and the unit dimension analysis gives it (None: unknown)."""

    value: float | None
    unit: str | None = None

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True, eq=False)
class Law:
    """A conserved quantity: its fitted formula tree with the evidence for it and its rank.

    Parameters
    ----------
    name : str
        The formula as text, for display (sympy's printing of the fitted tree).
    node : dsl.Node
        The fitted formula tree: every representation is made from it.
    ratio : float
        Conservation ratio: how much better it is conserved on the data than on random sequences.
    size : int
        Number of nodes (default: counted on `node`).
    exact : bool or None
        True when conserved within the measurement noise, False for an approximation.
    duplicates : tuple of str
        Affine rewrites of this law (``a*g + b``) the ranking merged into it.
    units : dict of str to str
        A pint unit per variable, in state-column order.
    evidence : dict
        The acceptance test's numbers (keys of `EVIDENCE`: ``status``, ``p_value``, ...).
    rank : int or None
        Place in the ranking, 1 is best; None before ranking.
    tailoring : dict
        What the ranking measured: ``test_rmse``, ``seeds_helped``, ``per_seed``, ...

    Examples
    --------
    >>> law = Law.parse("p**2 - 3.0*cos(q)", {"q": "rad", "p": "kg*m**2/s"})
    >>> law.params
    {'C0': Parameter(value=3.0, unit='m**4*kg**2*s**-2')}
    >>> law.latex()
    'p^{2} - 3 \\\\cos{\\\\left(q \\\\right)}'
    >>> float(law.evaluate([[0.0, 2.0]])[0])
    1.0
    """

    name: str
    node: Node
    ratio: float = math.nan
    size: int = 0
    exact: bool | None = None
    duplicates: tuple[str, ...] = ()
    units: Mapping[str, str] = field(default_factory=dict)
    evidence: Mapping[str, object] = field(default_factory=dict)
    rank: int | None = None
    tailoring: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.size:
            object.__setattr__(self, "size", nodes.size(self.node))
        object.__setattr__(self, "duplicates", tuple(self.duplicates))

    @classmethod
    def parse(cls, text: str, units: Mapping[str, str]) -> Law:
        """A law from formula text with numbers for its constants (a formula of your own)."""
        formula = dsl.parse(text, units)
        return cls(name=text, node=formula.root, units=dict(units))

    @property
    def formula(self) -> dsl.Formula:
        """The fitted formula as a `dsl.Formula` over the variables."""
        return dsl.Formula(self.node, dict(self.units))

    @property
    def template(self) -> str:
        """The formula with its constants freed: ``p**2 + C0*cos(q)``."""
        return nodes.to_string(nodes.with_params(self.node, [None] * len(nodes.params(self.node))))

    @property
    def params(self) -> dict[str, Parameter]:
        """Fitted constants ``C0, C1, ...`` (depth-first order) with their units."""
        values = [p.value for p in nodes.params(self.node)]
        units: list[str | None] = [None] * len(values)
        if self.units and values:
            try:
                typing = dsl.infer(nodes.with_params(self.node, [None] * len(values)), dsl.dimensions(self.units))
                units = [d.to_units() for d in typing.params]
            except ValueError:
                pass
        return {f"C{j}": Parameter(v, u) for j, (v, u) in enumerate(zip(values, units))}

    @property
    def status(self) -> str | None:
        """``"law"`` (exact within the noise), ``"approximate"``, or None when unknown."""
        if self.evidence.get("status"):
            return str(self.evidence["status"])
        return None if self.exact is None else ("law" if self.exact else "approximate")

    @property
    def variables(self) -> list[str]:
        return list(self.units) or sorted(nodes.inputs(self.node))

    def sympy(self):
        """The formula as a sympy expression."""
        from dsl.export import to_sympy

        return to_sympy(self.node)

    def latex(self, digits: int = 4) -> str:
        """The formula as LaTeX, constants to `digits` significant digits."""
        from dsl.export import to_latex

        return to_latex(self.node, digits)

    def torch(self, variables: Sequence[str] | None = None):
        """A torch function ``g(x) -> (..., 1)`` of states ``x[..., len(variables)]``."""
        from lawfinder.laws.compile import node_to_torch

        return node_to_torch(self.node, list(variables or self.variables))

    def evaluate(self, states) -> np.ndarray:
        """The law's value at every state of an ``(..., d)`` array: shape ``(...)``."""
        import torch

        with torch.no_grad():
            return self.torch()(torch.as_tensor(np.asarray(states, dtype=np.float64)))[..., 0].numpy()

    def tailoring_loss(self, dt: float, form: str = "infinitesimal"):
        """The law as a `lawfinder.tailoring.NoetherLoss` for a predictor of dx/dt."""
        from lawfinder.tailoring import NoetherLoss

        return NoetherLoss(self.torch(), form, dt)

    def python(self, description: str = "") -> str:
        """Source of a torch-only module defining ``conserved_quantity(x)``."""
        from lawfinder.laws.python_source import python_source

        params = {k: {"value": p.value, "unit": p.unit} for k, p in self.params.items()}
        return python_source(self.formula, self.variables, description, params, self.template)

    def fallback_key(self) -> tuple:
        """Exact laws first, simplest first (their ratios measure noise, not conservation: 1e15
        against 1e299 on clean Kepler data); then the others by ratio, then simplicity."""
        ratio = self.ratio if math.isfinite(self.ratio) else -math.inf
        if self.exact:
            return (False, self.size, -ratio)
        return (True, -ratio, self.size)

    def with_rank(self, rank: int | None, tailoring: Mapping | None = None) -> Law:
        return replace(self, rank=rank, tailoring=dict(tailoring or {}))

    def to_dict(self) -> dict:
        """The law's part of a ``summary.json`` ranking entry (JSON-ready)."""
        return {"formula": self.name, "template": self.template, "latex": self.latex(),
                "tree": nodes.to_dict(self.node),
                "params": {k: {"value": p.value, "unit": p.unit} for k, p in self.params.items()},
                "conservation_ratio": _num(self.ratio), "size": self.size, "exact": self.exact,
                "duplicates": list(self.duplicates), "evidence": dict(self.evidence)}  # fmt: skip

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        rank = "" if self.rank is None else f", rank={self.rank}"
        return f"Law({self.name!r}, status={self.status!r}, ratio={self.ratio:.3g}{rank})"


def _num(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _evidence(row: Mapping) -> dict:
    out = {}
    for key in EVIDENCE:
        value = row.get(key)
        if isinstance(value, (bool, np.bool_)):
            out[key] = bool(value)
        elif isinstance(value, str):
            out[key] = value
        elif value is not None:
            out[key] = _num(value)
    return out


def laws_from_table(table, dag, units: Mapping[str, str] | None = None) -> list[Law]:
    """The laws of a candidates table's rows, built from ``root`` (or ``tree``) + fitted ``params``."""
    import json

    out = []
    for row in table.to_dict("records"):
        params = json.loads(row["params"])
        values = [params[f"C{j}"]["value"] for j in range(len(params))]
        tree = row.get("tree")
        template = nodes.from_dict(json.loads(tree)) if isinstance(tree, str) else dag.to_node(int(row["root"]))
        exact = row.get("exact")
        if "status" in row:  # the calibrated acceptance test: "law" = exact within noise
            exact = row["status"] == "law"
        exact = None if exact is None or (isinstance(exact, float) and math.isnan(exact)) else bool(exact)
        out.append(Law(name=str(row["formula"]), node=nodes.with_params(template, values),
                       ratio=float(row["conservation_ratio"]), size=int(row["size"]), exact=exact,
                       units=dict(units or {}), evidence=_evidence(row)))  # fmt: skip
    return out


LAW_KEYS = ("formula", "template", "latex", "tree", "params", "conservation_ratio", "size", "exact",
            "duplicates", "evidence", "rank")  # fmt: skip


def law_from_entry(entry: Mapping, units: Mapping[str, str]) -> Law:
    """The law of a ``summary.json`` ranking entry: its stored tree (text only for old summaries).

    Raises ``ValueError`` when the entry has neither a readable tree nor a readable formula.
    """
    if isinstance(entry.get("tree"), dict):
        node = nodes.from_dict(entry["tree"])
    elif isinstance(entry.get("formula"), str):
        node = dsl.parse(entry["formula"], units).root
    else:
        raise ValueError("no 'tree' and no 'formula' string")
    ratio = _num(entry.get("conservation_ratio"))
    return Law(name=str(entry.get("formula") or nodes.to_string(node)), node=node,
               ratio=math.nan if ratio is None else ratio, size=int(entry.get("size") or 0),
               exact=entry.get("exact"), duplicates=tuple(entry.get("duplicates") or ()), units=dict(units),
               evidence=dict(entry.get("evidence") or {}), rank=entry.get("rank"),
               tailoring={k: v for k, v in entry.items() if k not in LAW_KEYS})  # fmt: skip
