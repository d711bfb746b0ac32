"""Corpus scale: one job over thousands of files, on this machine or a Dask cluster.

A front end over :mod:`bufnmf.workflows.jobs`, as the command line is: each file runs exactly
the job the single-file command runs, so its outputs are exactly what that command writes.

    >>> import bufnmf.batch
    >>> index = bufnmf.batch.run("decompose", "samples/", "parts/", components=3)   # doctest: +SKIP
    >>> index.counts                                                                  # doctest: +SKIP
    {'ok': 1200, 'failed': 2, 'skipped': 0, 'cancelled': 0}

The command line: ``bufnmf batch decompose|track|learn CORPUS -o OUTDIR [options]``.
"""

from __future__ import annotations

from .corpus import AUDIO_EXTENSIONS, Source, find
from .engine import connect, parameters, run
from .index import COLUMNS, Index, Row, read_index_csv
from .tasks import JOBS, Task, execute, execute_group, limit_threads

__all__ = ["AUDIO_EXTENSIONS", "COLUMNS", "JOBS", "Index", "Row", "Source", "Task", "connect", "execute",
           "execute_group", "find", "limit_threads", "parameters", "read_index_csv", "run"]
