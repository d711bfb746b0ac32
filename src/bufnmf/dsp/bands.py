"""Log-frequency bands: pooling STFT bins into bands a fixed fraction of an octave wide (pure numerics).

Fitting note templates in bands of 1/48 octave rather than in the bins of a long window keeps
the low notes' resolution (where bands would be narrower than bins, every bin is its own band)
and drops most of the rows at high frequencies: 4097 bins of an 8192-sample window at 44.1 kHz
become about 350 bands, and the fit is that much faster with the same notes found.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from .fft import EPS, FFTSettings


def log_bands(settings: FFTSettings, sample_rate: float, per_octave: int = 48, fmin: float = 25.0) -> csr_matrix:
    """A (bands, bins) sparse non-negative matrix pooling bins into log-spaced triangular bands.

    Band centres ``per_octave`` per octave from ``fmin`` (or from where the log spacing becomes wider
    than the bins, below which each bin is a band of its own) to Nyquist; each bin feeds at most the
    two bands around it, and the weights of every bin sum to 1, so a band holds the summed
    magnitude of its bins and the total mass of a spectrum is kept.

    Args:
        settings: the STFT's settings (for the bins' frequencies). sample_rate: Hz.
        per_octave: bands per octave (> 0). fmin: lowest log band centre, Hz.
    """
    bins = settings.bins
    df = sample_rate / settings.fft_size
    hz = np.arange(bins) * df
    ratio = 2.0 ** (1.0 / per_octave)
    switch = max(fmin, df / (ratio - 1.0))  # above this, log bands are wider than bins
    centres = list(hz[hz < switch])
    f = switch
    nyquist = sample_rate / 2
    while f < nyquist:
        centres.append(f)
        f *= ratio
    c = np.array(centres)
    lo = np.concatenate([[c[0] - df], c[:-1]])
    hi = np.concatenate([c[1:], [c[-1] + df]])
    up = (hz[None, :] - lo[:, None]) / np.maximum(c - lo, 1e-9)[:, None]
    down = (hi[:, None] - hz[None, :]) / np.maximum(hi - c, 1e-9)[:, None]
    M = np.clip(np.minimum(up, down), 0.0, 1.0)
    M /= np.maximum(M.sum(axis=0, keepdims=True), EPS)
    return csr_matrix(M)
