"""NMFMatch and NMFFilter: real-time decomposition against fixed bases, block by block, FluCoMa-exact.

Both run on the streaming engine (:mod:`bufnmf.dsp.stream`): frame ``k = 0, 1, ...`` covers input
samples ``[k * hop - window, k * hop)``, zeros before the stream began, so frame 0 is silent and a
whole signal of ``n`` samples makes ``n // hop + 1`` frames. Per frame (FluCoMa's
``NMF::processFrame``): the bases are clamped to eps and scaled to unit L2 norm; ``v = max(|X|, eps)``;
``h`` starts from uniform [0, 1) values drawn from ``std::mt19937_64(seed)`` (the same for every
frame), clamped to eps, and runs ``iterations`` KL updates of ``h`` only, the bases fixed, through
:func:`bufnmf.models.mu.multiplicative_update`:

    h <- h * W^T (v / max(W h, eps)) / max(W^T 1, eps)

NMFMatch returns ``h`` per frame. NMFFilter masks each frame's complex spectrum with
``min(1, W_k h_k / max(W h, eps))`` and overlap-adds every component, so the components sum to
the input delayed by ``latency == window_size`` samples.

``max_components`` (FluCoMa's ``maxComponents``, 20) fixes the output width: with K bases the
first ``min(K, max_components)`` are used, the other outputs are zeros and bases beyond
``max_components`` are ignored. ``max_components=None`` (a bufnmf option) makes the width K.
Bases can be swapped between blocks (``set_bases``), as FluCoMa re-reads its bases buffer every
block: frames computed after the call use them; NMFFilter's overlap-add of earlier frames still
sounds.

Both are mono (one channel per object). Differences from FluCoMa (docs/flucoma-parity.md):
``iterations`` is honoured (FluCoMa's NMFMatch always does 10); frames are returned by the call
whose samples complete them (FluCoMa's NMFMatch reports a block later); seed -1 draws one seed
for the whole stream (reported as ``.seed``) where FluCoMa draws a fresh start every frame;
invalid bases raise where FluCoMa falls silent; after a swap to fewer bases NMFFilter's unused
outputs are silent (FluCoMa's keep repeating their last frame); NMFFilter's output before the
stream began (the first ``latency`` samples) is zeros.
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

#: FluCoMa's default ``maxComponents`` for NMFMatch and NMFFilter.
DEFAULT_MAX_COMPONENTS = 20


class _FixedBases:
    """Shared set-up: FFT settings, output width, seed, the checked bases and the per-frame update."""

    def __init__(self, bases: np.ndarray, max_components: int | None, iterations: int, seed: int,
                 window_size: int, hop_size: int, fft_size: int) -> None:
        self.settings: FFTSettings = resolve_fft_settings(window_size, hop_size, fft_size)
        if max_components is not None:
            max_components = as_int("max_components", max_components)
            if max_components < 1:
                raise BufNMFError(f"max_components must be at least 1 (or None for one output per basis), "
                                  f"got {max_components}")
        self.max_components = max_components
        self.iterations = as_int("iterations", iterations)
        if self.iterations < 1:
            raise BufNMFError(f"iterations must be at least 1, got {iterations}")
        self.seed = resolve_seed(seed)
        self.W = np.zeros((self.settings.bins, 0))
        self.set_bases(bases)
        self.width = self.rank if max_components is None else max_components

    @property
    def rank(self) -> int:
        """Bases in use: ``min(K, max_components)``."""
        return int(self.W.shape[1])

    def set_bases(self, bases: np.ndarray) -> None:
        """Use these bases, (fft_size // 2 + 1, K) non-negative, for every frame from now on.

        With ``max_components=None`` the number of bases cannot change (it is the output width).
        """
        W = np.array(real_array("bases", bases))  # a copy: clamped and normalised below
        if W.ndim == 1:
            W = W.reshape(-1, 1)
        if W.ndim != 2 or W.shape[1] < 1:
            raise BufNMFError(f"bases must be 2-D (bins, components), got shape {W.shape}")
        if not np.isfinite(W).all() or (W < 0).any():
            raise BufNMFError("bases must be finite and non-negative")
        if W.shape[0] != self.settings.bins:
            raise BufNMFError(f"bases have {W.shape[0]} rows but fft_size {self.settings.fft_size} needs "
                              f"{self.settings.bins} (fft_size // 2 + 1): give the kit's FFT settings")
        if self.max_components is None:
            if self.W.shape[1] and W.shape[1] != self.W.shape[1]:
                raise BufNMFError(f"these bases have {W.shape[1]} components but the stream has {self.W.shape[1]} "
                                  "outputs (max_components=None): give as many, or make the object with "
                                  "max_components=N to swap between different counts")
        else:
            W = W[:, : self.max_components]
        self.W = normalise_columns(np.maximum(W, EPS))
        self._h0 = np.maximum(uniform01(self.seed, self.rank), EPS)

    def activations(self, magnitudes: np.ndarray) -> np.ndarray:
        """KL updates of h per frame: ``magnitudes`` float64 (bins, m) -> H float64 (rank, m)."""
        H = np.repeat(self._h0[:, None], magnitudes.shape[1], axis=1)
        return multiplicative_update(np.maximum(magnitudes, EPS), self.W, H, self.iterations, update_bases=False,
                                     normalise_bases=False, kernel="numpy").activations


class NMFMatch(_FixedBases):
    """Streaming activations of fixed bases (FluCoMa's NMFMatch), one channel.

    Args:
        bases: (fft_size // 2 + 1, K) non-negative, e.g. a kit's bases; clamped to eps and normalised
            to unit L2 norm.
        max_components: the output width (FluCoMa ``maxComponents``, 20): the first
            ``min(K, max_components)`` bases are matched, the other columns are zeros; None: K.
        iterations: KL updates per frame (>= 1).
        seed: >= 0 starts every frame from FluCoMa's values for that seed; -1 draws a seed (reported
            as ``.seed``).
        window_size, hop_size, fft_size: FFT settings in samples (FluCoMa's meanings).

    ``process(block)`` takes a mono block (n,) of any length and returns the activation frames the
    block completes, float64 (frames, width); the first call returns frame 0 (before any input) too.
    ``set_bases(bases)`` swaps the bases between blocks.
    """

    def __init__(self, bases: np.ndarray, max_components: int | None = DEFAULT_MAX_COMPONENTS, iterations: int = 10,
                 seed: int = -1, window_size: int = 1024, hop_size: int = -1, fft_size: int = -1) -> None:
        super().__init__(bases, max_components, iterations, seed, window_size, hop_size, fft_size)
        self._framer = Framer(self.settings)

    def process(self, block: np.ndarray) -> np.ndarray:
        spectra, _ = self._framer.push(block)
        out = np.zeros((spectra.shape[0], self.width))
        if spectra.shape[0]:
            out[:, : self.rank] = self.activations(np.abs(spectra).T).T
        return out


class NMFFilter(_FixedBases):
    """Streaming separation by fixed bases (FluCoMa's NMFFilter), one channel.

    Args: as :class:`NMFMatch`.

    ``process(block)`` takes a mono block (n,) and returns float64 (n, width): each component's
    audio, delayed by ``latency`` (= window_size) samples; the components sum to the delayed input.
    """

    def __init__(self, bases: np.ndarray, max_components: int | None = DEFAULT_MAX_COMPONENTS, iterations: int = 10,
                 seed: int = -1, window_size: int = 1024, hop_size: int = -1, fft_size: int = -1) -> None:
        super().__init__(bases, max_components, iterations, seed, window_size, hop_size, fft_size)
        self._engine = StreamEngine(self.settings, self._masked, self.width)
        self.latency = self._engine.latency
        self._emitted = 0

    def _masked(self, spectra: np.ndarray, first: int) -> np.ndarray:
        """Each component's share of each frame: complex (m, width, bins)."""
        H = self.activations(np.abs(spectra).T)  # (rank, m)
        den = np.maximum(self.W @ H, EPS)  # (bins, m)
        masks = np.minimum(self.W.T[None, :, :] * (H.T[:, :, None] / den.T[:, None, :]), 1.0)  # (m, rank, bins)
        out = np.zeros((spectra.shape[0], self.width, spectra.shape[1]), dtype=np.complex128)
        out[:, : self.rank] = spectra[:, None, :] * masks
        return out

    def process(self, block: np.ndarray) -> np.ndarray:
        out = self._engine.process(block)
        lead = self.latency - self._emitted  # output before the stream began: silence
        if lead > 0:
            out[: min(lead, out.shape[0])] = 0.0
        self._emitted += out.shape[0]
        return out


def match(source: object, bases: np.ndarray, max_components: int | None = DEFAULT_MAX_COMPONENTS,
          iterations: int = 10, seed: int = -1, window_size: int = 1024, hop_size: int = -1,
          fft_size: int = -1) -> SeededArray:
    """NMFMatch over a whole mono signal (array or file path) in one call.

    Returns:
        float64 (num_samples // hop + 1, width) (a :class:`bufnmf.SeededArray`, ``.seed`` the seed used):
        frame ``k`` covers samples ``[k * hop - window, k * hop)`` (frame 0 holds no input yet).

    Example:
        >>> import numpy as np, bufnmf
        >>> W = np.abs(np.random.default_rng(0).standard_normal((513, 3)))
        >>> bufnmf.match(np.zeros(44100), W).shape, bufnmf.match(np.zeros(44100), W, max_components=None).shape
        ((87, 20), (87, 3))
    """
    x = require_mono(load_source(source)[0], "match")
    m = NMFMatch(bases, max_components, iterations, seed, window_size, hop_size, fft_size)
    return SeededArray.wrap(m.process(x), m.seed)


def nmf_filter(source: object, bases: np.ndarray, max_components: int | None = DEFAULT_MAX_COMPONENTS,
               iterations: int = 10, seed: int = -1, window_size: int = 1024, hop_size: int = -1,
               fft_size: int = -1) -> SeededArray:
    """NMFFilter over a whole mono signal (array or file path), latency removed.

    Returns:
        float64 (num_samples, width), the components, summing to the source (unused outputs are
        zeros); ``.seed`` is the seed used.
    """
    x = require_mono(load_source(source)[0], "nmf_filter")
    f = NMFFilter(bases, max_components, iterations, seed, window_size, hop_size, fft_size)
    out = f.process(np.concatenate([x, np.zeros(f.latency)]))
    return SeededArray.wrap(out[f.latency :], f.seed)
