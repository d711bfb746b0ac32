"""``bufnmf serve``: start the web page (:mod:`bufnmf.web`) on this machine."""

from __future__ import annotations

import click

from ..errors import BufNMFError
from ..resources import parse_bytes


@click.command("serve", epilog="""\b
Examples:
  bufnmf serve                       # http://127.0.0.1:8000/, this machine only
  bufnmf serve --open --port 8080    # and open it in the browser
  bufnmf serve --max-jobs 1 --max-upload 2G
""")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets anyone on the network use the page.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port; 0 takes any free port.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.option("--max-upload", default="500M", show_default=True, help="Largest file a page may upload (e.g. 2G).")
@click.option("--max-jobs", type=int, default=None, help="Runs at once; the rest wait in a queue [default: one "
                                                         "per core].")
@click.option("--debug", is_flag=True, hidden=True, help="Show full tracebacks.")
def serve(host: str, port: int, open_browser: bool, max_upload: str, max_jobs: int | None, debug: bool) -> None:
    """Serve a page to decompose a sound, see its bases and activations and hear its parts.

    The page runs the same jobs as 'bufnmf decompose', 'demo' and 'track', in worker processes.
    Each page's files live in a temporary folder, removed when the page closes or the server stops.
    """
    from ..web import serve as run

    try:
        limit = parse_bytes(max_upload)
    except BufNMFError:
        raise BufNMFError(f"--max-upload {max_upload!r} is not understood: use e.g. 500M, 2G or a number of "
                          "bytes") from None
    try:
        run(host, port, open_browser=open_browser, max_upload=limit, max_jobs=max_jobs,
            announce=lambda line: click.echo(line, err=line.startswith("bufnmf serve: warning")))
    except KeyboardInterrupt:
        pass
    click.echo("bufnmf serve: stopped; its files are removed")
