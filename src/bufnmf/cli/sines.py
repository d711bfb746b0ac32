"""``bufnmf sines``: FluCoMa's BufSines on a file: sinusoids and residual, the tracks, a summary."""

from __future__ import annotations

from pathlib import Path

import click

from ..clients.sines import kernels_ready
from ..workflows.jobs import sines_job
from .common import Progress, audio_format_options, fft_options, output_options, report_written, say


@click.command("sines", epilog="""\b
Examples:
  bufnmf sines piano.wav -o piano-sines --plot
  bufnmf sines drums.wav -o drums-sines --track-method hungarian --min-track-len 5
  bufnmf sines take.wav -o take-sines --flucoma-quirks     # FluCoMa's BufSines output, bit for bit
""")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(path_type=Path),
              help="Folder for sines.wav, residual.wav, tracks.csv, summary.json (created if needed).")
@click.option("--bandwidth", type=int, default=76, show_default=True,
              help="Bins over which each sinusoid is drawn (1 .. fft-size/2 + 1).")
@click.option("--detection-threshold", type=float, default=-96.0, show_default=True,
              help="dB (-144 .. 0): quieter peaks are ignored.")
@click.option("--birth-low-threshold", type=float, default=-24.0, show_default=True,
              help="dB (-144 .. 0) below the frame's loudest bin a low peak may start a track.")
@click.option("--birth-high-threshold", type=float, default=-60.0, show_default=True,
              help="dB (-144 .. 0): the same for high peaks.")
@click.option("--min-track-len", type=int, default=15, show_default=True,
              help="Frames: shorter tracks go to the residual.")
@click.option("--track-method", type=click.Choice(["greedy", "hungarian", "0", "1"], case_sensitive=False),
              default="greedy", show_default=True, help="How peaks are matched to tracks.")
@click.option("--track-mag-range", type=float, default=15.0, show_default=True,
              help="dB (1 .. 200): level scale of the matching.")
@click.option("--track-freq-range", type=float, default=50.0, show_default=True,
              help="Hz (1 .. 10000): frequency scale of the matching.")
@click.option("--track-prob", type=float, default=0.5, show_default=True, help="Matching probability (0 .. 1).")
@fft_options()
@click.option("--start-frame", type=int, default=0, show_default=True, help="First sample to analyse.")
@click.option("--num-frames", type=int, default=-1, show_default=True, help="Samples to analyse; -1: to the end.")
@click.option("--start-chan", type=int, default=0, show_default=True, help="First channel to analyse (0-based).")
@click.option("--num-chans", type=int, default=-1, show_default=True, help="Channels to analyse; -1: the rest.")
@click.option("--max-fft-size", type=int, default=-1, show_default=True,
              help="Size of the window-transform table peaks are drawn from; -1: the FFT size (FluCoMa's). "
                   "4 x the FFT size draws sinusoids more exactly (less of them left in the residual).")
@click.option("--flucoma-quirks", is_flag=True,
              help="Reproduce FluCoMa's defects (each frame masked with the next frame's peaks; stale level for "
                   "Hungarian births) to get FluCoMa's own output.")
@click.option("--plot", is_flag=True, help="Also write tracks.png: the tracks over the spectrogram.")
@audio_format_options("sines and residual", from_extension=False)
@output_options
def command(source: Path, outdir: Path, bandwidth: int, detection_threshold: float, birth_low_threshold: float,
            birth_high_threshold: float, min_track_len: int, track_method: str, track_mag_range: float,
            track_freq_range: float, track_prob: float, window_size: int | None, hop_size: int | None,
            fft_size: int | None, start_frame: int, num_frames: int, start_chan: int, num_chans: int,
            max_fft_size: int, flucoma_quirks: bool, plot: bool, audio_format: str | None, subtype: str | None,
            quiet: bool, force: bool, debug: bool) -> None:
    """Split SOURCE into sinusoids and residual (every channel), as FluCoMa's BufSines.

    Writes sines.wav and residual.wav (lined up with SOURCE; they sum to it), tracks.csv (one row
    per track point: track_id, frame, time_s, freq_hz, mag_db, channel) and summary.json.
    """
    if not kernels_ready():
        say(quiet, "First run: compiling the Sines kernels (about 15-30 s, once; later runs start at once)")
    with Progress("Sines", quiet, unit="frame") as bar:
        job = sines_job(
            source, outdir, bandwidth=bandwidth, detection_threshold=detection_threshold,
            birth_low_threshold=birth_low_threshold, birth_high_threshold=birth_high_threshold,
            min_track_len=min_track_len, track_method=track_method, track_mag_range=track_mag_range,
            track_freq_range=track_freq_range, track_prob=track_prob, window_size=window_size, hop_size=hop_size,
            fft_size=fft_size, start_frame=start_frame, num_frames=num_frames, start_chan=start_chan,
            num_chans=num_chans, max_fft_size=max_fft_size, flucoma_quirks=flucoma_quirks, plot=plot, force=force,
            progress=bar, format=audio_format, subtype=subtype)
    info = job.summary
    tracks = sum(ch["tracks"] for ch in info["channels"])
    shares = [ch["sines_energy_share"] for ch in info["channels"] if ch["sines_energy_share"] is not None]
    share = f", sines {min(shares):.0%}" + (f"-{max(shares):.0%}" if len(shares) > 1 else "") + " of the energy" \
        if shares else ""
    say(quiet, f"{source}: {info['num_channels']} channel(s), {tracks} tracks{share}, in "
               f"{info['timings']['sines_seconds']:.2f} s")
    report_written(quiet, job.outputs)
