"""``bufnmf stft``, ``seed``, ``match``, ``filter``, ``cross`` and ``morph``: the rest of FluCoMa's family."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from ..errors import BufNMFError
from ..workflows.jobs import cross_job, filter_job, istft_job, match_job, morph_job, seed_job, stft_job
from .common import (
    F,
    Progress,
    audio_format_options,
    channel_choice,
    channel_options,
    check_stdout,
    events_format_option,
    fft_options,
    max_memory_option,
    output_options,
    report_written,
    say,
    seed_option_for,
    to_stdout,
)


@click.command("stft", epilog="""\b
Examples:
  bufnmf stft voice.wav -o voice-stft                 # magnitude.wav, phase.wav (+ .npy), stft.json
  bufnmf stft --inverse voice-stft -o voice-again.flac
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Folder (forward; it holds this run only), or audio file (--inverse; - for standard output).")
@click.option("--inverse", is_flag=True, help="SOURCE is a folder written by 'bufnmf stft': resynthesise it.")
@click.option("--padding", type=click.IntRange(0, 2), default=1, show_default=True,
              help="0 none, 1 window/2 each side, 2 window-hop each side.")
@fft_options()
@click.option("--start-frame", type=int, default=0, show_default=True, help="First sample to analyse.")
@click.option("--num-frames", type=int, default=-1, show_default=True, help="Samples to analyse; -1: to the end.")
@channel_options
@audio_format_options("the --inverse output", from_extension=True)
@output_options
def stft(source: Path, output: Path, inverse: bool, padding: int, window_size: int | None, hop_size: int | None,
         fft_size: int | None, start_frame: int, num_frames: int, start_chan: int | None, mixdown: bool,
         audio_format: str | None, subtype: str | None, quiet: bool, force: bool, debug: bool) -> None:
    """BufSTFT: magnitude and phase buffers (rows = hops, columns = bins), or back to audio.

    The inverse gives back as many samples as were analysed (stft.json records it).
    """
    if not inverse and (audio_format is not None or subtype is not None):
        raise click.UsageError("--format and --subtype are for --inverse (the buffers are float32 WAV and .npy)")
    if not inverse and to_stdout(output):
        raise click.UsageError("-o - is for --inverse: the forward transform writes a folder")
    if inverse:
        check_stdout(output, binary=True)
        quiet = quiet or to_stdout(output)
        job = istft_job(source, output, force=force, format=audio_format, subtype=subtype)
    else:
        job = stft_job(source, output, padding=padding, window_size=window_size, hop_size=hop_size,
                       fft_size=fft_size, start_frame=start_frame, num_frames=num_frames,
                       channel=channel_choice(start_chan, mixdown), force=force)
        if not job.summary["wav_buffers"]:
            say(quiet, f"note: {job.summary['bins']} bins exceed WAV's 1024-channel limit: wrote .npy buffers only")
    report_written(quiet, job.outputs)


@click.command("seed", epilog="""\b
Examples:
  bufnmf seed drums.wav -o seeds --coverage 0.6         # rank from the singular values (method 0, NMF-SVD)
  bufnmf seed drums.wav -o seeds --method nndsvda -k 4  # a fixed rank
  bufnmf decompose drums.wav -o parts --bases seeds/bases.wav --activations seeds/activations.wav
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path),
              help="Folder for the seed buffers (it holds this run only).")
@click.option("--coverage", type=float, default=0.5, show_default=True,
              help="Fraction (0..1) of the sum of the singular values to cover; 0: --min-components.")
@click.option("--min-components", type=int, default=1, show_default=True, help="Smallest rank.")
@click.option("--max-components", type=int, default=200, show_default=True, help="Largest rank.")
@click.option("-k", "--components", type=int, default=None, help="A fixed rank instead of --coverage.")
@click.option("--method", type=str, default="0", show_default=True,
              help="0 NMF-SVD, 1 NNDSVDar, 2 NNDSVDa, 3 NNDSVD (the number or the name).")
@seed_option_for("written to seed.json")
@fft_options()
@channel_options
@output_options
def seed(source: Path, outdir: Path, coverage: float, min_components: int, max_components: int,
         components: int | None, method: str, seed: int, window_size: int | None, hop_size: int | None,
         fft_size: int | None, start_chan: int | None, mixdown: bool, quiet: bool, force: bool, debug: bool) -> None:
    """BufNMFSeed: SVD starting bases and activations for 'bufnmf decompose'."""
    job = seed_job(source, outdir, min_components=min_components, max_components=max_components, coverage=coverage,
                   method=method, seed=seed, components=components, window_size=window_size, hop_size=hop_size,
                   fft_size=fft_size, channel=channel_choice(start_chan, mixdown), force=force)
    say(quiet, f"{job.summary['components']} components ({job.summary['method_name']}) cover "
               f"{job.summary['coverage']:.1%} of the sum of the singular values")
    report_written(quiet, job.outputs)


def _realtime_options(where: str) -> Callable[[F], F]:
    def deco(f: F) -> F:
        f = click.option("--iterations", type=int, default=10, show_default=True, help="KL updates per frame.")(f)
        return seed_option_for(where)(f)

    return deco


@click.command("match", epilog="""\b
Example:
  bufnmf match loop.wav --bases kit.wav -o activations.csv
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bases", "bases_path", required=True, type=str, help="Bases buffer or kit.")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Activations file: .csv or .json, or - for standard output.")
@_realtime_options("in the JSON output, or printed on a terminal")
@fft_options(kit=True)
@channel_options
@events_format_option
@output_options
def match(source: Path, bases_path: str, output: Path, iterations: int, seed: int, window_size: int | None,
          hop_size: int | None, fft_size: int | None, start_chan: int | None, mixdown: bool, events_format: str | None,
          quiet: bool, force: bool, debug: bool) -> None:
    """NMFMatch over a file: each frame's activation of each basis (streamed as in real time)."""
    quiet = quiet or to_stdout(output)
    job = match_job(source, bases_path, output, iterations=iterations, seed=seed, window_size=window_size,
                    hop_size=hop_size, fft_size=fft_size, channel=channel_choice(start_chan, mixdown), force=force,
                    format=events_format)
    say(quiet, f"{job.summary['frames']} frames x {len(job.summary['labels'])} bases (seed {job.summary['seed']})")
    report_written(quiet, job.outputs)


@click.command("filter", epilog="""\b
Example:
  bufnmf filter loop.wav --bases kit.wav -o filtered     # component_<label>.wav, latency removed
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bases", "bases_path", required=True, type=str, help="Bases buffer or kit.")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path),
              help="Folder for the components (it holds this run only).")
@_realtime_options("printed on a terminal")
@fft_options(kit=True)
@channel_options
@audio_format_options("the component files", from_extension=False)
@output_options
def filter_(source: Path, bases_path: str, outdir: Path, iterations: int, seed: int, window_size: int | None,
            hop_size: int | None, fft_size: int | None, start_chan: int | None, mixdown: bool,
            audio_format: str | None, subtype: str | None, quiet: bool, force: bool, debug: bool) -> None:
    """NMFFilter over a file: one mono file per basis, summing to the source."""
    job = filter_job(source, bases_path, outdir, iterations=iterations, seed=seed, window_size=window_size,
                     hop_size=hop_size, fft_size=fft_size, channel=channel_choice(start_chan, mixdown), force=force,
                     format=audio_format, subtype=subtype)
    say(quiet, f"{len(job.outputs)} components (seed {job.summary['seed']})")
    report_written(quiet, job.outputs)


@click.command("cross", epilog="""\b
Examples:
  bufnmf cross bees.wav speech.wav -o buzzing-speech.wav
  bufnmf cross bees.wav speech.wav -o out.wav --polyphony 3 --continuity 11 --seed 1
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Audio file to write (.wav, .flac, .ogg, .aiff, ...), or - for standard output.")
@click.option("--time-sparsity", type=int, default=7, show_default=True, help="Odd: repetition window in frames.")
@click.option("--polyphony", type=int, default=10, show_default=True, help="Source frames sounding at once.")
@click.option("--continuity", type=int, default=7, show_default=True, help="Odd: diagonal smoothing length.")
@click.option("--iterations", type=int, default=50, show_default=True)
@seed_option_for("printed on a terminal")
@fft_options()
@max_memory_option
@channel_options
@audio_format_options("the output", from_extension=True)
@output_options
def cross(source: Path, target: Path, output: Path, time_sparsity: int, polyphony: int, continuity: int,
          iterations: int, seed: int, window_size: int | None, hop_size: int | None, fft_size: int | None,
          max_memory: str | None, start_chan: int | None, mixdown: bool, audio_format: str | None,
          subtype: str | None, quiet: bool, force: bool, debug: bool) -> None:
    """BufNMFCross: rebuild TARGET from the sound of SOURCE (audio mosaicing)."""
    check_stdout(output, binary=True)
    quiet = quiet or to_stdout(output)
    job = cross_job(source, target, output, time_sparsity=time_sparsity, polyphony=polyphony, continuity=continuity,
                    iterations=iterations, seed=seed, window_size=window_size, hop_size=hop_size, fft_size=fft_size,
                    max_memory=max_memory, channel=channel_choice(start_chan, mixdown), force=force,
                    format=audio_format, subtype=subtype)
    say(quiet, f"  wrote {output} ({job.summary['seconds']:.2f} s at {job.summary['sample_rate']} Hz, "
               f"seed {job.summary['seed']})")


@click.command("morph", epilog="""\b
Examples:
  bufnmf decompose flute.wav -o flute -k 3 ; bufnmf decompose voice.wav -o voice -k 3
  bufnmf morph --source-bases flute/bases.wav --target-bases voice/bases.wav \\
               --activations flute/activations.wav -o morph.wav --interpolation 0.3
  bufnmf morph ... --interpolation 0,1          # a curve: glide from source to target
""")
@click.option("--source-bases", "source_path", required=True, type=str, help="Bases buffer to morph from.")
@click.option("--target-bases", "target_path", required=True, type=str, help="Bases buffer to morph to.")
@click.option("--activations", "acts_path", required=True, type=str, help="Activations buffer to play.")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Audio file to write (.wav, .flac, .ogg, .aiff, ...), or - for standard output.")
@click.option("--interpolation", type=str, default="0", show_default=True,
              help="0 (source) .. 1 (target), or comma-separated values for a curve over the output.")
@click.option("--no-autoassign", is_flag=True, help="Pair basis k with basis k instead of by transport cost.")
@click.option("--activation-scale", type=float, default=None,
              help="Multiply the activations [default: the scale in the summary.json beside --activations, which "
                   "plays the sound at its own level; else 1, FluCoMa's level].")
@click.option("--griffin-lim-iterations", type=int, default=0, show_default=True,
              help="Refine RTPGHI's phase with this many fast Griffin-Lim iterations (0: FluCoMa's sound).")
@click.option("--sample-rate", type=int, default=None, help="Output rate [default: from a summary.json, else 44100].")
@seed_option_for("printed on a terminal")
@fft_options()
@audio_format_options("the output", from_extension=True)
@output_options
def morph(source_path: str, target_path: str, acts_path: str, output: Path, interpolation: str, no_autoassign: bool,
          activation_scale: float | None, griffin_lim_iterations: int, sample_rate: int | None, seed: int,
          window_size: int | None, hop_size: int | None, fft_size: int | None, audio_format: str | None,
          subtype: str | None, quiet: bool, force: bool, debug: bool) -> None:
    """NMFMorph offline: morph source bases into target bases under the given activations."""
    check_stdout(output, binary=True)
    quiet = quiet or to_stdout(output)
    try:
        curve = [float(v) for v in interpolation.split(",")]
    except ValueError:
        raise BufNMFError(f"--interpolation {interpolation!r} must be a number or comma-separated numbers") from None
    with Progress("morph", quiet, unit="step") as bar:
        job = morph_job(source_path, target_path, acts_path, output,
                        interpolation=curve[0] if len(curve) == 1 else curve, autoassign=not no_autoassign,
                        sample_rate=sample_rate, seed=seed, window_size=window_size, hop_size=hop_size,
                        fft_size=fft_size, activation_scale=activation_scale,
                        griffin_lim_iterations=griffin_lim_iterations, force=force, progress=bar,
                        format=audio_format, subtype=subtype)
    say(quiet, f"  wrote {output} ({job.summary['seconds']:.2f} s at {job.summary['sample_rate']} Hz, "
               f"seed {job.summary['seed']}, activation scale from {job.summary['activation_scale_from']})")
