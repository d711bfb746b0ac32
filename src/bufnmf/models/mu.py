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

Beyond FluCoMa (keyword-only options, all off by default, so the default is FluCoMa's rule):

- ``sparsity`` λ: an L1 penalty on what each component contributes, ``λ m^(β-1) sum_k |w_k|_1
  sum_t h_kt`` added to the cost (``m`` the mean of V, which makes λ dimensionless: the result
  does not depend on the input's scale nor on how the bases are normalised). In the H step it is
  ``λ m^(β-1) |w_k|_1`` added to the denominator. **Under KL (β = 1) it only rescales H** by
  ``1 / (1 + λ)``: the model's shape, its masks and any event picked from it do not change
  (tested); it acts for β ≠ 1 only.
- ``continuity`` μ: Virtanen's (2007) temporal continuity ``μ m^β sum_k sum_t (h_kt - h_k,t-1)^2 /
  σ_k^2``, ``σ_k^2 = mean_t h_kt^2`` (scale-free in each row); its gradient's positive part goes to
  the H step's denominator, its negative part to the numerator (Virtanen's split).
- ``adapt`` p: semi-adaptive bases (Dittmar and Gärtner 2014): after each W step the learning
  bases are pulled back toward their start ``W0``, ``W <- a W0 + (1 - a) W`` with
  ``a = (1 - i / iterations)^p`` at iteration ``i`` (then renormalised): they start at the
  templates and are released gradually toward the material. ``anchored`` says which learning
  bases are pulled (free "everything else" components are not).

Solvers apart from estimators: this module knows nothing of audio. :func:`multiplicative_update`
runs from a start (see :func:`prepare_start`) with per-component update masks for W and H,
progress reports and cancelling, an optional hook applied before each H step (BufNMFCross's
constraints) and, at β = 1 without a hook or penalties, the fused numba kernels of :mod:`._kernels`.
The terms of each step (:func:`w_factor`, :func:`h_terms`, :func:`penalise_h`, :func:`blend_toward`)
are shared with the convolutive model, :mod:`.nmfd`, which applies the same rule over its
templates' frames.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    return divergence(V, W.astype(np.float64) @ H.astype(np.float64), beta)


def divergence(V: np.ndarray, model: np.ndarray, beta: float = 1.0) -> float:
    """``D_β(V | max(model, eps))`` in float64 for a model spectrogram (bins, frames) of any form."""
    WH = np.maximum(model.astype(np.float64), EPS)
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


_blas: Any = None  # threadpoolctl's controller of this process's BLAS (made once), or False


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run BLAS on one thread inside: the NumPy updates' results then do not depend on the cores.

    A BLAS matrix product splits its work over threads in blocks, and the rounding of the blocks'
    edges depends on the split: with the machine's BLAS threads the NumPy updates gave results
    differing in the last bits (up to 1e-7 of the samples) from a batch worker's, which runs one
    thread, and from another machine's. The products here are thin (K columns), where threads
    gain little. Process-wide (BLAS has no per-thread setting), restored on the way out.
    """
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency
            _blas = False
        else:
            _blas = ThreadpoolController()
    if not _blas:  # pragma: no cover - threadpoolctl missing
        yield
        return
    with _blas.limit(limits=1, user_api="blas"):
        yield


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


def _model(W: np.ndarray, H: np.ndarray, eps: np.floating, background: np.ndarray | None) -> np.ndarray:
    WH = W @ H
    if background is not None:
        WH += background
    return np.maximum(WH, eps)


def w_factor(V: np.ndarray, W: np.ndarray, H: np.ndarray, beta: float, eps: np.floating,
             background: np.ndarray | None = None) -> np.ndarray:
    """The W step's multiplicative factor, (bins, K): ``((V WH^(β-2)) H^T / max(WH^(β-1) H^T, eps))^γ``.

    ``WH`` is ``max(W H + background, eps)``; ``background`` (bins, frames) is a fixed part of the
    model (none by default).
    """
    num_r, den_r = _ratios(V, _model(W, H, eps, background), beta)
    num = num_r @ H.T
    den = np.maximum(H.sum(axis=1), eps) if den_r is None else np.maximum(den_r @ H.T, eps)
    step = num / den
    gamma = _gamma(beta)
    if gamma != 1.0:
        step **= gamma
    return step


def h_terms(V: np.ndarray, W: np.ndarray, H: np.ndarray, beta: float, eps: np.floating,
            background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The H step's numerator ``W^T (V WH^(β-2))`` (K, frames) and denominator ``W^T WH^(β-1)``
    ((K, frames), or (K, 1) at β = 1: the column sums of W), before penalties and the eps floor."""
    num_r, den_r = _ratios(V, _model(W, H, eps, background), beta)
    num = W.T @ num_r
    den = W.sum(axis=0)[:, None] if den_r is None else W.T @ den_r
    return num, den


@dataclass(frozen=True)
class Penalties:
    """Penalties on the activations (see the module docstring), made scale-free by ``scale = mean(V)``."""

    sparsity: float = 0.0
    continuity: float = 0.0
    scale: float = 1.0
    beta: float = 1.0

    @property
    def active(self) -> bool:
        return bool(self.sparsity or self.continuity)


def apply_h_step(H: np.ndarray, num: np.ndarray, den: np.ndarray, eps: np.floating, gamma: float,
                 rows: np.ndarray | None) -> None:
    """The multiplicative H step, in place: ``H *= (num / max(den, eps)) ** gamma``.

    ``H``, ``num`` and ``den`` of one shape (K, frames); ``rows``: a (K,) boolean mask of the rows
    to update, or None for all of them.
    """
    step = num / np.maximum(den, eps)
    if gamma != 1.0:
        step **= gamma
    if rows is None:
        H *= step
    else:
        H[rows] *= step[rows]


def continuity_gradients(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts of the gradient of Virtanen's temporal continuity, each (K, frames).

    ``C(H) = sum_k (T / sum_t h_kt^2) sum_t (h_kt - h_k,t-1)^2`` for T frames: positive part
    ``4 T h / sum h^2``, negative part ``2 T (h_t-1 + h_t+1) / sum h^2 + 2 T h sum d^2 / (sum h^2)^2``.
    """
    T = H.shape[1]
    sq = np.maximum(np.einsum("kt,kt->k", H, H), EPS)[:, None]
    d = np.diff(H, axis=1)
    dsum = np.einsum("kt,kt->k", d, d)[:, None]
    nb = np.zeros_like(H)
    nb[:, 1:] += H[:, :-1]
    nb[:, :-1] += H[:, 1:]
    return 4.0 * T * H / sq, 2.0 * T * nb / sq + 2.0 * T * H * dsum / (sq * sq)


def penalise_h(num: np.ndarray, den: np.ndarray, H: np.ndarray, mass: np.ndarray,
               penalties: Penalties) -> tuple[np.ndarray, np.ndarray]:
    """Add the penalties' terms to the H step's numerator and denominator.

    ``mass`` (K,): each component's basis mass ``|w_k|_1`` (NMFD: its whole template's).
    """
    if penalties.sparsity:
        den = den + (penalties.sparsity * penalties.scale ** (penalties.beta - 1.0)) * mass[:, None].astype(den.dtype)
    if penalties.continuity:
        pos, neg = continuity_gradients(H)
        weight = penalties.continuity * penalties.scale**penalties.beta
        num = num + weight * neg
        den = den + weight * pos
    return num, den


def blend_toward(W: np.ndarray, W0: np.ndarray, mask: np.ndarray, iteration: int, iterations: int,
                 adapt: float) -> None:
    """Semi-adaptive bases: ``W[:, mask] <- a W0 + (1 - a) W`` in place, ``a = (1 - iteration / iterations)^adapt``.

    ``W`` and ``W0`` (bins, K[, T]); ``mask`` (K,) the anchored bases.
    """
    if not mask.any():
        return
    a = (1.0 - iteration / iterations) ** adapt
    W[:, mask] = a * W0[:, mask] + (1.0 - a) * W[:, mask]


def check_options(beta: float, sparsity: float, continuity: float, adapt: float | None) -> None:
    """Refuse options the rule cannot run with (ValueError naming the option)."""
    for name, value in (("beta", beta), ("sparsity", sparsity), ("continuity", continuity)):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if sparsity < 0 or continuity < 0:
        raise ValueError("sparsity and continuity must be >= 0")
    if adapt is not None and not (np.isfinite(adapt) and adapt > 0):
        raise ValueError(f"adapt must be a number > 0 (or None for no anchoring), got {adapt}")


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
    sparsity: float = 0.0,
    continuity: float = 0.0,
    adapt: float | None = None,
    anchored: bool | np.ndarray = True,
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
            "numpy" (whole-matrix NumPy operations). Other β, H masks, hooks and penalties run in NumPy.
        sparsity: L1 weight on the components' contributions (dimensionless; 0: none). Under KL
            it only rescales H (see the module docstring).
        continuity: temporal-continuity weight (Virtanen 2007; dimensionless; 0: none).
        adapt: semi-adaptive bases (Dittmar and Gärtner): None, or the exponent p > 0 of the pull
            of the learning bases toward their start (see the module docstring).
        anchored: which learning bases ``adapt`` pulls: True (all), or a (K,) boolean mask.

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
    check_options(beta, float(sparsity), float(continuity), adapt)
    penalties = Penalties(float(sparsity), float(continuity),
                          float(V.mean(dtype=np.float64)) if (sparsity or continuity) else 1.0, beta)
    semi = w_mask & _mask(anchored, K) if adapt is not None else np.zeros(K, dtype=bool)
    if semi.any() and normalise_bases:  # anchors of unit norm, as the bases they are blended with (the
        norms = np.sqrt(np.einsum("ij,ij->j", W, W))  # model unchanged)
        norms = np.where(w_mask & (norms > 0), norms, 1.0).astype(dtype)
        W /= norms
        H *= norms[:, None]
    W0 = W.copy() if semi.any() else None
    fast = (beta == 1.0 and before_h is None and not penalties.active
            and (h_mask.all() or not h_mask.any()))
    chosen = resolve_kernel(kernel, (V.shape[0], V.shape[1], K, iterations)) if fast else "numpy"
    if chosen == "numba":
        return _numba(V, W, H, iterations, w_mask, bool(h_mask.any()), normalise_bases, progress, track_divergence,
                      (W0, semi, float(adapt or 0.0)))
    eps = dtype.type(EPS)
    gamma = _gamma(beta)
    learn_w, all_w = bool(w_mask.any()), bool(w_mask.all())
    learn_h, all_h = bool(h_mask.any()), bool(h_mask.all())
    divs: list[float] = []
    done = 0
    with one_blas_thread():  # (results independent of the cores: see one_blas_thread)
        for it in range(iterations):
            if learn_w:
                step = w_factor(V, W, H, beta, eps)
                if all_w:
                    W *= step
                else:
                    W[:, w_mask] *= step[:, w_mask]
                if W0 is not None:
                    blend_toward(W, W0, semi, it, iterations, float(adapt or 0.0))
                if normalise_bases:
                    _renormalise(W, w_mask, float(eps))
            if before_h is not None:
                H = np.ascontiguousarray(before_h(H, it), dtype=dtype)
            if learn_h:
                num, den = h_terms(V, W, H, beta, eps)
                if penalties.active:
                    num, den = penalise_h(num, den, H, W.sum(axis=0), penalties)
                apply_h_step(H, num, den, eps, gamma, None if all_h else h_mask)
            done = it + 1
            if track_divergence:
                divs.append(beta_divergence(V, W, H, beta))
            if progress is not None and progress(done) is False:
                break
    return NMFResult(W, H, divs, done, "numpy")


def _numba(V: np.ndarray, W: np.ndarray, H: np.ndarray, iterations: int, mask: np.ndarray, learn_h: bool,
           normalise_bases: bool, progress: ProgressFn | None, track_divergence: bool,
           anchor: tuple[np.ndarray | None, np.ndarray, float]) -> NMFResult:
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
    W0, semi, adapt = anchor
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
            if W0 is not None:
                blend_toward(W, W0, semi, it, iterations, adapt)
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
