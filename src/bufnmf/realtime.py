"""NMFMatch and NMFFilter: real-time decomposition against fixed bases, block by block.

Both run a streaming STFT: after every ``hop_size`` input samples, the most recent
``window_size`` samples (zeros before the stream started) form a frame, i.e. frame ``i``
covers input samples ``[(i + 1) * hop - window, (i + 1) * hop)``. For each frame the
activations ``h`` (K) start from uniform [0, 1) values (the same for every frame when
``seed >= 0``) and run ``iterations`` KL updates of ``h`` only, the bases fixed:

    h <- h * W^T (v / max(W h, eps)) / max(W^T 1, eps)

NMFMatch returns ``h`` per frame. NMFFilter masks each frame's complex spectrum with
``min(1, W_k h_k / max(W h, eps))`` and overlap-adds every component, so the components
sum to the input delayed by ``latency == window_size`` samples.

Differences from FluCoMa: ``iterations`` is honoured (FluCoMa's NMFMatch always does 10),
and frames are reported in the call that completes them (FluCoMa's NMFMatch reports one
block late).
"""

from __future__ import annotations

import numpy as np

from ._random import uniform01
from .client import validate_source
from .errors import BufNMFError
from .nmf import EPS
from .spectral import FFTSettings, hann, resolve_fft_settings


class _Streamer:
    def __init__(self, bases: np.ndarray, iterations: int, seed: int, window_size: int, hop_size: int,
                 fft_size: int) -> None:
        W = np.asarray(bases, dtype=np.float64)
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
        if int(iterations) < 1:
            raise BufNMFError(f"iterations must be at least 1, got {iterations}")
        norms = np.linalg.norm(W, axis=0)
        self.W = W / np.where(norms > 0, norms, 1.0)
        self.colsum = np.maximum(self.W.sum(axis=0), EPS)
        self.K = self.W.shape[1]
        self.iterations = int(iterations)
        self.seed = int(seed)
        self._rng = np.random.default_rng(None if seed < 0 else seed)
        self._h0 = uniform01(seed, self.K) if seed >= 0 else None
        w = self.settings.window_size
        self.window = hann(w)
        self._buf = np.zeros(w)  # the last `window` input samples
        self._fill = 0  # samples received since the last frame

    def _frames(self, block: np.ndarray) -> np.ndarray:
        """Append ``block``; return the windowed frames it completes, shape (m, window)."""
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        if not np.isfinite(x).all():
            raise BufNMFError("block contains NaN or infinite samples")
        w, h = self.settings.window_size, self.settings.hop_size
        stream = np.concatenate([self._buf, x])  # window of history, then the new samples
        first_end = w + (h - self._fill)  # where the next frame ends in `stream`
        ends = np.arange(first_end, stream.size + 1, h)
        out = np.stack([stream[e - w : e] for e in ends]) * self.window if ends.size else np.zeros((0, w))
        self._buf = stream[-w:]
        self._fill = (self._fill + x.size) % h
        return out

    def _activations(self, spectra: np.ndarray) -> np.ndarray:
        """KL updates of h per frame; ``spectra`` (bins, m) magnitudes -> H (K, m)."""
        m = spectra.shape[1]
        if self._h0 is not None:
            H = np.repeat(self._h0[:, None], m, axis=1)
        else:
            H = self._rng.random((self.K, m))
        W = self.W
        for _ in range(self.iterations):
            H *= (W.T @ (spectra / np.maximum(W @ H, EPS))) / self.colsum[:, None]
        return H


class NMFMatch(_Streamer):
    """Streaming activations of fixed bases (FluCoMa's NMFMatch).

    Args:
        bases: (fft_size // 2 + 1, K) non-negative, e.g. a kit's bases; normalised to unit L2 norm.
        iterations: KL updates per frame (>= 1).
        seed: >= 0 starts every frame from the same values; -1 a fresh random start each frame.
        window_size, hop_size, fft_size: FFT settings in samples (FluCoMa's meanings).

    ``process(block)`` takes any number of samples and returns the activation frames the
    block completes, shape (frames, K), float64.
    """

    def __init__(self, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
                 hop_size: int = -1, fft_size: int = -1) -> None:
        super().__init__(bases, iterations, seed, window_size, hop_size, fft_size)

    def process(self, block: np.ndarray) -> np.ndarray:
        fr = self._frames(block)
        if fr.shape[0] == 0:
            return np.zeros((0, self.K))
        mags = np.abs(np.fft.rfft(fr, n=self.settings.fft_size, axis=1)).T
        return self._activations(mags).T


class NMFFilter(_Streamer):
    """Streaming separation of fixed bases (FluCoMa's NMFFilter).

    ``process(block)`` returns an array of shape (len(block), K): each component's audio,
    delayed by ``latency`` (= window_size) samples; the components sum to the delayed input.
    """

    def __init__(self, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
                 hop_size: int = -1, fft_size: int = -1) -> None:
        super().__init__(bases, iterations, seed, window_size, hop_size, fft_size)
        w = self.settings.window_size
        self.latency = w
        # Overlap-add buffers over input positions [E - window, E), E = end of the newest frame
        # (0 before the first): their first `hop` samples are already final.
        self._ola = np.zeros((w, self.K))
        self._norm = np.zeros(w)
        # Final samples not yet returned; the first one is input position -window (the latency).
        self._ready = np.zeros((0, self.K))
        self._skip = 0  # leading samples of the buffer already returned (peeked)
        self._emitted = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        n_in = np.asarray(block).size
        w, h = self.settings.window_size, self.settings.hop_size
        fr = self._frames(block)
        finished = [self._ready]
        if fr.shape[0]:
            spec = np.fft.rfft(fr, n=self.settings.fft_size, axis=1).T  # (bins, m)
            H = self._activations(np.abs(spec))
            den = np.maximum(self.W @ H, EPS)
            win2 = self.window**2
            for j in range(fr.shape[0]):
                finished.append(self._shift(h)[self._skip :])
                self._skip = 0
                masks = np.minimum(self.W * (H[:, j] / den[:, j][:, None]), 1.0)  # (bins, K)
                seg = np.fft.irfft(spec[:, j][:, None] * masks, n=self.settings.fft_size, axis=0)[:w]
                self._ola += seg * self.window[:, None]
                self._norm += win2
        ready = np.concatenate(finished)
        if ready.shape[0] >= n_in:
            out, self._ready = ready[:n_in], ready[n_in:]
        else:  # the rest is final already, though still in the buffer: peek at it
            extra = n_in - ready.shape[0]
            out = np.concatenate([ready, self._peek(h)[self._skip : self._skip + extra]])
            self._skip += extra
            self._ready = ready[:0]
        lead = self.latency - self._emitted  # samples before the stream began: silence
        if lead > 0:
            out[: min(lead, n_in)] = 0.0
        self._emitted += n_in
        return out

    def _peek(self, n: int) -> np.ndarray:
        return self._ola[:n] / np.maximum(self._norm[:n], EPS)[:, None]

    def _shift(self, n: int) -> np.ndarray:
        """Pop the ``n`` final samples (normalised) and move the buffers on by ``n``."""
        out = self._peek(n)
        self._ola = np.concatenate([self._ola[n:], np.zeros((n, self.K))])
        self._norm = np.concatenate([self._norm[n:], np.zeros(n)])
        return out


def _mono_source(source: np.ndarray, who: str) -> np.ndarray:
    data = validate_source(source)
    if data.shape[1] != 1:
        raise BufNMFError(f"{who} takes a mono signal, got {data.shape[1]} channels: pass source[:, chan] "
                          "or a mixdown")
    return data[:, 0]


def match(source: np.ndarray, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
          hop_size: int = -1, fft_size: int = -1) -> np.ndarray:
    """NMFMatch over a whole mono signal in one call: (frames, K), frames = ``len(source) // hop``."""
    x = _mono_source(source, "match")
    return NMFMatch(bases, iterations, seed, window_size, hop_size, fft_size).process(x)


def nmf_filter(source: np.ndarray, bases: np.ndarray, iterations: int = 10, seed: int = -1, window_size: int = 1024,
               hop_size: int = -1, fft_size: int = -1) -> np.ndarray:
    """NMFFilter over a whole mono signal, latency removed: (samples, K), summing to the source."""
    x = _mono_source(source, "nmf_filter")
    f = NMFFilter(bases, iterations, seed, window_size, hop_size, fft_size)
    out = f.process(np.concatenate([x, np.zeros(f.latency)]))
    return out[f.latency :]
