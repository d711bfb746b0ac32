"""``bufnmf learn`` and ``bufnmf track``: templates from examples, and where they play."""

from __future__ import annotations

from pathlib import Path

import click

from ..workflows.jobs import learn_job, track_job
from .common import (
    channel_choice,
    channel_options,
    check_stdout,
    events_format_option,
    fft_options,
    output_options,
    report_written,
    say,
    seed_option_for,
    to_stdout,
)


@click.command("learn", epilog="""\b
Examples:
  bufnmf learn hits/kick.wav hits/snare.wav hits/hihat.wav -o kit.wav
  bufnmf learn soft.wav hard.wav --label snare --label snare --merge-labels -o snare.wav
  bufnmf decompose loop.wav -o parts --bases kit.wav --bases-mode fixed
""")
@click.argument("examples", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Kit buffer to write (.wav or .npy); labels and settings go to a .json beside it.")
@click.option("--components-per-file", type=int, default=1, show_default=True,
              help="Bases learnt from each example; they stay one sound (one label) for 'bufnmf track'.")
@click.option("--label", "labels", multiple=True, help="Label per example, in order [default: file names].")
@click.option("--merge-labels", is_flag=True, help="Average bases that share a label into one.")
@click.option("--iterations", type=int, default=100, show_default=True)
@seed_option_for("written to the kit's .json")
@fft_options()
@channel_options
@output_options
def learn(examples: tuple[Path, ...], output: Path, components_per_file: int, labels: tuple[str, ...],
          merge_labels: bool, iterations: int, seed: int, window_size: int | None, hop_size: int | None,
          fft_size: int | None, start_chan: int | None, mixdown: bool, quiet: bool, force: bool, debug: bool) -> None:
    """Learn spectral templates from EXAMPLES and stack them into one bases buffer (a kit)."""
    job = learn_job(list(examples), output, components_per_file=components_per_file, labels=list(labels) or None,
                    merge_labels=merge_labels, iterations=iterations, seed=seed, window_size=window_size,
                    hop_size=hop_size, fft_size=fft_size, channel=channel_choice(start_chan, mixdown), force=force)
    kit = job.result
    say(quiet, f"learnt {len(kit.labels)} bases ({', '.join(kit.labels)}) at {kit.sample_rate} Hz, "
               f"window {kit.window_size}, hop {kit.hop_size}, fft {kit.fft_size}, seed {kit.seed}")
    report_written(quiet, job.outputs)


@click.command("track", epilog="""\b
Examples:
  bufnmf track loop.wav --bases kit.wav -o events.csv
  bufnmf track loop.wav --bases kit.wav -o events.json --midi loop.mid --note kick=35
  bufnmf track piano.wav --bases notes.wav -o notes.csv --midi piano.mid   # labels C4, E4, ...
  bufnmf track loop.wav --bases kit.wav -o - | head                        # CSV to standard output
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bases", "bases_path", required=True, type=str, help="Kit buffer (from 'bufnmf learn').")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Events file: .csv or .json, or - for standard output.")
@click.option("--threshold", type=float, default=0.3, show_default=True,
              help="Minimum rise of an activation, relative to its peak.")
@click.option("--min-gap", type=float, default=0.05, show_default=True, help="Seconds between onsets.")
@click.option("--smooth", type=float, default=0.0, show_default=True, help="Smooth activations (seconds).")
@click.option("--release", type=float, default=0.1, show_default=True,
              help="Note-off when the activation falls below this fraction of its peak.")
@click.option("--midi", "midi_path", type=click.Path(path_type=Path), default=None, help="Also write a MIDI file.")
@click.option("--note", "notes", multiple=True,
              help="SOUND=NUMBER: the MIDI note of one of the kit's sounds (repeatable; needs --midi).")
@click.option("--iterations", type=int, default=100, show_default=True)
@seed_option_for("printed on a terminal")
@click.option("--extra-components", type=int, default=0, show_default=True,
              help="Free components to absorb sounds the kit does not know.")
@fft_options(kit=True)
@channel_options
@events_format_option
@output_options
def track(source: Path, bases_path: str, output: Path, threshold: float, min_gap: float, smooth: float,
          release: float, midi_path: Path | None, notes: tuple[str, ...], iterations: int, seed: int,
          extra_components: int, window_size: int | None, hop_size: int | None, fft_size: int | None,
          start_chan: int | None, mixdown: bool, events_format: str | None, quiet: bool, force: bool,
          debug: bool) -> None:
    """Find which of a kit's sounds plays when in SOURCE: onset events as CSV/JSON (and MIDI)."""
    check_stdout(midi_path, binary=True)
    quiet = quiet or to_stdout(output) or to_stdout(midi_path)
    job = track_job(source, bases_path, output, midi=midi_path, notes=list(notes), threshold=threshold,
                    min_gap=min_gap, smooth=smooth, release=release, iterations=iterations, seed=seed,
                    extra_components=extra_components, window_size=window_size, hop_size=hop_size,
                    fft_size=fft_size, channel=channel_choice(start_chan, mixdown), force=force,
                    format=events_format)
    counts = job.summary["counts"]
    say(quiet, f"{job.summary['events']} events: " + ", ".join(f"{lab} {n}" for lab, n in counts.items())
        + f" (seed {job.summary['seed']})")
    report_written(quiet, job.outputs)
