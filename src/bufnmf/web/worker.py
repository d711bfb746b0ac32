"""The worker processes of ``bufnmf serve``: each runs one job at a time, off the server's event loop.

A worker is a separate process (started with ``spawn``), so the numerics never share the
server's interpreter: the page stays responsive while a run works, and a worker that dies
(out of memory, say) takes only its own job down. The server talks to a worker over a pipe:

* server -> worker: ``(job_id, spec)`` to run a job, ``None`` to stop;
* worker -> server: ``("ready",)`` once warm, ``("progress", job_id, done, total, stage)``,
  ``("done", job_id, summary)``, ``("error", job_id, message)``, ``("cancelled", job_id)``.

Cancelling sets the worker's shared flag; the job's ``progress`` callback then returns False and
the job stops with :class:`bufnmf.Cancelled`, leaving nothing written. A spec names files inside
the session's own folder only (the server builds it; nothing in it comes from the client as a path).
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: Seconds between progress messages (the first and the last are always sent).
PROGRESS_EVERY = 0.05

#: The parameters of a decompose spec that go to :func:`bufnmf.workflows.jobs.decompose_job` as they are.
DECOMPOSE_PARAMS = ("components", "iterations", "window_size", "hop_size", "fft_size", "seed", "bases_mode",
                    "extra_components")
#: The parameters of a sines spec that go to :func:`bufnmf.workflows.jobs.sines_job` as they are.
SINES_PARAMS = ("bandwidth", "detection_threshold", "birth_low_threshold", "birth_high_threshold", "min_track_len",
                "track_method", "window_size", "hop_size", "fft_size")


#: Job parameters that are not options of the matching command (arguments, or the page's own).
_NOT_OPTIONS = {"source", "out_dir", "output", "progress", "plan_only", "resynth", "force"}


def in_command_line_terms(message: str) -> str:
    """A job's message with the commands' option names: ``bases_mode`` -> ``--bases-mode``, as the
    command line prints it (:func:`bufnmf.errors.command_line_terms` over the options of
    ``bufnmf decompose`` and ``bufnmf sines``, which are the jobs' keyword parameters)."""
    import inspect

    from ..errors import command_line_terms
    from ..workflows.jobs import decompose_job, sines_job

    names = {p for job in (decompose_job, sines_job) for p in inspect.signature(job).parameters} - _NOT_OPTIONS
    return command_line_terms(message, sorted("--" + n.replace("_", "-") for n in names))


def error_message(exc: BaseException) -> str:
    """What the command line prints after ``bufnmf: error:`` for this exception."""
    from ..errors import BufNMFError

    if isinstance(exc, BufNMFError):
        return exc.cli if exc.cli is not None else in_command_line_terms(str(exc))
    if isinstance(exc, MemoryError):
        return ("out of memory: use fewer components, a shorter selection (--num-frames) or a larger hop")
    return (f"internal error {type(exc).__name__}: {exc} (please report it with the file and settings that "
            "caused it)")


def plan(spec: dict[str, Any]) -> dict[str, Any]:
    """Check and plan a decompose spec without running it (``decompose_job(plan_only=True)``).

    Runs in the server's process (a thread beside the event loop), so it takes absolute paths and
    never changes the working directory; the caller takes the folder out of its messages.

    Returns the plan's summary (``memory_bytes``, ``memory``, ``components``, ...).
    Raises :class:`bufnmf.BufNMFError` for any bad input.
    """
    import warnings

    from ..workflows.jobs import decompose_job

    with warnings.catch_warnings():  # the run reports them, on the page
        warnings.simplefilter("ignore")
        job = decompose_job(spec["source"], spec["out_dir"], bases=spec.get("bases"),
                            **{k: spec["params"][k] for k in DECOMPOSE_PARAMS if k in spec["params"]},
                            plan_only=True)
    return job.summary


class _Inside:
    """Run with the job's input folder as the working directory, so that its messages and
    ``summary.json`` name the files as the user named them (``source mix.wav ...``)."""

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self.before: str | None = None

    def __enter__(self) -> None:
        if self.folder is not None:
            self.before = os.getcwd()
            os.chdir(self.folder)

    def __exit__(self, *exc: object) -> None:
        if self.before is not None:
            os.chdir(self.before)


def run_spec(spec: dict[str, Any], progress: Any, stage: Any) -> dict[str, Any]:
    """Run one job spec; returns its summary. ``progress(done, total)`` as the jobs take it;
    ``stage(name)`` tells the server what the job is doing."""
    from ..workflows.jobs import decompose_job, demo_job, sines_job, track_job

    kind = spec["kind"]
    out = Path(spec["out_dir"])
    if kind == "demo":
        return demo_job(out, progress=progress).summary
    if kind == "sines":
        sines_params = {k: spec["params"][k] for k in SINES_PARAMS if k in spec["params"]}
        with _Inside(spec["cwd"]):
            return dict(sines_job(spec["source"], out, progress=progress, **sines_params).summary)
    if kind != "decompose":
        raise ValueError(f"unknown job kind {kind!r}")
    params = {k: spec["params"][k] for k in DECOMPOSE_PARAMS if k in spec["params"]}
    with _Inside(spec["cwd"]):
        job = decompose_job(spec["source"], out, bases=spec.get("bases"), progress=progress, **params)
        info = dict(job.summary)
        if spec.get("track"):
            stage("tracking")
            channel = None if job.result.num_channels == 1 else "mix"
            tracked = track_job(spec["source"], spec["bases"], out / "events.json", midi=out / "events.mid",
                                iterations=params.get("iterations", 100), seed=job.result.seed,
                                extra_components=params.get("extra_components", 0),
                                window_size=params.get("window_size"), hop_size=params.get("hop_size"),
                                fft_size=params.get("fft_size"), channel=channel)
            info["tracking"] = {k: tracked.summary[k] for k in ("events", "counts", "seed")}
            info["tracking"]["channel"] = "mixdown" if channel == "mix" else "the source"
    return info


def _warm_up() -> None:
    """Import the numerics and load (or compile) the numba kernels, so the first job starts at once."""
    from ..clients.bufnmf import decompose
    from ..clients.sines import sines
    from ..demo import drum_loop

    loop = drum_loop(seconds=0.25)[0]
    for track in (False, True):  # both kernels: with and without the divergence the jobs report
        decompose(loop, components=2, iterations=2, seed=0, kernel="numba", track_divergence=track, resynth=False)
    sines(loop, sample_rate=44100)


def _limit_threads(threads: int) -> None:
    try:
        import numba

        numba.set_num_threads(max(1, min(threads, int(getattr(numba.config, "NUMBA_NUM_THREADS", threads)))))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass


def main(conn: Connection, cancel: Any, threads: int, parent: int) -> None:
    """A worker's life: warm up, then run jobs from ``conn`` until told to stop or orphaned."""
    import warnings

    from ..errors import Cancelled

    _limit_threads(threads)
    try:
        _warm_up()
    except Exception:  # a failed warm-up only costs the first job its compile time
        pass
    conn.send(("ready",))
    while True:
        try:
            if not conn.poll(1.0):
                if os.getppid() != parent:  # the server died without stopping us
                    return
                continue
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, spec = msg
        cancel.value = 0
        _limit_threads(int(spec.get("threads", threads)))
        last = [0.0]

        def progress(done: int, total: int, _id: str = job_id, _last: list[float] = last) -> bool:
            now = time.monotonic()
            if done >= total or done <= 1 or now - _last[0] >= PROGRESS_EVERY:
                _last[0] = now
                conn.send(("progress", _id, int(done), int(total), "running"))
            return not cancel.value

        def stage(name: str, _id: str = job_id) -> None:
            conn.send(("progress", _id, 0, 0, name))

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                info = run_spec(spec, progress, stage)
            info["warnings"] = sorted({str(w.message) for w in caught})
            conn.send(("done", job_id, info))
        except Cancelled:
            conn.send(("cancelled", job_id))
        except Exception as exc:  # every error goes to the page as one line
            conn.send(("error", job_id, error_message(exc)))
