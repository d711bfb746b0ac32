"""NNDSVD starting points for NMF (Boutsidis and Gallopoulos, 2008): pure numerics on arrays.

The matrix ``V`` (bins x frames) is approximated by its truncated SVD; each singular triplet
is split into its positive and negative parts and the dominant part becomes one
non-negative basis/activation pair.
"""

from __future__ import annotations

import numpy as np

from ..errors import BufNMFError

METHODS = ("nndsvd", "nndsvda", "nndsvdar")


def nndsvd(V: np.ndarray, rank: int, method: str = "nndsvd", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVD of ``V`` (m x n, non-negative): ``W`` (m x rank), ``H`` (rank x n), float64.

    ``method``: "nndsvd" keeps zeros; "nndsvda" fills zeros with the mean of V; "nndsvdar"
    fills them with uniform random values in [0, mean / 100) (``seed``).
    """
    if method not in METHODS:
        raise BufNMFError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    U, S, Vt = np.linalg.svd(V, full_matrices=False)
    rank = min(rank, S.size)
    W = np.zeros((V.shape[0], rank))
    H = np.zeros((rank, V.shape[1]))
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0] = np.sqrt(S[0]) * np.abs(Vt[0])
    for j in range(1, rank):
        x, y = U[:, j], Vt[j]
        xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
        yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
        nxp, nyp, nxn, nyn = (np.linalg.norm(a) for a in (xp, yp, xn, yn))
        mp, mn = nxp * nyp, nxn * nyn
        if mp >= mn:
            u, v, sigma = (xp / nxp if nxp else xp), (yp / nyp if nyp else yp), mp
        else:
            u, v, sigma = (xn / nxn if nxn else xn), (yn / nyn if nyn else yn), mn
        scale = np.sqrt(S[j] * sigma)
        W[:, j] = scale * u
        H[j] = scale * v
    if method != "nndsvd":
        mean = float(V.mean())
        if method == "nndsvda":
            W[W == 0] = mean
            H[H == 0] = mean
        else:
            rng = np.random.default_rng(seed)
            W[W == 0] = rng.uniform(0, mean / 100, size=int((W == 0).sum()))
            H[H == 0] = rng.uniform(0, mean / 100, size=int((H == 0).sum()))
    return W, H


def rank_for_coverage(singular_values: np.ndarray, coverage: float) -> int:
    """Smallest K whose singular values cover ``coverage`` of the energy (sum of squares)."""
    energy = np.cumsum(singular_values**2)
    if energy[-1] <= 0:
        return 1
    return int(np.searchsorted(energy / energy[-1], coverage - 1e-12) + 1)
