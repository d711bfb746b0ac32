"""The web page's server: sessions, uploads, jobs and downloads (Starlette; served by uvicorn).

Every page session (one browser tab) gets its own temporary folder under the server's folder,
named by a random id that is the session's key. The client never gives a path: it names an
upload, a job or an output file by the ids and names the server gave it, and every name is
checked against the server's own records. A session's folder goes when the page is closed
(or has been gone for ``session_idle_s``) and the server's whole folder when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..errors import BufNMFError
from ..resources import fmt_bytes
from . import views, worker
from .runner import Job, Runner

STATIC = Path(str(resources.files("bufnmf.web") / "static"))

#: Parameters the page may send for a decomposition.
PARAMS = ("components", "iterations", "window_size", "hop_size", "fft_size", "seed", "bases_mode",
          "extra_components")
AUDIO_TYPES = {".wav": "audio/wav", ".aif": "audio/aiff", ".aiff": "audio/aiff", ".flac": "audio/flac",
               ".ogg": "audio/ogg", ".mp3": "audio/mpeg", ".json": "application/json",
               ".npy": "application/octet-stream", ".mid": "audio/midi", ".png": "image/png", ".zip": "application/zip"}

NOSNIFF = {"x-content-type-options": "nosniff"}


def media_type(name: str) -> str:
    """The type a file is served as: audio, JSON, buffers; anything else as plain bytes (never as a page)."""
    return AUDIO_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


@dataclass
class WebConfig:
    """How ``bufnmf serve`` runs.

    Attributes:
        max_upload: bytes one uploaded file may have.
        max_jobs: runs at once (worker processes); the rest wait in a queue.
        tmp_root: the server's folder for sessions (created and removed by the server); None: a new
            temporary folder.
        session_idle_s: a session whose page has not been connected for this long is ended.
        keep_jobs: finished jobs a session keeps (older ones' files are removed when it runs another).
        local_only: refuse requests whose ``Host`` is not a loopback name (a web site that makes its own
            name point at 127.0.0.1, "DNS rebinding", cannot reach the page); ``bufnmf serve`` sets it
            when it listens on loopback. Requests that change something are always refused when their
            ``Origin`` is another site than the page's own.
    """

    max_upload: int = 500 * 2**20
    max_jobs: int = 1
    tmp_root: Path | None = None
    session_idle_s: float = 120.0
    keep_jobs: int = 2
    local_only: bool = False


@dataclass
class Upload:
    id: str
    role: str  # "source" or "kit"
    folder: Path
    files: list[str] = field(default_factory=list)


@dataclass
class Session:
    id: str
    folder: Path
    uploads: dict[str, Upload] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    listeners: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)
    last_seen: float = field(default_factory=time.monotonic)
    ended: bool = False


class ClientError(Exception):
    """A request the page should show as a message (status 400 unless given)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def safe_name(name: str, default: str = "upload") -> str:
    """A file name made safe to store: the last path part, ordinary characters, at most 100 long."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9 ._()+#-]+", "_", base).strip(" .")
    if not base:
        return default
    if len(base) > 100:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 100 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else base[:100]
    return base


class Server:
    """The state behind the routes: config, sessions and the runner."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.runner: Runner | None = None
        self.root = Path(config.tmp_root) if config.tmp_root else Path(tempfile.mkdtemp(prefix="bufnmf-serve-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._reaper: asyncio.Task[None] | None = None
        self.stopping: asyncio.Event | None = None  # made in start(), inside the loop

    # -- life

    async def start(self) -> None:
        self.stopping = asyncio.Event()
        self.runner = Runner(self.config.max_jobs, self._changed)
        self._reaper = asyncio.create_task(self._reap())

    async def stop(self) -> None:
        if self.stopping is not None:
            self.stopping.set()
        for s in self.sessions.values():
            for q in list(s.listeners):
                q.put_nowait(None)
        if self._reaper is not None:
            self._reaper.cancel()
        if self.runner is not None:
            await asyncio.to_thread(self.runner.close)
        shutil.rmtree(self.root, ignore_errors=True)

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.config.session_idle_s / 2))
            now = time.monotonic()
            for s in list(self.sessions.values()):
                if not s.listeners and now - s.last_seen > self.config.session_idle_s:
                    self.end_session(s)

    @property
    def workers_ready(self) -> int:
        return sum(w.ready for w in self.runner.workers) if self.runner else 0

    # -- sessions

    def new_session(self) -> Session:
        sid = secrets.token_urlsafe(16)
        s = Session(sid, self.root / f"session-{sid[:8]}-{secrets.token_hex(4)}")
        s.folder.mkdir()
        self.sessions[sid] = s
        return s

    def session(self, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None or s.ended:
            raise ClientError("this page's session has ended (the server restarted or the page was idle): "
                              "reload the page", 410)
        s.last_seen = time.monotonic()
        return s

    def end_session(self, s: Session) -> None:
        if s.ended:
            return
        s.ended = True
        assert self.runner is not None
        for jid in s.jobs:
            self.runner.cancel(jid)
        for q in list(s.listeners):
            q.put_nowait(None)
        self._remove_if_idle(s)

    def _remove_if_idle(self, s: Session) -> None:
        assert self.runner is not None
        if any(not self.runner.jobs[j].finished_state for j in s.jobs if j in self.runner.jobs):
            return  # removed when its last running job stops
        shutil.rmtree(s.folder, ignore_errors=True)
        for jid in s.jobs:
            self.runner.forget(jid)
        self.sessions.pop(s.id, None)

    # -- jobs

    def _changed(self, job: Job) -> None:
        s = self.sessions.get(job.session)
        if s is None:
            return
        if job.state == "done" and job.kind == "demo" and "source_upload" not in job.summary:
            loop_file = self.job_dir(s, job.id) / "out" / "demo_loop.wav"
            if loop_file.is_file():  # the demo's loop becomes the page's source for further runs
                up = self._new_upload(s, "source")
                _link(loop_file, up.folder / "demo_loop.wav")
                up.files.append("demo_loop.wav")
                job.summary["source_upload"] = {"id": up.id, "name": "demo_loop.wav"}
        if s.ended and job.finished_state:
            self._remove_if_idle(s)
            return
        event = job.public()
        for q in list(s.listeners):
            q.put_nowait(event)

    def job_dir(self, s: Session, jid: str) -> Path:
        return s.folder / "jobs" / jid

    def job(self, s: Session, jid: str) -> Job:
        assert self.runner is not None
        job = self.runner.jobs.get(jid)
        if job is None or job.session != s.id:
            raise ClientError("no such job in this session", 404)
        return job

    def _new_upload(self, s: Session, role: str) -> Upload:
        uid = secrets.token_hex(6)
        up = Upload(uid, role, s.folder / "uploads" / uid)
        up.folder.mkdir(parents=True)
        s.uploads[uid] = up
        return up

    def _drop_old_jobs(self, s: Session) -> None:
        assert self.runner is not None
        finished = [j for j in s.jobs if j in self.runner.jobs and self.runner.jobs[j].finished_state]
        for jid in finished[: max(0, len(finished) - self.config.keep_jobs)]:
            shutil.rmtree(self.job_dir(s, jid), ignore_errors=True)
            self.runner.forget(jid)
            s.jobs.remove(jid)

    async def submit(self, s: Session, body: dict[str, Any]) -> Job:
        assert self.runner is not None
        if self.runner.broken:
            raise ClientError(self.runner.broken, 503)
        kind = body.get("kind")
        jid = secrets.token_hex(6)
        folder = self.job_dir(s, jid)
        try:
            job = await self._make_job(s, body, kind, jid, folder)
        except ClientError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._drop_old_jobs(s)
        s.jobs.append(jid)
        self.runner.submit(job)
        return job

    async def _make_job(self, s: Session, body: dict[str, Any], kind: object, jid: str, folder: Path) -> Job:
        if kind == "demo":
            spec: dict[str, Any] = {"kind": "demo", "out_dir": str(folder / "out"), "cwd": None}
            job = Job(jid, s.id, "demo", spec, "demo loop, 3 components", cells=1)  # a 4 s loop: small
        elif kind == "decompose":
            spec, title = self._decompose_spec(s, body, folder)
            try:
                plan = await asyncio.to_thread(worker.plan, {**spec, "source": str(Path(spec["cwd"]) / spec["source"]),
                                                             "bases": _abs(spec["cwd"], spec.get("bases"))})
            except BufNMFError as exc:
                raise ClientError(worker.error_message(exc).replace(spec["cwd"] + os.sep, "")) from None
            job = Job(jid, s.id, "decompose", spec, title, memory_bytes=int(plan["memory_bytes"]),
                      cells=int(plan["bins"]) * int(plan["frames"]))
        elif kind == "sines":  # no planner to ask: its checks come with the run, in the same words
            spec, title = self._sines_spec(s, body, folder)
            job = Job(jid, s.id, "sines", spec, title)
        else:
            raise ClientError(f"unknown job kind {kind!r}: use 'decompose', 'sines' or 'demo'")
        return job

    @staticmethod
    def _params(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        raw = body.get("params") or {}
        if not isinstance(raw, dict):
            raise ClientError("params must be an object")
        params: dict[str, Any] = {}
        for name in names:
            value = raw.get(name)
            if value is None or value == "":
                continue
            if isinstance(value, str):
                try:
                    value = int(value)
                except ValueError:
                    pass  # the job names it: "components must be an integer, got 'x'"
            params[name] = value
        return params

    @staticmethod
    def _source(s: Session, body: dict[str, Any], folder: Path) -> tuple[Path, str]:
        """The job's input folder with the chosen sound linked in; returns (folder, the sound's name)."""
        src = s.uploads.get(str(body.get("source")))
        if src is None or src.role != "source" or not src.files:
            raise ClientError("choose a sound first: drop or pick a file, or try the demo loop")
        inputs = folder / "in"
        inputs.mkdir(parents=True)
        _link(src.folder / src.files[0], inputs / src.files[0])
        return inputs, src.files[0]

    def _sines_spec(self, s: Session, body: dict[str, Any], folder: Path) -> tuple[dict[str, Any], str]:
        params = self._params(body, worker.SINES_PARAMS)
        inputs, source = self._source(s, body, folder)
        spec = {"kind": "sines", "cwd": str(inputs), "source": source, "params": params,
                "out_dir": str(folder / "out")}
        return spec, f"{source}, sines and residual"

    def _decompose_spec(self, s: Session, body: dict[str, Any], folder: Path) -> tuple[dict[str, Any], str]:
        kit = s.uploads.get(str(body.get("kit"))) if body.get("kit") else None
        if body.get("kit") and (kit is None or kit.role != "kit"):
            raise ClientError("the kit is no longer there: choose it again")
        params = self._params(body, PARAMS)
        if kit is None:
            params.pop("bases_mode", None)
            params.pop("extra_components", None)
        inputs, source = self._source(s, body, folder)
        bases = None
        track = False
        if kit is not None:
            buffers = [f for f in kit.files if f.lower().endswith((".wav", ".npy"))]
            if not buffers:
                raise ClientError("the kit needs its buffer (.wav or .npy) beside its .json: add the kit's buffer")
            bases = buffers[0]
            if bases == source:
                bases = "kit_" + bases
            _link(kit.folder / buffers[0], inputs / bases)
            stem = Path(buffers[0]).stem
            jsons = [f for f in kit.files if f.lower().endswith(".json")]
            sidecars = [f for f in jsons if f.lower() == f"{stem.lower()}.json"] or (jsons if len(jsons) == 1 else [])
            if sidecars:
                _link(kit.folder / sidecars[0], inputs / (Path(bases).stem + ".json"))
                track = True
        spec = {"kind": "decompose", "cwd": str(inputs), "source": source, "bases": bases, "params": params,
                "track": track, "out_dir": str(folder / "out")}
        if bases:
            extra = params.get("extra_components")
            free = f" and {extra} free component{'s' if extra != 1 else ''}" if extra else ""
            title = f"{source} with the kit {bases}{free}"
        else:
            k = params.get("components", 1)
            title = f"{source}, {k} component{'s' if k != 1 else ''}"
        return spec, title

    async def upload(self, s: Session, request: Request) -> Upload:
        name = safe_name(request.query_params.get("name", ""))
        role = request.query_params.get("role", "source")
        if role not in ("source", "kit"):
            raise ClientError("role must be 'source' or 'kit'")
        limit = self.config.max_upload
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ClientError(too_big(name, int(length), limit), 413)
        into = request.query_params.get("into")
        if into:
            up = s.uploads.get(into)
            if up is None or up.role != role:
                raise ClientError("no such upload in this session", 404)
        else:
            for old in [u for u in s.uploads.values() if u.role == role]:  # a new choice replaces the old
                shutil.rmtree(old.folder, ignore_errors=True)
                del s.uploads[old.id]
            up = self._new_upload(s, role)
        if name in up.files:
            raise ClientError(f"{name} is already uploaded", 409)
        path = up.folder / name
        size = 0
        try:
            with open(path, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ClientError(too_big(name, size, limit, at_least=True), 413)
                    fh.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        up.files.append(name)
        return up

    def zip_of(self, s: Session, job: Job) -> Path:
        """A zip of every output of a finished job (made once, in the job's folder)."""
        folder = self.job_dir(s, job.id)
        stem = views.stem_of(job)
        target = folder / f"{stem}.zip"
        if not target.exists():
            part = folder / f".{target.name}.{secrets.token_hex(4)}.part"  # two requests: two parts, one wins
            with zipfile.ZipFile(part, "w") as zf:
                for name in views.output_files(folder / "out"):
                    packed = name.endswith((".json", ".csv"))  # audio and float buffers hardly compress: stored
                    zf.write(folder / "out" / name, f"{stem}/{name}",
                             compress_type=zipfile.ZIP_DEFLATED if packed else zipfile.ZIP_STORED)
            part.replace(target)
        return target


def too_big(name: str, size: int, limit: int, at_least: bool = False) -> str:
    """The message for an upload over ``--max-upload``."""
    what = f"is more than {fmt_bytes(limit)}" if at_least else f"is {fmt_bytes(size)}, more than {fmt_bytes(limit)}"
    return (f"{name} {what}, the most this server takes (--max-upload): use a shorter or compressed sound, "
            "or restart 'bufnmf serve' with a larger --max-upload")


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _abs(cwd: str, name: str | None) -> str | None:
    return None if name is None else str(Path(cwd) / name)


# ----------------------------------------------------------------------------------------------
# routes


def create_app(config: WebConfig | None = None) -> Starlette:
    """The ASGI app of ``bufnmf serve`` (its lifespan starts and stops the workers and the folder)."""
    srv = Server(config or WebConfig())

    def err(exc: ClientError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def config_(request: Request) -> Response:
        return JSONResponse({"version": __version__, "max_upload": srv.config.max_upload,
                             "max_upload_text": fmt_bytes(srv.config.max_upload), "max_jobs": srv.config.max_jobs,
                             "workers_ready": srv.workers_ready, "kinds": ["decompose", "sines", "demo"],
                             "broken": srv.runner.broken if srv.runner else ""})

    async def new_session(request: Request) -> Response:
        s = srv.new_session()
        return JSONResponse({"id": s.id})

    async def session_info(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
        except ClientError as exc:
            return err(exc)
        return JSONResponse({"id": s.id, "jobs": len(s.jobs), "uploads": len(s.uploads)})

    async def end_session(request: Request) -> Response:
        s = srv.sessions.get(request.path_params["sid"])
        if s is not None:
            srv.end_session(s)
        return JSONResponse({"ended": True})

    async def upload(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
            up = await srv.upload(s, request)
        except ClientError as exc:
            return err(exc)
        except ClientDisconnect:  # the page went away mid-upload; the partial file is gone
            return Response(status_code=400)
        return JSONResponse({"id": up.id, "role": up.role, "files": up.files,
                             "urls": [f"/api/sessions/{s.id}/uploads/{up.id}/{f}" for f in up.files]})

    async def uploaded_file(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
        except ClientError as exc:
            return err(exc)
        up = s.uploads.get(request.path_params["uid"])
        name = request.path_params["name"]
        if up is None or name not in up.files:
            return err(ClientError("no such file in this session", 404))
        return FileResponse(up.folder / name, media_type=media_type(name), content_disposition_type="inline",
                            headers=NOSNIFF)

    async def submit(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
            try:
                body = await request.json()
            except ValueError:
                raise ClientError("the request must be JSON") from None
            if not isinstance(body, dict):
                raise ClientError("the request must be a JSON object")
            job = await srv.submit(s, body)
        except ClientError as exc:
            return err(exc)
        return JSONResponse(job.public())

    async def cancel(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
            job = srv.job(s, request.path_params["jid"])
        except ClientError as exc:
            return err(exc)
        assert srv.runner is not None
        srv.runner.cancel(job.id)
        return JSONResponse(job.public())

    async def job_info(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
            job = srv.job(s, request.path_params["jid"])
        except ClientError as exc:
            return err(exc)
        info = job.public()
        if job.state == "done":
            info["result"] = views.describe(job, srv.job_dir(s, job.id) / "out", f"/api/sessions/{s.id}")
        return JSONResponse(info)

    async def job_file(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
            job = srv.job(s, request.path_params["jid"])
        except ClientError as exc:
            return err(exc)
        name = request.path_params["name"]
        out = srv.job_dir(s, job.id) / "out"
        if job.state != "done" or name not in views.output_files(out):
            return err(ClientError("no such file in this job", 404))
        inline = request.query_params.get("inline") == "1"
        return FileResponse(out / name, media_type=media_type(name), filename=None if inline else name,
                            content_disposition_type="inline" if inline else "attachment", headers=NOSNIFF)

    async def job_source(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
            job = srv.job(s, request.path_params["jid"])
        except ClientError as exc:
            return err(exc)
        if job.kind not in ("decompose", "sines"):
            return err(ClientError("this job has no uploaded source", 404))
        name = str(job.spec["source"])
        return FileResponse(Path(job.spec["cwd"]) / name, media_type=media_type(name),
                            content_disposition_type="inline", headers=NOSNIFF)

    async def job_zip(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
            job = srv.job(s, request.path_params["jid"])
            if job.state != "done":
                raise ClientError("the job has no results (yet)", 404)
        except ClientError as exc:
            return err(exc)
        path = await asyncio.to_thread(srv.zip_of, s, job)
        return FileResponse(path, media_type="application/zip", filename=path.name)

    async def events(request: Request) -> Response:
        try:
            s = srv.session(request.path_params["sid"])
        except ClientError as exc:
            return err(exc)
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        s.listeners.add(q)
        assert srv.runner is not None
        for jid in s.jobs:
            if jid in srv.runner.jobs:
                q.put_nowait(srv.runner.jobs[jid].public())

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"event: hello\ndata: {json.dumps({'workers_ready': srv.workers_ready})}\n\n"
                while True:
                    try:
                        item = await asyncio.wait_for(q.get(), timeout=15.0)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if item is None:
                        yield "event: bye\ndata: {}\n\n"
                        return
                    yield f"event: job\ndata: {json.dumps(item)}\n\n"
            finally:
                s.listeners.discard(q)
                s.last_seen = time.monotonic()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await srv.start()
        try:
            yield
        finally:
            await srv.stop()

    base = "/api/sessions/{sid}"
    routes = [
        Route("/", index),
        Route("/api/config", config_),
        Route("/api/sessions", new_session, methods=["POST"]),
        Route(base + "/end", end_session, methods=["POST"]),
        Route(base, end_session, methods=["DELETE"]),
        Route(base, session_info, methods=["GET"]),
        Route(base + "/uploads", upload, methods=["POST"]),
        Route(base + "/uploads/{uid}/{name}", uploaded_file),
        Route(base + "/jobs", submit, methods=["POST"]),
        Route(base + "/jobs/{jid}", job_info),
        Route(base + "/jobs/{jid}/cancel", cancel, methods=["POST"]),
        Route(base + "/jobs/{jid}/files/{name}", job_file),
        Route(base + "/jobs/{jid}/zip", job_zip),
        Route(base + "/jobs/{jid}/source", job_source),
        Route(base + "/events", events),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    guard = Middleware(SameSite, local_only=srv.config.local_only)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[guard])
    app.state.server = srv
    return app


LOOPBACK_NAMES = {"", "localhost", "127.0.0.1", "::1", "[::1]"}  # "": no Host header (not a browser)


class SameSite:
    """Refuse requests from other sites: a changing request (POST, DELETE) whose ``Origin`` is not
    the page's own host, and, with ``local_only``, any request whose ``Host`` is not a loopback name."""

    def __init__(self, app: ASGIApp, local_only: bool) -> None:
        self.app = app
        self.local_only = local_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin1"): v.decode("latin1") for k, v in scope["headers"]}
            host = headers.get("host", "")
            origin = headers.get("origin")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            problem = None
            if self.local_only and name not in LOOPBACK_NAMES and not name.startswith("127."):
                problem = f"this server answers only to this machine's own names, not {host!r}"
            elif scope["method"] not in ("GET", "HEAD") and origin not in (None, "null") \
                    and urlsplit(origin).netloc != host:
                problem = f"requests from another site ({origin}) are refused"
            if problem is not None:
                await JSONResponse({"error": problem}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)
