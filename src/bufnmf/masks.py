"""Resynthesis of NMF components by ratio masking (pure numerics, no I/O).

Component ``k`` of a channel is the inverse STFT of ``X * min(1, W_k H_k / max(W H, eps))``
where ``X`` is the channel's complex STFT. The masks of all components sum to 1
wherever the model is above eps, so the components sum to the input.
"""

from __future__ import annotations

import numpy as np

from .nmf import EPS
from .stft import FFTSettings, istft


def ratio_mask(W: np.ndarray, H: np.ndarray, k: int, denominator: np.ndarray) -> np.ndarray:
    """Soft mask of component ``k``: ``min(1, W[:, k] H[k] / denominator)``, shape (bins, frames).

    ``denominator`` is ``max(W @ H, eps)`` (bins x frames), computed once per channel.
    """
    return np.minimum(np.outer(W[:, k], H[k]) / denominator, 1.0)


def resynthesise(
    spectrum: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    settings: FFTSettings,
    num_samples: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Audio of each component of one channel.

    Components are produced one at a time, so only one masked spectrogram is held
    in memory besides ``spectrum``.

    Args:
        spectrum: complex STFT, shape (bins, frames).
        W: bases, shape (bins, K). H: activations, shape (K, frames); the unscaled model.
        settings: FFT settings of ``spectrum``.
        num_samples: output length in samples.
        out: optional float array (num_samples, K) to write into.

    Returns:
        Array of shape (num_samples, K), component ``k`` in column ``k``.
    """
    K = W.shape[1]
    if out is None:
        out = np.empty((num_samples, K), dtype=np.float64)
    W64 = W.astype(np.float64, copy=False)
    H64 = H.astype(np.float64, copy=False)
    denominator = np.maximum(W64 @ H64, EPS)
    for k in range(K):
        masked = spectrum * ratio_mask(W64, H64, k, denominator)
        out[:, k] = istft(masked, settings, num_samples)
    return out
