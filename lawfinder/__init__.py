"""lawfinder: discover conservation laws in trajectory data and use them as tailoring losses."""

__version__ = "0.1.0"
