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
