"""1-D optimal transport between spectra (pure numerics): NMFMorph's interpolation.

A spectrum is treated as a distribution of mass over bins. Between two such distributions on
a line, the optimal (monotone) transport pairs equal quantiles: a quantile at bin ``i`` of the
source goes to bin ``j`` of the target, and at interpolation ``t`` it sits at
``(1 - t) i + t j`` (displacement interpolation, McCann). Peaks therefore *move* in frequency
instead of cross-fading. Total mass is interpolated linearly. :func:`assign` pairs two sets of
spectra by minimum total transport cost (the Hungarian method).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


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
