"""Before anything heavy is imported: a Ctrl-C while the ``bufnmf`` command starts ends it quietly.

Importing NumPy, SciPy and numba takes a moment; a Ctrl-C then would print a traceback from
inside some import. When this process is the ``bufnmf`` command (the console script or
``python -m bufnmf``), SIGINT keeps its default action (end the process, as for any command)
until :func:`bufnmf.cli.main` installs its own handling; a library import changes nothing.
Standard library only.
"""

from __future__ import annotations

import os
import signal
import sys


def _is_command() -> bool:
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("bufnmf", "bufnmf.exe"):
        return True
    orig = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(orig):
        if arg == "-m":
            return i + 1 < len(orig) and orig[i + 1] == "bufnmf"
        if arg.startswith("-m"):
            return arg[2:] == "bufnmf"
    return False


def quiet_interrupts_while_starting() -> None:
    """In the ``bufnmf`` command only: Ctrl-C during start-up ends the process without a traceback."""
    if not _is_command():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    except (ValueError, AttributeError):  # not the main thread, or no SIGINT here
        pass


quiet_interrupts_while_starting()
