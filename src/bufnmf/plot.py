"""Figures in the style of FluCoMa's documentation: bases as spectra, activations over waveforms.

Uses matplotlib's non-interactive Agg backend; nothing is shown on screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .clients.bufnmf import DecomposeResult
from .clients.sines import SinesResult


def _colours(k: int) -> list:
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(k)]


def _envelope(w: np.ndarray, sample_rate: float, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Peak envelope of ``w`` in about ``points`` buckets, normalised to 1; with bucket times (s)."""
    size = max(1, w.size // points)
    n = (w.size // size) * size or w.size
    env = np.abs(w[:n]).reshape(-1, size).max(axis=1) if n == (w.size // size) * size else np.abs(w)
    peak = float(env.max()) or 1.0
    return env / peak, (np.arange(env.size) * size + size / 2) / sample_rate


def plot_bases(res: DecomposeResult, sample_rate: float, path: str | Path, labels: Sequence[str] | None = None,
               channel: int = 0) -> None:
    """Each basis of ``channel`` as a magnitude spectrum (dB) against frequency in Hz, log axis; PNG."""
    K = res.components
    labels = labels or [f"component {k + 1}" for k in range(K)]
    freqs = np.arange(res.num_bins) * sample_rate / res.fft_size
    block = res.channel_block(res.bases, channel)
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    for k, colour in enumerate(_colours(K)):
        db = 20 * np.log10(np.maximum(block[1:, k], 1e-6))
        ax.plot(freqs[1:], db, color=colour, lw=1.1, label=labels[k])
    ax.set_xscale("log")
    ax.set_xlim(max(freqs[1], 20.0), sample_rate / 2)
    ax.set_ylim(-100, 5)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("basis magnitude (dB, unit-norm basis)")
    chan = f", channel {channel + 1} of {res.num_channels}" if res.num_channels > 1 else ""
    ax.set_title(f"NMF bases: {K} components{chan}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_activations(res: DecomposeResult, sample_rate: float, path: str | Path, labels: Sequence[str] | None = None,
                     channel: int = 0) -> None:
    """Each activation against time (s), overlaid on its component's waveform; one row per component; PNG."""
    K = res.components
    labels = labels or [f"component {k + 1}" for k in range(K)]
    acts = res.channel_block(res.activations, channel)
    t_act = np.arange(acts.shape[0]) * res.hop_size / sample_rate
    waves = res.channel_block(res.resynth, channel) if res.resynth is not None else None
    fig, axes = plt.subplots(K, 1, figsize=(8, 1.3 + 1.25 * K), dpi=100, sharex=True, squeeze=False)
    for k, colour in enumerate(_colours(K)):
        ax = axes[k, 0]
        if waves is not None:
            env, t_env = _envelope(waves[:, k], sample_rate)
            ax.fill_between(t_env, -env, env, color=colour, alpha=0.35, lw=0, label="waveform (normalised)")
        ax.plot(t_act, acts[:, k], color=colour, lw=1.4, label="activation")
        ax.set_ylim(-1.05, 1.1)
        ax.set_ylabel(labels[k], fontsize="small")
        ax.grid(True, alpha=0.25)
        if k == 0:
            ax.legend(loc="upper right", fontsize="x-small", ncols=2)
    axes[-1, 0].set_xlabel("time (s)")
    chan = f", channel {channel + 1} of {res.num_channels}" if res.num_channels > 1 else ""
    fig.suptitle(f"NMF activations (peak 1) over component waveforms{chan}")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_sines_tracks(signal: np.ndarray, res: SinesResult, path: str | Path, max_columns: int = 3000) -> None:
    """The sinusoidal tracks of channel ``res.start_chan`` drawn over that channel's spectrogram; PNG.

    Args:
        signal: float (num_samples,), the analysed samples of that channel (the selection).
        res: what :func:`bufnmf.sines` returned for it.
        path: the PNG to write.
        max_columns: the spectrogram's hop is raised so that it has at most this many frames.

    The spectrogram (grey, dB on FluCoMa's scale: a full-scale sinusoid is about 0 dB, 90 dB shown) uses
    the run's window and FFT size, on a log-frequency axis; each track is a line through its points
    (time of the frame's window centre, frequency), coloured by its mean level.
    """
    from matplotlib.collections import LineCollection

    from .dsp.fft import FFTSettings
    from .dsp.stft import stft_complex

    c = res.config
    sr = res.sample_rate
    x = np.asarray(signal, dtype=np.float64)
    hop = max(c.hop_size, -(-x.size // max_columns))
    view = FFTSettings(c.window_size, min(hop, c.window_size), c.fft_size)
    db = 20 * np.log10(np.maximum(np.abs(stft_complex(x, view)), 1e-12) / (c.window_size / 4))
    t0 = res.start_frame / sr
    t_end = t0 + (db.shape[1] - 1) * view.hop_size / sr
    tracks = res.tracks[res.tracks["channel"] == res.start_chan]
    top = float(tracks["freq_hz"].max()) * 1.2 if tracks.size else sr / 2
    top = min(sr / 2, max(top, 1000.0))
    bottom = max(20.0, sr / c.fft_size)
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    peak = float(db.max())
    t_edges = t0 + (np.arange(db.shape[1] + 1) - 0.5) * view.hop_size / sr  # pixels centred on their frame
    f_edges = np.maximum((np.arange(db.shape[0] + 1) - 0.5) * sr / c.fft_size, 1e-3)
    ax.pcolormesh(t_edges, f_edges, db, cmap="Greys", vmin=peak - 90, vmax=peak, shading="flat", rasterized=True)
    if tracks.size:
        order = np.lexsort((tracks["frame"], tracks["track_id"]))
        ids = tracks["track_id"][order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        segments, levels = [], []
        for part in np.split(order, cuts):
            pts = tracks[part]
            segments.append(np.column_stack([pts["time_s"], pts["freq_hz"]]))
            levels.append(float(pts["mag_db"].mean()))
        lines = LineCollection(segments, cmap="plasma", linewidths=1.0)
        lines.set_array(np.asarray(levels))
        ax.add_collection(lines)
        fig.colorbar(lines, ax=ax, label="track level (dB, mean)")
    ax.set_xlim(t0, t_end)
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    chan = f", channel {res.start_chan}" if res.num_channels > 1 or res.start_chan else ""
    chan += f" (first of the {res.num_channels} analysed)" if res.num_channels > 1 else ""
    count = np.unique(tracks["track_id"]).size if tracks.size else 0
    ax.set_title(f"Sines: {count} tracks over the spectrogram{chan}")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
