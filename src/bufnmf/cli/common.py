"""What every subcommand shares: options, the progress bar, printing. No numerics, no file writing."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..clients.common import MODES
from ..io.outputs import AUDIO_FORMATS

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
    f = click.option("--force", is_flag=True,
                     help="Replace existing outputs (in an output folder, the earlier run's files); never an input.")(f)
    return click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")(f)


def fft_options(kit: bool = False, method: bool = False) -> Callable[[F], F]:
    """--window-size, --hop-size, --fft-size; with ``kit``, all three are the kit's when none is given;
    with ``method``, the learning method's when none is given."""
    tail = ", or the kit's when none is given" if kit else ""
    if method:
        tail = ", or the method's when none is given"

    def deco(f: F) -> F:
        f = click.option("--fft-size", type=int, default=None,
                         help=f"FFT size; -1: next power of two >= window [default: -1{tail}].")(f)
        f = click.option("--hop-size", type=int, default=None,
                         help=f"Hop in samples; -1: window/2 [default: -1{tail}].")(f)
        return click.option("--window-size", type=int, default=None,
                            help=f"Window in samples [default: 1024{tail}].")(f)

    return deco


def seed_option_for(where: str) -> Callable[[F], F]:
    """--seed, the same in every subcommand: -1 draws one (reported ``where``), >= 0 reproduces."""

    def deco(f: F) -> F:
        return click.option("--seed", type=int, default=-1, show_default=True,
                            help=f"-1 draws a seed ({where}); >= 0 reproduces a run.")(f)

    return deco


def seed_option(f: F) -> F:
    """--seed with a generic note on where the seed used is reported."""
    return seed_option_for("reported with the outputs, or printed on a terminal")(f)


def max_memory_option(f: F) -> F:
    return click.option("--max-memory", type=str, default=None,
                        help="Refuse runs estimated to need more memory than this (e.g. 4G, 500M) [default: the "
                             "memory available now].")(f)


AUDIO_FORMAT_CHOICE = click.Choice(list(AUDIO_FORMATS), case_sensitive=False)


def audio_format_options(what: str, from_extension: bool) -> Callable[[F], F]:
    """--format and --subtype for audio outputs (``what``: which files); the same in every subcommand."""
    default = "from the -o name's extension, else wav" if from_extension else "wav"

    def deco(f: F) -> F:
        f = click.option("--subtype", type=str, default=None,
                         help="libsndfile subtype of the audio, e.g. PCM_16, PCM_24, FLOAT [default: the "
                              "format's: FLOAT for wav/aiff/caf, PCM_24 for flac].")(f)
        return click.option("--format", "audio_format", type=AUDIO_FORMAT_CHOICE, default=None,
                            help=f"Audio format of {what} [default: {default} (float32)].")(f)

    return deco


def events_format_option(f: F) -> F:
    return click.option("--format", "events_format", type=click.Choice(["csv", "json"], case_sensitive=False),
                        default=None, help="csv or json [default: from the -o name's extension; csv for -o -].")(f)


def to_stdout(output: object) -> bool:
    """Whether an output option is ``-`` (standard output)."""
    return str(output) == "-"


def check_stdout(output: object, binary: bool) -> None:
    """Refuse binary output (audio) to a terminal: it would only print garbage."""
    if to_stdout(output) and binary and sys.stdout.isatty():
        raise click.UsageError("-o - writes audio to standard output, which is a terminal here: redirect it "
                               "(-o - > out.wav) or pipe it, or give a file name")


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
