"""SVD starting points for NMF, as FluCoMa's BufNMFSeed makes them: pure numerics on arrays.

Boutsidis and Gallopoulos, "SVD based initialization: a head start for nonnegative matrix
factorization", Pattern Recognition 41 (2008), with FluCoMa's choices (NNDSVD.hpp).
``X`` (bins x frames, non-negative) has the thin SVD ``X = U diag(s) V^T``.

* **Rank** (:func:`coverage_rank`): the smallest ``k`` with ``sum(s[:k]) >= coverage * sum(s)``
  -- the singular values themselves, not their squares -- or ``min_components`` when coverage
  is 0; then clamped to ``[min_components, max_components]``.
* **Method 0, NMF-SVD**: ``W = |U[:, :k]|``, ``H = |diag(s) V^T|[:k]``.
* **Methods 1-3, NNDSVDar / NNDSVDa / NNDSVD**: ``W_0 = |u_0|``, ``H_0 = sqrt(s_0) |v_0|``; for
  ``j >= 1`` the positive and negative parts of ``u_j`` and ``v_j``; the pair with the larger
  product of norms ``sigma`` (the positive one only when strictly larger) gives ``W_j`` = its
  unit-norm ``u`` part and ``H_j = sqrt(s_j sigma)`` times its unit-norm ``v`` part (FluCoMa
  puts the whole scale on H).
* **Fill**, over the *whole* ``bins x max_components`` W and ``max_components x frames`` H
  (the unused components included): method 2 sets the entries below eps to ``mean(X)``;
  method 1 to uniform draws in ``[eps, 0.001 mean(X))`` from ``std::mt19937_64(seed)``, a
  fresh, identically seeded generator for W and for H, drawn lazily: one draw per entry below
  eps, in column-major order (so ``max_components`` changes H's fill); method 3 keeps zeros.

Difference from FluCoMa (a fix): NNDSVD.hpp takes the norm of ``v_j``'s negative part from
``u_j``'s negative part (``yNNorm = xN.norm()``), which makes methods 1-3 depend on the SVD's
sign convention and scales the H rows of negative-part components wrongly. Here each part has
its own norm (:func:`part_norms`), so the result does not depend on the signs.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..dsp.fft import EPS
from ..dsp.random import uniform_range
from ..errors import BufNMFWarning

#: FluCoMa's method numbers and names (NMFSeedClient.hpp).
METHOD_NAMES = ("NMF-SVD", "NNDSVDar", "NNDSVDa", "NNDSVD")


def coverage_rank(singular_values: np.ndarray, coverage: float, min_components: int = 1,
                  max_components: int = 200) -> int:
    """FluCoMa's rank: the smallest ``k`` with ``sum(s[:k]) / sum(s) >= coverage`` (``min_components`` when
    coverage is 0), clamped to ``[min_components, max_components]``.

    Runs FluCoMa's loop (``while current / total < coverage: current += s[k]; k += 1``) so that
    rounding decides ties as FluCoMa's does; it stops at the last singular value.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    k = 0
    if coverage == 0:
        k = min_components
    else:
        total = float(s.sum())
        current = 0.0
        while total > 0 and k < s.size and current / total < coverage:
            current += float(s[k])
            k += 1
    return int(min(max(k, min_components), max_components))


def part_norms(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """L2 norms of the positive and negative parts of a singular pair: ``|x+|, |y+|, |x-|, |y-|``."""
    xp, yp = np.maximum(x, 0.0), np.maximum(y, 0.0)
    xn, yn = np.maximum(-x, 0.0), np.maximum(-y, 0.0)
    return (float(np.linalg.norm(xp)), float(np.linalg.norm(yp)), float(np.linalg.norm(xn)),
            float(np.linalg.norm(yn)))


def _unit(a: np.ndarray, norm: float) -> np.ndarray:
    # FluCoMa divides unconditionally (0 / 0 = NaN for an all-zero part); zeros here
    return a / norm if norm > 0 else np.zeros_like(a)


def _fill_lazy(M: np.ndarray, seed: int, low: float, high: float) -> None:
    """Eigen's ``(M < eps).select(random, M)``: one draw per entry below eps, column-major, in place."""
    flat = M.T.reshape(-1)  # column-major order (a copy: M is C-ordered)
    where = np.flatnonzero(flat < EPS)
    if where.size:
        flat[where] = uniform_range(seed, where.size, low, high)
        M[...] = flat.reshape(M.shape[1], M.shape[0]).T


def nndsvd(
    X: np.ndarray,
    min_components: int = 1,
    max_components: int = 200,
    coverage: float = 0.5,
    method: int = 0,
    seed: int = 0,
    *,
    svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """FluCoMa's NNDSVD of a magnitude spectrogram (see the module docstring).

    Args:
        X: non-negative float64 (bins, frames).
        min_components, max_components, coverage: the rank rule (``1 <= min <= max``, ``0 <= coverage <= 1``).
        method: 0 NMF-SVD, 1 NNDSVDar, 2 NNDSVDa, 3 NNDSVD.
        seed: method 1's generator, >= 0.
        svd: ``(U, s, Vt)`` of X to use instead of ``numpy.linalg.svd(X, full_matrices=False)``.

    Returns:
        ``(W, H, k, peak)``: W float64 (bins, k), H float64 (k, frames), the rank k, and the
        largest value of the whole ``max_components x frames`` H as FluCoMa fills it (what
        BufNMFSeed divides the activations by).
    """
    X = np.asarray(X, dtype=np.float64)
    U, s, Vt = np.linalg.svd(X, full_matrices=False) if svd is None else svd
    k = coverage_rank(s, coverage, min_components, max_components)
    if k > s.size:
        warnings.warn(f"{k} components asked but the spectrogram has rank at most {s.size} (min(bins, frames)): "
                      f"using {s.size}", BufNMFWarning, stacklevel=3)
        k = s.size
    bins, frames = X.shape
    width = max(max_components, k)
    W = np.zeros((bins, k))
    H = np.zeros((k, frames))
    if method == 0:
        W[:] = np.abs(U[:, :k])
        H[:] = np.abs(s[:k, None] * Vt[:k])
        return W, H, k, float(H.max(initial=0.0))
    W[:, 0] = np.abs(U[:, 0])
    H[0] = np.sqrt(s[0]) * np.abs(Vt[0])
    for j in range(1, k):
        x, y = U[:, j], Vt[j]
        nxp, nyp, nxn, nyn = part_norms(x, y)
        mp, mn = nxp * nyp, nxn * nyn
        if mp > mn:
            u, v, sigma = _unit(np.maximum(x, 0.0), nxp), _unit(np.maximum(y, 0.0), nyp), mp
        else:
            u, v, sigma = _unit(np.maximum(-x, 0.0), nxn), _unit(np.maximum(-y, 0.0), nyn), mn
        W[:, j] = u
        H[j] = np.sqrt(s[j] * sigma) * v
    mean = float(X.mean())
    if method == 2:
        W[W < EPS] = mean
        H[H < EPS] = mean
        return W, H, k, max(float(H.max(initial=0.0)), mean if width > k else 0.0)
    if method == 1:
        low, high = EPS, 0.001 * mean
        Wf = np.zeros((bins, width))
        Wf[:, :k] = W
        _fill_lazy(Wf, seed, low, high)
        Hf = np.zeros((width, frames))
        Hf[:k] = H
        _fill_lazy(Hf, seed, low, high)
        return Wf[:, :k].copy(), Hf[:k].copy(), k, float(Hf.max(initial=0.0))
    return W, H, k, float(H.max(initial=0.0))
