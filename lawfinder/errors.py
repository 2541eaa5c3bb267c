"""The one exception type for user mistakes; the CLI turns it into a one-line message and exit 2."""


class UserError(ValueError):
    """A problem with what the user gave us (file, column, unit, option), not a bug."""
