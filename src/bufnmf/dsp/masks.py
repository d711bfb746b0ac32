"""Resynthesis of NMF components by ratio masking (pure numerics, no I/O).

Component ``k`` of a channel is the inverse STFT of ``X * min(1, W_k H_k / max(W H, eps))``
where ``X`` is the channel's complex STFT. The masks of all components sum to 1
wherever the model is above eps, so the components sum to the input. With convolutive
templates (NMFD, ``W`` of shape (bins, K, T)) ``W_k H_k`` is component k's own model,
``sum_τ W[:, k, τ] H[k, t - τ]``, and ``W H`` the sum of those.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

from .fft import EPS, FFTSettings, fft_threads, hann
from .stft import CHUNK_FRAMES, overlap_add, window_norm


def resynthesise(
    spectrum: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    settings: FFTSettings,
    num_samples: int,
    out: np.ndarray | None = None,
    release: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Audio of each component of one channel, streamed over chunks of frames.

    For each batch of frames the mask denominator ``max(W H, eps)`` is computed once, then
    the masked spectra of all components are inverted together (about 4 M values at a time)
    and overlap-added into the output; no full-size mask or masked spectrogram is ever held.
    Output rows are finished (normalised by the summed squared windows) as soon as no later
    frame reaches them.

    Args:
        spectrum: complex STFT, shape (bins, frames).
        W: bases, shape (bins, K), or convolutive templates (bins, K, T) (NMFD: component k's model
            is ``sum_τ W[:, k, τ] H[k, t - τ]``). H: activations, shape (K, frames); the unscaled model.
        settings: FFT settings of ``spectrum``.
        num_samples: output length in samples.
        out: optional float array (num_samples, K) to write into (e.g. a block of the
            caller's output buffer or a memory map).
        release: called as ``release(start, stop)`` once rows ``start..stop-1`` of ``out``
            are final (e.g. to let a memory map's pages go).

    Returns:
        Array of shape (num_samples, K) (float32 unless ``out`` says otherwise),
        component ``k`` in column ``k``.
    """
    K = W.shape[1]
    nf = spectrum.shape[1]
    if out is None:
        out = np.empty((num_samples, K), dtype=np.float32)
    real = np.float64 if spectrum.dtype == np.complex128 else np.float32
    T = W.shape[2] if W.ndim == 3 else 0  # 0: plain NMF bases
    # (K, bins), or for templates (K, T, bins)
    Wt = np.ascontiguousarray(W.T if T == 0 else W.transpose(1, 2, 0), dtype=real)
    Hr: np.ndarray = H.astype(real, copy=False)
    w, h = settings.window_size, settings.hop_size
    win = hann(w).astype(real)
    front = w // 2
    # frames per batch: all K components of a batch are masked and inverted together
    batch = int(max(8, min(CHUNK_FRAMES, 2**22 // (K * settings.fft_size))))
    zeroed = done = 0  # rows [0, zeroed) are initialised; rows [0, done) are final
    for c0 in range(0, nf, batch):
        c1 = min(nf, c0 + batch)
        m = c1 - c0
        X_t = spectrum[:, c0:c1].T  # (m, bins)
        if T:
            masks = _component_models(Hr, Wt, c0, c1)  # (K, m, bins), then in place:
            den_t = np.maximum(masks.sum(axis=0), real(EPS))
        else:
            Hc = Hr[:, c0:c1]  # (K, m)
            den_t = np.maximum(Hc.T @ Wt, real(EPS))  # (m, bins): the mask denominator, once per batch
            masks = np.multiply(Hc[:, :, None], Wt[:, None, :])  # (K, m, bins), then in place:
        np.divide(masks, den_t[None], out=masks)
        np.minimum(masks, 1.0, out=masks)
        seg = sfft.irfft(masks * X_t[None], n=settings.fft_size, axis=-1, workers=fft_threads())[:, :, :w]
        seg *= win
        span = (m - 1) * h + w
        buf = np.zeros((K, span), dtype=np.float64)
        for k in range(K):
            overlap_add(buf[k], seg[k], h)
        a = c0 * h - front  # sample position of buf[:, 0]
        s0, s1 = max(a, 0), min(a + span, num_samples)
        if s1 > zeroed:
            out[zeroed:s1] = 0
            zeroed = s1
        if s1 > s0:
            out[s0:s1] += buf[:, s0 - a : s1 - a].T
        final = num_samples if c1 == nf else min(num_samples, max(done, c1 * h - front))
        if final > zeroed:  # rows no frame reaches (a tail beyond the last window)
            out[zeroed:final] = 0
            zeroed = final
        if final > done:
            out[done:final] /= window_norm(settings, nf, done, final)[:, None]
            if release is not None:
                release(done, final)
            done = final
    return out


def _component_models(H: np.ndarray, Wt: np.ndarray, c0: int, c1: int) -> np.ndarray:
    """Each component's convolutive model over frames ``c0 .. c1 - 1``, (K, m, bins).

    ``H`` (K, frames); ``Wt`` (K, T, bins), the templates with the lag before the bins:
    ``model[k, t] = sum_τ H[k, c0 + t - τ] Wt[k, τ]`` (activations before frame 0 are zero).
    """
    K, T, _ = Wt.shape
    m = c1 - c0
    lagged = np.zeros((K, m, T), dtype=Wt.dtype)  # lagged[k, t, τ] = H[k, c0 + t - τ]
    for tau in range(T):
        lo = max(c0 - tau, 0)
        if c1 - tau > lo:
            lagged[:, lo + tau - c0 : m, tau] = H[:, lo : c1 - tau]
    return np.matmul(lagged, Wt)
