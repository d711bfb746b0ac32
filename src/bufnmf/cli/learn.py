"""``bufnmf learn`` and ``bufnmf track``: templates from examples, and where they play."""

from __future__ import annotations

from pathlib import Path

import click

from ..workflows.jobs import learn_job, track_job
from ..workflows.kits import LEARN_METHODS
from ..workflows.tracking import TRACK_METHODS
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
  bufnmf learn hits/kick.wav hits/snare.wav hits/hihat.wav -o kit.wav     # percussive: NMFD templates
  bufnmf learn notes/*.wav -o piano.wav                                   # labels C4, Bb2, ...: pitched
  bufnmf learn soft.wav hard.wav --label snare --label snare --merge-labels -o snare.wav
  bufnmf learn hits/*.wav --method flucoma -o bases.wav   # FluCoMa's bases (one spectrum per file)
  bufnmf decompose loop.wav -o parts --bases bases.wav --bases-mode fixed

\b
Methods (--method, default auto: pitched when every label is a note name, else percussive):
  percussive  one NMFD template per example: 8 frames of a 1024/512 STFT from its onset
  pitched     one KL-NMF basis per example on a long window (8192/512)
  flucoma     FluCoMa's "Seeding BufNMF": --components-per-file bases per example, 1024/512
""")
@click.argument("examples", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Kit buffer to write (.wav or .npy); labels and settings go to a .json beside it.")
@click.option("--components-per-file", type=int, default=1, show_default=True,
              help="Bases learnt from each example; they stay one sound (one label) for 'bufnmf track'.")
@click.option("--label", "labels", multiple=True, help="Label per example, in order [default: file names].")
@click.option("--merge-labels", is_flag=True, help="Average bases that share a label into one.")
@click.option("--method", type=click.Choice(LEARN_METHODS), default="auto", show_default=True,
              help="How templates are learnt (see below).")
@click.option("--frames", type=int, default=None,
              help="Frames per NMFD template (--method percussive) [default: 8].")
@click.option("--iterations", type=int, default=100, show_default=True)
@seed_option_for("written to the kit's .json")
@fft_options(method=True)
@channel_options
@output_options
def learn(examples: tuple[Path, ...], output: Path, components_per_file: int, labels: tuple[str, ...],
          merge_labels: bool, method: str, frames: int | None, iterations: int, seed: int, window_size: int | None,
          hop_size: int | None, fft_size: int | None, start_chan: int | None, mixdown: bool, quiet: bool, force: bool,
          debug: bool) -> None:
    """Learn spectral templates from EXAMPLES and stack them into one bases buffer (a kit)."""
    job = learn_job(list(examples), output, components_per_file=components_per_file, labels=list(labels) or None,
                    merge_labels=merge_labels, iterations=iterations, seed=seed, window_size=window_size,
                    hop_size=hop_size, fft_size=fft_size, channel=channel_choice(start_chan, mixdown), force=force,
                    method=method, frames=frames)
    kit = job.result
    what = f"{kit.frames}-frame templates" if kit.frames > 1 else "bases"
    say(quiet, f"learnt {len(kit.labels)} {what} ({', '.join(kit.labels)}), method {kit.method}, at "
               f"{kit.sample_rate} Hz, window {kit.window_size}, hop {kit.hop_size}, fft {kit.fft_size}, "
               f"seed {kit.seed}")
    report_written(quiet, job.outputs)


@click.command("track", epilog="""\b
Examples:
  bufnmf track loop.wav --bases kit.wav -o events.csv
  bufnmf track loop.wav --bases kit.wav -o events.json --midi loop.mid --note kick=35
  bufnmf track piano.wav --bases notes.wav -o notes.csv --midi piano.mid   # labels C4, E4, ...
  bufnmf track loop.wav --bases kit.wav -o - | head                        # CSV to standard output
  bufnmf track loop.wav --bases kit.wav -o events.csv --causal             # as the real-time Tracker

\b
Methods (--method, default auto: the one the kit was learnt for; kits without one: flucoma):
  percussive  NMFD templates, semi-adaptive; onsets by owned flux, floor, masking, re-trigger
  pitched     one basis per note on a long window, log bands; onsets re-timed on 1024/128
  flucoma     FluCoMa's tracker: fixed bases, peaks of each activation (--threshold, --smooth,
              --release)
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bases", "bases_path", required=True, type=str, help="Kit buffer (from 'bufnmf learn').")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Events file: .csv or .json, or - for standard output.")
@click.option("--method", type=click.Choice(TRACK_METHODS), default="auto", show_default=True,
              help="How the kit is fitted and events picked (see below).")
@click.option("--causal", is_flag=True,
              help="The real-time Tracker's configuration: each decision from the past and a short look-ahead.")
@click.option("--floor-db", type=float, default=None,
              help="Percussive/pitched: ignore onsets this far below the loudest [default: -30].")
@click.option("--mask-db", type=float, default=None,
              help="Percussive/pitched: an onset this far below a simultaneous one is its cross-talk [default: -15].")
@click.option("--retrigger", type=float, default=None,
              help="Percussive/pitched: new energy needed, relative to the sound's level before [default: 0.5].")
@click.option("--mix-rise", type=float, default=None,
              help="Percussive/pitched: growth of the mix where the sound lives, 0 for none [default: 0.5].")
@click.option("--release-db", type=float, default=None,
              help="Percussive/pitched: note-off this far below the event's peak [default: 30].")
@click.option("--threshold", type=float, default=None,
              help="Flucoma: minimum rise of an activation, relative to its peak [default: 0.3].")
@click.option("--min-gap", type=float, default=None, help="Seconds between onsets of one sound [default: 0.05].")
@click.option("--smooth", type=float, default=None, help="Flucoma: smooth activations (seconds) [default: 0].")
@click.option("--release", type=float, default=None,
              help="Flucoma: note-off when the activation falls below this fraction of its peak [default: 0.1].")
@click.option("--midi", "midi_path", type=click.Path(path_type=Path), default=None, help="Also write a MIDI file.")
@click.option("--note", "notes", multiple=True,
              help="SOUND=NUMBER: the MIDI note of one of the kit's sounds (repeatable; needs --midi).")
@click.option("--iterations", type=int, default=None, help="Updates of the fit [default: 100].")
@seed_option_for("printed on a terminal")
@click.option("--extra-components", type=int, default=0, show_default=True,
              help="Free components to absorb sounds the kit does not know.")
@fft_options(kit=True)
@channel_options
@events_format_option
@output_options
def track(source: Path, bases_path: str, output: Path, method: str, causal: bool, floor_db: float | None,
          mask_db: float | None, retrigger: float | None, mix_rise: float | None, release_db: float | None,
          threshold: float | None, min_gap: float | None, smooth: float | None, release: float | None,
          midi_path: Path | None, notes: tuple[str, ...], iterations: int | None, seed: int,
          extra_components: int, window_size: int | None, hop_size: int | None, fft_size: int | None,
          start_chan: int | None, mixdown: bool, events_format: str | None, quiet: bool, force: bool,
          debug: bool) -> None:
    """Find which of a kit's sounds plays when in SOURCE: onset events as CSV/JSON (and MIDI), with
    velocity and note-off."""
    check_stdout(midi_path, binary=True)
    quiet = quiet or to_stdout(output) or to_stdout(midi_path)
    job = track_job(source, bases_path, output, midi=midi_path, notes=list(notes), threshold=threshold,
                    min_gap=min_gap, smooth=smooth, release=release, iterations=iterations, seed=seed,
                    extra_components=extra_components, window_size=window_size, hop_size=hop_size,
                    fft_size=fft_size, channel=channel_choice(start_chan, mixdown), force=force,
                    format=events_format, method=method, causal=causal, floor_db=floor_db, mask_db=mask_db,
                    retrigger=retrigger, mix_rise=mix_rise, release_db=release_db)
    counts = job.summary["counts"]
    say(quiet, f"{job.summary['events']} events: " + ", ".join(f"{lab} {n}" for lab, n in counts.items())
        + f" (method {job.summary['method']}{', causal' if causal else ''}, seed {job.summary['seed']})")
    report_written(quiet, job.outputs)
