"""NMFMatch and NMFFilter: real-time decomposition against fixed bases, block by block.

Both run on the streaming engine (:mod:`bufnmf.dsp.stream`): frame ``k`` covers input samples
``[k * hop - window, k * hop)``. For each frame the activations ``h`` (K) start from uniform
[0, 1) values drawn from ``seed`` (the same for every frame) and run ``iterations`` KL updates
of ``h`` only, the bases fixed (:func:`bufnmf.models.mu.multiplicative_update`):

    h <- h * W^T (v / max(W h, eps)) / max(W^T 1, eps)

NMFMatch returns ``h`` per frame, from frame 1 on (frame 0 holds no input yet). NMFFilter masks
each frame's complex spectrum with ``min(1, W_k h_k / max(W h, eps))`` and overlap-adds every
component, so the components sum to the input delayed by ``latency == window_size`` samples.

Both are mono (one channel per object). Differences from FluCoMa: ``iterations`` is honoured
(FluCoMa's NMFMatch always does 10), frames are reported in the call that completes them
(FluCoMa's NMFMatch reports one block late), and seed -1 draws one seed for the whole stream
(reported as ``.seed``) where FluCoMa draws a fresh start every frame.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_int, real_array, resolve_seed
from ..dsp.fft import EPS, FFTSettings, resolve_fft_settings
from ..dsp.random import uniform01
from ..dsp.stream import Framer, StreamEngine
from ..errors import BufNMFError
from ..models.mu import multiplicative_update, normalise_columns
from .common import SeededArray, load_source, require_mono


class _FixedBases:
    """Shared set-up: checked, normalised bases, FFT settings, the per-frame start and the update."""

    def __init__(self, bases: np.ndarray, iterations: int, seed: int, window_size: int, hop_size: int,
                 fft_size: int) -> None:
        W = real_array("bases", bases)
        if W.ndim == 1:
            W = W.reshape(-1, 1)
        if W.ndim != 2 or W.shape[1] < 1:
            raise BufNMFError(f"bases must be 2-D (bins, components), got shape {W.shape}")
        if not np.isfinite(W).all() or (W < 0).any():
            raise BufNMFError("bases must be finite and non-negative")
        self.settings: FFTSettings = resolve_fft_settings(window_size, hop_size, fft_size)
        if W.shape[0] != self.settings.bins:
            raise BufNMFError(f"bases have {W.shape[0]} rows but fft_size {self.settings.fft_size} needs "
                              f"{self.settings.bins} (fft_size // 2 + 1): give the kit's FFT settings")
        self.iterations = as_int("iterations", iterations)
        if self.iterations < 1:
            raise BufNMFError(f"iterations must be at least 1, got {iterations}")
        self.W = normalise_columns(W.copy())
        self.K = self.W.shape[1]
        self.seed = resolve_seed(seed)
        self._h0 = uniform01(self.seed, self.K)

    def activations(self, magnitudes: np.ndarray) -> np.ndarray:
        """KL updates of h per frame: ``magnitudes`` (bins, m) -> H (K, m), float64."""
        H = np.repeat(self._h0[:, None], magnitudes.shape[1], axis=1)
        return multiplicative_update(magnitudes, self.W, H, self.iterations, update_bases=False,
                                     normalise_bases=False, kernel="numpy").activations


class NMFMatch(_FixedBases):
    """Streaming activations of fixed bases (FluCoMa's NMFMatch), one channel.

    Args:
        bases: (fft_size // 2 + 1, K) non-negative, e.g. a kit's bases; normalised to unit L2 norm.
        iterations: KL updates per frame (>= 1).
        seed: >= 0 starts every frame from the same values; -1 draws a seed (reported as ``.seed``).
        window_size, hop_size, fft_size: FFT settings in samples (FluCoMa's meanings).

    ``process(block)`` takes a mono block (n,) of any length and returns the activation frames
    the block completes, shape (frames, K), float64.
    """

    def __init__(self, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
                 hop_size: int = -1, fft_size: int = -1) -> None:
        super().__init__(bases, iterations, seed, window_size, hop_size, fft_size)
        self._framer = Framer(self.settings)

    def process(self, block: np.ndarray) -> np.ndarray:
        spectra, first = self._framer.push(block)
        if first == 0:
            spectra = spectra[1:]  # frame 0 holds no input yet
        if spectra.shape[0] == 0:
            return np.zeros((0, self.K))
        return self.activations(np.abs(spectra).T).T


class NMFFilter(_FixedBases):
    """Streaming separation of fixed bases (FluCoMa's NMFFilter), one channel.

    ``process(block)`` takes a mono block (n,) and returns float64 (n, K): each component's audio,
    delayed by ``latency`` (= window_size) samples; the components sum to the delayed input.
    """

    def __init__(self, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
                 hop_size: int = -1, fft_size: int = -1) -> None:
        super().__init__(bases, iterations, seed, window_size, hop_size, fft_size)
        self._engine = StreamEngine(self.settings, self._masked, self.K)
        self.latency = self._engine.latency
        self._emitted = 0

    def _masked(self, spectra: np.ndarray, first: int) -> np.ndarray:
        """Each component's share of each frame: complex (m, K, bins)."""
        H = self.activations(np.abs(spectra).T)  # (K, m)
        den = np.maximum(self.W @ H, EPS)  # (bins, m)
        masks = np.minimum(self.W.T[None, :, :] * (H.T[:, :, None] / den.T[:, None, :]), 1.0)  # (m, K, bins)
        return spectra[:, None, :] * masks

    def process(self, block: np.ndarray) -> np.ndarray:
        out = self._engine.process(block)
        lead = self.latency - self._emitted  # output before the stream began: silence
        if lead > 0:
            out[: min(lead, out.shape[0])] = 0.0
        self._emitted += out.shape[0]
        return out


def match(source: object, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
          hop_size: int = -1, fft_size: int = -1) -> SeededArray:
    """NMFMatch over a whole mono signal (array or file path) in one call.

    Returns:
        float64 (frames, K), frames = ``len(source) // hop``: frame ``i`` ends at sample ``(i + 1) * hop``;
        ``.seed`` is the seed used.
    """
    x = require_mono(load_source(source)[0], "match")
    m = NMFMatch(bases, iterations, seed, window_size, hop_size, fft_size)
    return SeededArray.wrap(m.process(x), m.seed)


def nmf_filter(source: object, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
               hop_size: int = -1, fft_size: int = -1) -> SeededArray:
    """NMFFilter over a whole mono signal (array or file path), latency removed.

    Returns:
        float64 (samples, K), the components, summing to the source; ``.seed`` is the seed used.
    """
    x = require_mono(load_source(source)[0], "nmf_filter")
    f = NMFFilter(bases, iterations, seed, window_size, hop_size, fft_size)
    out = f.process(np.concatenate([x, np.zeros(f.latency)]))
    return SeededArray.wrap(out[f.latency :], f.seed)
