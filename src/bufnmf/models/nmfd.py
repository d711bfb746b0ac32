r"""NMF deconvolution (NMFD, Smaragdis 2004): components that are spectrogram snippets, not spectra.

Model: ``V ~= Λ = sum_τ W[:, :, τ] shift(H, τ)`` with ``V`` (bins x frames), templates ``W``
(bins x K x T: component ``k`` is the T-frame spectrogram ``W[:, k, :]``) and activations ``H``
(K x frames); ``shift(H, τ)`` moves H right by τ frames (zeros shifted in). With T = 1 it is NMF.
A drum hit is one activation peak with its whole decay in the template, instead of an activation
that has to follow the decay frame by frame.

This is a second model, not a second rule: each step applies the β-divergence multiplicative
update of :mod:`.mu` (its :func:`~.mu.w_factor`, :func:`~.mu.h_terms`, penalties and
semi-adaptive pull) to the convolutive model, all T lags in one product each way: the templates
side by side, ``(bins, T K)``, against the activations stacked with their shifts,
``(T K, frames)`` (:func:`stack_shifts`). The W step is the NMF W step of that stacked problem;
the H step sums the NMF H step's terms over the lags (:func:`unstack_shifts`, the adjoint of
the stacking: the exact multiplicative update of the convolutive model; libnmfd averages
per-lag updates instead):

    W_τ <- W_τ * ((V Λ^(β-2)) shift(H, τ)^T / (Λ^(β-1) shift(H, τ)^T))^γ
    H   <- H * (sum_τ W_τ^T shift(V Λ^(β-2), -τ) / sum_τ W_τ^T shift(Λ^(β-1), -τ))^γ

Templates are normalised to unit L2 norm each (over bins and frames together) after a W step.
``background`` (bins x frames) is a fixed part of the model, used by :class:`OnlineNMFD` for
the decays of activations already committed.
"""

from __future__ import annotations

import numpy as np

from ..dsp.fft import EPS
from .mu import (
    NMFResult,
    Penalties,
    ProgressFn,
    _gamma,
    _mask,
    apply_h_step,
    blend_toward,
    check_options,
    divergence,
    h_terms,
    multiplicative_update,
    one_blas_thread,
    penalise_h,
    w_factor,
)


def stack_shifts(H: np.ndarray, T: int) -> np.ndarray:
    """(T K, frames): row ``τ K + k`` is ``H[k]`` shifted right by τ frames (zeros shifted in)."""
    K, n = H.shape
    S = np.zeros((T, K, n), dtype=H.dtype)
    for tau in range(min(T, n)):
        S[tau, :, tau:] = H[:, : n - tau]
    return S.reshape(T * K, n)


def unstack_shifts(G: np.ndarray, T: int, K: int) -> np.ndarray:
    """The adjoint of :func:`stack_shifts`: ``sum_τ`` of row block τ shifted left by τ, (K, frames)."""
    n = G.shape[1]
    G3 = G.reshape(T, K, n)
    out = G3[0].copy()
    for tau in range(1, min(T, n)):
        out[:, : n - tau] += G3[tau, :, tau:]
    return out


def flat(W: np.ndarray) -> np.ndarray:
    """Templates side by side: (bins, K, T) -> (bins, T K), column ``τ K + k`` is ``W[:, k, τ]``."""
    return np.ascontiguousarray(W.transpose(0, 2, 1).reshape(W.shape[0], -1))


def conv_model(W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """``Λ = sum_τ W[:, :, τ] shift(H, τ)``: W (bins, K, T), H (K, frames) -> (bins, frames)."""
    return flat(W) @ stack_shifts(H, W.shape[2])


def component_model(W: np.ndarray, H: np.ndarray, k: int) -> np.ndarray:
    """Component ``k``'s own model spectrogram (bins, frames): its template convolved with its activation."""
    return conv_model(W[:, k : k + 1], H[k : k + 1])


def template_mass(W: np.ndarray) -> np.ndarray:
    """Each template's L1 mass, (K,): its magnitudes summed over bins and frames."""
    return W.sum(axis=(0, 2))


def normalise_templates(W: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Scale each template ``W[:, k, :]`` (of those in ``mask``) to unit L2 norm in place; zero ones stay zero."""
    norms = np.sqrt(np.einsum("fkt,fkt->k", W, W))
    scale = np.where(norms > 0, norms, 1.0)
    if mask is not None:
        scale = np.where(mask, scale, 1.0)
    W /= scale[None, :, None]
    return W


def nmfd_update(
    V: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    iterations: int,
    *,
    beta: float = 1.0,
    update_bases: bool | np.ndarray = True,
    update_activations: bool | np.ndarray = True,
    normalise_bases: bool = True,
    progress: ProgressFn | None = None,
    track_divergence: bool = False,
    sparsity: float = 0.0,
    adapt: float | None = None,
    anchored: bool | np.ndarray = True,
    background: np.ndarray | None = None,
    continuity: float = 0.0,
) -> NMFResult:
    """Multiplicative β-divergence updates of the convolutive model from a start.

    Args:
        V: magnitudes (bins, frames), non-negative; float32 or float64 (sets the precision).
        W: start templates (bins, K, T), non-negative. H: start activations (K, frames).
        iterations: W step then H step, this many times.
        beta, update_bases, update_activations, progress, track_divergence, sparsity, continuity,
            adapt, anchored: as :func:`bufnmf.models.mu.multiplicative_update` (masks are per component).
        normalise_bases: scale the learnt templates to unit L2 norm after each W step.
        background: a fixed part of the model, (bins, frames), or None.

    Returns:
        :class:`~.mu.NMFResult` with ``bases`` (bins, K, T) and ``activations`` (K, frames) in
        ``V``'s dtype, ``kernel`` "numpy".
    """
    V = np.ascontiguousarray(V)
    dtype = V.dtype
    W = np.array(W, dtype=dtype, order="C")
    H = np.array(H, dtype=dtype, order="C")
    bins, K, T = W.shape
    w_mask = _mask(update_bases, K)
    h_mask = _mask(update_activations, K)
    beta = float(beta)
    check_options(beta, float(sparsity), float(continuity), adapt)
    scale = float(V.mean(dtype=np.float64)) if sparsity or continuity else 1.0
    penalties = Penalties(float(sparsity), float(continuity), scale, beta)
    semi = w_mask & _mask(anchored, K) if adapt is not None else np.zeros(K, dtype=bool)
    if normalise_bases and w_mask.any():  # start from unit templates (the model unchanged), so the
        norms = np.sqrt(np.einsum("fkt,fkt->k", W, W))  # pull toward them compares like with like
        norms = np.where(w_mask & (norms > 0), norms, 1.0)
        W /= norms[None, :, None]
        H *= norms[:, None].astype(dtype)
    W0 = W.copy() if semi.any() else None
    bg = None if background is None else np.asarray(background, dtype=dtype)
    eps = dtype.type(EPS)
    gamma = _gamma(beta)
    learn_w, learn_h, all_h = bool(w_mask.any()), bool(h_mask.any()), bool(h_mask.all())
    Wf = flat(W)
    divs: list[float] = []
    done = 0
    with one_blas_thread():  # (results independent of the cores: see one_blas_thread)
        for it in range(iterations):
            if learn_w:
                step = w_factor(V, Wf, stack_shifts(H, T), beta, eps, bg).reshape(bins, T, K).transpose(0, 2, 1)
                W[:, w_mask] *= step[:, w_mask]
                if W0 is not None:
                    blend_toward(W, W0, semi, it, iterations, float(adapt or 0.0))
                if normalise_bases:
                    normalise_templates(W, w_mask)
                Wf = flat(W)
            if learn_h:
                num_s, den_s = h_terms(V, Wf, stack_shifts(H, T), beta, eps, bg)
                num = unstack_shifts(num_s, T, K)
                den = unstack_shifts(np.broadcast_to(den_s, num_s.shape), T, K)
                if penalties.active:
                    num, den = penalise_h(num, den, H, template_mass(W), penalties)
                apply_h_step(H, num, den, eps, gamma, None if all_h else h_mask)
            done = it + 1
            if track_divergence:
                model = Wf @ stack_shifts(H, T)
                if bg is not None:
                    model += bg
                divs.append(divergence(V, model, beta))
            if progress is not None and progress(done) is False:
                break
    return NMFResult(W, H, divs, done, "numpy")


class OnlineNMFD:
    """Activations of fixed templates frame by frame, each frame decided with ``lookahead`` frames of future.

    A causal NMFD: when frame ``t + lookahead`` arrives, the activations of frames
    ``t .. t + lookahead`` are fitted (:func:`nmfd_update`, templates fixed) to those frames, with
    the decays of the activations already committed (frames before ``t``) as a fixed
    ``background``; then frame ``t``'s activation is committed and never changes. The others
    start the next fit where this one left them; a new frame starts at its magnitude mass
    divided among the components. Every frame goes through the same computation whatever the
    blocks it arrived in, so the activations do not depend on them.

    With T = 1 and no lookahead the frames are independent (plain NMF with fixed bases): they
    are fitted together, as many as have arrived, through
    :func:`~.mu.multiplicative_update`.

    Args:
        W: templates (bins, K, T), non-negative (normalised here to unit L1 mass each, so the
            activations are magnitude mass).
        iterations: updates per fit. lookahead: frames of future each frame is decided with.
        beta: the divergence. dtype: of the arithmetic.
    """

    def __init__(self, W: np.ndarray, iterations: int = 30, lookahead: int = 1, beta: float = 1.0,
                 dtype: type = np.float64) -> None:
        W64: np.ndarray = np.maximum(np.asarray(W, dtype=np.float64), EPS)
        W64 /= template_mass(W64)[None, :, None]
        self.W: np.ndarray = W64.astype(dtype)
        self.bins, self.K, self.T = W64.shape
        self.iterations = int(iterations)
        self.lookahead = int(lookahead) if self.T > 1 else 0
        self.beta = float(beta)
        self.dtype = np.dtype(dtype)
        self._Wf = flat(self.W)
        self._frames = np.zeros((self.bins, 0), dtype=self.dtype)  # frames received, not yet committed
        self._pending = np.zeros((self.K, 0), dtype=self.dtype)  # estimates of those frames
        self._past = np.zeros((self.K, max(self.T - 1, 0)), dtype=self.dtype)  # last T-1 committed
        self.committed = 0

    def _start(self, V: np.ndarray) -> np.ndarray:
        return np.repeat((V.sum(axis=0, dtype=np.float64) / self.K)[None, :], self.K, axis=0).astype(self.dtype)

    def push(self, V: np.ndarray) -> np.ndarray:
        """Add frames (bins, m); returns the activations committed by them, (K, m') in order."""
        V = np.asarray(V, dtype=self.dtype)
        if self.T == 1:
            if V.shape[1] == 0:
                return np.zeros((self.K, 0), dtype=self.dtype)
            H = multiplicative_update(V, self.W[:, :, 0], np.maximum(self._start(V), EPS), self.iterations,
                                      beta=self.beta, update_bases=False, normalise_bases=False,
                                      kernel="numpy").activations
            self.committed += V.shape[1]
            return H
        out = []
        for j in range(V.shape[1]):
            self._frames = np.concatenate([self._frames, V[:, j : j + 1]], axis=1)
            self._pending = np.concatenate([self._pending, self._start(V[:, j : j + 1])], axis=1)
            if self._frames.shape[1] > self.lookahead:
                out.append(self._commit())
        if not out:
            return np.zeros((self.K, 0), dtype=self.dtype)
        return np.concatenate(out, axis=1)

    def flush(self) -> np.ndarray:
        """Commit the frames still waiting for their lookahead (the stream has ended)."""
        out = []
        while self._frames.shape[1]:
            out.append(self._commit())
        return np.concatenate(out, axis=1) if out else np.zeros((self.K, 0), dtype=self.dtype)

    def _commit(self) -> np.ndarray:
        n = self._frames.shape[1]
        T = self.T
        # the committed past's decays over these frames: past frames -(T-1) .. -1 stacked with zeros after
        past = np.concatenate([self._past, np.zeros((self.K, n), dtype=self.dtype)], axis=1)
        bg = (self._Wf @ stack_shifts(past, T))[:, T - 1 :]
        res = nmfd_update(self._frames, self.W, np.maximum(self._pending, EPS), self.iterations, beta=self.beta,
                          update_bases=False, normalise_bases=False, background=bg)
        H = res.activations
        h = H[:, :1]
        self._past = np.concatenate([self._past, h], axis=1)[:, 1:]
        self._frames = self._frames[:, 1:]
        self._pending = H[:, 1:]
        self.committed += 1
        return h
