"""What a worker does for one file: the single-file job, within the worker's threads and memory.

:func:`execute` runs on a Dask worker (or in any process): it limits the numerical threads to
the worker's share of its machine, checks the job's memory estimate against what the worker can
give, calls the same job as the single-file command, and keeps the file's record up to date.
It never raises for a file: a failure is returned as a row with its message.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BufNMFError, Cancelled, MemoryLimitError
from ..resources import fmt_bytes, parse_bytes
from ..workflows.jobs import JobResult, decompose_job, learn_job, track_job
from . import records
from .index import Row

JOBS = ("decompose", "track", "learn")


@dataclass(frozen=True)
class Task:
    """One file's work, as sent to a worker.

    Attributes:
        job: "decompose", "track" or "learn". source: the audio file (absolute).
        rel: its output folder under ``out_dir``. out_dir: the batch's output folder (absolute).
        params: the job's keyword arguments as the user gave them (their names in the jobs).
        key: :func:`records.key` of the job and ``params``. stamp: :func:`records.stamp` of the inputs.
        force: replace outputs that are not this batch's own (the user's ``--force``).
        label: learn: the file's label. seed: learn: the seed of the whole kit (drawn once).
        run: the batch run's token, kept in the file's record (an interrupted batch finds there
            the files it finished whose results did not come back).
    """

    job: str
    source: str
    rel: str
    out_dir: str
    params: dict[str, Any]
    key: str
    stamp: dict[str, Any]
    force: bool = False
    label: str = ""
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    run: str = ""

    @property
    def folder(self) -> Path:
        return Path(self.out_dir) / self.rel


# ----------------------------------------------------------------------------------------------
# threads and memory of the process a task runs in

_controller: Any = None


def _threadpools() -> Any:
    """threadpoolctl's controller of BLAS/OpenMP pools in this process (made once), or None."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency; the environment variables still hold
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller or None


@contextlib.contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """Run with at most ``n`` numerical threads in this thread: numba's, BLAS/OpenMP's and the FFT's.

    ``None`` changes nothing. Numba's and the FFT's settings are per thread; BLAS's per process
    (a worker runs one task at a time).
    """
    if n is None:
        yield
        return
    from ..dsp.fft import set_fft_threads

    n = max(1, int(n))
    old_fft = set_fft_threads(n)
    old_numba = None
    numba: Any = None
    try:
        import numba
    except ImportError:  # pragma: no cover - a dependency
        numba = None
    if numba is not None:
        old_numba = numba.get_num_threads()
        numba.set_num_threads(max(1, min(n, int(numba.config.NUMBA_NUM_THREADS))))
    ctl = _threadpools()
    try:
        with ctl.limit(limits=n) if ctl is not None else contextlib.nullcontext():
            yield
    finally:
        set_fft_threads(old_fft)
        if numba is not None and old_numba is not None:
            numba.set_num_threads(old_numba)


_malloc_tuned = False


def tune_malloc() -> bool:
    """Give large arrays back glibc's usual reuse in a Dask worker; once per process. Whether it changed.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set (to give memory back to the
    system at once), which also turns off glibc's adaptive mmap threshold: every array above
    128 KiB is then mapped and unmapped afresh, and the STFT and resynthesis temporaries of each
    file fault their pages in again (measured here: 20% slower per file). This sets the mmap
    threshold to glibc's adaptive maximum (32 MiB) and keeps up to 64 MiB of free heap.
    """
    global _malloc_tuned
    if _malloc_tuned or "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    _malloc_tuned = True
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 2**20)) and bool(mallopt(m_trim_threshold, 64 * 2**20))


def _worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


@dataclass
class Headroom:
    """What the worker can give a task: ``free`` bytes of its ``limit``, ``used`` by the process now."""

    free: int
    limit: int
    used: int


def headroom(worker: Any) -> Headroom | None:
    """Bytes this worker can give a task before its nanny would stop it (None: no limit)."""
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    if not limit:
        return None
    import dask
    import psutil

    frac = dask.config.get("distributed.worker.memory.terminate", 0.95)
    frac = 1.0 if not frac else float(frac)
    used = int(psutil.Process().memory_info().rss)
    return Headroom(max(0, int(limit * frac) - used), int(limit), used)


#: Seconds between asking the scheduler whether the batch was cancelled (per worker process).
CANCEL_POLL_SECONDS = 0.2
# the answer each worker process last had for each batch's cancel event: name -> (monotonic time, set)
_cancel_seen: dict[str, tuple[float, bool]] = {}


class _CancelCheck:
    """A jobs' ``progress`` callback that stops the job when the batch's cancel event is set.

    Asking the scheduler is a round trip that the task's thread waits for (measured: ~2.3 ms with
    both cores busy, twice per 150-ms file), so a worker process asks at most once per
    :data:`CANCEL_POLL_SECONDS` for all its tasks, and a set event is remembered.
    """

    def __init__(self, name: str | None) -> None:
        self.event: Any = None
        self.name = name or ""
        if name:
            with contextlib.suppress(Exception):  # no scheduler to ask (e.g. run in-process): no cancelling
                from distributed import Event

                self.event = Event(name)

    def is_set(self) -> bool:
        if self.event is None:
            return False
        now = time.monotonic()
        asked, value = _cancel_seen.get(self.name, (-CANCEL_POLL_SECONDS, False))
        if value or now - asked < CANCEL_POLL_SECONDS:
            return value
        try:
            value = bool(self.event.is_set())
        except Exception:  # the scheduler is gone: the batch ended
            value = True
        if len(_cancel_seen) > 64:  # a long-lived worker of many batches: forget the old ones
            _cancel_seen.clear()
        _cancel_seen[self.name] = (now, value)
        return value

    def __call__(self, done: int, total: int) -> bool | None:
        return False if self.is_set() else None


# ----------------------------------------------------------------------------------------------
# the jobs


def _call_job(task: Task, folder: Path, force: bool, max_memory: int | None,
              progress: Callable[[int, int], bool | None]) -> JobResult:
    p = dict(task.params)
    p.pop("max_memory", None)
    if task.job == "decompose":
        return decompose_job(task.source, folder, **p, max_memory=max_memory, force=force, progress=progress)
    if task.job == "track":
        fmt = p.pop("format", "csv")
        midi = p.pop("midi", False)
        bases = p.pop("bases")
        return track_job(task.source, bases, folder / f"events.{fmt}", midi=folder / "events.mid" if midi else None,
                         **p, max_memory=max_memory, force=force)
    if task.job == "learn":
        p.pop("merge_labels", None)  # applied when the kits are stacked
        p.pop("seed", None)
        return learn_job([task.source], folder / "kit.wav", labels=[task.label],
                         seed=-1 if task.seed is None else task.seed, **p,
                         max_memory=max_memory, force=force)
    raise BufNMFError(f"unknown batch job {task.job!r}: use one of {', '.join(JOBS)}")  # pragma: no cover


def _row(task: Task, res: JobResult, seconds: float) -> Row:
    s = res.summary
    row = Row(task.source, "ok", seconds=round(seconds, 4), output=task.rel)
    if task.job == "decompose":
        par = s["parameters"]
        row.sample_rate = int(s["sample_rate"])
        row.duration = par["num_frames"] / s["sample_rate"]
        row.channels = int(par["num_chans"])
        row.components = int(par["components"])
        finals = [float(ch[-1]) for ch in s.get("divergence", []) if ch]
        row.divergence = sum(finals) if finals else None
        row.seed = int(par["seed"])
    elif task.job == "track":
        row.sample_rate = int(s["sample_rate"])
        row.duration = float(s["duration"])
        row.channels = int(s["channels"])
        row.components = int(s["components"])
        row.seed = int(s["seed"])
        row.events = int(s["events"])
    else:
        row.sample_rate = None if s.get("sample_rate") is None else int(s["sample_rate"])
        row.duration = float(s["durations"][0]) if s.get("durations") else None
        row.components = len(s["labels"])
        row.seed = None if s.get("seed") is None else int(s["seed"])
        row.label = task.label
    return row


def message(exc: BaseException, room: Headroom | None = None, worker_bound: bool = False) -> str:
    """One line saying why a file failed."""
    if isinstance(exc, MemoryLimitError) and worker_bound and room is not None:
        text = (f"too big for a worker: it needs about {fmt_bytes(exc.needed)} but the worker can give "
                f"{fmt_bytes(exc.limit)} (memory limit {fmt_bytes(room.limit)}, {fmt_bytes(room.used)} in use): "
                "give the workers more memory (fewer workers per machine, or 'dask worker --memory-limit'), "
                "or use fewer components, a shorter selection or no resynthesis")
    elif isinstance(exc, BufNMFError):
        text = str(exc)
    elif isinstance(exc, Cancelled):
        text = "cancelled: the batch was interrupted before this file was done"
    elif isinstance(exc, MemoryError):
        text = "out of memory: use fewer components, a shorter selection or no resynthesis, or more memory per worker"
    else:
        text = f"internal error {type(exc).__name__}: {exc}"
    return " ".join(text.split())


def execute(task: Task, budgets: Mapping[str, int] | None = None, cancel: str | None = None) -> dict[str, Any]:
    """Do one file of a batch; returns its index row as a dict (status "ok", "failed" or "cancelled").

    Args:
        task: the file and the job's parameters.
        budgets: numerical threads per worker address (absent: this worker's machine's cores).
        cancel: name of the batch's ``distributed.Event``; once set, the job stops (decompose: within
            0.2 s, writing nothing) and queued files are not started.
    """
    t0 = time.perf_counter()
    folder = task.folder
    worker = _worker()
    threads = None
    if worker is not None:
        threads = (budgets or {}).get(worker.address, 1)
        tune_malloc()
    check = _CancelCheck(cancel)
    if check.is_set():
        return Row(task.source, "cancelled", message(Cancelled()), output=task.rel).as_dict()
    room = headroom(worker) if worker is not None else None
    user_limit = task.params.get("max_memory")
    limit = None if user_limit is None else (int(user_limit) if isinstance(user_limit, int)
                                             else parse_bytes(str(user_limit)))
    worker_bound = room is not None and (limit is None or room.free < limit)
    if room is not None and worker_bound:
        limit = room.free
    prev = records.read(folder)
    force = task.force or prev is not None  # a record: these outputs are this batch's own (an earlier run's)
    marked = force or not records.has_visible_files(folder)
    base = {"bufnmf_version": __version__, "job": task.job, "key": task.key, "params": task.params,
            "stamp": task.stamp, "source": task.source, "run": task.run}
    try:
        if marked:
            records.write(folder, {**base, "status": "running"})
        with limit_threads(threads):
            res = _call_job(task, folder, force, limit, check)
        row = _row(task, res, time.perf_counter() - t0)
        outputs = [os.path.relpath(p, folder) for p in res.outputs]
        records.write(folder, {**base, "status": "ok", "seed": row.seed, "row": row.as_dict(), "outputs": outputs})
        return row.as_dict()
    except Exception as exc:  # a failing file never stops the batch: record it
        status = "cancelled" if isinstance(exc, Cancelled) else "failed"
        if marked:
            if prev is None:
                records.remove(folder)
                records.prune(folder, Path(task.out_dir))
            else:
                with contextlib.suppress(OSError, ValueError, TypeError):
                    records.write(folder, prev)
        return Row(task.source, status, message(exc, room, worker_bound), seconds=round(time.perf_counter() - t0, 4),
                   output=task.rel).as_dict()


def execute_group(tasks: Sequence[Task], budgets: Mapping[str, int] | None = None,
                  cancel: str | None = None) -> list[dict[str, Any]]:
    """Do several files of a batch one after the other, as one Dask task; their rows, in order.

    Each file is done exactly as :func:`execute` does it alone (its own memory check, record and
    row); once the batch is cancelled, the file being done stops and the rest are not started
    (rows "cancelled"). A batch groups short files so that Dask's bookkeeping (a few
    milliseconds of messages per task) is paid once per group, not once per file.
    """
    return [execute(task, budgets, cancel) for task in tasks]
