"""A conservation law as an object (`law.Law`), compiled to torch (`compile`) or to Python source."""
