"""The public formula types: `Formula` (a tree over typed variables) and `FormulaSet`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dsl import nodes
from dsl.dimension import Dimension, UnitError
from dsl.enumerate import Enumeration, enumerate_formulas
from dsl.nodes import Node
from dsl.operators import PAPER_OPS
from dsl.parse import parse_node
from dsl.units import Typing, infer

__all__ = ["Formula", "FormulaSet", "parse", "dimensions"]


def dimensions(units: Mapping[str, str]) -> dict[str, Dimension]:
    """Map variable name -> `Dimension`, checking names and unit strings."""
    out = {}
    for name, unit in units.items():
        if not str(name).isidentifier() or str(name).startswith("d_"):
            raise UnitError(f"bad variable name {name!r}: use a Python identifier not starting with d_")
        try:
            out[name] = Dimension.from_units(unit)
        except UnitError as err:
            raise UnitError(f"variable {name!r}: {err}") from None
    return out


@dataclass(frozen=True)
class Formula:
    """A formula over named variables with units; parameters may hold fitted values.

    Examples
    --------
    >>> f = Formula.parse("p**2 - 2.99*cos(q)", units={"q": "rad", "p": "kg*m**2/s"})
    >>> f.size, f.n_params
    (7, 1)
    >>> str(f.param_units[0])
    '[length]**4*[mass]**2*[time]**-2'
    """

    root: Node
    units: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str, units: Mapping[str, str]) -> "Formula":
        """Read `text`; every variable must be a key of `units`. Checks dimensions."""
        formula = cls(parse_node(text, variables=list(units)), dict(units))
        _ = formula.typing  # raises DimensionError when no unit assignment is valid
        return formula

    @property
    def typing(self) -> Typing:
        return infer(self.root, dimensions(self.units))

    @property
    def size(self) -> int:
        return nodes.size(self.root)

    @property
    def n_params(self) -> int:
        return len(nodes.params(self.root))

    @property
    def param_values(self) -> list[float | None]:
        return [p.value for p in nodes.params(self.root)]

    @property
    def param_units(self) -> tuple[Dimension, ...]:
        return self.typing.params

    @property
    def unit(self) -> Dimension:
        return self.typing.result

    @property
    def variables(self) -> list[str]:
        return sorted(nodes.inputs(self.root))

    def template(self) -> "Formula":
        """The same formula with its parameters freed (``C0, C1, ...``)."""
        return self.with_params([None] * self.n_params)

    def with_params(self, values: Sequence[float | None]) -> "Formula":
        return Formula(nodes.with_params(self.root, values), self.units)

    def to_string(self) -> str:
        return nodes.to_string(self.root)

    __str__ = to_string

    def __repr__(self) -> str:
        return f"Formula({self.to_string()!r})"

    def to_sympy(self):
        from dsl.export import to_sympy

        return to_sympy(self.root)

    def to_latex(self, digits: int = 4) -> str:
        from dsl.export import to_latex

        return to_latex(self.root, digits)

    def to_dict(self) -> dict:
        return {"formula": self.to_string(), "units": dict(self.units), "tree": nodes.to_dict(self.root)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping) -> "Formula":
        return cls(nodes.from_dict(data["tree"]), dict(data["units"]))


def parse(text: str, units: Mapping[str, str]) -> Formula:
    """Shorthand for `Formula.parse`."""
    return Formula.parse(text, units)


@dataclass
class FormulaSet:
    """Every canonical template up to a size over some variables, with the enumeration's DAG."""

    units: dict[str, str]
    enumeration: Enumeration

    @classmethod
    def enumerate(
        cls, units: Mapping[str, str], max_size: int = 7, progress=None, ops=PAPER_OPS
    ) -> "FormulaSet":
        """Every canonical formula up to `max_size` nodes over the operators `ops` (`dsl.operators`)."""
        return cls(dict(units), enumerate_formulas(dimensions(units), max_size, progress, ops))

    def __len__(self) -> int:
        return len(self.enumeration.roots)

    def __getitem__(self, k: int) -> Formula:
        return Formula(self.enumeration.dag.to_node(self.enumeration.roots[k]), self.units)

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    @property
    def dag(self):
        return self.enumeration.dag

    def records(self) -> list[dict]:
        """One row per formula: template, size, n_params, unit."""
        dag = self.dag
        rows = []
        for i in self.enumeration.roots:
            node = dag.to_node(i)
            rows.append(
                {
                    "template": nodes.to_string(node),
                    "size": dag.size[i],
                    "n_params": len(nodes.params(node)),
                    "unit": dag.dimension(i).to_units(),
                }
            )
        return rows

    def summary_counts(self) -> dict:
        e = self.enumeration
        return {
            "total": len(e.roots),
            "candidates": e.candidates,
            "by_size": {str(k): v for k, v in sorted(e.by_size.items())},
            "pruned": dict(e.pruned),
        }
