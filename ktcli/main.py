"""The ``kt`` command."""
import typer

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

app = typer.Typer(
    help='Knowledge-transfer fine-grained visual classification: train a sequence of '
    'CNNs with the OR-loss against their predecessors, then ensemble them.',
    no_args_is_help=True,
    add_completion=False,
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
    from mmengine.logging import MMLogger

    # mmengine and mmpretrain log through the current MMLogger; in kt's own process (not in a
    # stage's Runner, which logs to its work dir) only their warnings reach the console.
    MMLogger.get_instance('kt', log_level='WARNING')
