"""``kt report``: one self-contained HTML page about a work dir."""
import contextlib
import json
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import exit_on_user_error
from .training_options import STAGE_DATA_ROOT

REPORT_NAME = 'report.html'


def report(
    work_dir: Path = typer.Argument(..., help='A work dir written by `kt train` (or '
                                    '`kt ablate`).'),
    out: Optional[Path] = typer.Option(None, '--out', help='The HTML file to write '
                                       '(default: WORK_DIR/report.html).'),
    images: int = typer.Option(12, '--images', min=1, help='Test images in the gallery.'),
    json_path: Optional[Path] = typer.Option(None, '--json', help="Also write the page's "
                                             'figures to this JSON file.'),
    device: Optional[str] = typer.Option(None, help='cpu, cuda, cuda:1, ... (default: cuda '
                                         'if available).'),
    data_root: Optional[Path] = STAGE_DATA_ROOT,
) -> None:
    """Write one HTML page about WORK_DIR that opens offline (images inline, no script or
    font from the network): the run; each stage alone and in the ensemble with 95% paired
    intervals, its students and exports; the ablation tables and plots; training curves; a
    gallery of test images with every stage's prediction, attention map and Grad-CAM;
    per-class accuracy and confusions; calibration (ECE, NLL, reliability).

    Nothing is trained: cached test outputs are reused; only the gallery's maps are computed.
    """
    console = Console()
    with exit_on_user_error():
        started = time.monotonic()
        from ..reports.report_figures import gather_report
        from ..reports.report_page import render
        from ktbase.writing import write_atomically

        path = out or Path(work_dir) / REPORT_NAME
        with progress_display(console) as start_task:
            gathered = gather_report(work_dir, images, device, start_task, data_root)
            page = render(gathered)
        write_atomically(path, page)
        if json_path is not None:
            write_atomically(json_path, json.dumps(gathered.figures, indent=2, default=str))
        console.print(f'wrote {escape(str(path))} ({len(page.encode()) / 2 ** 20:.1f} MiB, '
                      f'{time.monotonic() - started:.1f} s)' +
                      (f' and {escape(str(json_path))}' if json_path else ''), soft_wrap=True)


@contextlib.contextmanager
def progress_display(console: Console) -> Iterator[Callable[[str, int], Callable[[], None]]]:
    """A Rich progress bar on a terminal, plain lines elsewhere (a log, a pipe).

    Yields:
        callable: ``start_task(what, steps)``, which returns the function that marks one
        step of that task done.
    """
    if not console.is_terminal:
        def start_plain(what: str, steps: int) -> Callable[[], None]:
            done = [0]
            console.print(f'{what}: {steps}', soft_wrap=True)

            def advance() -> None:
                done[0] += 1
                if done[0] == steps:
                    console.print(f'{what}: done', soft_wrap=True)
            return advance
        yield start_plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=False) as progress:
        def start_bar(what: str, steps: int) -> Callable[[], None]:
            task = progress.add_task(what, total=steps)
            return lambda: progress.advance(task)
        yield start_bar
