"""Pure core of lawfinder: units-typed formulas, their enumeration, parsing and printing."""
