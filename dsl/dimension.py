"""Physical dimensions as immutable, hashable exponent maps.

A `Dimension` is built from a pint unit string and keeps only the base
dimensions and their exponents (``"kg*m/s"`` -> ``[mass]*[length]/[time]``).
Angles count as dimensionless, as pint itself treats ``rad``: ``sin`` and
``cos`` accept them, and an angle adds to any other dimensionless quantity.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from functools import lru_cache

import pint


class UnitError(ValueError):
    """A unit string that pint cannot read."""


@lru_cache(maxsize=1)
def unit_registry() -> pint.UnitRegistry:
    """The one pint registry of dsl and lawfinder (every unit string is read with it)."""
    return pint.UnitRegistry()


class Dimension:
    """An immutable map from base dimension name to a non-zero rational exponent."""

    __slots__ = ("_items", "_hash")

    def __init__(self, exponents: dict[str, Fraction | int] | Iterable = ()):
        pairs = exponents.items() if isinstance(exponents, dict) else exponents
        items = tuple(sorted((k, Fraction(v)) for k, v in pairs if v != 0))
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_hash", hash(items))

    def __setattr__(self, name, value):
        raise AttributeError("Dimension is immutable")

    @classmethod
    def from_units(cls, text: str) -> "Dimension":
        """Parse a pint unit string such as ``"kg*m**2/s"``, ``"rad"`` or ``"dimensionless"``."""
        return _from_units(str(text).strip())

    @property
    def exponents(self) -> dict[str, Fraction]:
        return dict(self._items)

    @property
    def is_dimensionless(self) -> bool:
        return not self._items

    def __mul__(self, other: "Dimension") -> "Dimension":
        out = dict(self._items)
        for k, v in other._items:
            out[k] = out.get(k, 0) + v
        return Dimension(out)

    def __truediv__(self, other: "Dimension") -> "Dimension":
        return self * other ** -1

    def __pow__(self, power: int | Fraction) -> "Dimension":
        return Dimension({k: v * Fraction(power) for k, v in self._items})

    def __eq__(self, other) -> bool:
        return isinstance(other, Dimension) and self._items == other._items

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Dimension({str(self)!r})"

    def __str__(self) -> str:
        if not self._items:
            return "dimensionless"
        parts = []
        for name, exp in self._items:
            parts.append(name if exp == 1 else f"{name}**{exp}")
        return "*".join(parts)

    def to_units(self) -> str:
        """A pint-readable string in SI base units (``[length]`` -> ``m``)."""
        if not self._items:
            return "dimensionless"
        parts = []
        for name, exp in self._items:
            unit = _SI_BASE.get(name, name.strip("[]"))
            parts.append(unit if exp == 1 else f"{unit}**{_fmt_exp(exp)}")
        return "*".join(parts)


def _fmt_exp(exp: Fraction) -> str:
    return str(exp.numerator) if exp.denominator == 1 else f"({exp})"


_SI_BASE = {
    "[length]": "m",
    "[mass]": "kg",
    "[time]": "s",
    "[current]": "A",
    "[temperature]": "K",
    "[substance]": "mol",
    "[luminosity]": "cd",
}

DIMENSIONLESS = Dimension()


@lru_cache(maxsize=256)
def _from_units(text: str) -> Dimension:
    if not text:
        raise UnitError("empty unit string")
    try:
        units = unit_registry().parse_units(text)
    except Exception as err:  # pint raises several unrelated types
        raise UnitError(f"unknown unit {text!r} ({type(err).__name__})") from None
    return Dimension(dict(units.dimensionality))
