"""The batch runner: a corpus's files as Dask tasks, each running the single-file job.

On this machine by default (a local cluster of worker processes, one task at a time each, the
machine's cores shared out among them), or on an existing Dask cluster (``client=`` a
``distributed.Client`` or a scheduler's address), so one command scales to many machines.
Short files go several to a task (:func:`next_group`), so that Dask's bookkeeping is paid per
half second of work, not per file; a task whose workers keep dying is split into single files.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..checks import as_int, check_seed, resolve_seed
from ..errors import BufNMFError, Cancelled
from ..io.events import read_events
from ..io.outputs import signals_deferred
from ..resources import parse_bytes
from ..workflows.jobs import decompose_job, learn_job, stack_kits_job, track_job
from . import corpus as corpus_
from . import records
from .index import Index, Row, write_index, write_table
from .tasks import JOBS, Task, execute_group, message

ProgressCallback = Callable[[Row, int, int], "bool | None"]

#: Environment variables that size the numerical thread pools of a local cluster's workers (for
#: the libraries a worker loads after it starts; each task also sets its threads at run time,
#: :func:`bufnmf.batch.tasks.limit_threads`). ``NUMBA_NUM_THREADS`` is not among them: numba
#: rereads its variables before each compilation and refuses a changed pool size once its threads
#: run, and a worker may have imported numba before the variables reach it (a forked one, or a
#: spawned one whose script imports bufnmf at its top), so every file would fail.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS")
LOCK = ".bufnmf-batch.lock"
#: Dask settings of a local cluster's scheduler and workers. Its workers' cores are all taken by
#: the files, so Dask's own bookkeeping competes with them: the statistical profiler (a stack
#: sample of the task's thread every 10 ms, for the dashboard's profile page) is off, and the
#: event loops' health ticks and the system monitor run less often; the memory monitor (which
#: enforces the workers' memory limit) keeps its default. Measured on 2 cores, 2 workers, 200
#: files of 5 s: Dask's own threads used 1.2 CPU-seconds per 150 files instead of 1.9-2.1, and
#: the batch took 14.1 s instead of 14.9; an idle cluster uses a quarter of the CPU it did.
#: A worker is given a task only when it has none (worker-saturation 1, not Dask's 1.1, which
#: queues a second on a one-thread worker): when a file kills its worker, no other task dies
#: with it (each death counts against every task the worker held: after 4, Dask fails them);
#: the round trip it adds between tasks is paid once per group of files (:func:`next_group`).
LOCAL_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "200ms",
                "distributed.admin.system-monitor.interval": "2s", "distributed.scheduler.worker-saturation": 1.0}
#: How a local cluster starts its worker processes (``start_method``): "auto" forks them from the
#: batch's process where that is safe (see :func:`choose_start_method`), else spawns fresh interpreters.
START_METHODS = ("auto", "fork", "spawn", "forkserver")
#: "auto" forks only a process whose resident memory is at most this fraction of a worker's memory
#: limit: a forked worker's resident memory starts at its parent's, and both Dask's memory monitor
#: and each file's memory check count it against the worker.
FORK_MEMORY_FRACTION = 1 / 8
#: Seconds an interrupted batch waits for the files being done to stop or finish.
GRACE_SECONDS = 30.0

# parameters of each job the batch sets itself (per file), or that mean something else in a batch
_OWN = {"decompose": {"force", "progress"}, "track": {"force", "midi", "max_memory"},
        "learn": {"labels", "force", "max_memory"}}
# parameters the batch adds to a job
_ADDED = {"track": {"bases", "format", "midi"}, "learn": set(), "decompose": set()}
_FILE_PARAMS = ("bases", "activations")
#: Unfinished tasks a batch keeps at least (four per worker thread when more), sent half at a time.
WINDOW = 32
#: Seconds of work a task aims at: short files go to a worker several to a task (see
#: :func:`next_group`), so that Dask's messages for a task (~9 ms of CPU across the scheduler, the
#: client and the worker, measured on 2 cores) are paid once per group, not once per file.
GROUP_SECONDS = 0.5
#: Files a task holds at most.
MAX_GROUP = 16
#: Near the end of a batch a task holds at most the files left / (this x the worker threads), so
#: the last tasks are single files and the workers finish together.
GUIDED = 4
_JOB_FUNCTIONS: dict[str, Callable[..., Any]] = {"decompose": decompose_job, "track": track_job, "learn": learn_job}


def cores() -> int:
    """CPU cores this process may use (affinity and container limits included)."""
    from dask.system import CPU_COUNT

    return max(1, int(CPU_COUNT))


def parameters(job: str) -> list[str]:
    """The keyword parameters ``run`` takes for ``job``: the job's own, less those the batch sets per file."""
    if job not in JOBS:
        raise BufNMFError(f"unknown batch job {job!r}: use one of {', '.join(JOBS)}")
    sig = inspect.signature(_JOB_FUNCTIONS[job])
    names = [n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    if job == "learn":
        names = [n for n, p in sig.parameters.items() if n not in ("examples", "output")]
    return sorted({*(n for n in names if n not in _OWN[job]), *_ADDED[job]})


def _plain(value: Any) -> Any:
    """Parameters as JSON can hold them (paths as strings, tuples as lists)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def defaults(job: str) -> dict[str, Any]:
    """The default of each parameter of ``job`` (as :func:`parameters` lists them)."""
    sig = inspect.signature(_JOB_FUNCTIONS[job]).parameters
    added = {"format": "csv", "midi": False, "bases": None}
    return {n: added[n] if n in added else sig[n].default for n in parameters(job)
            if n in added or sig[n].default is not inspect.Parameter.empty}


def _check_params(job: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as given, checked, without those at their defaults (so equal runs get equal keys)."""
    allowed = parameters(job)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BufNMFError(f"batch {job} takes no parameter {', '.join(unknown)}: it takes {', '.join(allowed)}")
    plain = defaults(job)
    out = {k: _plain(v) for k, v in params.items() if k not in plain or _plain(v) != _plain(plain[k])}
    if job == "track":
        if out.get("bases") is None:
            raise BufNMFError("batch track needs a kit: bases=<kit .wav or .npy from learn>",
                              cli="batch track needs a kit: --bases KIT (a .wav or .npy from 'bufnmf learn')")
        fmt = out.get("format", "csv")
        if fmt not in ("csv", "json"):
            raise BufNMFError(f"format must be 'csv' or 'json', got {fmt!r}")
        if "midi" in out:
            out["midi"] = bool(out["midi"])
    for name in _FILE_PARAMS:
        if out.get(name) is not None:
            p = Path(out[name]).expanduser()
            if not p.is_file():
                raise BufNMFError(f"{name} {out[name]} does not exist: check the path",
                                  cli=f"--{name} {out[name]} does not exist: check the path")
            out[name] = os.path.abspath(p)
    if out.get("max_memory") is not None and not isinstance(out["max_memory"], int):
        parse_bytes(str(out["max_memory"]))  # refuse a bad size now, not once per file
    if "seed" in out:
        out["seed"] = check_seed(out["seed"])
        if out["seed"] == -1:
            del out["seed"]
    return out


# ----------------------------------------------------------------------------------------------
# the cluster


def _host_cores() -> int:
    return cores()


def budgets(client: Any) -> dict[str, int]:
    """Numerical threads per worker: its machine's cores shared among the task threads running there."""
    from distributed.comm import get_address_host

    nthreads = client.nthreads()
    per_worker_cores = client.run(_host_cores)
    by_host: dict[str, int] = {}
    for addr, n in nthreads.items():
        host = get_address_host(addr)
        by_host[host] = by_host.get(host, 0) + int(n)
    return {addr: max(1, int(per_worker_cores.get(addr, 1)) // max(1, by_host[get_address_host(addr)]))
            for addr in nthreads}


def _check_start_method(value: Any) -> str:
    if value not in START_METHODS:
        raise BufNMFError(f"start_method must be one of {', '.join(START_METHODS)}, got {value!r}",
                          cli=f"--start-method must be one of {', '.join(START_METHODS)}, got {value!r}")
    return str(value)


def openmp_in_use() -> bool:
    """Whether this process has an OpenMP runtime loaded (numba's "omp" threading layer among them).

    GNU OpenMP ends a forked child that uses it once the parent has ("fork() called from a process
    already using GNU OpenMP, this is unsafe"): a batch process that has run numba's parallel
    kernels (any single-file job) cannot fork its workers.
    """
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            if numba.threading_layer() == "omp":
                return True
        except ValueError:  # numba has started no threads yet
            pass
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a dependency
        return True
    return any(lib.get("user_api") == "openmp" for lib in threadpool_info())


def choose_start_method(choice: str = "auto", *, workers: int = 1, rss: int | None = None,
                        worker_limit: int | None = None, threads: int | None = None) -> str:
    """How a local cluster of ``workers`` processes starts them: "fork", "spawn" or "forkserver".

    "auto" forks on Linux: a forked worker has bufnmf and Dask imported already (measured on 2
    cores: a cluster of 2 workers up in 0.08 s instead of 0.85 s, 6% of a 200-file batch). It
    spawns fresh interpreters instead where forking is unsafe or unavailable: on macOS (system
    libraries break in a forked child) and Windows; in a process running ``threads`` Python
    threads (default: counted now) besides the main one, as a notebook's or a web server's (a
    thread holding a lock at the fork leaves the child a lock nobody releases; Dask's own
    threads, started after this choice, are made to be forked); in a process that has used
    OpenMP (:func:`openmp_in_use`, e.g. one that ran a single-file job before the batch); and in
    a large process: its resident memory ``rss`` (bytes, default: measured now) above
    :data:`FORK_MEMORY_FRACTION` of ``worker_limit`` (bytes, default: a local cluster's automatic
    limit, the memory shared among ``workers``), as a notebook holding big arrays. The command
    line's process is small, has one thread and has run no numerics when its cluster starts, so
    it forks. Other choices are returned as they are.
    """
    choice = _check_start_method(choice)
    if choice == "fork" and openmp_in_use():
        raise BufNMFError("start_method='fork' cannot be used in this process: it has used OpenMP (numba's "
                          "threads, e.g. a single-file job ran here before), and a forked worker that uses it "
                          "again is ended by the OpenMP runtime; use start_method='auto' or 'spawn'",
                          cli="--start-method fork cannot be used here: this process has used OpenMP; use "
                              "--start-method auto or spawn")
    if choice != "auto":
        return choice
    import multiprocessing

    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    if (threading.active_count() if threads is None else threads) > 1 or openmp_in_use():
        return "spawn"
    if worker_limit is None:
        from distributed.system import MEMORY_LIMIT

        worker_limit = int(MEMORY_LIMIT / max(1, workers))  # LocalCluster's automatic limit
    if rss is None:
        import psutil

        rss = int(psutil.Process().memory_info().rss)
    return "fork" if rss <= worker_limit * FORK_MEMORY_FRACTION else "spawn"


@contextlib.contextmanager
def connect(client: Any = None, workers: int | None = None, *, tasks: int | None = None,
            debug: bool = False, start_method: str = "auto") -> Iterator[tuple[Any, dict[str, int]]]:
    """A Dask client and the thread budget of each worker; a local cluster is made and closed here.

    Args:
        client: a ``distributed.Client``, a scheduler address (``tcp://host:8786``), or None for
            a local cluster of ``workers`` processes (default one per core, at most ``tasks``).
        start_method: how the local cluster's processes start (:func:`choose_start_method`); a worker that
            Dask restarts later (after it died) is spawned.
    """
    from distributed import Client

    if client is not None:
        if isinstance(client, str):
            try:
                own = Client(client, timeout="10s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise BufNMFError(f"cannot reach the Dask scheduler at {client} ({exc}): start one with "
                                  "'dask scheduler' and its workers with 'dask worker ADDRESS'") from None
            try:
                yield own, _ready(own, client)
            finally:
                own.close()
        else:
            yield client, _ready(client, str(getattr(client, "scheduler", None) and client.scheduler.address))
        return
    from distributed import LocalCluster

    n = cores() if workers is None else as_int("workers", workers)
    if n < 1:
        raise BufNMFError(f"workers must be at least 1, got {n}")
    if tasks is not None:
        n = max(1, min(n, tasks))
    # One numerical thread per worker: a corpus is parallel across files. Numba's threads within a
    # file end each of its passes at a barrier, which waits whenever anything else holds a core:
    # measured on 2 cores (60 files of 5 s), one worker with 2 threads took 128-3048 ms a file
    # against 144-200 ms with one thread, and two one-thread workers 91-95 ms.
    threads = 1
    import dask

    method = choose_start_method(start_method, workers=n)
    env = {name: str(threads) for name in THREAD_VARIABLES}
    # A Ctrl-C while the cluster starts is held until it has (an interrupted start-up prints pages
    # of Dask's tracebacks), then stops the batch as usual; pressed again, it stops at once.
    with signals_deferred(repeat_delivers=True) as held:
        with dask.config.set({**LOCAL_CONFIG, "distributed.worker.multiprocessing-method": method}):
            try:
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0",
                                       silence_logs=logging.WARNING if debug else logging.CRITICAL,
                                       env=env, preload=["bufnmf.batch.worker"])
            except RuntimeError as exc:  # Dask's "Nanny failed to start": the worker's own error is above it
                raise BufNMFError(f"the local cluster's worker processes did not start (Dask: {str(exc).rstrip('.')}"
                                  "; the workers' own error is printed above); a script that runs a batch must "
                                  "put its work under if __name__ == \"__main__\": when its workers are "
                                  "spawned") from None
        try:
            local = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
    try:
        try:
            held.redeliver()
            yield local, {addr: threads for addr in local.nthreads()}
        finally:
            local.close()
    finally:
        cluster.close()


def _ready(client: Any, where: str) -> dict[str, int]:
    try:
        client.wait_for_workers(1, timeout=30)
    except TimeoutError:
        raise BufNMFError(f"the Dask scheduler at {where} has no workers: start some with 'dask worker {where}' "
                          "on machines that can read the corpus and the output folder") from None
    return budgets(client)


# ----------------------------------------------------------------------------------------------
# the run


class _Stop(Exception):  # noqa: N818 - internal signal: the progress callback asked to stop
    pass


@contextlib.contextmanager
def _batch_lock(out: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fh = open(out / LOCK, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BufNMFError(f"another bufnmf batch is writing to {out} right now: wait for it to finish, or "
                              "choose another output folder") from None
        yield
    finally:
        fh.close()
        with contextlib.suppress(OSError):
            (out / LOCK).unlink()


_TOP_NAMES = {"learn": ["kit.wav", "kit.json"], "track": ["events.csv", "events.parquet"]}


def _top_names(job: str) -> list[str]:
    return ["index.csv", "index.parquet", *_TOP_NAMES.get(job, [])]


def _check_outdir(out: Path, job: str, key: str, params: dict[str, Any], force: bool) -> None:
    """Refuse an output folder holding another batch (other job or parameters) or other files, unless forced."""
    if out.exists() and not out.is_dir():
        raise BufNMFError(f"output folder {out} is a file: give a folder path",
                          cli=f"output folder {out} is a file: give a folder path with -o")
    if force:
        return
    rec = records.read(out)
    counts = (rec or {}).get("counts") or {}
    nothing_done = rec is not None and rec.get("status") != "running" and not counts.get("ok") and \
        not counts.get("skipped")
    if rec is not None and not nothing_done and (rec.get("job") != job or rec.get("key") != key):
        if rec.get("job") != job:
            what = f"a batch {rec.get('job')} run"
        else:
            old = rec.get("params") or {}
            plain = defaults(job)
            def shown(d: dict[str, Any], k: str) -> str:
                v = d.get(k, plain.get(k))
                return "default" if v is None else repr(v)

            diffs = [f"{k} {shown(old, k)} -> {shown(params, k)}" for k in sorted(set(old) | set(params))
                     if old.get(k) != params.get(k)]
            what = f"a batch {job} run with other parameters ({'; '.join(diffs) or 'changed'})"
        raise BufNMFError(f"{out} holds {what}: run it with its own parameters to finish it, force=True to redo it "
                          "with these, or choose another output folder",
                          cli=f"{out} holds {what}: rerun with its options to finish it, --force to redo it with "
                              "these, or choose another output folder (-o)")
    if rec is None:
        clash = [n for n in _top_names(job) if (out / n).exists()]
        if clash:
            raise BufNMFError(f"{out / clash[0]} already exists and was not written by a bufnmf batch: use "
                              "force=True to replace it, or choose another output folder",
                              cli=f"{out / clash[0]} already exists and was not written by a bufnmf batch: use "
                                  "--force to replace it, or choose another output folder (-o)")


def run(job: str, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        out_dir: str | os.PathLike[str], *, client: Any = None, workers: int | None = None, resume: bool = True,
        force: bool = False, progress: ProgressCallback | None = None, debug: bool = False,
        start_method: str = "auto", **params: Any) -> Index:
    """Run one job over every file of a corpus, in parallel; returns the index (also written as files).

    Each file gets exactly what the single-file command writes, in ``out_dir/<relative path
    without extension>/`` (decompose: its outputs; track: ``events.csv`` or ``.json`` and, with
    ``midi=True``, ``events.mid``; learn: ``kit.wav``/``kit.json`` learnt from that file alone).
    Then ``out_dir`` gets ``index.csv`` (and ``index.parquet`` with pyarrow), one row per file;
    track adds ``events.csv`` (every file's events, with its path), learn adds ``kit.wav`` and
    ``kit.json``: one kit from all the files, labelled by their top folder under the corpus
    (``kick/*.wav`` -> "kick"), equal to ``learn_job`` on all of them with the kit's seed.

    Args:
        job: "decompose", "track" or "learn".
        paths: a folder (searched recursively), a glob, a text file listing paths, audio files,
            or a sequence of these (see :mod:`bufnmf.batch.corpus`).
        out_dir: the output folder (created if needed).
        client: a ``distributed.Client`` or a scheduler address ("tcp://host:8786") to run on an
            existing cluster (its workers must read the corpus and write ``out_dir`` at the same
            paths); None: a local cluster of ``workers`` processes (default: one per core), one
            task at a time each, the cores shared out among their numerical threads.
        resume: skip the files an earlier run into ``out_dir`` finished with the same parameters
            on the same inputs (size and modification time); False redoes every file.
        force: replace outputs that this batch did not write, and a batch run into ``out_dir``
            with other parameters (without, both are refused).
        progress: ``progress(row, done, total)`` for each file as its result comes back (skipped
            ones first; short files are done several to a task and come back together, about
            every :data:`GROUP_SECONDS` per worker thread); returning False stops the batch as
            Ctrl-C does (:class:`bufnmf.Cancelled`).
        debug: let Dask's own warnings through (a local cluster is silent otherwise).
        start_method: how a local cluster's worker processes start: "auto" (default) forks them
            from this process on Linux when it is small next to a worker's memory limit, and
            spawns them otherwise; "fork", "spawn" or "forkserver" as Python's multiprocessing
            (:func:`choose_start_method`). Forked workers start in a tenth of the time.
        params: the job's keyword parameters (:func:`parameters` lists them), as for one file.
            ``seed=-1`` (the default) draws a seed per file (learn: one for the kit), reported in
            the index and each file's summary, so any file can be redone alone.

    Returns:
        :class:`Index`: one :class:`Row` per file (status "ok", "failed", "skipped"; "cancelled"
        when interrupted), in corpus order. A failing file never stops the batch.

    Raises:
        BufNMFError: bad parameters, an empty or missing corpus, an output folder holding
            another batch's work (see ``force``), no scheduler or workers.
        KeyboardInterrupt, Cancelled: the batch was interrupted; the files done are kept, the
            index is written (and is the exception's ``index`` attribute), and a rerun finishes
            the rest.
    """
    t_start = time.perf_counter()
    import multiprocessing.process

    # multiprocessing's own flag while a spawned process runs its parent's script again
    if getattr(multiprocessing.process.current_process(), "_inheriting", False):
        raise BufNMFError("bufnmf.batch.run was called while a worker process was starting: a spawned worker "
                          "runs the script's top level again; put the script's work under "
                          "if __name__ == \"__main__\":")
    start_method = _check_start_method(start_method)
    if client is not None and workers is not None:
        raise BufNMFError("workers sets the size of a local cluster: with client= (or --scheduler) the "
                          "cluster's own workers are used; leave workers out",
                          cli="--workers sets the size of a local cluster: with --scheduler the cluster's own "
                              "workers are used; leave --workers out")
    if client is not None and start_method != "auto":
        raise BufNMFError("start_method sets how a local cluster starts its workers: with client= (or --scheduler) "
                          "the cluster's workers are already running; leave start_method out",
                          cli="--start-method sets how a local cluster starts its workers: with --scheduler the "
                              "cluster's workers are already running; leave --start-method out")
    if workers is not None and as_int("workers", workers) < 1:
        raise BufNMFError(f"workers must be at least 1, got {workers}",
                          cli=f"--workers must be at least 1, got {workers}")
    given = _check_params(job, params)
    out = Path(os.path.abspath(Path(out_dir).expanduser()))
    if out.suffix.lower() in {*corpus_.AUDIO_EXTENSIONS, ".npy", ".csv", ".json", ".mid"} and not out.is_dir():
        what = {"learn": "the kit goes to FOLDER/kit.wav", "track": "each file's events go to FOLDER/<file>/"}.get(
            job, "each file's outputs go to FOLDER/<file>/")
        raise BufNMFError(f"the output folder {out_dir} looks like a file name: a batch writes into a folder ({what}); "
                          f"give a folder, e.g. {Path(out_dir).with_suffix('')}",
                          cli=f"-o {out_dir} looks like a file name: a batch writes into a folder ({what}); give a "
                              f"folder, e.g. -o {Path(out_dir).with_suffix('')}")
    sources = corpus_.find(paths, exclude=out)
    key = records.key(job, given)
    _check_outdir(out, job, key, given, force)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BufNMFError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    top = {"bufnmf_version": __version__, "job": job, "key": key, "params": given, "files": len(sources)}
    began = False

    def begin() -> None:  # the first file is about to be done: this folder now holds this batch's work
        nonlocal began
        began = True
        records.write(out, {**top, "status": "running"})

    try:
        with _batch_lock(out):
            index = _run(job, sources, out, given, key, client=client, workers=workers, resume=resume, force=force,
                         progress=progress, debug=debug, start_method=start_method, t_start=t_start, begin=begin)
            records.write(out, {**top, "status": "ok", "counts": index.counts})
    except BaseException:
        if created and not began:  # refused before any work: leave no empty folder behind
            records.prune(out, out.parent)
        raise
    return index


def _kit_seed(sources: list[corpus_.Source], out: Path, key: str, given: dict[str, Any]) -> int:
    """learn: the seed of the whole kit; for seed -1, the one an earlier run of this batch drew."""
    seed = int(given.get("seed", -1))
    if seed != -1:
        return seed
    for src in sources:
        rec = records.read(out / src.rel)
        if rec and rec.get("key") == key and rec.get("status") == "ok" and isinstance(rec.get("seed"), int):
            return int(rec["seed"])
    return resolve_seed(-1)


def _run(job: str, sources: list[corpus_.Source], out: Path, given: dict[str, Any], key: str, *, client: Any,
         workers: int | None, resume: bool, force: bool, progress: ProgressCallback | None, debug: bool,
         start_method: str, t_start: float, begin: Callable[[], None]) -> Index:
    kit_seed = _kit_seed(sources, out, key, given) if job == "learn" else None
    run_id = uuid.uuid4().hex  # in each file's record: which run did it
    rows: list[Row | None] = [None] * len(sources)
    todo: list[tuple[int, Task]] = []
    total = len(sources)
    done = 0
    stop = False
    for i, src in enumerate(sources):
        folder = out / src.rel
        st = records.stamp({"source": src.path, **{n: given.get(n) for n in _FILE_PARAMS}})
        rec = records.read(folder)
        same_seed = job != "learn" or (rec or {}).get("seed") == kit_seed
        if resume and same_seed and records.complete(folder, rec, key, st):
            assert rec is not None
            row = Row.from_dict({**rec.get("row", {}), "path": src.path, "status": "skipped", "error": "",
                                 "output": src.rel})
            rows[i] = row
            done += 1
            if progress is not None and progress(row, done, total) is False:
                stop = True
            continue
        todo.append((i, Task(job, src.path, src.rel, str(out), given, key, st, force=force, label=src.label,
                             seed=kit_seed, run=run_id)))
    todo = submission_order(todo)
    index = Index(job=job, out_dir=out)
    interrupted: BaseException | None = None
    hold = _HeldInterrupts()
    try:
        if todo and not stop:
            try:
                with connect(client, workers, tasks=len(todo), debug=debug,
                             start_method=start_method) as (c, threads):
                    begin()
                    interrupted = _submit(c, threads, todo, rows, sources, progress, done, total, hold)
            except KeyboardInterrupt as exc:  # while starting or stopping the cluster
                hold.start()
                interrupted = exc
        elif stop:
            interrupted = Cancelled("cancelled by the progress callback")
        if interrupted is not None:  # files finished whose results never came back (their worker ended)
            _recover(rows, sources, out, run_id)
        for i, src in enumerate(sources):
            if rows[i] is None:
                rows[i] = Row(src.path, "cancelled", message(Cancelled()), output=src.rel)
        index.extend(r for r in rows if r is not None)
        try:
            if interrupted is None:
                index.files += _finish(job, index, out, given)
        finally:
            index.seconds = time.perf_counter() - t_start
            # interrupted before any file began in a folder no batch has used: no index (a rerun
            # would take it for someone else's file)
            if interrupted is None or records.read(out) is not None:
                index.files = write_index(index) + index.files
    finally:
        hold.release()
    if interrupted is not None:
        interrupted.index = index  # type: ignore[attr-defined]  # what was done, for the caller to report
        raise interrupted
    return index


def _recover(rows: list[Row | None], sources: list[corpus_.Source], out: Path, run_id: str) -> None:
    """Rows for files this run finished but whose results it did not get: their records say so.

    When an interrupted batch stops, a task whose worker ended with it (a SIGTERM to the whole
    process group, as ``timeout`` and job schedulers send) has written its files' outputs and
    records but returned nothing; without this their rows would say "cancelled".
    """
    for i, (src, row) in enumerate(zip(sources, rows, strict=True)):
        if row is not None and row.status != "cancelled":
            continue
        rec = records.read(out / src.rel)
        if rec and rec.get("run") == run_id and rec.get("status") == "ok" and isinstance(rec.get("row"), dict):
            rows[i] = Row.from_dict({**rec["row"], "path": src.path, "status": "ok", "output": src.rel})


def submission_order(todo: list[tuple[int, Task]]) -> list[tuple[int, Task]]:
    """The order files are sent in: the largest first (by the source's size in bytes), equal sizes
    in corpus order, unreadable ones last; so the batch's end waits for a short file, not a long one."""
    return sorted(todo, key=lambda item: -((item[1].stamp.get("source") or [-1])[0]))


def _size(task: Task) -> int:
    """The source's size in bytes (0 when it could not be read)."""
    return int((task.stamp.get("source") or [0])[0] or 0)


class Pace:
    """Seconds of work per byte of source, per kind of file (its extension: a compressed file does
    ten times the work per byte of a WAV): the median over the last :attr:`RECENT` files of that
    kind done (None before any). A median, so that a worker's first file, slow while numba loads
    or compiles its kernels, does not keep the files one per task for long."""

    RECENT = 32

    def __init__(self) -> None:
        self.rates: dict[str, deque[float]] = {}

    @staticmethod
    def _kind(task: Task) -> str:
        return Path(task.source).suffix.lower()

    def add(self, task: Task, row: Row) -> None:
        """Count a finished file (failed ones, and sources of unknown size, do not count)."""
        if row.status == "ok" and row.seconds is not None and _size(task) > 0:
            self.rates.setdefault(self._kind(task), deque(maxlen=self.RECENT)).append(float(row.seconds) / _size(task))

    def known(self) -> bool:
        """Whether any file has been counted."""
        return bool(self.rates)

    def per_byte(self, task: Task) -> float | None:
        """The pace of ``task``'s kind of file, or None while none of that kind is done."""
        rates = self.rates.get(self._kind(task))
        return statistics.median(rates) if rates else None


def next_group(queue: deque[tuple[int, Task]], per_byte: float | Callable[[Task], float | None] | None,
               threads: int) -> list[tuple[int, Task]]:
    """Take the next task's files off the front of ``queue`` (at least one).

    Files follow one another while their expected seconds (``per_byte``, a number or a function
    of the task such as :meth:`Pace.per_byte`, x each source's size; None: unknown, and a file
    of unknown pace ends the group) stay within :data:`GROUP_SECONDS`, at most :data:`MAX_GROUP`
    and at most the files left / (:data:`GUIDED` x ``threads``), so that the batch's last tasks
    are single files.
    """
    pace = per_byte if callable(per_byte) else (lambda task: per_byte)
    group = [queue.popleft()]
    first = pace(group[0][1])
    if first is None:
        return group
    cap = max(1, min(MAX_GROUP, (len(queue) + 1) // (GUIDED * max(1, threads))))
    seconds = first * _size(group[0][1])
    while queue and len(group) < cap:
        rate = pace(queue[0][1])
        more = None if rate is None else rate * _size(queue[0][1])
        if more is None or seconds + more > GROUP_SECONDS:
            break
        seconds += more
        group.append(queue.popleft())
    return group


def _submit(client: Any, threads: dict[str, int], todo: list[tuple[int, Task]], rows: list[Row | None],
            sources: list[corpus_.Source], progress: ProgressCallback | None, done: int,
            total: int, hold: _HeldInterrupts) -> BaseException | None:
    """Run the tasks, a few per worker thread at a time; returns the interruption, if any."""
    from distributed import Event, KilledWorker, as_completed

    name = f"bufnmf-batch-cancel-{uuid.uuid4().hex}"
    event = Event(name, client=client)
    # Tasks go to the scheduler a chunk at a time (each submission is one graph update for it),
    # keeping at most `window` unfinished: enough to keep every worker thread busy, few enough
    # that a batch of 100,000 files never holds them all at once. The first tasks are single
    # files, two per worker thread; once one is done, its pace sizes the groups of the rest.
    nthreads = max(1, sum(client.nthreads().values()))
    window = max(WINDOW, 4 * nthreads)
    queue = deque(todo)
    where: dict[str, list[int]] = {}
    tasks = dict(todo)
    pending: dict[str, Any] = {}  # submitted, not yet collected
    pace = Pace()
    running = as_completed(loop=client.loop, with_results=True, raise_errors=False)

    singles: deque[tuple[int, Task]] = deque()  # files of a group whose workers died: one per task

    def top_up() -> None:
        if len(pending) > window // 2 or not (queue or singles):
            return
        room = window - len(pending) if pace.known() else max(0, 2 * nthreads - len(pending))
        chunk = [[singles.popleft()] if singles else next_group(queue, pace.per_byte, nthreads)
                 for _ in range(room) if queue or singles]
        if not chunk:
            return
        keys = [f"bufnmf-{group[0][1].job}-{group[0][0]}-{len(group)}-{uuid.uuid4().hex[:8]}" for group in chunk]
        # (the thread budgets, a few bytes, go with each task: a broadcast scatter stalled a test cluster)
        with signals_deferred() as held:  # a Ctrl-C here would leave tasks running that the batch does not know of
            futs = client.map(execute_group, [[task for _, task in group] for group in chunk], budgets=threads,
                              cancel=name, key=keys, pure=False)
            for group, fut in zip(chunk, futs, strict=True):
                where[fut.key] = [i for i, _ in group]
                pending[fut.key] = fut
            running.update(futs)
        held.redeliver()

    def results(fut: Any, value: Any = None) -> list[Row] | None:
        """The rows of a finished task; None: its files go back in the queue one by one."""
        idx = where[fut.key]
        try:
            if not isinstance(value, list):  # not gathered with it (or an error): ask the future
                value = fut.result()
            return [Row.from_dict(v) for v in value]
        except Exception as exc:  # the task itself never raises: its worker died, or the cluster went away
            if isinstance(exc, KilledWorker) and len(idx) > 1 and not cancelling:
                return None  # one file of the group may be what kills its workers: find which
            why = (f"the worker doing it died (killed, or out of memory) too many times: {exc}"
                   if isinstance(exc, KilledWorker) else message(exc))
            return [Row(sources[i].path, "failed", " ".join(why.split()), output=sources[i].rel) for i in idx]

    cancelling = False
    top_up()
    interrupted: BaseException | None = None
    try:
        for fut, value in running:
            got = results(fut, value)
            idx = where[fut.key]
            if got is None:  # its files go back, one per task
                singles.extend((i, tasks[i]) for i in idx)
                got = []
            else:
                for i, row in zip(idx, got, strict=True):
                    rows[i] = row  # (before the task leaves `pending`: an interrupt keeps the rows)
                    pace.add(tasks[i], row)
            del pending[fut.key]
            fut.release()
            stop = False
            for row in got:
                done += 1
                if progress is not None and progress(row, done, total) is False:
                    stop = True
            if stop:
                raise _Stop
            top_up()
    except (KeyboardInterrupt, _Stop) as exc:
        hold.start()
        interrupted = exc if isinstance(exc, KeyboardInterrupt) else Cancelled("cancelled by the progress callback")
        # stop cleanly: running jobs stop (decompose within 0.2 s, writing nothing) or finish; none starts
        cancelling = True
        event.set()
        left = list(pending.values())
        deadline = time.monotonic() + GRACE_SECONDS  # (distributed.wait wants a default client: poll)
        while not all(f.done() for f in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        for fut in left:
            if fut.done():
                for i, row in zip(where[fut.key], results(fut) or [], strict=True):
                    rows[i] = row
        with contextlib.suppress(Exception):
            client.cancel(left)
    return interrupted


class _HeldInterrupts:
    """Once a batch is interrupted, further Ctrl-C (a second press, or the one the command line
    sends again when the first landed in a C callback) are held off until the batch has let the
    files being done finish or stop and has written its index; then the handler is restored.
    Main thread only (elsewhere Python delivers no signals)."""

    def __init__(self) -> None:
        self.old: Any = None
        self.held = False

    def start(self) -> None:
        if self.held or threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError):
            self.old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.held = True

    def release(self) -> None:
        if self.held:
            signal.signal(signal.SIGINT, self.old if self.old is not None else signal.SIG_DFL)
            self.held = False


def _finish(job: str, index: Index, out: Path, given: dict[str, Any]) -> list[Path]:
    """The batch's own outputs beside the index: track's table of all events, learn's kit."""
    good = [r for r in index if r.status in ("ok", "skipped")]
    if job == "track":
        fmt = given.get("format", "csv")
        table = []
        for r in good:
            for e in read_events(out / r.output / f"events.{fmt}"):
                table.append({"path": r.path, "time": e.time, "label": e.label, "strength": e.strength,
                              "end": e.end})
        types = {"path": "string", "time": "float64", "label": "string", "strength": "float64", "end": "float64"}
        return write_table(out, "events", table, list(types), types)
    if job == "learn":
        if not good:
            raise BufNMFError(f"no kit was written: none of the {len(index)} examples could be learnt (see "
                              f"{out / 'index.csv'})")
        res = stack_kits_job([out / r.output / "kit.wav" for r in good], out / "kit.wav",
                             merge_labels=bool(given.get("merge_labels", False)), force=True)
        return list(res.outputs)
    return []
