"""``bufnmf serve``: a web page to see and hear a decomposition.

A front end over the jobs layer (:mod:`bufnmf.workflows.jobs`), as the command line is: the page
runs exactly what ``bufnmf decompose``/``demo``/``track`` run, in worker processes, and shows
their outputs. Start it with ``bufnmf serve`` or :func:`serve`; :func:`create_app` gives the
ASGI app for another server.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path

from ..errors import BufNMFError
from .app import WebConfig, create_app

__all__ = ["WebConfig", "create_app", "is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BufNMFError(f"host {host!r} is not an address of this machine ({exc.strerror}): use e.g. "
                          "--host 127.0.0.1, or --host 0.0.0.0 for every network interface") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
            message = f"port {port} on {host} is in use: choose another with --port (--port 0 takes any free port)"
            raise BufNMFError(message, cli=message) from None
        raise BufNMFError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8000, *, open_browser: bool = False, max_upload: int = 500 * 2**20,
          max_jobs: int | None = None, tmp_root: str | os.PathLike[str] | None = None,
          announce: Callable[[str], None] = print) -> None:
    """Serve the page until interrupted (Ctrl-C or SIGTERM); the server's files are removed at the end.

    The jobs run in worker processes started with ``spawn``: a script that calls this must do so
    under ``if __name__ == "__main__":``. The workers load (the first time after installing:
    compile) the numba kernels when the server starts; the page says so until they are ready.

    Args:
        host, port: where to listen (port 0: any free port). Only loopback by default; any other
            host lets anyone who can reach this machine use the page, which ``announce`` says.
        open_browser: open the page in the default browser once listening.
        max_upload: bytes one uploaded file may have.
        max_jobs: runs at once (default: one per core); the rest wait in a queue.
        tmp_root: the folder for the sessions' files (created; removed at the end). Default: a new
            temporary folder.
        announce: where the address and warnings go.

    Raises:
        BufNMFError: a bad host, a port in use, a bad limit.
    """
    import uvicorn

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = cores if max_jobs is None else max_jobs
    if jobs < 1:
        raise BufNMFError(f"max_jobs must be at least 1, got {jobs}", cli=f"--max-jobs must be at least 1, got {jobs}")
    if max_upload < 1:
        raise BufNMFError(f"max_upload must be positive, got {max_upload}",
                          cli=f"--max-upload must be positive, got {max_upload}")
    sock = _bind(host, port)
    real_port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{real_port}/"
    config = WebConfig(max_upload=max_upload, max_jobs=jobs, tmp_root=Path(tmp_root) if tmp_root else None,
                       local_only=is_loopback(host))
    app = create_app(config)
    srv = app.state.server
    if not is_loopback(host):
        announce(f"bufnmf serve: warning: listening on {host}: anyone who can reach this machine on the network "
                 "can use this page, upload files and run jobs on it; use --host 127.0.0.1 to keep it to this machine")
    announce(f"bufnmf serve: {url} ({jobs} job(s) at once, uploads up to {config.max_upload // 2**20} MiB; "
             f"files in {srv.root}, removed when the server stops; Ctrl-C to stop)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                                           lifespan="on"))
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        import shutil

        shutil.rmtree(srv.root, ignore_errors=True)
