r"""Multiplicative updates for NMF with β-divergences: the one update rule of bufnmf.

Model: ``V ~= W H`` with ``V`` (bins x frames) non-negative, ``W`` (bins x K) the bases and
``H`` (K x frames) the activations, minimising the β-divergence (Févotte and Idier 2011)

    D_β(V | WH) = sum( (V^β + (β - 1) WH^β - β V WH^(β-1)) / (β (β - 1)) )

which is the generalised Kullback-Leibler (I-)divergence ``sum(V log(V / WH) - V + WH)`` at
β = 1 (FluCoMa's, the default), Itakura-Saito ``sum(V / WH - log(V / WH) - 1)`` at β = 0 and
half the squared Euclidean distance at β = 2. Every division is guarded by ``eps``, the float64
machine epsilon (FluCoMa's choice): ``WH`` below is ``max(W H, eps)``.

One iteration is a W step, then an H step (``WH`` recomputed in between):

    W <- W * ((V WH^(β-2)) H^T / max(WH^(β-1) H^T, eps))^γ     then unit-L2 columns of W
    H <- H * (W^T (V WH^(β-2)) / max(W^T WH^(β-1), eps))^γ

with γ = 1 for 1 <= β <= 2, 1 / (2 - β) below and 1 / (β - 1) above (the exponents that make
the updates monotone, as scikit-learn's ``_nmf.py``). At β = 1 these are FluCoMa's updates
exactly (Lee and Seung 2001): the denominators are the row sums of H and the column sums of W.
Bases are renormalised only when ``max(W) > eps``, as FluCoMa does; H is never renormalised.

Solvers apart from estimators: this module knows nothing of audio. :func:`multiplicative_update`
runs from a start (see :func:`prepare_start`) with per-component update masks for W and H,
progress reports and cancelling, an optional hook applied before each H step (BufNMFCross's
constraints) and, at β = 1 without a hook, the fused numba kernels of :mod:`._kernels`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..dsp.fft import EPS

ProgressFn = Callable[[int], "bool | None"]
#: ``hook(H, iteration)`` -> H, applied before each H step (may return a new array).
HHook = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class NMFResult:
    """Result of :func:`multiplicative_update`.

    Attributes:
        bases: ``W``, shape (bins, K), unit L2 norm per learnt column (unless all zero).
        activations: ``H``, shape (K, frames), unscaled.
        divergences: the β-divergence after each iteration (empty unless asked).
        iterations: number of iterations run (fewer than asked when cancelled).
        kernel: "numba" or "numpy", the implementation that ran.
    """

    bases: np.ndarray
    activations: np.ndarray
    divergences: list[float] = field(default_factory=list)
    iterations: int = 0
    kernel: str = "numpy"


def normalise_columns(W: np.ndarray) -> np.ndarray:
    """Scale each column of ``W`` (rows x K) to unit L2 norm in place; zero columns stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->j", W, W))
    W /= np.where(norms > 0, norms, 1.0)
    return W


def prepare_start(W: np.ndarray, H: np.ndarray, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """FluCoMa's start: copies of ``W`` (bins x K) and ``H`` (K x frames), clamped to eps, unit L2 norm.

    Each basis (column of ``W``) and each activation (row of ``H``) is normalised.
    The inputs are not modified.
    """
    W = np.maximum(np.asarray(W, dtype=np.float64), EPS)
    H = np.maximum(np.asarray(H, dtype=np.float64), EPS)
    normalise_columns(W)
    normalise_columns(H.T)
    return np.ascontiguousarray(W, dtype=dtype), np.ascontiguousarray(H, dtype=dtype)


def beta_divergence(V: np.ndarray, W: np.ndarray, H: np.ndarray, beta: float = 1.0) -> float:
    """``D_β(V | max(W H, eps))`` in float64 (see the module docstring).

    At β = 1, terms with ``V == 0`` contribute ``WH``; at β <= 0, ``V`` is floored at eps.
    """
    WH = np.maximum(W.astype(np.float64) @ H.astype(np.float64), EPS)
    V = V.astype(np.float64)
    if beta == 1:
        pos = V > 0
        return float(np.sum(V[pos] * np.log(V[pos] / WH[pos])) - V.sum() + WH.sum())
    if beta == 2:
        return float(0.5 * np.sum((V - WH) ** 2))
    if beta == 0:
        ratio = np.maximum(V, EPS) / WH
        return float(np.sum(ratio - np.log(ratio) - 1.0))
    Vb = np.maximum(V, EPS) if beta < 0 else V
    return float(np.sum(Vb**beta + (beta - 1) * WH**beta - beta * Vb * WH ** (beta - 1)) / (beta * (beta - 1)))


def kl_divergence(V: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """Generalised KL divergence ``D(V | W H)`` in float64: :func:`beta_divergence` at β = 1."""
    return beta_divergence(V, W, H, 1.0)


def available_kernels() -> list[str]:
    """Kernels usable here: "numba" (fused, compiled, multi-threaded) when numba imports, and "numpy"."""
    from . import _kernels

    return (["numba"] if _kernels.AVAILABLE else []) + ["numpy"]


# Seconds of NumPy KL work per (cell x iteration x (K + 5)); measured on a 2-core machine.
_NUMPY_SECONDS_PER_UNIT = 0.4e-9
# Compiling the numba kernels once costs ~20 s; below this much NumPy work, NumPy is sooner.
COMPILE_PAYS_AFTER_SECONDS = 3.0
KERNELS = ("auto", "numba", "numpy")


def resolve_kernel(kernel: str, work: tuple[int, int, int, int] | None = None) -> str:
    """Choose a kernel: ``"numba"``, ``"numpy"``, or ``"auto"`` (``BUFNMF_KERNEL`` overrides).

    ``"auto"`` takes numba when it is installed and either its compiled kernels are ready
    (compiled in this process or cached on disk) or the job, ``work = (bins, frames, K,
    iterations)``, is big enough to repay compiling them; otherwise NumPy, so that a first
    small run does not wait for the compiler.

    Raises:
        ValueError: an unknown name, or "numba" where numba is not installed.
    """
    from . import _kernels

    if kernel == "auto":
        kernel = os.environ.get("BUFNMF_KERNEL", "auto")
    if kernel == "auto":
        if not _kernels.AVAILABLE:
            return "numpy"
        if work is None or _kernels.compiled():
            return "numba"
        bins, frames, K, iterations = work
        numpy_seconds = bins * frames * iterations * (K + 5) * _NUMPY_SECONDS_PER_UNIT
        return "numba" if numpy_seconds > COMPILE_PAYS_AFTER_SECONDS else "numpy"
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be 'auto', 'numba' or 'numpy', got {kernel!r}")
    if kernel not in available_kernels():
        raise ValueError("kernel 'numba' is not available: install numba (pip install numba)")
    return kernel


def _mask(update: bool | np.ndarray, K: int) -> np.ndarray:
    return np.array(np.broadcast_to(np.asarray(update, dtype=bool), (K,)))


def _gamma(beta: float) -> float:
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def _ratios(V: np.ndarray, WH: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(V WH^(β-2), WH^(β-1)); the second is None at β = 1 (a matrix of ones)."""
    if beta == 1:
        return V / WH, None
    if beta == 2:
        return V, WH
    if beta == 0:
        inv = 1.0 / WH
        return V * inv * inv, inv
    return V * WH ** (beta - 2), WH ** (beta - 1)


def _renormalise(W: np.ndarray, mask: np.ndarray, eps: float) -> None:
    if mask.all():
        if W.max() > eps:
            normalise_columns(W)
        return
    sub = W[:, mask]
    if sub.max(initial=0.0) > eps:
        W[:, mask] = normalise_columns(sub)


def multiplicative_update(
    V: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    iterations: int,
    *,
    beta: float = 1.0,
    update_bases: bool | np.ndarray = True,
    update_activations: bool | np.ndarray = True,
    normalise_bases: bool = True,
    before_h: HHook | None = None,
    progress: ProgressFn | None = None,
    track_divergence: bool = False,
    kernel: str = "auto",
) -> NMFResult:
    """Run multiplicative β-divergence updates from a start (see :func:`prepare_start`).

    Args:
        V: magnitudes, shape (bins, frames), non-negative; float32 or float64 (sets the precision).
        W: start bases, shape (bins, K); updated copies are returned.
        H: start activations, shape (K, frames).
        iterations: number of iterations (each: W step, then H step).
        beta: the divergence, 0 (Itakura-Saito) .. 1 (KL, FluCoMa's) .. 2 (Euclidean); any real.
        update_bases: True to learn all bases, False to keep them, or a boolean mask (K,) naming
            the bases to learn (the others stay fixed).
        update_activations: the same for the rows of ``H``.
        normalise_bases: rescale the learnt bases to unit L2 norm after each W step (FluCoMa).
        before_h: ``before_h(H, iteration)`` returns the H to update, before each H step
            (e.g. BufNMFCross's constraints).
        progress: called with the number of iterations done; returning False stops early
            (the caller decides what stopping means: see ``NMFResult.iterations``).
        track_divergence: record the divergence after every iteration.
        kernel: "auto", "numba" (fused two-pass kernels, β = 1 only, see :mod:`._kernels`) or
            "numpy" (whole-matrix NumPy operations). Other β, H masks and hooks run in NumPy.

    Returns:
        :class:`NMFResult` with float arrays in ``V``'s dtype.
    """
    V = np.ascontiguousarray(V)
    dtype = V.dtype
    W = np.array(W, dtype=dtype, order="C")
    H = np.array(H, dtype=dtype, order="C")
    K = W.shape[1]
    w_mask = _mask(update_bases, K)
    h_mask = _mask(update_activations, K)
    beta = float(beta)
    fast = beta == 1.0 and before_h is None and (h_mask.all() or not h_mask.any())
    chosen = resolve_kernel(kernel, (V.shape[0], V.shape[1], K, iterations)) if fast else "numpy"
    if chosen == "numba":
        return _numba(V, W, H, iterations, w_mask, bool(h_mask.any()), normalise_bases, progress, track_divergence)
    eps = dtype.type(EPS)
    gamma = _gamma(beta)
    learn_w, all_w = bool(w_mask.any()), bool(w_mask.all())
    learn_h, all_h = bool(h_mask.any()), bool(h_mask.all())
    divs: list[float] = []
    done = 0
    for it in range(iterations):
        if learn_w:
            num_r, den_r = _ratios(V, np.maximum(W @ H, eps), beta)
            num = num_r @ H.T
            den = np.maximum(H.sum(axis=1), eps) if den_r is None else np.maximum(den_r @ H.T, eps)
            step = num / den
            if gamma != 1.0:
                step **= gamma
            if all_w:
                W *= step
            else:
                W[:, w_mask] *= step[:, w_mask]
            if normalise_bases:
                _renormalise(W, w_mask, float(eps))
        if before_h is not None:
            H = np.ascontiguousarray(before_h(H, it), dtype=dtype)
        if learn_h:
            num_r, den_r = _ratios(V, np.maximum(W @ H, eps), beta)
            num = W.T @ num_r
            den = np.maximum(W.sum(axis=0), eps)[:, None] if den_r is None else np.maximum(W.T @ den_r, eps)
            step = num / den
            if gamma != 1.0:
                step **= gamma
            if all_h:
                H *= step
            else:
                H[h_mask] *= step[h_mask]
        done = it + 1
        if track_divergence:
            divs.append(beta_divergence(V, W, H, beta))
        if progress is not None and progress(done) is False:
            break
    return NMFResult(W, H, divs, done, "numpy")


def _numba(V: np.ndarray, W: np.ndarray, H: np.ndarray, iterations: int, mask: np.ndarray, learn_h: bool,
           normalise_bases: bool, progress: ProgressFn | None, track_divergence: bool) -> NMFResult:
    """β = 1 through the fused kernels: the same updates as the NumPy loop, to float rounding."""
    from . import _kernels as kern

    eps = EPS
    block = kern.FRAME_BLOCK
    tasks = max(1, min(kern.W_TASKS, V.shape[1] // 64))
    learn_w = bool(mask.any())
    divs: list[float] = []
    done = 0
    # D(V | WH) = sum V log(V / max(WH, eps)) - sum V + sum max(WH, eps). The W pass of iteration
    # i + 1 computes V / max(WH, eps) for the state after iteration i anyway, so it adds the first
    # term on the way; the last is sum_k (column sums of W)_k (row sums of H)_k (to eps, where WH
    # is below eps: 1e-16 per such cell). Only the final state needs a pass of its own.
    fuse = track_divergence and learn_w
    v_sum = float(V.sum(dtype=np.float64)) if fuse else 0.0

    def model_sum() -> float:
        return float(W.sum(axis=0, dtype=np.float64) @ H.sum(axis=1, dtype=np.float64))

    for it in range(iterations):
        if learn_w:
            want = fuse and it > 0
            wh_sum = model_sum() if want else 0.0
            vlog = kern.w_pass(V, W, H, mask, eps, tasks, block, want)
            if want:
                divs.append(float(vlog) - v_sum + wh_sum)
            if normalise_bases:
                _renormalise(W, mask, eps)
        if learn_h:
            kern.h_pass(V, W, H, eps, kern.H_BLOCK)
        done = it + 1
        stop = progress is not None and progress(done) is False
        if track_divergence and (not fuse or stop or done == iterations):
            divs.append(float(kern.divergence(V, W, H, eps, block)))
        if stop:
            break
    return NMFResult(W, H, divs, done, "numba")
