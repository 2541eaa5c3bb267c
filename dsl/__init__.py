"""Pure core of lawfinder: units-typed formulas, their enumeration, parsing and printing.

Imports neither torch nor lawfinder and does no file I/O.
"""

from dsl.canonical import canonicalize
from dsl.dimension import DIMENSIONLESS, Dimension, UnitError, unit_registry
from dsl.enumerate import INTERNAL_RULES, TOP_RULES, Enumeration, FormulaDag, enumerate_formulas
from dsl.formula import Formula, FormulaSet, dimensions, parse
from dsl.nodes import Binary, Input, Node, Param, Unary
from dsl.operators import OPERATORS, PAPER_OPS, Operator
from dsl.parse import FormulaSyntaxError
from dsl.units import DimensionError, Typing, infer

__all__ = [
    "DIMENSIONLESS",
    "Binary",
    "Dimension",
    "DimensionError",
    "Enumeration",
    "Formula",
    "FormulaDag",
    "FormulaSet",
    "FormulaSyntaxError",
    "INTERNAL_RULES",
    "Input",
    "Node",
    "OPERATORS",
    "Operator",
    "PAPER_OPS",
    "Param",
    "TOP_RULES",
    "Typing",
    "Unary",
    "UnitError",
    "canonicalize",
    "dimensions",
    "enumerate_formulas",
    "infer",
    "parse",
    "unit_registry",
]
