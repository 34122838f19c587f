"""The ``kt`` command.

Only Typer, Rich and kt's light modules are imported here: each command imports torch,
mmengine and mmpretrain when it runs, so that ``--help``, completion and the fast failures
(a missing dataset, a bad flag) answer in well under a second.
"""
import re
import sys
from typing import List, Optional, Sequence

import typer
from typer.core import TyperGroup

from . import __version__
from .commands.ablate import ablate_app
from .commands.data import data_app
from .commands.distill import distill
from .commands.ensemble import ensemble
from .commands.export import export
from .commands.predict import predict
from .commands.report import report
from .commands.status import status
from .commands.train import train
from .commands.visualize import visualize

# ``--cfg-options`` takes several ``KEY=VALUE`` after it, as mmengine's tools do.
MULTI_VALUE_OPTIONS = ('--cfg-options',)
_KEY_VALUE = re.compile(r'[A-Za-z_][\w.]*=')


def expand_multi_value_options(args: Sequence[str]) -> List[str]:
    """Repeat the option before every ``KEY=VALUE`` that follows it.

    ``--cfg-options a=1 b=2`` becomes ``--cfg-options a=1 --cfg-options b=2``,
    which is how Click reads a repeatable option. A value that is not
    ``KEY=VALUE`` ends the run and is left to the parser.

    Args:
        args (Sequence[str]): The command line after the program name.

    Returns:
        list[str]: The command line Click parses.
    """
    expanded: List[str] = []
    option: Optional[str] = None
    # An option seen without a KEY=VALUE after it yet.
    pending = False
    for arg in args:
        if option is not None and _KEY_VALUE.match(arg):
            expanded += [option, arg]
            pending = False
            continue
        if pending:
            expanded.append(option)
        option = arg if arg in MULTI_VALUE_OPTIONS else None
        pending = option is not None
        if option is None:
            expanded.append(arg)
    if pending:
        expanded.append(option)
    return expanded


class KtGroup(TyperGroup):
    """kt's root command group: expands multi-value options before Click parses."""

    def main(self, args: Optional[Sequence[str]] = None, *more, **options):
        """Run the command line ``args`` (default: ``sys.argv[1:]``)."""
        return super().main(expand_multi_value_options(sys.argv[1:] if args is None else args),
                            *more, **options)


app = typer.Typer(
    cls=KtGroup,
    help='Knowledge-transfer fine-grained visual classification: train a sequence of '
    'CNNs with the OR-loss against their predecessors, then ensemble them.',
    no_args_is_help=True,
    pretty_exceptions_enable=False)
app.command()(train)
app.command()(ensemble)
app.command()(distill)
app.command()(status)
app.command()(visualize)
app.command()(export)
app.command()(predict)
app.command()(report)
app.add_typer(data_app, name='data', help='Make, download and check datasets.')
app.add_typer(ablate_app, name='ablate')


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f'kt {__version__}')
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, '--version', callback=_print_version, is_eager=True,
                                 help='Print the version and exit.'),
) -> None:
    """kt: knowledge-transfer FGVC."""
