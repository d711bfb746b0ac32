"""``bufnmf batch decompose|track|learn``: a single-file command over a whole corpus, on Dask.

Each subcommand takes the options of its single-file command (the same option objects, so the
names, defaults and help are the same), plus the corpus, the output folder and the engine's
options; it calls :func:`bufnmf.batch.run`, which runs exactly the single-file job per file.
"""

from __future__ import annotations

import copy
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from ..batch.engine import START_METHODS
from .common import channel_choice, debug_option, say
from .decompose import command as decompose_command
from .learn import learn as learn_command
from .learn import track as track_command

F = Callable[..., Any]

# options of the single-file commands a batch sets itself, per file
_NOT_REUSED = {"decompose": {"source", "outdir", "quiet", "force", "debug"},
               "track": {"source", "output", "midi_path", "quiet", "force", "debug"},
               "learn": {"examples", "output", "labels", "quiet", "force", "debug"}}
_SINGLE = {"decompose": decompose_command, "track": track_command, "learn": learn_command}


def reused_options(job: str) -> list[click.Parameter]:
    """The single-file command's options a batch takes as they are (copies of the same objects)."""
    params = [copy.copy(p) for p in _SINGLE[job].params if p.name not in _NOT_REUSED[job]]
    for p in params:
        if isinstance(p, click.Option) and p.name in _BATCH_HELP.get(job, {}):
            p.help = _BATCH_HELP[job][p.name]
    return params


# help texts that say something else in a batch (the option is the same)
_BATCH_HELP = {"track": {"events_format": "Each file's events: events.csv or events.json [default: csv]; "
                                          "OUTDIR/events.csv holds them all."}}


def _with_options(job: str) -> Callable[[F], F]:
    """Add the single-file command's options to a batch subcommand, after its own first options."""

    def deco(f: F) -> F:
        params = list(getattr(f, "__click_params__", []))
        f.__click_params__ = params + list(reversed(reused_options(job)))  # type: ignore[attr-defined]
        return f

    return deco


def engine_options(f: F) -> F:
    """--workers, --start-method, --scheduler, --no-resume, --force, --quiet (and the hidden --debug)."""
    f = debug_option(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors (no progress bar).")(f)
    f = click.option("--force", is_flag=True,
                     help="Replace outputs this batch did not write, and redo a batch run into OUTDIR with other "
                          "options.")(f)
    f = click.option("--no-resume", is_flag=True,
                     help="Redo every file (default: skip files finished by an earlier run with the same options).")(f)
    f = click.option("--scheduler", metavar="ADDRESS", default=None,
                     help="Run on an existing Dask cluster (e.g. tcp://10.0.0.1:8786); its workers must see the "
                          "corpus and OUTDIR at the same paths.")(f)
    f = click.option("--start-method", type=click.Choice(START_METHODS), default="auto", show_default=True,
                     help="How the local cluster starts its workers. auto: forked from this process on Linux "
                          "(fast; this command always can), spawned elsewhere; fork: always forked; spawn: fresh "
                          "interpreters (as on macOS and Windows); forkserver: forked from a clean server process.")(f)
    return click.option("--workers", type=int, default=None,
                        help="Worker processes of the local cluster, each doing one file at a time on one core "
                             "[default: one per core].")(f)


def corpus_args(f: F) -> F:
    f = click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path),
                     help="Folder for the outputs: one folder per file (its relative path without extension), "
                          "and index.csv.")(f)
    return click.argument("corpus", nargs=-1, required=True)(f)


class FileBar:
    """A bar over files (done / failed / left, files per second) on a terminal; nothing when quiet or piped."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stdout.isatty() and sys.stderr.isatty()
        self.counts: Counter[str] = Counter()
        self.bar: Any = None

    def __call__(self, row: Any, done: int, total: int) -> None:
        self.counts[row.status] += 1
        if not self.enabled:
            return
        if self.bar is None:
            if row.status == "skipped":  # a resumed batch's files done before: they come first, at once
                return
            from tqdm import tqdm

            # no monitor thread: a process with no threads of its own forks its workers (a resumed
            # batch reports its skipped files before its cluster starts). The bar starts from the
            # files done before (`initial`), so its files per second count this run's files only.
            tqdm.monitor_interval = 0
            self.bar = tqdm(total=total, initial=done - 1, desc="files", unit="file", leave=False,
                            dynamic_ncols=True)
        self.bar.set_postfix(ok=self.counts["ok"], failed=self.counts["failed"], skipped=self.counts["skipped"],
                             left=total - done, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run(job: str, corpus: Sequence[str], outdir: Path, quiet: bool, workers: int | None, scheduler: str | None,
         no_resume: bool, force: bool, debug: bool, params: dict[str, Any]) -> None:
    from ..batch import run

    start_method = params.pop("start_method", "auto")
    bar = FileBar(quiet)
    t0 = time.perf_counter()
    try:
        index = run(job, list(corpus), outdir, client=scheduler, workers=workers, resume=not no_resume, force=force,
                    progress=bar, debug=debug, start_method=start_method, **params)
    except KeyboardInterrupt as exc:
        bar.close()
        done = getattr(exc, "index", None)
        if done is None or not done.files:  # before any file was started: no index written
            click.echo("bufnmf: interrupted before any file was started; nothing was written", err=True)
        else:
            c = done.counts
            click.echo(f"bufnmf: interrupted: {c['ok'] + c['skipped']} of {len(done)} file(s) done and kept, "
                       f"{c['cancelled']} not done (see {outdir / 'index.csv'}); no file is half-written; run the "
                       "same command again to do the rest", err=True)
        raise click.exceptions.Exit(130) from None
    finally:
        bar.close()
    c = index.counts
    secs = time.perf_counter() - t0
    ran = c["ok"] + c["failed"]
    say(quiet, f"{len(index)} file(s) in {secs:.1f} s: {c['ok']} done, {c['skipped']} skipped (done before), "
               f"{c['failed']} failed" + (f"; {ran / secs:.2f} files/s" if ran else ""))
    for p in index.files:
        say(quiet, f"  wrote {p}")
    failed = index.failed
    if failed:
        messages = {r.error for r in failed}
        if len(failed) == len(index) and len(messages) == 1:
            raise click.ClickException(f"every file failed: {failed[0].error}")
        first = failed[0]
        click.echo(f"bufnmf: {len(failed)} of {len(index)} file(s) failed (see {outdir / 'index.csv'}), e.g. "
                   f"{first.path}: {first.error}", err=True)
        raise click.exceptions.Exit(3)


EPILOG = """\b
Examples:
  bufnmf batch decompose samples/ -o parts -k 3
  bufnmf batch decompose 'field/**/*.flac' -o parts -k 5 --workers 4 --seed 7
  bufnmf batch decompose list.txt -o parts -k 3 --scheduler tcp://10.0.0.1:8786
  bufnmf batch learn hits/ -o kit --merge-labels        # hits/kick/*.wav ... -> kit/kit.wav
  bufnmf batch track loops/ --bases kit/kit.wav -o events --midi

\b
CORPUS: folders (searched recursively), globs (quoted), text files listing paths, or audio files.
Each file's outputs go to OUTDIR/<its path under the corpus, without extension>/, exactly what the
single-file command writes; OUTDIR/index.csv has one row per file (status ok, failed or skipped,
the error, duration, channels, rate, K, final divergence, seed, seconds). A rerun skips the files
already done with the same options and does the rest. Exit status 3 when some files failed.
"""


@click.group("batch", epilog=EPILOG)
def group() -> None:
    """Run decompose, track or learn over a whole corpus, on this machine or a Dask cluster."""


@group.command("decompose", epilog=EPILOG)
@corpus_args
@_with_options("decompose")
@engine_options
def decompose(corpus: tuple[str, ...], outdir: Path, workers: int | None, scheduler: str | None, no_resume: bool,
              force: bool, quiet: bool, debug: bool, **options: Any) -> None:
    """Split every file of CORPUS into components (the options of 'bufnmf decompose')."""
    options["bases"] = options.pop("bases_path")
    options["activations"] = options.pop("acts_path")
    options["resynth"] = not options.pop("no_resynth")
    options["format"] = options.pop("audio_format")
    _run("decompose", corpus, outdir, quiet, workers, scheduler, no_resume, force, debug, options)


@group.command("track", epilog=EPILOG)
@corpus_args
@_with_options("track")
@click.option("--midi", is_flag=True, help="Also write each file's events.mid.")
@engine_options
def track(corpus: tuple[str, ...], outdir: Path, midi: bool, workers: int | None,
          scheduler: str | None, no_resume: bool, force: bool, quiet: bool, debug: bool, **options: Any) -> None:
    """Track a kit in every file of CORPUS: one events file each (events.csv, or events.json with
    --format json), and OUTDIR/events.csv with all of them."""
    format_ = (options.pop("events_format") or "csv").lower()
    options["bases"] = options.pop("bases_path")
    options["notes"] = list(options.pop("notes")) or None
    options["channel"] = channel_choice(options.pop("start_chan"), options.pop("mixdown"))
    options.update(format=format_, midi=midi)
    _run("track", corpus, outdir, quiet, workers, scheduler, no_resume, force, debug, options)


@group.command("learn", epilog=EPILOG)
@corpus_args
@_with_options("learn")
@engine_options
def learn(corpus: tuple[str, ...], outdir: Path, workers: int | None, scheduler: str | None, no_resume: bool,
          force: bool, quiet: bool, debug: bool, **options: Any) -> None:
    """Learn one kit from CORPUS: OUTDIR/kit.wav, labelled by the files' top folders (kick/, snare/, ...).

    Files directly in CORPUS are labelled by their names. Each file's templates are learnt on
    its own (OUTDIR/<file>/kit.wav) and stacked, with one seed: the same kit as 'bufnmf learn'
    on all the files with those labels and that seed.
    """
    options["channel"] = channel_choice(options.pop("start_chan"), options.pop("mixdown"))
    _run("learn", corpus, outdir, quiet, workers, scheduler, no_resume, force, debug, options)
