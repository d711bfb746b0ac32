"""KL-divergence NMF with multiplicative updates (pure numerics on arrays, no I/O).

Model: ``V ~= W H`` with ``V`` (bins x frames) non-negative, ``W`` (bins x K) the
bases and ``H`` (K x frames) the activations, minimising the generalised
Kullback-Leibler (I-)divergence

    D(V | WH) = sum( V * log(V / WH) - V + WH ).

The updates are FluCoMa's (Lee and Seung 2001), with ``eps`` the float64
machine epsilon guarding every division:

    W <- W * ((V / max(WH, eps)) H^T) / max(H 1, eps)      then unit-L2 columns of W
    H <- H * (W^T (V / max(WH, eps))) / max(1^T W, eps)    (WH recomputed after W)

Row sums of ``H`` and column sums of ``W`` replace FluCoMa's products with a full
matrix of ones (same values, a fraction of the work).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

EPS = float(np.finfo(np.float64).eps)

ProgressFn = Callable[[int], "bool | None"]


@dataclass
class NMFResult:
    """Result of :func:`nmf_kl`.

    Attributes:
        bases: ``W``, shape (bins, K), unit L2 norm per column (unless all zero).
        activations: ``H``, shape (K, frames), unscaled.
        divergences: generalised KL divergence after each iteration (empty unless asked).
        iterations: number of iterations run.
    """

    bases: np.ndarray
    activations: np.ndarray
    divergences: list[float] = field(default_factory=list)
    iterations: int = 0


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


def kl_divergence(V: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """Generalised KL divergence ``D(V | W H)`` in float64 (terms with ``V == 0`` contribute ``WH``)."""
    WH = np.maximum(W.astype(np.float64) @ H.astype(np.float64), EPS)
    V = V.astype(np.float64)
    pos = V > 0
    return float(np.sum(V[pos] * np.log(V[pos] / WH[pos])) - V.sum() + WH.sum())


def available_kernels() -> list[str]:
    """Kernels usable here: "numba" (fused, compiled, multi-threaded) when numba imports, and "numpy"."""
    from . import _kernels

    return (["numba"] if _kernels.AVAILABLE else []) + ["numpy"]


# Seconds of NumPy KL work per (cell x iteration x (K + 5)); measured on a 2-core machine.
_NUMPY_SECONDS_PER_UNIT = 0.4e-9
# Compiling the numba kernels once costs ~20 s; below this much NumPy work, NumPy is sooner.
COMPILE_PAYS_AFTER_SECONDS = 3.0


def resolve_kernel(kernel: str, work: tuple[int, int, int, int] | None = None) -> str:
    """Choose a kernel: ``"numba"``, ``"numpy"``, or ``"auto"`` (``BUFNMF_KERNEL`` overrides).

    ``"auto"`` takes numba when it is installed and either its compiled kernels are ready
    (compiled in this process or cached on disk) or the job, ``work = (bins, frames, K,
    iterations)``, is big enough to repay compiling them; otherwise NumPy, so that a first
    small run does not wait for the compiler.
    """
    import os

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
    if kernel not in ("numba", "numpy"):
        raise ValueError(f"kernel must be 'auto', 'numba' or 'numpy', got {kernel!r}")
    if kernel not in available_kernels():
        raise ValueError("kernel 'numba' is not available: install numba (pip install numba)")
    return kernel


def nmf_kl(
    V: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    iterations: int,
    update_bases: bool | np.ndarray = True,
    update_activations: bool = True,
    progress: ProgressFn | None = None,
    track_divergence: bool = False,
    kernel: str = "auto",
) -> NMFResult:
    """Run KL multiplicative updates from a prepared start (see :func:`prepare_start`).

    Args:
        V: magnitudes, shape (bins, frames), non-negative; float32 or float64 (sets the precision).
        W: start bases, shape (bins, K); updated copies are returned.
        H: start activations, shape (K, frames).
        iterations: number of iterations (each: W step, then H step).
        update_bases: True to learn all bases, False to keep them, or a boolean mask of
            shape (K,) naming the bases to learn (the others stay fixed).
        update_activations: learn the activations.
        progress: called with the number of iterations done; returning False stops early
            (the caller decides what stopping means).
        track_divergence: record the divergence after every iteration.
        kernel: "auto", "numba" (fused two-pass kernel, see :mod:`bufnmf._kernels`) or
            "numpy" (reference: whole-matrix NumPy operations).

    Returns:
        :class:`NMFResult` with float arrays in ``V``'s dtype.
    """
    V = np.ascontiguousarray(V)
    dtype = V.dtype
    W = np.array(W, dtype=dtype, order="C")
    H = np.array(H, dtype=dtype, order="C")
    K = W.shape[1]
    mask = np.array(np.broadcast_to(np.asarray(update_bases, dtype=bool), (K,)))
    if resolve_kernel(kernel, (V.shape[0], V.shape[1], K, iterations)) == "numba":
        return _nmf_numba(V, W, H, iterations, mask, update_activations, progress, track_divergence)
    learn_w = bool(mask.any())
    partial = learn_w and not bool(mask.all())
    eps = dtype.type(EPS)
    divs: list[float] = []
    done = 0
    for it in range(iterations):
        if learn_w:
            R = V / np.maximum(W @ H, eps)
            num = R @ H.T
            den = np.maximum(H.sum(axis=1), eps)
            if partial:
                W[:, mask] *= num[:, mask] / den[mask]
                if W[:, mask].max(initial=0.0) > eps:
                    sub = W[:, mask]
                    W[:, mask] = normalise_columns(sub)
            else:
                W *= num / den
                if W.max() > eps:
                    normalise_columns(W)
        if update_activations:
            R = V / np.maximum(W @ H, eps)
            H *= (W.T @ R) / np.maximum(W.sum(axis=0), eps)[:, None]
        done = it + 1
        if track_divergence:
            divs.append(kl_divergence(V, W, H))
        if progress is not None and progress(done) is False:
            break
    return NMFResult(W, H, divs, done)


def _nmf_numba(V: np.ndarray, W: np.ndarray, H: np.ndarray, iterations: int, mask: np.ndarray,
               update_activations: bool, progress: ProgressFn | None, track_divergence: bool) -> NMFResult:
    from . import _kernels as kern

    eps = EPS
    block = kern.FRAME_BLOCK
    tasks = max(1, min(kern.W_TASKS, V.shape[1] // 64))
    learn_w = bool(mask.any())
    all_w = bool(mask.all())
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
            if all_w:
                if W.max() > eps:
                    normalise_columns(W)
            else:
                sub = W[:, mask]
                if sub.max(initial=0.0) > eps:
                    W[:, mask] = normalise_columns(sub)
        if update_activations:
            kern.h_pass(V, W, H, eps, kern.H_BLOCK)
        done = it + 1
        stop = progress is not None and progress(done) is False
        if track_divergence and (not fuse or stop or done == iterations):
            divs.append(float(kern.divergence(V, W, H, eps, block)))
        if stop:
            break
    return NMFResult(W, H, divs, done)
