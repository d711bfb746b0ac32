"""Jobs of ``bufnmf serve``: a queue in front of ``max_jobs`` worker processes.

The event loop only keeps books here: which job waits, which runs where, what each reported.
The numerics run in :mod:`bufnmf.web.worker` processes. A queued job starts when a worker is
free and its memory estimate (from the planner, made when the job was submitted) fits in what
is available beside the estimates of the jobs already running; a job that waits for memory
says so. A job that would not fit even alone is refused by the job's own check, in its words.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..resources import available_memory, fmt_bytes
from . import worker

#: Job states, in the order a job goes through them.
STATES = ("queued", "running", "done", "error", "cancelled")

#: Spectrogram cells (bins x frames) below which a job runs on one thread: on small jobs the
#: threads' start and sync cost more than they give, and far more on a busy machine.
ONE_THREAD_BELOW_CELLS = 2_000_000


@dataclass
class Job:
    """One run, as the page sees it."""

    id: str
    session: str
    kind: str
    spec: dict[str, Any]
    title: str
    memory_bytes: int = 0
    cells: int = 0  # spectrogram bins x frames per channel (0: unknown)
    state: str = "queued"
    stage: str = ""
    done: int = 0
    total: int = 0
    position: int = 0  # place in the queue (1 = next), while queued
    waiting_for_memory: bool = False
    message: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel_requested: bool = False
    worker: int | None = None

    @property
    def finished_state(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    def public(self) -> dict[str, Any]:
        """What the page gets about this job (no paths)."""
        seconds = None
        if self.started is not None:
            seconds = round((self.finished or time.monotonic()) - self.started, 3)
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state, "stage": self.stage,
                "done": self.done, "total": self.total, "position": self.position,
                "waiting_for_memory": self.waiting_for_memory, "message": self.message,
                "memory": fmt_bytes(self.memory_bytes) if self.memory_bytes else "", "seconds": seconds}


class _Worker:
    def __init__(self, index: int, ctx: Any, threads: int, on_message: Callable[[int, tuple], None]) -> None:
        self.index = index
        self.ctx = ctx
        self.threads = threads
        self.on_message = on_message
        self.ready = False
        self.job: str | None = None
        self.conn: Connection | None = None
        self.process: Any = None
        self.cancel: Any = None
        self.start()

    def start(self) -> None:
        parent_conn, child_conn = self.ctx.Pipe()
        self.cancel = self.ctx.Value("b", 0, lock=False)
        self.process = self.ctx.Process(target=worker.main, args=(child_conn, self.cancel, self.threads, os.getpid()),
                                        name=f"bufnmf-serve-worker-{self.index}", daemon=True)
        self.process.start()
        child_conn.close()
        self.conn = parent_conn
        self.ready = False
        self.job = None
        threading.Thread(target=self._read, args=(parent_conn, self.process), daemon=True,
                         name=f"bufnmf-serve-reader-{self.index}").start()

    def _read(self, conn: Connection, process: Any) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                process.join(timeout=5)
                self.on_message(self.index, ("exited", process.exitcode, process))
                return
            self.on_message(self.index, msg)

    def send(self, msg: object) -> None:
        assert self.conn is not None
        self.conn.send(msg)

    def stop(self, timeout: float = 5.0) -> None:
        try:
            if self.conn is not None:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        if self.process is not None:
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(timeout)
        if self.conn is not None:
            self.conn.close()


class Runner:
    """The queue and the workers. Create it inside the running event loop; call :meth:`close` at the end.

    Args:
        max_jobs: workers, so runs at once.
        on_change: called (on the event loop) with a job whenever its public state changes.
        threads: numba threads per worker (default: the cores shared out among the workers).
    """

    def __init__(self, max_jobs: int, on_change: Callable[[Job], None], threads: int | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.on_change = on_change
        self.jobs: dict[str, Job] = {}
        self.queue: list[str] = []
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        per = threads if threads is not None else max(1, cores // max_jobs)
        ctx = mp.get_context("spawn")
        self.closed = False
        self.broken = ""  # why the workers cannot run, when they cannot
        self.workers = [_Worker(i, ctx, per, self._from_thread) for i in range(max_jobs)]

    # -- messages from the workers' reader threads

    def _from_thread(self, index: int, msg: tuple) -> None:
        if not self.closed:
            self.loop.call_soon_threadsafe(self._on_message, index, msg)

    def _on_message(self, index: int, msg: tuple) -> None:
        if self.closed:
            return
        w = self.workers[index]
        kind = msg[0]
        if kind == "ready":
            w.ready = True
        elif kind == "exited":
            if msg[2] is not w.process:  # an old process of a restarted worker
                return
            job = self.jobs.get(w.job) if w.job else None
            code = msg[1]
            if job is not None and not job.finished_state:
                self._finish(job, "error", message=f"the worker running this job stopped unexpectedly (exit code "
                                                   f"{code}), perhaps out of memory: use fewer components, a "
                                                   "shorter sound or a larger hop")
            if not w.ready:  # it never started: starting it again would fail again
                self.broken = (f"a worker process could not start (exit code {code}): see the messages where the "
                               "server runs")
                for jid in list(self.queue):
                    self.queue.remove(jid)
                    self._finish(self.jobs[jid], "error", message=self.broken)
                return
            w.start()
        else:
            job = self.jobs.get(msg[1])
            if job is None or job.finished_state:
                return
            if kind == "progress":
                job.done, job.total, job.stage = msg[2], msg[3], msg[4]
                self.on_change(job)
                return
            w.job = None
            if kind == "done":
                if job.cancel_requested:
                    self._finish(job, "cancelled", message="cancelled")
                else:
                    job.summary = msg[2]
                    self._finish(job, "done")
            elif kind == "cancelled":
                self._finish(job, "cancelled", message="cancelled")
            else:
                self._finish(job, "error", message=msg[2])
        self._dispatch()

    # -- the queue

    def submit(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.queue.append(job.id)
        self._dispatch()
        if job.state == "queued":
            self.on_change(job)

    def cancel(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.finished_state:
            return
        job.cancel_requested = True
        if job.state == "queued":
            self.queue.remove(job_id)
            self._finish(job, "cancelled", message="cancelled before it started")
            self._dispatch()
        elif job.worker is not None:
            self.workers[job.worker].cancel.value = 1
            job.stage = "cancelling"
            self.on_change(job)

    def running(self) -> list[Job]:
        return [self.jobs[w.job] for w in self.workers if w.job is not None and w.job in self.jobs]

    def _finish(self, job: Job, state: str, message: str = "") -> None:
        job.state = state
        job.message = message
        job.finished = time.monotonic()
        job.position = 0
        self.on_change(job)

    def _dispatch(self) -> None:
        started = False
        while self.queue:
            free = [w for w in self.workers if w.ready and w.job is None]
            if not free:
                break
            job = self.jobs[self.queue[0]]
            busy = self.running()
            if busy and job.memory_bytes > available_memory() - sum(j.memory_bytes for j in busy):
                if not job.waiting_for_memory:
                    job.waiting_for_memory = True
                    self.on_change(job)
                break  # it starts when a running job ends; alone, its own check decides
            self.queue.pop(0)
            w = free[0]
            w.job, job.worker = job.id, w.index
            w.cancel.value = 0
            job.state, job.started, job.position, job.waiting_for_memory = "running", time.monotonic(), 0, False
            job.stage = "starting"
            threads = 1 if 0 < job.cells < ONE_THREAD_BELOW_CELLS else w.threads
            w.send((job.id, {**job.spec, "threads": threads}))
            self.on_change(job)
            started = True
        for i, jid in enumerate(self.queue):
            job = self.jobs[jid]
            if job.position != i + 1 or started:
                job.position = i + 1
                self.on_change(job)

    def forget(self, job_id: str) -> None:
        """Drop a finished job's record (its session ended)."""
        job = self.jobs.get(job_id)
        if job is not None and job.finished_state:
            del self.jobs[job_id]

    def close(self) -> None:
        """Stop every worker (running jobs are abandoned; their files go with their session)."""
        self.closed = True
        for w in self.workers:
            w.cancel.value = 1
        for w in self.workers:
            w.stop()
