"""What every subcommand shares: options, the progress bar, printing. No numerics, no file writing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..clients.common import MODES

F = Callable[..., Any]

MODE_CHOICE = click.Choice(list(MODES), case_sensitive=False)


class Progress:
    """A tqdm bar on a terminal; nothing when quiet or when stdout/stderr is not a terminal.

    Called as ``progress(done, total)``, the jobs' progress callback.
    """

    def __init__(self, desc: str, quiet: bool, unit: str = "it") -> None:
        self.enabled = not quiet and sys.stdout.isatty() and sys.stderr.isatty()
        self.desc = desc
        self.unit = unit
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def say(quiet: bool, text: str) -> None:
    """Print to stdout only on a terminal and when not quiet."""
    if not quiet and sys.stdout.isatty():
        click.echo(text)


def report_written(quiet: bool, paths: list[Path]) -> None:
    for p in paths:
        say(quiet, f"  wrote {p}")


def debug_option(f: F) -> F:
    return click.option("--debug", is_flag=True, hidden=True, help="Show full tracebacks.")(f)


def output_options(f: F) -> F:
    """--quiet, --force and the hidden --debug, which every subcommand takes."""
    f = debug_option(f)
    f = click.option("--force", is_flag=True, help="Replace existing outputs.")(f)
    return click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")(f)


def fft_options(kit: bool = False) -> Callable[[F], F]:
    """--window-size, --hop-size, --fft-size; with ``kit``, all three are the kit's when none is given."""
    tail = ", or the kit's when none is given" if kit else ""

    def deco(f: F) -> F:
        f = click.option("--fft-size", type=int, default=None,
                         help=f"FFT size; -1: next power of two >= window [default: -1{tail}].")(f)
        f = click.option("--hop-size", type=int, default=None,
                         help=f"Hop in samples; -1: window/2 [default: -1{tail}].")(f)
        return click.option("--window-size", type=int, default=None,
                            help=f"Window in samples [default: 1024{tail}].")(f)

    return deco


def seed_option(f: F) -> F:
    return click.option("--seed", type=int, default=-1, show_default=True,
                        help="-1 draws a seed (written to the summary); >= 0 reproduces a run.")(f)


def channel_options(f: F) -> F:
    """--start-chan / --mixdown for the mono processes: a multichannel source needs one of them."""
    f = click.option("--mixdown", is_flag=True, help="Mix a multichannel source down to mono (the mean).")(f)
    return click.option("--start-chan", "start_chan", type=int, default=None,
                        help="Channel of a multichannel source to use (0-based) [default: the source must be "
                             "mono].")(f)


def channel_choice(start_chan: int | None, mixdown: bool) -> int | str | None:
    """The jobs' ``channel`` argument from --start-chan / --mixdown."""
    if mixdown and start_chan is not None:
        raise click.UsageError("give --start-chan or --mixdown, not both")
    return "mix" if mixdown else start_chan
