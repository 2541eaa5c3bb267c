"""The one exception type for user mistakes; the CLI turns it into a one-line message and exit 2."""

from __future__ import annotations


class UserError(ValueError):
    """A problem with what the user gave us (file, column, unit, option), not a bug.

    ``option`` names the argument at fault by its Python name (``resume``, ``backend``): the
    message reads ``"resume: ..."`` from Python and ``"--resume: ..."`` on the command line.
    """

    def __init__(self, message: str, *, option: str | None = None):
        super().__init__(message)
        self.message, self.option = message, option

    def __str__(self) -> str:
        return f"{self.option}: {self.message}" if self.option else self.message

    def __reduce__(self):
        return _rebuild, (self.message, self.option)

    def cli_text(self) -> str:
        """The message as the command line shows it: the option spelled as its flag."""
        if not self.option:
            return self.message
        return f"--{self.option.replace('_', '-')}: {self.message}"


def _rebuild(message: str, option: str | None) -> UserError:
    return UserError(message, option=option)
