"""The `lawfinder` command line (`app`); each command in its own module."""

from lawfinder.cli.app import main

__all__ = ["main"]
