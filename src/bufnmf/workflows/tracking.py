"""From activations to events: onset picking (the file formats are in :mod:`bufnmf.io.events`).

``track`` decomposes a sound with a fixed kit of bases (FluCoMa's "NMF piano tracker"
workflow) and turns each component's activation into onset events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..checks import as_float, as_labels, real_array
from ..clients.bufnmf import decompose
from ..clients.common import load_source, require_mono
from ..dsp.fft import resolve_fft_settings
from ..errors import BufNMFError
from ..io.events import Event
from .kits import Kit


def pick_onsets(
    activation: np.ndarray, hop_seconds: float, threshold: float = 0.3, min_gap: float = 0.05,
    smooth: float = 0.0, release: float = 0.1, delta: float = 0.02,
) -> list[tuple[float, float, float]]:
    """Onsets in one activation: ``[(time_s, peak, end_s), ...]``.

    Adaptive peak picking on the rise of the activation (its half-wave rectified
    difference): a frame is an onset where the rise is the largest within +-30 ms, at
    least ``threshold`` times the activation's own peak, above the local mean rise by
    ``delta`` (relative), and at least ``min_gap`` seconds after the previous onset.

    Args:
        activation: (frames,) non-negative.
        hop_seconds: seconds per frame.
        threshold: minimum rise, relative to the activation's peak (0..1).
        min_gap: seconds between onsets of this activation.
        smooth: moving-average length in seconds applied first (0: none).
        release: the event ends when the activation falls below this fraction of its peak,
            or when the next onset of this activation comes first.
        delta: the rise must exceed the local mean rise (+-100 ms) by this fraction of the peak.

    Returns:
        Onset time (s), the activation's peak after the onset (its own scale), end time (s).
    """
    a = np.asarray(activation, dtype=np.float64)
    peak = float(a.max(initial=0.0))
    if a.size == 0 or peak <= 0:
        return []
    x = a / peak
    if smooth > 0:
        size = min(x.size, max(1, round(smooth / hop_seconds)))
        if size > 1:
            x = np.convolve(x, np.ones(size) / size, mode="same")
    rise = np.maximum(np.diff(x, prepend=0.0), 0.0)
    w_max = max(1, round(0.03 / hop_seconds))
    w_avg = max(1, round(0.1 / hop_seconds))
    gap = max(1, math.ceil(min_gap / hop_seconds - 1e-9))  # onsets at least min_gap apart, never less
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    local_max = maximum_filter1d(rise, size=2 * w_max + 1, mode="constant")
    local_avg = uniform_filter1d(rise, size=2 * w_avg + 1, mode="constant")
    cand = np.flatnonzero((rise >= local_max) & (rise >= threshold) & (rise >= local_avg + delta))
    events: list[tuple[float, float, float]] = []
    last = -gap
    n = x.size
    for t in map(int, cand):
        if t - last < gap:
            continue
        last = t
        top = t + int(np.argmax(x[t : min(n, t + w_max + 2)]))
        level = x[top]
        below = np.flatnonzero(x[top:] < release * level)
        end = top + (int(below[0]) if below.size else n - top)
        events.append((t * hop_seconds, float(level * peak), end * hop_seconds))
    # a note ends at the latest when the same component starts again (no overlapping MIDI notes)
    return [(t, lv, min(e, events[i + 1][0]) if i + 1 < len(events) else e) for i, (t, lv, e) in enumerate(events)]


class Events(list[Event]):
    """The events :func:`track` finds, in time order (a list), with the seed the run used (``.seed``)."""

    def __init__(self, events: Sequence[Event] = (), seed: int = -1) -> None:
        super().__init__(events)
        self.seed = seed


def track(
    source: object,
    kit: Kit | np.ndarray,
    labels: Sequence[str] | None = None,
    sample_rate: int | None = None,
    threshold: float = 0.3,
    min_gap: float = 0.05,
    smooth: float = 0.0,
    release: float = 0.1,
    iterations: int = 100,
    seed: int = -1,
    window_size: int | None = None,
    hop_size: int | None = None,
    fft_size: int | None = None,
    extra_components: int = 0,
    *,
    max_memory: int | None = None,
) -> Events:
    """Decompose ``source`` with fixed bases and return the onsets of each component, in time order.

    Each sound of the kit gives one event per onset: the columns a sound was learnt as
    (``components_per_file`` > 1, see :attr:`Kit.sounds`), or the columns of a bases array that
    share a label, are tracked together (their activations summed).

    Args:
        source: mono samples (samples,) or an audio file path (one channel: pass ``x[:, c]`` or
            ``bufnmf.mixdown(x)`` for several).
        kit: a :class:`Kit` (labels, FFT settings and rate come with it) or a bases array
            (bins x K) in FluCoMa layout.
        labels: labels for a bases array, any iterable of strings (default ``1..K``).
        sample_rate: the source's rate in Hz (files carry their own); needed for times.
        threshold, min_gap, smooth, release: see :func:`pick_onsets` (seconds, fractions).
        iterations: NMF iterations. seed: the activations' start (-1 draws one, reported as
            ``events.seed``; >= 0 reproduces).
        window_size, hop_size, fft_size: FFT settings; the kit's when none is given
            (see :meth:`Kit.settings_for`; 1024/-1/-1 for a bases array).
        extra_components: free components learnt beside the kit to absorb other sounds.
        max_memory: refuse (before allocating) a decomposition estimated to need more bytes than
            this (default: the memory available now), as :func:`bufnmf.decompose`.

    Returns:
        :class:`Events`, sorted by time.
    """
    data, sr = load_source(source)
    mono = require_mono(data, "track")
    given = sample_rate if sample_rate is not None else sr
    if given is None:
        raise BufNMFError("sample_rate is needed to give event times in seconds: pass sample_rate=<Hz>")
    rate = as_float("sample_rate", given, low=0.0, low_open=True)
    threshold = as_float("threshold", threshold, low=0.0, high=1.0, low_open=True)
    min_gap = as_float("min_gap", min_gap, low=0.0)
    smooth = as_float("smooth", smooth, low=0.0)
    release = as_float("release", release, low=0.0, high=1.0, high_open=True)
    if isinstance(kit, Kit):
        bases, names = kit.bases, kit.sounds
        settings = kit.settings_for(window_size, hop_size, fft_size, rate)
    else:
        bases = real_array("bases", kit)
        if bases.ndim != 2:
            raise BufNMFError(f"bases must be 2-D (bins, components), got shape {bases.shape}")
        names = as_labels("labels", labels) if labels is not None else [str(i + 1) for i in range(bases.shape[1])]
        settings = resolve_fft_settings(1024 if window_size is None else window_size,
                                        -1 if hop_size is None else hop_size, -1 if fft_size is None else fft_size)
    if len(names) != bases.shape[1]:
        raise BufNMFError(f"{len(names)} labels for {bases.shape[1]} bases: give one label per basis")
    if smooth > mono.shape[0] / rate:
        raise BufNMFError(f"smooth {smooth:g} s is longer than the source ({mono.shape[0] / rate:.3g} s): use less, "
                          "or 0 for none",
                          cli=f"--smooth {smooth:g} s is longer than the source ({mono.shape[0] / rate:.3g} s): use "
                              "less, or 0 for none")
    K = bases.shape[1]
    res = decompose(mono, components=K, iterations=iterations, window_size=settings.window_size,
                    hop_size=settings.hop_size, fft_size=settings.fft_size, seed=seed, bases=bases,
                    bases_mode="fixed", resynth=False, extra_components=extra_components, max_memory=max_memory)
    hop_seconds = res.hop_size / rate
    sounds = list(dict.fromkeys(names))
    acts = np.stack([res.activations[:, [i for i, n in enumerate(names) if n == sound]].sum(axis=1, dtype=np.float64)
                     for sound in sounds], axis=1)
    top = float(acts.max(initial=0.0))
    if top > 1:
        acts /= top  # a sound's summed columns can pass 1: strengths stay 0..1
    events = []
    for k, name in enumerate(sounds):
        for t, level, end in pick_onsets(acts[:, k], hop_seconds, threshold, min_gap, smooth, release):
            events.append(Event(round(t, 6), name, round(level, 6), round(end, 6)))
    events.sort(key=lambda e: (e.time, e.label))
    return Events(events, res.seed)
