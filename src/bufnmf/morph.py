"""NMFMorph: morph each source basis into a target basis by 1-D optimal transport.

A basis is treated as a distribution of spectral mass over bins. Between two such
distributions on a line, the optimal (monotone) transport pairs equal quantiles: a
quantile at bin ``i`` of the source goes to bin ``j`` of the target, and at
interpolation ``t`` it sits at ``(1 - t) i + t j`` (displacement interpolation, McCann).
Peaks therefore *move* in frequency instead of cross-fading. Total mass is interpolated
linearly. With ``autoassign`` the source/target pairs minimise the summed transport cost
(Wasserstein-1 distance between the normalised spectra), found with scipy's
``linear_sum_assignment`` (the Hungarian method).

Offline :func:`morph` renders frames as interpolated bases times activations and gets
the phase from fast Griffin-Lim (50 iterations, momentum 0.99) starting from a
phase-vocoder phase (each bin advancing by its centre frequency per hop). The streaming
:class:`NMFMorph` uses that phase-vocoder phase alone (no look-ahead), cycling through
the activation frames as FluCoMa does. (FluCoMa uses RTPGHI; bufnmf's choice is simpler
and documented here.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .errors import BufNMFError
from .phase import griffin_lim
from .spectral import FFTSettings, hann, resolve_fft_settings


def transport_cost(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance (in bins) between two spectra, each normalised to unit mass."""
    fa = np.cumsum(a) / max(float(a.sum()), 1e-300)
    fb = np.cumsum(b) / max(float(b.sum()), 1e-300)
    return float(np.abs(fa - fb).sum())


def interpolate_spectrum(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Displacement interpolation of spectrum ``a`` towards ``b`` (both (bins,), non-negative).

    ``t = 0`` gives ``a``, ``t = 1`` gives ``b``; the total mass is ``(1 - t) sum(a) + t sum(b)``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ma, mb = float(a.sum()), float(b.sum())
    mass = (1 - t) * ma + t * mb
    if ma <= 0 or mb <= 0:  # nothing to transport: fade
        return (1 - t) * a + t * b
    fa = np.cumsum(a) / ma
    fb = np.cumsum(b) / mb
    edges = np.unique(np.concatenate([[0.0], fa, fb]).clip(0.0, 1.0))
    widths = np.diff(edges)
    mids = edges[:-1] + widths / 2
    ia = np.minimum(np.searchsorted(fa, mids), a.size - 1)
    ib = np.minimum(np.searchsorted(fb, mids), b.size - 1)
    pos = (1 - t) * ia + t * ib
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    hi = np.minimum(lo + 1, a.size - 1)
    out = np.zeros(a.size)
    np.add.at(out, lo, widths * (1 - frac))
    np.add.at(out, hi, widths * frac)
    return out * mass


def assign(source_bases: np.ndarray, target_bases: np.ndarray) -> np.ndarray:
    """For each source basis, the index of its target basis minimising the total transport cost."""
    K = source_bases.shape[1]
    cost = np.array([[transport_cost(source_bases[:, i], target_bases[:, j]) for j in range(K)] for i in range(K)])
    rows, cols = linear_sum_assignment(cost)
    pairing = np.empty(K, dtype=np.int64)
    pairing[rows] = cols
    return pairing


def _check(source_bases: object, target_bases: object, activations: object, settings: FFTSettings
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, arr in (("source_bases", source_bases), ("target_bases", target_bases), ("activations", activations)):
        try:
            a = np.asarray(arr, dtype=np.float64)
        except (TypeError, ValueError):
            raise BufNMFError(f"{name} must be a numeric array") from None
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
) -> np.ndarray:
    """Render the NMFMorph process offline.

    Args:
        source_bases, target_bases: (fft_size // 2 + 1, K) each, FluCoMa layout.
        activations: (frames, K), FluCoMa layout; one output frame per row.
        interpolation: 0..1, a number or a curve over the output (resampled per frame).
        autoassign: pair bases by minimum total transport cost (else column k with column k).
        seed: seeds the phase refinement (>= 0 reproducible).
        window_size, hop_size, fft_size: FFT settings of the bases.
        griffin_lim_iterations: phase refinement (0: phase-vocoder phase only).

    Returns:
        float64 samples, ``(frames - 1) * hop`` long.
    """
    settings = resolve_fft_settings(window_size, hop_size, fft_size)
    S, T, H = _check(source_bases, target_bases, activations, settings)
    frames = H.shape[0]
    curve = _curve(interpolation, frames)
    m = _Morpher(S, T, autoassign)
    mag = np.empty((settings.bins, frames))
    for n in range(frames):
        mag[:, n] = m.bases(float(curve[n])) @ H[n]
    n_samples = max(1, (frames - 1) * settings.hop_size)
    bins = np.arange(settings.bins)
    advance = 2 * np.pi * bins * settings.hop_size / settings.fft_size
    phase = np.outer(advance, np.arange(frames))
    return griffin_lim(mag, settings, n_samples, griffin_lim_iterations, 0.99, phase, max(seed, 0))


class NMFMorph:
    """Streaming NMFMorph: ``process(n_samples)`` returns the next ``n_samples`` of morphing sound.

    One frame per hop: interpolated bases times the next activation row (cycling), phase
    advancing by each bin's centre frequency, windowed overlap-add. ``interpolation`` may
    be changed between calls.
    """

    def __init__(self, source_bases: np.ndarray, target_bases: np.ndarray, activations: np.ndarray,
                 interpolation: float = 0.5, autoassign: bool = True, seed: int = -1, window_size: int = 1024,
                 hop_size: int = -1, fft_size: int = -1) -> None:
        self.settings = resolve_fft_settings(window_size, hop_size, fft_size)
        self.S, self.T, self.H = _check(source_bases, target_bases, activations, self.settings)
        self.interpolation = float(_curve(interpolation, 1)[0])
        self._m = _Morpher(self.S, self.T, autoassign)
        s = self.settings
        self._window = hann(s.window_size)
        self._advance = 2 * np.pi * np.arange(s.bins) * s.hop_size / s.fft_size
        rng = np.random.default_rng(None if seed < 0 else seed)
        self._phase = rng.uniform(-np.pi, np.pi, s.bins)
        self._frame = 0
        self._ola = np.zeros(s.window_size)
        self._norm = np.zeros(s.window_size)
        self._pending = np.zeros(0)

    def _next_frame(self) -> None:
        s = self.settings
        t = float(_curve(self.interpolation, 1)[0])
        mag = self._m.bases(t) @ self.H[self._frame % self.H.shape[0]]
        self._frame += 1
        self._phase = self._phase + self._advance
        seg = np.fft.irfft(mag * np.exp(1j * self._phase), n=s.fft_size)[: s.window_size] * self._window
        self._ola += seg
        self._norm += self._window**2
        h = s.hop_size
        done = self._ola[:h] / np.maximum(self._norm[:h], 1e-12)
        self._pending = np.concatenate([self._pending, done])
        self._ola = np.concatenate([self._ola[h:], np.zeros(h)])
        self._norm = np.concatenate([self._norm[h:], np.zeros(h)])

    def process(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` samples (float64)."""
        n = int(n_samples)
        if n < 0:
            raise BufNMFError(f"n_samples must be >= 0, got {n}")
        while self._pending.size < n:
            self._next_frame()
        out, self._pending = self._pending[:n], self._pending[n:]
        return out
