"""The ``kt`` command."""
import typer

from . import __version__

app = typer.Typer(
    help='Knowledge-transfer fine-grained visual classification: train a sequence of '
    'CNNs with the OR-loss against their predecessors, then ensemble them.',
    no_args_is_help=True,
    add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f'kt {__version__}')
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, '--version', callback=_print_version, is_eager=True,
                                 help='Print the version and exit.'),
) -> None:
    """kt: one command per step of the method (more commands arrive with the next releases)."""
