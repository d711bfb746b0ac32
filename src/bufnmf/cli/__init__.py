"""The ``bufnmf`` command line: one thin module per command over :mod:`bufnmf.workflows.jobs`.

Each command parses its options, calls a job and prints what it wrote; :func:`main` turns every
error into one line on stderr with exit status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from ..errors import BufNMFError, BufNMFWarning, Cancelled, InterruptedAfterCommit, command_line_terms
from . import batch, decompose, family, learn, serve, sines
from .common import debug_option

EPILOG_MAIN = """\b
Examples:
  bufnmf demo                                   # synthesise a drum loop and split it
  bufnmf decompose loop.wav -o parts -k 3 --plot
  bufnmf decompose loop.wav -o parts --bases kit.wav --bases-mode fixed
  bufnmf serve --open                           # the same in a web page
"""


class _Interrupted(Exception):  # noqa: N818 - reads as what happened
    """A KeyboardInterrupt carried past click, which would print a newline and turn it into Abort."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__()
        self.interrupt = interrupt


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted(exc) from None


@click.group(cls=_Group, epilog=EPILOG_MAIN, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bufnmf")
@debug_option
def cli(debug: bool) -> None:
    """Split sounds into parts with NMF, as FluCoMa's BufNMF does."""


for _command in (decompose.command, decompose.demo, learn.learn, learn.track, family.stft, family.seed,
                 family.match, family.filter_, family.cross, family.morph, sines.command, serve.serve, batch.group):
    cli.add_command(_command)


def in_command_line_terms(message: str, args: Sequence[str]) -> str:
    """Name the running subcommand's options as ``--flags``: ``bases_mode`` -> ``--bases-mode``.

    ``snake_case`` names (with an underscore) are changed anywhere; a one-word name only where it
    starts the message as the subject (``smooth must be ...`` -> ``--smooth must be ...``), so plain
    words stay words (``output folder X ...`` stays).
    """
    name = next((a for a in args if a in cli.commands), None)
    if name is None:
        return message
    return command_line_terms(message, [opt for p in cli.commands[name].params for opt in getattr(p, "opts", [])])


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def printable(text: str) -> str:
    """``text`` safe to print: file names that are not UTF-8 (surrogate escapes) shown as ``\xff``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Warnings:
    """Shows each warning once per run, as ``bufnmf: warning: ...`` in the command line's terms."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = args
        self.seen: set[str] = set()

    def __call__(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
        text = printable(in_command_line_terms(str(message), self.args))
        if text not in self.seen:
            self.seen.add(text)
            click.echo(f"bufnmf: warning: {text}", err=True)


class _LostInterrupts:
    """A Ctrl-C that lands inside a C callback (numba compiling through llvmlite's ctypes
    callbacks, for one) is swallowed there and printed as "Exception ignored ...". While the
    command runs, such an interrupt is not printed but sent again a moment later, until it
    reaches Python code and stops the command as any Ctrl-C does."""

    def __init__(self) -> None:
        self.previous = sys.unraisablehook
        self.timers: list[threading.Timer] = []

    def __call__(self, unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
            return
        self.previous(unraisable)

    def close(self) -> None:
        for timer in self.timers:
            timer.cancel()


def _error(text: str) -> None:
    click.echo(f"bufnmf: error: {printable(text)}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI, turning every error into one line on stderr and exit status 2.

    Called in-process, it leaves the caller's warning filters and signal handlers as they were.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("BUFNMF_DEBUG") == "1"
    handlers: dict[int, Any] = {}
    with warnings.catch_warnings():
        if "--quiet" in args or "-q" in args:
            warnings.simplefilter("ignore")
        else:
            warnings.simplefilter("always", BufNMFWarning)  # each distinct one shown once: see _Warnings
        warnings.showwarning = _Warnings(args)
        lost = _LostInterrupts()
        try:
            for sig, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, _on_sigterm)):
                try:
                    handlers[sig] = signal.signal(sig, handler)
                except ValueError:  # not the main thread
                    pass
            if handlers:
                sys.unraisablehook = lost
            return _run(args, debug)
        finally:
            lost.close()
            if handlers:
                sys.unraisablehook = lost.previous
            for signum, old in handlers.items():
                signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _run(args: list[str], debug: bool) -> int:
    try:
        rv = cli.main(args=args, prog_name="bufnmf", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (_Interrupted, KeyboardInterrupt, click.Abort) as exc:
        interrupt = exc.interrupt if isinstance(exc, _Interrupted) else exc.__cause__ or exc
        if isinstance(interrupt, InterruptedAfterCommit):
            click.echo(f"bufnmf: interrupted after the outputs were complete ({len(interrupt.written)} file(s) "
                       "written)", err=True)
        else:
            click.echo("bufnmf: interrupted; no outputs were written", err=True)
        return 130
    except click.UsageError as exc:
        if debug:
            traceback.print_exc()
        hint = f" (see 'bufnmf {exc.ctx.command_path.split(' ', 1)[1]} --help')" if exc.ctx and " " in (
            exc.ctx.command_path or "") else " (see 'bufnmf --help')"
        _error(f"{exc.format_message()}{hint}")
        return 2
    except (BufNMFError, Cancelled, click.ClickException) as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, click.ClickException):
            msg = exc.format_message()
        elif isinstance(exc, BufNMFError) and exc.cli is not None:
            msg = exc.cli
        else:
            msg = in_command_line_terms(str(exc), args)
        _error(msg)
        return 2
    except BrokenPipeError:  # the reader of standard output went away (e.g. '| head'): stop quietly
        return 141
    except MemoryError:
        if debug:
            traceback.print_exc()
        _error("out of memory: use fewer components, a shorter selection (--num-frames) or a larger hop")
        return 2
    except OSError as exc:  # the system refused something (a device error, a vanished file): not a bug
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")
        return 2
    except Exception as exc:  # a bug: say so in one line, full story with --debug
        if debug:
            raise
        _error(f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the traceback and please "
               "report it)")
        return 1


def entry() -> None:
    code = main()
    if code == 141:  # standard output is a broken pipe: let nothing more be written to it at exit
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    sys.exit(code)
