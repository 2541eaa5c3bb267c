"""The `lawfinder` command line: a thin layer over the library.

Each command lives in `lawfinder.cli.<name>` and is imported only when
invoked, so `lawfinder --help` and torch-free commands start fast.
User mistakes raise `UserError`; they become one line on stderr and exit 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from lawfinder.errors import UserError

COMMANDS = {
    "systems": "lawfinder.cli.systems:systems",
    "enumerate": "lawfinder.cli.enumerate:enumerate_cmd",
    "fit": "lawfinder.cli.fit:fit",
    "search": "lawfinder.cli.search:search",
    "tailor": "lawfinder.cli.tailor:tailor",
    "export": "lawfinder.cli.export:export",
    "report": "lawfinder.cli.report:report",
    "video": "lawfinder.cli.video:video",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if _importable(name))

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _importable(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


def _importable(name: str) -> bool:
    module = COMMANDS[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup)
@click.version_option(package_name="lawfinder")
def cli():
    """Discover conservation laws in trajectory data as readable, unit-checked formulas."""


def main(argv=None):
    try:
        cli.main(args=argv, standalone_mode=False)
    except UserError as err:
        click.echo(f"error: {err.cli_text()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if err.exit_code == 2 else err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
