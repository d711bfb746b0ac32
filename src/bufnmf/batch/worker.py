"""Set-up of the worker processes of a local cluster (a Dask preload: ``dask_setup`` runs in each).

The workers share the batch's terminal: Ctrl-C reaches them too. They ignore it, so that the
batch itself stops them cleanly (the files being done stop without writing, or finish).
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
