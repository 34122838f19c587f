"""What mmengine and mmpretrain print outside a Runner goes to the log on stderr, never to stdout.

kt's standard output carries what kt prints for people and for machines (``kt predict
--json``, ``kt ensemble --json``, the job and test protocols). Two things in the libraries
write to stdout on their own: ``print_log(msg)`` without a logger is ``print`` whatever its
level (onedl-mmpretrain 1.3.6 prints ``Could not import OneDL`` that way, at DEBUG level,
when ``mmpretrain.datasets`` is imported without its optional OneDL package), and mmengine's
default logger, created on first use outside a Runner, writes to the stdout it saw when it
was created. Both happen once per process, so they are done here, once: the default logger
is created writing to stderr, and what the import printed goes to it at DEBUG level (the
level its author chose; shown with ``--log-level DEBUG`` style settings, hidden by default).
A Runner's own logger (a training process's log) is not touched.
"""
import io
import logging
import sys
from contextlib import redirect_stdout


def route_library_output_to_stderr() -> None:
    """Create mmengine's default logger on stderr and log what importing the datasets printed.

    Idempotent: a second call imports nothing and creates no logger.
    """
    from mmengine.logging import MMLogger, print_log
    with redirect_stdout(sys.stderr):
        MMLogger.get_current_instance()  # creates the default logger only if none exists
    printed = io.StringIO()
    with redirect_stdout(printed):
        import mmpretrain.datasets  # noqa: F401  (prints at import, see the module docstring)
    for line in printed.getvalue().splitlines():
        print_log(line, logger='current', level=logging.DEBUG)
