"""NMFMorph: morph each source basis into a target basis by 1-D optimal transport.

A basis is treated as a distribution of spectral mass over bins. Between two such
distributions on a line, the optimal (monotone) transport pairs equal quantiles: a
quantile at bin ``i`` of the source goes to bin ``j`` of the target, and at
interpolation ``t`` it sits at ``(1 - t) i + t j`` (displacement interpolation, McCann).
Peaks therefore *move* in frequency instead of cross-fading. Total mass is interpolated
linearly (the numerics: :mod:`bufnmf.dsp.transport`). With ``autoassign`` the source/target
pairs minimise the summed transport cost (Wasserstein-1 distance between the normalised
spectra), found with scipy's ``linear_sum_assignment`` (the Hungarian method).

Offline :func:`morph` renders frames as interpolated bases times activations and gets
the phase from fast Griffin-Lim (50 iterations, momentum 0.99) starting from a
phase-vocoder phase (each bin advancing by its centre frequency per hop, from a random
phase drawn from ``seed``). The streaming :class:`NMFMorph` uses that phase-vocoder phase
alone (no look-ahead), cycling through the activation frames as FluCoMa does, on the
streaming engine's overlap-adder. (FluCoMa uses RTPGHI; bufnmf's choice is simpler and
documented here.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..checks import as_int, real_array, resolve_seed
from ..dsp.fft import FFTSettings, resolve_fft_settings
from ..dsp.phase import griffin_lim
from ..dsp.stream import OverlapAdder
from ..dsp.transport import assign, interpolate_spectrum
from ..errors import BufNMFError
from .common import SeededArray


def _check(source_bases: object, target_bases: object, activations: object, settings: FFTSettings
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, arr in (("source_bases", source_bases), ("target_bases", target_bases), ("activations", activations)):
        a = real_array(name, arr)
        if a.ndim == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2 or a.size == 0:
            raise BufNMFError(f"{name} must be a non-empty 2-D buffer, got shape {a.shape}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise BufNMFError(f"{name} must be finite and non-negative")
        arrays.append(a)
    S, T, H = arrays
    if S.shape[0] != T.shape[0]:
        raise BufNMFError(f"source_bases have {S.shape[0]} rows but target_bases have {T.shape[0]}: both must come "
                          "from the same FFT size")
    if S.shape[1] != T.shape[1]:
        raise BufNMFError(f"source_bases have {S.shape[1]} components but target_bases have {T.shape[1]}: "
                          "morphing pairs them one to one, so the counts must match")
    if S.shape[0] != settings.bins:
        raise BufNMFError(f"the bases have {S.shape[0]} rows but fft_size {settings.fft_size} needs {settings.bins} "
                          f"(fft_size // 2 + 1): pass the FFT settings the bases were made with")
    if H.shape[1] != S.shape[1]:
        raise BufNMFError(f"activations have {H.shape[1]} components (columns) but the bases have {S.shape[1]}")
    return S, T, H


def _curve(interpolation: float | Sequence[float] | np.ndarray, frames: int) -> np.ndarray:
    arr = np.asarray(interpolation, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(frames, float(arr))
    elif arr.ndim == 1 and arr.size >= 1:
        # a morph curve over the whole output, resampled to one value per frame
        arr = np.interp(np.linspace(0, 1, frames), np.linspace(0, 1, arr.size), arr) if arr.size > 1 else \
            np.full(frames, float(arr[0]))
    else:
        raise BufNMFError(f"interpolation must be a number or a 1-D curve, got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise BufNMFError("interpolation must lie in [0, 1]")
    return arr


class _Morpher:
    """Interpolated bases for one interpolation value, cached (the common case is a constant)."""

    def __init__(self, S: np.ndarray, T: np.ndarray, autoassign: bool) -> None:
        self.S = S
        self.T = T[:, assign(S, T)] if autoassign else T
        self._t: float | None = None
        self._B: np.ndarray | None = None

    def bases(self, t: float) -> np.ndarray:
        if self._t != t or self._B is None:
            self._B = np.stack([interpolate_spectrum(self.S[:, k], self.T[:, k], t) for k in range(self.S.shape[1])],
                               axis=1)
            self._t = t
        return self._B


def _start_phase(seed: int, bins: int) -> np.ndarray:
    """The phase of the first frame, uniform in [-pi, pi) from ``seed``: (bins,)."""
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, bins)


def morph(
    source_bases: np.ndarray,
    target_bases: np.ndarray,
    activations: np.ndarray,
    interpolation: float | Sequence[float] | np.ndarray = 0.5,
    autoassign: bool = True,
    seed: int = -1,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    griffin_lim_iterations: int = 50,
) -> SeededArray:
    """Render the NMFMorph process offline.

    Args:
        source_bases, target_bases: (fft_size // 2 + 1, K) each, FluCoMa layout.
        activations: (frames, K), FluCoMa layout; one output frame per row.
        interpolation: 0..1, a number or a curve over the output (resampled per frame).
        autoassign: pair bases by minimum total transport cost (else column k with column k).
        seed: the starting phase (>= 0 reproduces; -1 draws one, reported as ``result.seed``).
        window_size, hop_size, fft_size: FFT settings of the bases.
        griffin_lim_iterations: phase refinement (0: phase-vocoder phase only).

    Returns:
        float64 samples, ``(frames - 1) * hop`` long (a :class:`bufnmf.SeededArray`).
    """
    settings = resolve_fft_settings(window_size, hop_size, fft_size)
    S, T, H = _check(source_bases, target_bases, activations, settings)
    gl = as_int("griffin_lim_iterations", griffin_lim_iterations)
    if gl < 0:
        raise BufNMFError(f"griffin_lim_iterations must be >= 0, got {gl}")
    seed = resolve_seed(seed)
    frames = H.shape[0]
    curve = _curve(interpolation, frames)
    m = _Morpher(S, T, autoassign)
    mag = np.empty((settings.bins, frames))
    for n in range(frames):
        mag[:, n] = m.bases(float(curve[n])) @ H[n]
    n_samples = max(1, (frames - 1) * settings.hop_size)
    bins = np.arange(settings.bins)
    advance = 2 * np.pi * bins * settings.hop_size / settings.fft_size
    phase = np.outer(advance, np.arange(frames)) + _start_phase(seed, settings.bins)[:, None]
    return SeededArray.wrap(griffin_lim(mag, settings, n_samples, gl, 0.99, phase), seed)


class NMFMorph:
    """Streaming NMFMorph: ``process(n_samples)`` returns the next ``n_samples`` of morphing sound.

    One frame per hop: interpolated bases times the next activation row (cycling), phase
    advancing by each bin's centre frequency from a random start (``seed``; -1 draws one,
    reported as ``.seed``), overlap-added by the streaming engine. ``interpolation`` may be
    changed between calls.
    """

    def __init__(self, source_bases: np.ndarray, target_bases: np.ndarray, activations: np.ndarray,
                 interpolation: float = 0.5, autoassign: bool = True, seed: int = -1, window_size: int = 1024,
                 hop_size: int = -1, fft_size: int = -1) -> None:
        self.settings = resolve_fft_settings(window_size, hop_size, fft_size)
        self.S, self.T, self.H = _check(source_bases, target_bases, activations, self.settings)
        self.interpolation = float(_curve(interpolation, 1)[0])
        self._m = _Morpher(self.S, self.T, autoassign)
        s = self.settings
        self._advance = 2 * np.pi * np.arange(s.bins) * s.hop_size / s.fft_size
        self.seed = resolve_seed(seed)
        self._phase = _start_phase(self.seed, s.bins)
        self._frame = 0
        self._adder = OverlapAdder(s, 1)

    def _next_frame(self) -> None:
        t = float(_curve(self.interpolation, 1)[0])
        mag = self._m.bases(t) @ self.H[self._frame % self.H.shape[0]]
        if self._frame:
            self._phase = self._phase + self._advance
        self._frame += 1
        self._adder.add((mag * np.exp(1j * self._phase))[None, None, :])

    def process(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` samples, float64 (n_samples,)."""
        n = as_int("n_samples", n_samples)
        if n < 0:
            raise BufNMFError(f"n_samples must be >= 0, got {n}")
        while self._adder.available < n:
            self._next_frame()
        return self._adder.take(n)[:, 0]
