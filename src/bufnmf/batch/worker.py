"""Set-up of the worker processes of a local cluster (a Dask preload: ``dask_setup`` runs in each).

The workers share the batch's terminal: Ctrl-C reaches them too. They ignore it, so that the
batch itself stops them cleanly (the files being done stop without writing, or finish). A
worker forked from the batch's process has that process's handlers (the command line turns
SIGTERM into KeyboardInterrupt): SIGTERM is reset to its default, so that Dask's nanny can end
the worker.

Once a worker has closed cleanly (``dask_teardown``), its process skips the interpreter's
final clean-up of every module it imported (the numerical libraries and Dask: ~0.25 s per
process, which every batch waited for at its end): at exit it flushes its output and logs and
leaves with status 0, as a process forked by ``multiprocessing`` does (a forked worker
leaves so anyway).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _leave() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(0)


def dask_teardown(worker: Any) -> None:
    # registered last, so it runs first among the exit handlers: the process's work is done
    atexit.register(_leave)
