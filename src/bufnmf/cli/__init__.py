"""The ``bufnmf`` command line: one thin module per command over :mod:`bufnmf.workflows.jobs`.

Each command parses its options, calls a job and prints what it wrote; :func:`main` turns every
error into one line on stderr with exit status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from ..errors import BufNMFError, Cancelled
from . import batch, decompose, family, learn
from .common import debug_option

EPILOG_MAIN = """\b
Examples:
  bufnmf demo                                   # synthesise a drum loop and split it
  bufnmf decompose loop.wav -o parts -k 3 --plot
  bufnmf decompose loop.wav -o parts --bases kit.wav --bases-mode fixed
"""


@click.group(epilog=EPILOG_MAIN, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bufnmf")
@debug_option
def cli(debug: bool) -> None:
    """Split sounds into parts with NMF, as FluCoMa's BufNMF does."""


for _command in (decompose.command, decompose.demo, learn.learn, learn.track, family.stft, family.seed,
                 family.match, family.filter_, family.cross, family.morph, batch.group):
    cli.add_command(_command)


def in_command_line_terms(message: str, args: Sequence[str]) -> str:
    """Name the running subcommand's options as ``--flags``: ``bases_mode`` -> ``--bases-mode``.

    Only ``snake_case`` names (with an underscore) are changed, so plain words stay words.
    """
    name = next((a for a in args if a in cli.commands), None)
    if name is None:
        return message
    for param in cli.commands[name].params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and "-" in opt[2:]:
                ident = opt[2:].replace("-", "_")
                message = re.sub(rf"(?<![\w-]){ident}(?!\w)", opt, message)
    return message


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    click.echo(f"bufnmf: warning: {message}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI, turning every error into one line on stderr and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("BUFNMF_DEBUG") == "1"
    if "--quiet" in args or "-q" in args:
        warnings.simplefilter("ignore")
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    with_sigterm = False
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        with_sigterm = True
    except ValueError:  # not the main thread
        pass
    try:
        rv = cli.main(args=args, prog_name="bufnmf", standalone_mode=False)
        return int(rv) if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("bufnmf: interrupted; no outputs were written", err=True)
        return 130
    except click.UsageError as exc:
        if debug:
            traceback.print_exc()
        hint = f" (see 'bufnmf {exc.ctx.command_path.split(' ', 1)[1]} --help')" if exc.ctx and " " in (
            exc.ctx.command_path or "") else " (see 'bufnmf --help')"
        click.echo(f"bufnmf: error: {exc.format_message()}{hint}", err=True)
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
        click.echo(f"bufnmf: error: {msg}", err=True)
        return 2
    except MemoryError:
        if debug:
            traceback.print_exc()
        click.echo("bufnmf: error: out of memory: use fewer components, a shorter selection "
                   "(--num-frames) or a larger hop", err=True)
        return 2
    except Exception as exc:  # a bug: say so in one line, full story with --debug
        if debug:
            raise
        click.echo(f"bufnmf: error: internal error {type(exc).__name__}: {exc} (rerun with --debug for the "
                   "traceback and please report it)", err=True)
        return 1
    finally:
        warnings.showwarning = old_show
        if with_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def entry() -> None:
    sys.exit(main())
