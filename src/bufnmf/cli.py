"""The ``bufnmf`` command line: a thin layer over the library (no numerics here)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import __version__
from .bufstft import istft, stft
from .client import DecomposeResult, decompose, mixdown
from .cross import cross
from .errors import BufNMFError, Cancelled
from .io import WAV_MAX_CHANNELS, OutputSet, read_audio, read_buffer
from .morph import morph
from .realtime import match, nmf_filter
from .resources import page_releaser, parse_bytes
from .seeding import nmf_seed
from .spectral import resolve_fft_settings
from .templates import Kit, learn_bases, load_kit, save_kit, sidecar
from .tracking import events_to_midi, events_to_text, output_format, track

MODE_CHOICE = click.Choice(["none", "seed", "fixed"], case_sensitive=False)
MODE_NUMBERS = {"none": 0, "seed": 1, "fixed": 2}


class Progress:
    """A tqdm bar on a terminal; nothing when quiet or when stdout/stderr is not a terminal."""

    def __init__(self, desc: str, quiet: bool) -> None:
        self.enabled = not quiet and sys.stdout.isatty() and sys.stderr.isatty()
        self.desc = desc
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="it", leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def say(quiet: bool, text: str) -> None:
    """Print to stdout only on a terminal and when not quiet."""
    if not quiet and sys.stdout.isatty():
        click.echo(text)


def common_debug(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--debug", is_flag=True, hidden=True, help="Show full tracebacks.")(f)


def output_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--quiet, --force and the hidden --debug, which every subcommand takes."""
    f = common_debug(f)
    f = click.option("--force", is_flag=True, help="Overwrite existing outputs.")(f)
    return click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")(f)


def fft_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--fft-size", type=int, default=None,
                     help="FFT size; -1: next power of two >= window [default: -1, or the kit's].")(f)
    f = click.option("--hop-size", type=int, default=None,
                     help="Hop in samples; -1: window/2 [default: -1, or the kit's].")(f)
    f = click.option("--window-size", type=int, default=None,
                     help="Window in samples [default: 1024, or the kit's].")(f)
    return f


def resolve_fft(kit: Kit | None, window: int | None, hop: int | None, fft: int | None) -> tuple[int, int, int]:
    """FFT options: what the user gave, else the kit's settings, else FluCoMa's defaults."""
    if kit is not None and window is None and hop is None and fft is None:
        return kit.window_size, kit.hop_size, kit.fft_size
    return (1024 if window is None else window, -1 if hop is None else hop, -1 if fft is None else fft)


def parse_int_option(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BufNMFError(f"{name} must be a whole number, got {value!r}") from None


EPILOG_MAIN = """\b
Examples:
  bufnmf demo                                   # synthesise a drum loop and split it
  bufnmf decompose loop.wav -o parts -k 3 --plot
  bufnmf decompose loop.wav -o parts --bases kit.wav --bases-mode fixed
"""


@click.group(epilog=EPILOG_MAIN, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bufnmf")
@common_debug
def cli(debug: bool) -> None:
    """Split sounds into parts with NMF, as FluCoMa's BufNMF does."""


def _buffer_arg(path: str | None, mode: str | None, what: str, flag: str) -> tuple[np.ndarray | None, int, int | None]:
    """Read a seed buffer: (array, mode 0/1/2, its WAV sample rate or None)."""
    if path is None:
        if mode not in (None, "none"):
            raise BufNMFError(f"{flag}-mode {mode} needs {flag} FILE (a .wav or .npy buffer in FluCoMa layout)")
        return None, 0, None
    arr, rate = read_buffer(path, what)
    return arr, MODE_NUMBERS[mode or "seed"], rate


def check_buffer_rate(path: str | None, rate: int | None, sr: int, divisor: int, what: str) -> None:
    """A WAV buffer written for FluCoMa has rate sr / fft (bases) or sr / hop (activations): a buffer
    with another low rate was made for another source rate or FFT setting. Audio-rate buffers
    (exported by hosts that stamp their own rate) are not checked."""
    if path is None or rate is None or rate >= 1000:
        return
    expected = max(1, round(sr / divisor))
    if rate != expected:
        raise BufNMFError(
            f"{what} buffer {path} has buffer rate {rate} Hz, but this source at {sr} Hz with "
            f"{'fft_size' if what == 'bases' else 'hop_size'} {divisor} needs {expected} Hz: it was made for "
            "another sample rate or FFT setting; use matching settings or re-make the buffer"
        )


def _infer_components(given: int | None, bases: np.ndarray | None, acts: np.ndarray | None, channels: int) -> int:
    if given is not None:
        return given
    for arr in (bases, acts):
        if arr is not None:
            cols = arr.shape[1]
            return cols // channels if cols % channels == 0 else cols
    return 1


def output_names(components: int, resynth: bool, plot: bool, labels: list[str] | None = None,
                 extra: Sequence[str] = (), channels: int = 1) -> list[str]:
    """File names a decomposition writes, in writing order.

    Buffers wider than WAV allows (``channels * components`` > 1024) are written as .npy only.
    """
    stems = labels or [str(k + 1) for k in range(components)]
    names = [*extra, *(f"component_{s}.wav" for s in stems if resynth)]
    if channels * components <= WAV_MAX_CHANNELS:
        names += ["bases.wav", "activations.wav"]
    names += ["bases.npy", "activations.npy", "summary.json"]
    if plot:
        names += ["bases.png", "activations.png"]
    return names


def write_decomposition(
    res: DecomposeResult, sample_rate: int, out: OutputSet, plot: bool, source_name: str,
    timings: dict[str, float], labels: list[str] | None = None, extra: dict[str, tuple[np.ndarray, int]] | None = None,
) -> None:
    """Write the outputs of a decomposition into ``out`` (committed when its ``with`` block ends)."""
    K, C = res.components, res.num_channels
    names = output_names(K, res.resynth is not None, plot, labels, list(extra or {}), C)
    comp_names = [n for n in names if n.startswith("component_")]
    t0 = time.perf_counter()
    for name, (data, sr) in (extra or {}).items():
        out.write_audio(name, data, sr)
    if res.resynth is not None:
        release = page_releaser(res.resynth)  # a memory-mapped resynthesis: keep few pages resident
        for k, name in enumerate(comp_names):
            out.write_audio(name, res.resynth[:, k::K], sample_rate, release)  # columns chan * K + k
    if "bases.wav" in names:
        out.write_audio("bases.wav", res.bases, sample_rate / res.fft_size)
        out.write_audio("activations.wav", res.activations, sample_rate / res.hop_size)
    out.write_npy("bases.npy", res.bases)
    out.write_npy("activations.npy", res.activations)
    if plot:
        from .plot import plot_activations, plot_bases

        out.write_with("bases.png", lambda p: plot_bases(res, sample_rate, p, labels))
        out.write_with("activations.png", lambda p: plot_activations(res, sample_rate, p, labels))
    timings = {**timings, "write_seconds": round(time.perf_counter() - t0, 4)}
    out.write_json("summary.json", summary(res, sample_rate, source_name, timings, names, labels))


# Above this many bytes of component audio, the CLI resynthesises into a memory-mapped scratch
# file in the output folder instead of memory, and writes the WAVs from it in blocks.
SCRATCH_ABOVE_BYTES = 256 * 2**20


def summary(res: DecomposeResult, sample_rate: int, source_name: str, timings: dict[str, float],
            outputs: list[str], labels: list[str] | None) -> dict[str, Any]:
    """The contents of ``summary.json``."""
    return {
        "bufnmf_version": __version__,
        "source": source_name,
        "sample_rate": sample_rate,
        "parameters": {
            "components": res.components, "iterations": res.iterations, "window_size": res.window_size,
            "hop_size": res.hop_size, "fft_size": res.fft_size, "seed": res.seed, "bases_mode": res.bases_mode,
            "act_mode": res.act_mode, "start_frame": res.start_frame, "num_frames": res.num_samples,
            "start_chan": res.start_chan, "num_chans": res.num_channels, "precision": res.precision,
            "extra_components": res.extra_components, "kernel": res.kernel,
        },
        "labels": labels or [f"component {k + 1}" for k in range(res.components)],
        "shapes": {
            "bases": list(res.bases.shape), "activations": list(res.activations.shape),
            "resynth": list(res.resynth.shape) if res.resynth is not None else None,
        },
        "buffer_sample_rates": {"bases": sample_rate / res.fft_size, "activations": sample_rate / res.hop_size},
        "divergence": [[float(d) for d in ch] for ch in res.divergences],
        "timings": timings,
        "outputs": outputs,
    }


@cli.command("decompose", epilog="""\b
Examples:
  bufnmf decompose drums.wav -o parts -k 3 --plot
  bufnmf decompose drums.wav -o parts -k 3 --seed 42 --window-size 2048 --hop-size 512
  bufnmf decompose loop.wav -o tracked --bases kit.wav --bases-mode fixed
""")
@click.argument("source", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path),
              help="Folder for the outputs (created if needed).")
@click.option("-k", "--components", type=int, default=None,
              help="Number of components [default: 1, or from the --bases/--activations buffer].")
@click.option("--iterations", type=int, default=100, show_default=True)
@fft_options
@click.option("--seed", type=int, default=-1, show_default=True, help=">= 0 reproduces FluCoMa's seeded start.")
@click.option("--bases", "bases_path", type=str, default=None, help="Bases buffer (.wav or .npy, FluCoMa layout).")
@click.option("--bases-mode", type=MODE_CHOICE, default=None, help="How to use --bases [default: seed].")
@click.option("--activations", "acts_path", type=str, default=None, help="Activations buffer (.wav or .npy).")
@click.option("--act-mode", type=MODE_CHOICE, default=None, help="How to use --activations [default: seed].")
@click.option("--start-frame", type=int, default=0, show_default=True)
@click.option("--num-frames", type=int, default=-1, show_default=True)
@click.option("--start-chan", type=int, default=0, show_default=True)
@click.option("--num-chans", type=int, default=-1, show_default=True)
@click.option("--precision", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--extra-components", type=int, default=0, show_default=True,
              help="Free components learnt beside fixed --bases (e.g. a kit plus 'everything else').")
@click.option("--smooth-activations", type=float, default=0.0, show_default=True,
              help="Smooth learnt activations over this many seconds before resynthesis.")
@click.option("--smooth-method", type=click.Choice(["median", "mean"]), default="median", show_default=True)
@click.option("--max-memory", type=str, default=None,
              help="Refuse runs estimated to need more memory than this (e.g. 4G) [default: what is available].")
@click.option("--no-resynth", is_flag=True, help="Do not write component audio.")
@click.option("--plot", is_flag=True, help="Also write bases.png and activations.png.")
@output_options
def decompose_cmd(source: Path, outdir: Path, components: int | None, iterations: int, window_size: int | None,
                  hop_size: int | None, fft_size: int | None, seed: int, bases_path: str | None,
                  bases_mode: str | None, acts_path: str | None, act_mode: str | None, start_frame: int,
                  num_frames: int, start_chan: int, num_chans: int, precision: str, extra_components: int,
                  smooth_activations: float, smooth_method: str, max_memory: str | None, no_resynth: bool,
                  plot: bool, quiet: bool, force: bool, debug: bool) -> None:
    """Split SOURCE into components; write stems, FluCoMa buffers, summary.json (and plots).

    With --bases kit.wav from 'bufnmf learn', the kit's FFT settings are used (unless given),
    and the stems are named after its labels (component_kick.wav, ...).
    """
    t0 = time.perf_counter()
    data, sr = read_audio(source)
    kit = load_kit(bases_path) if bases_path is not None and sidecar(bases_path).exists() else None
    if kit is not None:  # the buffer is read once; the kit's own check covers its rate
        bases, bmode, brate = kit.bases, MODE_NUMBERS[bases_mode or "seed"], None
    else:
        bases, bmode, brate = _buffer_arg(bases_path, bases_mode, "bases", "--bases")
    acts, amode, arate = _buffer_arg(acts_path, act_mode, "activations", "--activations")
    window, hop, fft = resolve_fft(kit, window_size, hop_size, fft_size)
    settings = resolve_fft_settings(window, hop, fft)
    if kit is not None:
        kit.check_compatible(settings, sr, f"source {source}")
    check_buffer_rate(bases_path, brate, sr, settings.fft_size, "bases")
    check_buffer_rate(acts_path, arate, sr, settings.hop_size, "activations")
    chans = data.shape[1] - start_chan if num_chans == -1 else num_chans
    k = _infer_components(components, bases, acts, max(1, chans))
    labels = stem_labels(kit.labels if kit is not None and len(kit.labels) == k else None, k, extra_components)
    total_k = k + max(0, extra_components)
    if smooth_activations < 0:
        raise BufNMFError(f"--smooth-activations must be >= 0 seconds, got {smooth_activations}")
    smooth_frames = round(smooth_activations * sr / settings.hop_size) if smooth_activations else 0
    if smooth_method == "median" and smooth_frames > 1 and smooth_frames % 2 == 0:
        smooth_frames += 1  # a centred median needs an odd length
    n_sel = (data.shape[0] - start_frame) if num_frames == -1 else num_frames
    names = output_names(total_k, not no_resynth, plot, labels, channels=max(1, chans))
    # The folder is checked and locked before the work, not after; files appear only at the end.
    with OutputSet(outdir, names, force=force) as out:
        t_read = time.perf_counter() - t0
        big = not no_resynth and n_sel > 0 and chans > 0 and n_sel * chans * total_k * 4 > SCRATCH_ABOVE_BYTES
        sink = out.scratch((n_sel, chans * total_k)) if big else None
        bar = Progress("NMF", quiet)
        t1 = time.perf_counter()
        try:
            res = decompose(data, components=k, iterations=iterations, window_size=window, hop_size=hop,
                            fft_size=fft, seed=seed, bases=bases, bases_mode=bmode, activations=acts,
                            act_mode=amode, resynth=not no_resynth, start_frame=start_frame, num_frames=num_frames,
                            start_chan=start_chan, num_chans=num_chans, progress=bar, precision=precision,
                            track_divergence=True, extra_components=extra_components, smooth_frames=smooth_frames,
                            smooth_method=smooth_method, resynth_out=sink,
                            max_memory=None if max_memory is None else parse_bytes(max_memory))
        finally:
            bar.close()
        timings = {"read_seconds": round(t_read, 4), "decompose_seconds": round(time.perf_counter() - t1, 4)}
        write_decomposition(res, sr, out, plot, str(source), timings, labels)
    written = out.written
    say(quiet, f"{source}: {res.num_channels} channel(s), {res.components} component(s), "
               f"{res.iterations} iterations in {timings['decompose_seconds']:.2f} s")
    for p in written:
        say(quiet, f"  wrote {p}")


def stem_labels(kit_labels: list[str] | None, k: int, extra: int) -> list[str] | None:
    """File-safe, unique stem labels: the kit's, then extra_1..; None for plain numbering."""
    if kit_labels is None and extra <= 0:
        return None
    base = list(kit_labels) if kit_labels is not None else [str(i + 1) for i in range(k)]
    out: list[str] = []
    for lab in [*base, *(f"extra_{j + 1}" for j in range(max(0, extra)))]:
        safe = re.sub(r"[^A-Za-z0-9_.#+-]+", "_", lab).strip("._") or "component"
        name, n = safe, 2
        while name in out:
            name, n = f"{safe}_{n}", n + 1
        out.append(name)
    return out


@cli.command("learn", epilog="""\b
Examples:
  bufnmf learn hits/kick.wav hits/snare.wav hits/hihat.wav -o kit.wav
  bufnmf learn soft.wav hard.wav --label snare --label snare --merge-labels -o snare.wav
  bufnmf decompose loop.wav -o parts --bases kit.wav --bases-mode fixed
""")
@click.argument("examples", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Kit buffer to write (.wav or .npy); labels and settings go to a .json beside it.")
@click.option("--components-per-file", type=int, default=1, show_default=True)
@click.option("--label", "labels", multiple=True, help="Label per example, in order [default: file names].")
@click.option("--merge-labels", is_flag=True, help="Average bases that share a label into one.")
@click.option("--iterations", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@fft_options
@output_options
def learn_cmd(examples: tuple[Path, ...], output: Path, components_per_file: int, labels: tuple[str, ...],
              merge_labels: bool, iterations: int, seed: int, window_size: int | None, hop_size: int | None,
              fft_size: int | None, quiet: bool, force: bool, debug: bool) -> None:
    """Learn spectral templates from EXAMPLES and stack them into one bases buffer (a kit)."""
    if output.suffix.lower() not in (".wav", ".npy"):
        raise BufNMFError(f"kit output {output} must end in .wav or .npy")
    OutputSet(output.parent, [output.name, sidecar(output).name], force=force).check()
    window, hop, fft = resolve_fft(None, window_size, hop_size, fft_size)
    kit = learn_bases(list(examples), components_per_file=components_per_file, labels=list(labels) or None,
                      merge_labels=merge_labels, window_size=window, hop_size=hop, fft_size=fft,
                      iterations=iterations, seed=seed)
    written = save_kit(kit, output, force=force)
    say(quiet, f"learnt {len(kit.labels)} bases ({', '.join(kit.labels)}) at {kit.sample_rate} Hz, "
               f"window {kit.window_size}, hop {kit.hop_size}, fft {kit.fft_size}")
    for p in written:
        say(quiet, f"  wrote {p}")


@cli.command("track", epilog="""\b
Examples:
  bufnmf track loop.wav --bases kit.wav -o events.csv
  bufnmf track loop.wav --bases kit.wav -o events.json --midi loop.mid --note kick=35
  bufnmf track piano.wav --bases notes.wav -o notes.csv --midi piano.mid   # labels C4, E4, ...
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bases", "bases_path", required=True, type=str, help="Kit buffer (from 'bufnmf learn').")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Events file: .csv or .json.")
@click.option("--threshold", type=float, default=0.3, show_default=True,
              help="Minimum rise of an activation, relative to its peak.")
@click.option("--min-gap", type=float, default=0.05, show_default=True, help="Seconds between onsets.")
@click.option("--smooth", type=float, default=0.0, show_default=True, help="Smooth activations (seconds).")
@click.option("--release", type=float, default=0.1, show_default=True,
              help="Note-off when the activation falls below this fraction of its peak.")
@click.option("--midi", "midi_path", type=click.Path(path_type=Path), default=None, help="Also write a MIDI file.")
@click.option("--note", "notes", multiple=True, help="LABEL=NUMBER MIDI note for a label (repeatable).")
@click.option("--iterations", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--extra-components", type=int, default=0, show_default=True,
              help="Free components to absorb sounds the kit does not know.")
@fft_options
@output_options
def track_cmd(source: Path, bases_path: str, output: Path, threshold: float, min_gap: float, smooth: float,
              release: float, midi_path: Path | None, notes: tuple[str, ...], iterations: int, seed: int,
              extra_components: int, window_size: int | None, hop_size: int | None, fft_size: int | None,
              quiet: bool, force: bool, debug: bool) -> None:
    """Find which template plays when in SOURCE: onset events as CSV/JSON (and MIDI)."""
    fmt = output_format(output)
    overrides = {}
    for item in notes:
        if "=" not in item:
            raise BufNMFError(f"--note {item!r} must look like LABEL=NUMBER, e.g. kick=36")
        lab, num = item.split("=", 1)
        overrides[lab] = parse_int_option(f"--note {lab}", num)
    outputs = [output] + ([midi_path] if midi_path is not None else [])
    for p in outputs:
        OutputSet(p.parent, [p.name], force=force).check()
    data, sr = read_audio(source)
    kit = load_kit(bases_path)
    window, hop, fft = resolve_fft(kit, window_size, hop_size, fft_size)
    events = track(data, kit, sample_rate=sr, threshold=threshold, min_gap=min_gap, smooth=smooth, release=release,
                   iterations=iterations, seed=seed, window_size=window, hop_size=hop, fft_size=fft,
                   extra_components=extra_components)
    midi = events_to_midi(events, overrides) if midi_path is not None else None
    with OutputSet(output.parent, [output.name], force=force) as out:
        out.write_bytes(output.name, events_to_text(events, fmt).encode())
    if midi_path is not None and midi is not None:
        with OutputSet(midi_path.parent, [midi_path.name], force=force) as out:
            out.write_bytes(midi_path.name, midi)
    counts = {lab: sum(e.label == lab for e in events) for lab in kit.labels}
    say(quiet, f"{len(events)} events: " + ", ".join(f"{lab} {n}" for lab, n in counts.items()))
    for p in outputs:
        say(quiet, f"  wrote {p}")


def _mono(data: np.ndarray, chan: int | None, what: str) -> np.ndarray:
    """Channel ``chan`` of ``data`` (samples, channels), or the mixdown when None."""
    if chan is None:
        return mixdown(data)
    if not 0 <= chan < data.shape[1]:
        raise BufNMFError(f"--start-chan {chan} is outside the {what}: it has {data.shape[1]} channel(s)")
    return data[:, chan]


def _kit_fft(kit: Kit, window: int | None, hop: int | None, fft: int | None, sr: int, source: Path) -> tuple:
    w, h, f = resolve_fft(kit, window, hop, fft)
    kit.check_compatible(resolve_fft_settings(w, h, f), sr, f"source {source}")
    return w, h, f


@cli.command("stft", epilog="""\b
Examples:
  bufnmf stft voice.wav -o voice-stft                 # magnitude.wav, phase.wav (+ .npy), stft.json
  bufnmf stft --inverse voice-stft -o voice-again.wav
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Folder (forward) or audio file (--inverse).")
@click.option("--inverse", is_flag=True, help="SOURCE is a folder written by 'bufnmf stft': resynthesise it.")
@click.option("--padding", type=click.IntRange(0, 2), default=1, show_default=True,
              help="0 none, 1 window/2 each side, 2 window-hop each side.")
@click.option("--start-chan", type=int, default=0, show_default=True, help="Channel to analyse.")
@fft_options
@output_options
def stft_cmd(source: Path, output: Path, inverse: bool, padding: int, start_chan: int, window_size: int | None,
             hop_size: int | None, fft_size: int | None, quiet: bool, force: bool, debug: bool) -> None:
    """BufSTFT: magnitude and phase buffers (rows = hops, columns = bins), or back to audio."""
    if inverse:
        meta_path = source / "stft.json"
        if not meta_path.is_file():
            raise BufNMFError(f"{source} has no stft.json: give a folder written by 'bufnmf stft'")
        try:
            meta = json.loads(meta_path.read_text())
            w, h, f, pad, n, sr = (int(meta[k]) for k in ("window_size", "hop_size", "fft_size", "padding",
                                                          "num_samples", "sample_rate"))
        except (ValueError, KeyError, TypeError) as exc:
            raise BufNMFError(f"{meta_path} is not valid ({exc}): run 'bufnmf stft' again") from None
        mag, _ = read_buffer(source / "magnitude.npy", "magnitude")
        ph, _ = read_buffer(source / "phase.npy", "phase")
        y = istft(mag, ph, w, h, f, pad, n)
        with OutputSet(output.parent, [output.name], force=force) as out:
            out.write_audio(output.name, y[:, None], sr)
        say(quiet, f"  wrote {output}")
        return
    data, sr = read_audio(source)
    x = _mono(data, start_chan, "source")
    window, hop, fft = resolve_fft(None, window_size, hop_size, fft_size)
    names = ["magnitude.npy", "phase.npy", "stft.json"]
    bins = resolve_fft_settings(window, hop, fft).bins
    wav_ok = bins <= 1024  # libsndfile's channel limit: larger FFTs are written as .npy only
    if wav_ok:
        names = ["magnitude.wav", "phase.wav", *names]
    OutputSet(output, names, force=force).check()
    mag, ph = stft(x, window, hop, fft, padding)
    s = resolve_fft_settings(window, hop, fft)
    with OutputSet(output, names, force=force) as out:
        if wav_ok:
            out.write_audio("magnitude.wav", mag, sr / s.hop_size)
            out.write_audio("phase.wav", ph, sr / s.hop_size)
        out.write_npy("magnitude.npy", mag.astype(np.float32))
        out.write_npy("phase.npy", ph.astype(np.float32))
        out.write_json("stft.json", {"bufnmf_version": __version__, "source": str(source), "sample_rate": sr,
                                     "num_samples": int(x.size), "window_size": s.window_size,
                                     "hop_size": s.hop_size, "fft_size": s.fft_size, "padding": padding,
                                     "frames": int(mag.shape[0]), "bins": int(mag.shape[1]),
                                     "layout": "frames (hops) x channels (bins), as FluCoMa's BufSTFT"})
    if not wav_ok:
        say(quiet, f"note: {bins} bins exceed WAV's 1024-channel limit: wrote .npy buffers only")
    for p in out.written:
        say(quiet, f"  wrote {p}")


@cli.command("seed", epilog="""\b
Examples:
  bufnmf seed drums.wav -o seeds --coverage 0.6
  bufnmf decompose drums.wav -o parts --bases seeds/bases.wav --activations seeds/activations.wav
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path))
@click.option("-k", "--components", type=int, default=-1, show_default=True, help="-1: from --coverage.")
@click.option("--coverage", type=float, default=0.5, show_default=True,
              help="Fraction of the singular values' energy to cover.")
@click.option("--method", type=click.Choice(["nndsvd", "nndsvda", "nndsvdar"]), default="nndsvd", show_default=True)
@click.option("--start-chan", type=int, default=None, help="Channel to analyse [default: mixdown].")
@fft_options
@output_options
def seed_cmd(source: Path, outdir: Path, components: int, coverage: float, method: str, start_chan: int | None,
             window_size: int | None, hop_size: int | None, fft_size: int | None, quiet: bool, force: bool,
             debug: bool) -> None:
    """BufNMFSeed: NNDSVD starting bases and activations for 'bufnmf decompose'."""
    names = ["bases.wav", "activations.wav", "bases.npy", "activations.npy", "seed.json"]
    OutputSet(outdir, names, force=force).check()
    data, sr = read_audio(source)
    window, hop, fft = resolve_fft(None, window_size, hop_size, fft_size)
    res = nmf_seed(_mono(data, start_chan, "source"), components, coverage, method, window, hop, fft)
    with OutputSet(outdir, names, force=force) as out:
        out.write_audio("bases.wav", res.bases, sr / res.fft_size)
        out.write_audio("activations.wav", res.activations, sr / res.hop_size)
        out.write_npy("bases.npy", res.bases)
        out.write_npy("activations.npy", res.activations)
        out.write_json("seed.json", {"bufnmf_version": __version__, "source": str(source), "sample_rate": sr,
                                     "components": res.components, "coverage": res.coverage, "method": method,
                                     "window_size": res.window_size, "hop_size": res.hop_size,
                                     "fft_size": res.fft_size})
    say(quiet, f"{res.components} components cover {res.coverage:.1%} of the singular-value energy")
    for p in out.written:
        say(quiet, f"  wrote {p}")


def _realtime_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--iterations", type=int, default=10, show_default=True, help="KL updates per frame.")(f)
    f = click.option("--seed", type=int, default=-1, show_default=True,
                     help=">= 0: the same start every frame (reproducible).")(f)
    return f


@cli.command("match", epilog="""\b
Example:
  bufnmf match loop.wav --bases kit.wav -o activations.csv
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bases", "bases_path", required=True, type=str, help="Bases buffer or kit.")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help=".csv or .json")
@_realtime_options
@fft_options
@output_options
def match_cmd(source: Path, bases_path: str, output: Path, iterations: int, seed: int, window_size: int | None,
              hop_size: int | None, fft_size: int | None, quiet: bool, force: bool, debug: bool) -> None:
    """NMFMatch over a file: each frame's activation of each basis (streamed as in real time)."""
    fmt = output_format(output)
    OutputSet(output.parent, [output.name], force=force).check()
    data, sr = read_audio(source)
    kit = load_kit(bases_path)
    w, h, f = _kit_fft(kit, window_size, hop_size, fft_size, sr, source)
    acts = match(_mono(data, None, "source"), kit.bases, iterations, seed, w, h, f)
    hop = resolve_fft_settings(w, h, f).hop_size
    times = (np.arange(acts.shape[0]) + 1) * hop / sr  # each frame is reported when its last sample arrives
    if fmt == "json":
        text = json.dumps({"labels": kit.labels, "hop_seconds": hop / sr, "time": times.round(6).tolist(),
                           "activations": acts.round(8).tolist()}) + "\n"
    else:
        rows = ["time," + ",".join(kit.labels)]
        rows += [f"{t:.6f}," + ",".join(f"{v:.8g}" for v in row) for t, row in zip(times, acts, strict=True)]
        text = "\n".join(rows) + "\n"
    with OutputSet(output.parent, [output.name], force=force) as out:
        out.write_bytes(output.name, text.encode())
    say(quiet, f"{acts.shape[0]} frames x {acts.shape[1]} bases\n  wrote {output}")


@cli.command("filter", epilog="""\b
Example:
  bufnmf filter loop.wav --bases kit.wav -o filtered     # component_<label>.wav, latency removed
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bases", "bases_path", required=True, type=str, help="Bases buffer or kit.")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path))
@_realtime_options
@fft_options
@output_options
def filter_cmd(source: Path, bases_path: str, outdir: Path, iterations: int, seed: int, window_size: int | None,
               hop_size: int | None, fft_size: int | None, quiet: bool, force: bool, debug: bool) -> None:
    """NMFFilter over a file: one mono file per basis, summing to the (mono) source."""
    data, sr = read_audio(source)
    kit = load_kit(bases_path)
    labels = stem_labels(kit.labels, len(kit.labels), 0) or []
    names = [f"component_{lab}.wav" for lab in labels]
    OutputSet(outdir, names, force=force).check()
    w, h, f = _kit_fft(kit, window_size, hop_size, fft_size, sr, source)
    parts = nmf_filter(_mono(data, None, "source"), kit.bases, iterations, seed, w, h, f)
    with OutputSet(outdir, names, force=force) as out:
        for k, name in enumerate(names):
            out.write_audio(name, parts[:, k : k + 1], sr)
    for p in out.written:
        say(quiet, f"  wrote {p}")


@cli.command("cross", epilog="""\b
Examples:
  bufnmf cross bees.wav speech.wav -o buzzing-speech.wav
  bufnmf cross bees.wav speech.wav -o out.wav --polyphony 3 --continuity 11 --seed 1
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="Audio file to write.")
@click.option("--time-sparsity", type=int, default=7, show_default=True, help="Odd: repetition window in frames.")
@click.option("--polyphony", type=int, default=10, show_default=True, help="Source frames sounding at once.")
@click.option("--continuity", type=int, default=7, show_default=True, help="Odd: diagonal smoothing length.")
@click.option("--iterations", type=int, default=50, show_default=True)
@click.option("--seed", type=int, default=-1, show_default=True)
@fft_options
@click.option("--max-memory", type=str, default=None, help="Refuse runs estimated above this (e.g. 4G).")
@output_options
def cross_cmd(source: Path, target: Path, output: Path, time_sparsity: int, polyphony: int, continuity: int,
              iterations: int, seed: int, window_size: int | None, hop_size: int | None, fft_size: int | None,
              max_memory: str | None, quiet: bool, force: bool, debug: bool) -> None:
    """BufNMFCross: rebuild TARGET from the sound of SOURCE (audio mosaicing)."""
    OutputSet(output.parent, [output.name], force=force).check()
    src, sr = read_audio(source, "source")
    tgt, sr_t = read_audio(target, "target")
    if sr != sr_t:
        raise BufNMFError(f"source {source} is at {sr} Hz but target {target} is at {sr_t} Hz: resample one of them")
    window, hop, fft = resolve_fft(None, window_size, hop_size, fft_size)
    y = cross(src, tgt, time_sparsity, polyphony, continuity, iterations, seed, window, hop, fft,
              max_memory=None if max_memory is None else parse_bytes(max_memory))
    with OutputSet(output.parent, [output.name], force=force) as out:
        out.write_audio(output.name, y[:, None], sr)
    say(quiet, f"  wrote {output} ({y.size / sr:.2f} s at {sr} Hz)")


@cli.command("morph", epilog="""\b
Examples:
  bufnmf decompose flute.wav -o flute -k 3 ; bufnmf decompose voice.wav -o voice -k 3
  bufnmf morph --source-bases flute/bases.wav --target-bases voice/bases.wav \\
               --activations flute/activations.wav -o morph.wav --interpolation 0.3
  bufnmf morph ... --interpolation 0,1          # a curve: glide from source to target
""")
@click.option("--source-bases", "source_path", required=True, type=str)
@click.option("--target-bases", "target_path", required=True, type=str)
@click.option("--activations", "acts_path", required=True, type=str)
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="Audio file to write.")
@click.option("--interpolation", type=str, default="0.5", show_default=True,
              help="0..1, or comma-separated values for a curve over the output.")
@click.option("--no-autoassign", is_flag=True, help="Pair basis k with basis k instead of by transport cost.")
@click.option("--sample-rate", type=int, default=None, help="Output rate [default: from a summary.json, else 44100].")
@click.option("--seed", type=int, default=-1, show_default=True)
@fft_options
@output_options
def morph_cmd(source_path: str, target_path: str, acts_path: str, output: Path, interpolation: str,
              no_autoassign: bool, sample_rate: int | None, seed: int, window_size: int | None, hop_size: int | None,
              fft_size: int | None, quiet: bool, force: bool, debug: bool) -> None:
    """NMFMorph offline: morph source bases into target bases under the given activations."""
    OutputSet(output.parent, [output.name], force=force).check()
    S, _ = read_buffer(source_path, "source bases")
    T, _ = read_buffer(target_path, "target bases")
    H, _ = read_buffer(acts_path, "activations")
    try:
        curve = [float(v) for v in interpolation.split(",")]
    except ValueError:
        raise BufNMFError(f"--interpolation {interpolation!r} must be a number or comma-separated numbers") from None
    summary_path = Path(source_path).parent / "summary.json"
    meta = {}
    if summary_path.is_file():
        try:
            meta = json.loads(summary_path.read_text())
        except ValueError:
            meta = {}
    params = meta.get("parameters", {})
    if window_size is None and hop_size is None and fft_size is None and "fft_size" in params:
        window, hop, fft = params["window_size"], params["hop_size"], params["fft_size"]
    else:
        window = window_size if window_size is not None else (S.shape[0] - 1) * 2
        hop, fft = (-1 if hop_size is None else hop_size), (-1 if fft_size is None else fft_size)
    sr = sample_rate or int(meta.get("sample_rate", 44100))
    y = morph(S, T, H, curve[0] if len(curve) == 1 else curve, not no_autoassign, seed, window, hop, fft)
    with OutputSet(output.parent, [output.name], force=force) as out:
        out.write_audio(output.name, y[:, None], sr)
    say(quiet, f"  wrote {output} ({y.size / sr:.2f} s at {sr} Hz)")


@cli.command("demo", epilog="""\b
Example:
  bufnmf demo -o my-demo
""")
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), default=Path("bufnmf-demo"),
              show_default=True, help="Folder for the demo's files.")
@output_options
def demo_cmd(outdir: Path, quiet: bool, force: bool, debug: bool) -> None:
    """Synthesise a drum loop, split it into 3 components and say which is which."""
    from .demo import DRUMS, drum_loop

    sr = 44100
    with OutputSet(outdir, output_names(3, True, True, extra=["demo_loop.wav"]), force=force) as out:
        mix, stems, _ = drum_loop(seconds=4.0, sr=sr)
        bar = Progress("NMF", quiet)
        t1 = time.perf_counter()
        try:
            res = decompose(mix, components=3, iterations=150, seed=2, progress=bar, track_divergence=True)
        finally:
            bar.close()
        timings = {"decompose_seconds": round(time.perf_counter() - t1, 4)}
        write_decomposition(res, sr, out, True, "demo_loop.wav (synthesised)", timings,
                            extra={"demo_loop.wav": (mix[:, None], sr)})
    written = out.written
    assert res.resynth is not None
    corr = np.array([[np.corrcoef(res.resynth[:, k], stems[d])[0, 1] for d in DRUMS] for k in range(3)])
    if not quiet:
        click.echo(f"Synthesised a 4 s drum loop and split it into 3 components in "
                   f"{timings['decompose_seconds']:.2f} s:")
        for p in written:
            click.echo(f"  wrote {p}")
        click.echo("Which component is which drum (correlation with the synthetic sources):")
        for k in range(3):
            best = int(np.argmax(corr[k]))
            click.echo(f"  component_{k + 1}.wav ~ {DRUMS[best]:<6} (r = {corr[k, best]:.2f})")


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
        msg = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
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
