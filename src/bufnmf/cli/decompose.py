"""``bufnmf decompose`` and ``bufnmf demo``: BufNMF on a file, or on a synthesised drum loop."""

from __future__ import annotations

from pathlib import Path

import click

from ..workflows.jobs import decompose_job, demo_job
from .common import (
    MODE_CHOICE,
    Progress,
    audio_format_options,
    fft_options,
    max_memory_option,
    output_options,
    report_written,
    say,
    seed_option_for,
)


@click.command("decompose", epilog="""\b
Examples:
  bufnmf decompose drums.wav -o parts -k 3 --plot
  bufnmf decompose drums.wav -o parts -k 3 --seed 42 --window-size 2048 --hop-size 512
  bufnmf decompose loop.wav -o tracked --bases kit.wav --bases-mode fixed
  bufnmf decompose long.flac -o intro --num-frames 441000 --format flac
  bufnmf decompose drums.wav -o parts -k 3 --model nmfd       # beyond FluCoMa: better drum stems
  sox in.aiff -t wav - | bufnmf decompose - -o parts -k 2      # SOURCE - reads standard input
""")
@click.argument("source", type=click.Path(dir_okay=True, path_type=Path))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path),
              help="Folder for the outputs (created if needed; it holds this run only: --force replaces an "
                   "earlier run's files).")
@click.option("-k", "--components", type=int, default=None,
              help="Number of components [default: 1, or from the --bases/--activations buffer].")
@click.option("--iterations", type=int, default=100, show_default=True)
@fft_options(kit=True)
@seed_option_for("written to summary.json")
@click.option("--bases", "bases_path", type=str, default=None, help="Bases buffer (.wav or .npy, FluCoMa layout).")
@click.option("--bases-mode", type=MODE_CHOICE, default=None, help="How to use --bases [default: seed].")
@click.option("--activations", "acts_path", type=str, default=None, help="Activations buffer (.wav or .npy).")
@click.option("--act-mode", type=MODE_CHOICE, default=None, help="How to use --activations [default: seed].")
@click.option("--start-frame", type=int, default=0, show_default=True,
              help="First sample to analyse (in samples, 0-based).")
@click.option("--num-frames", type=int, default=-1, show_default=True,
              help="How many samples to analyse (in samples); -1: to the end. Only these are read.")
@click.option("--start-chan", type=int, default=0, show_default=True, help="First channel to analyse (0-based).")
@click.option("--num-chans", type=int, default=-1, show_default=True, help="Channels to analyse; -1: the rest.")
@click.option("--precision", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--extra-components", type=int, default=0, show_default=True,
              help="Free components learnt beside fixed --bases (e.g. a kit plus 'everything else').")
@click.option("--smooth-activations", type=float, default=0.0, show_default=True,
              help="Smooth learnt activations over this many seconds before resynthesis.")
@click.option("--smooth-method", type=click.Choice(["median", "mean"]), default="median", show_default=True)
@click.option("--model", type=click.Choice(["flucoma", "nmfd"], case_sensitive=False), default="flucoma",
              show_default=True,
              help="flucoma: FluCoMa's KL-NMF, exactly. nmfd: beyond FluCoMa, NMF deconvolution (each component "
                   "a spectrogram template over --template-frames frames, beta-divergence); better drum stems, "
                   "no --bases/--activations.")
@click.option("--beta", type=float, default=None,
              help="--model nmfd: the beta-divergence, 0 (Itakura-Saito) .. 1 (KL) .. 2 (Euclidean) [default: 0.5].")
@click.option("--template-frames", type=int, default=None,
              help="--model nmfd: STFT frames per template; 1: plain NMF [default: 4].")
@click.option("--warm-iterations", type=int, default=None,
              help="--model nmfd: how many of --iterations run first with KL (beta 1) before --beta "
                   "[default: 30% of --iterations].")
@click.option("--sparsity", type=float, default=None,
              help="--model nmfd: L1 penalty on the activations, >= 0 (acts for beta != 1 only) [default: 0].")
@click.option("--continuity", type=float, default=None,
              help="--model nmfd: temporal-continuity penalty on the activations, >= 0 [default: 0].")
@max_memory_option
@click.option("--no-resynth", is_flag=True, help="Do not write component audio.")
@click.option("--plot", is_flag=True, help="Also write bases.png and activations.png.")
@audio_format_options("the component files (the buffers stay float32 WAV)", from_extension=False)
@output_options
def command(source: Path, outdir: Path, components: int | None, iterations: int, window_size: int | None,
            hop_size: int | None, fft_size: int | None, seed: int, bases_path: str | None, bases_mode: str | None,
            acts_path: str | None, act_mode: str | None, start_frame: int, num_frames: int, start_chan: int,
            num_chans: int, precision: str, extra_components: int, smooth_activations: float, smooth_method: str,
            model: str, beta: float | None, template_frames: int | None, warm_iterations: int | None,
            sparsity: float | None, continuity: float | None,
            max_memory: str | None, no_resynth: bool, plot: bool, audio_format: str | None, subtype: str | None,
            quiet: bool, force: bool, debug: bool) -> None:
    """Split SOURCE into components; write stems, FluCoMa buffers, summary.json (and plots).

    With --bases kit.wav from 'bufnmf learn', the kit's FFT settings are used (unless FFT options
    are given), and the stems are named after its labels (component_kick.wav, ...).
    """
    with Progress("NMF", quiet) as bar:
        job = decompose_job(
            source, outdir, components=components, iterations=iterations, window_size=window_size,
            hop_size=hop_size, fft_size=fft_size, seed=seed, bases=bases_path, bases_mode=bases_mode,
            activations=acts_path, act_mode=act_mode, start_frame=start_frame, num_frames=num_frames,
            start_chan=start_chan, num_chans=num_chans, precision=precision, extra_components=extra_components,
            smooth_activations=smooth_activations, smooth_method=smooth_method, max_memory=max_memory,
            resynth=not no_resynth, plot=plot, force=force, progress=bar, format=audio_format, subtype=subtype,
            model=model.lower(), beta=beta, template_frames=template_frames, warm_iterations=warm_iterations,
            sparsity=sparsity, continuity=continuity)
    res = job.result
    model_text = "" if res.model.name == "flucoma" else (
        f", model nmfd (beta {res.model.beta:g}, {res.model.template_frames}-frame templates, "
        f"{res.model.warm_iterations} KL iterations first)")
    say(quiet, f"{source}: {res.num_channels} channel(s), {res.components} component(s){model_text}, "
               f"{res.iterations} iterations in {job.summary['timings']['decompose_seconds']:.2f} s (seed {res.seed})")
    report_written(quiet, job.outputs)


@click.command("demo", epilog="""\b
Example:
  bufnmf demo -o my-demo
""")
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), default=Path("bufnmf-demo"),
              show_default=True, help="Folder for the demo's files (it holds this run only).")
@audio_format_options("the loop and the component files", from_extension=False)
@output_options
def demo(outdir: Path, audio_format: str | None, subtype: str | None, quiet: bool, force: bool, debug: bool) -> None:
    """Synthesise a drum loop, split it into 3 components and say which is which."""
    with Progress("NMF", quiet) as bar:
        job = demo_job(outdir, force=force, progress=bar, format=audio_format, subtype=subtype)
    say(quiet, f"Synthesised a 4 s drum loop and split it into 3 components in "
               f"{job.summary['timings']['decompose_seconds']:.2f} s:")
    report_written(quiet, job.outputs)
    say(quiet, "Which component is which drum (correlation with the synthetic sources):")
    for m in job.summary["matches"]:
        name = next(p.name for p in job.outputs if p.name.startswith(f"component_{m['component']}."))
        say(quiet, f"  {name} ~ {m['drum']:<6} (r = {m['r']:.2f})")
