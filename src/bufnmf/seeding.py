"""BufNMFSeed: NNDSVD starting points for NMF (Boutsidis and Gallopoulos, 2008).

The magnitude spectrogram ``V`` (bins x frames) is approximated by its truncated SVD;
each singular triplet is split into its positive and negative parts and the dominant
part becomes one non-negative basis/activation pair. The rank is given, or chosen as
the smallest that covers a fraction ``coverage`` of the singular values' energy
(sum of squared singular values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .client import validate_source
from .errors import BufNMFError
from .spectral import resolve_fft_settings, stft_complex

METHODS = ("nndsvd", "nndsvda", "nndsvdar")


@dataclass
class SeedResult:
    """NNDSVD seeds in the layouts :func:`bufnmf.decompose` takes.

    Attributes:
        bases: float32 (fft_size // 2 + 1, K).
        activations: float32 (num_frames // hop + 1, K).
        components: K. coverage: fraction of the singular-value energy the K components cover.
        window_size, hop_size, fft_size: resolved FFT settings.
    """

    bases: np.ndarray
    activations: np.ndarray
    components: int
    coverage: float
    method: str
    window_size: int
    hop_size: int
    fft_size: int


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


def nmf_seed(
    source: np.ndarray,
    components: int = -1,
    coverage: float = 0.5,
    method: str = "nndsvd",
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    seed: int = 0,
) -> SeedResult:
    """NNDSVD seeds for a mono sound, ready for ``decompose(..., bases_mode=1, act_mode=1)``.

    Args:
        source: samples (samples,) or (samples, 1).
        components: K, or -1 to choose it from ``coverage``.
        coverage: fraction (0, 1] of the singular values' energy to cover when components is -1.
        method: "nndsvd", "nndsvda" or "nndsvdar".
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings; use the same for decompose).
        seed: for "nndsvdar" only.
    """
    data = validate_source(source)
    if data.shape[1] != 1:
        raise BufNMFError(f"nmf_seed takes one channel, got {data.shape[1]}: pass source[:, chan]")
    if components != -1 and components < 1:
        raise BufNMFError(f"components must be -1 (from coverage) or at least 1, got {components}")
    if not 0 < coverage <= 1:
        raise BufNMFError(f"coverage must be in (0, 1], got {coverage}")
    s = resolve_fft_settings(window_size, hop_size, fft_size)
    V = np.abs(stft_complex(data[:, 0], s))
    S = np.linalg.svd(V, compute_uv=False)
    K = rank_for_coverage(S, coverage) if components == -1 else min(components, S.size)
    W, H = nndsvd(V, K, method, seed)
    energy = S**2
    covered = float(energy[:K].sum() / energy.sum()) if energy.sum() > 0 else 1.0
    return SeedResult(W.astype(np.float32), H.T.astype(np.float32), K, covered, method, s.window_size, s.hop_size,
                      s.fft_size)
