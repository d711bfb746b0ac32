"""A synthetic drum loop for the built-in demo and the tests (no files needed)."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

DRUMS = ("kick", "snare", "hihat")


def _kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.35 * sr)) / sr
    freq = 45.0 + 90.0 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    click = rng.standard_normal(t.size) * np.exp(-t / 0.002) * 0.2
    return (np.sin(phase) * np.exp(-t / 0.12) + click).astype(np.float64)


def _snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.25 * sr)) / sr
    body = 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
    # the rattle: noise through a one-pole low-pass (about 2 kHz)
    noise = lfilter([0.25], [1.0, -0.75], rng.standard_normal(t.size))
    return body + noise * np.exp(-t / 0.07) * 0.8


def _hihat(sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.08 * sr)) / sr
    noise = rng.standard_normal(t.size)
    for _ in range(2):  # strongly high-passed noise
        noise = np.concatenate([[0.0], np.diff(noise)])
    return noise * np.exp(-t / 0.02) * 0.15


def drum_loop(
    seconds: float = 4.0, sr: int = 44100, bpm: float = 120.0, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[float]]]:
    """Synthesise a kick/snare/hi-hat loop.

    Returns:
        ``(mix, stems, onsets)``: ``mix`` float32 (samples,), peak 0.9;
        ``stems[name]`` float32 (samples,) summing to ``mix``; ``onsets[name]`` times in seconds.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    step = 60.0 / bpm / 2  # eighth notes
    pattern = {
        "kick": [0, 3, 4, 8, 11, 12],
        "snare": [2, 6, 10, 14],
        "hihat": [1, 3, 5, 7, 9, 11, 13, 15],
    }
    makers = {"kick": _kick, "snare": _snare, "hihat": _hihat}
    steps_per_bar = 16
    total_steps = int(seconds / step)
    stems = {name: np.zeros(n) for name in DRUMS}
    onsets: dict[str, list[float]] = {name: [] for name in DRUMS}
    for name in DRUMS:
        for s in range(total_steps):
            if s % steps_per_bar in pattern[name]:
                start = round(s * step * sr)
                hit = makers[name](sr, rng) * rng.uniform(0.8, 1.0)
                end = min(n, start + hit.size)
                stems[name][start:end] += hit[: end - start]
                onsets[name].append(start / sr)
    mix: np.ndarray = np.sum(list(stems.values()), axis=0)
    gain = 0.9 / float(np.max(np.abs(mix)))
    mix32 = (mix * gain).astype(np.float32)
    return mix32, {k: (v * gain).astype(np.float32) for k, v in stems.items()}, onsets
