"""BufNMFCross: audio mosaicing, "Let it Bee" (Driedger, Pratzlich and Muller, ISMIR 2015).

Every magnitude frame of the *source* is a fixed basis; activations ``H`` (source frames x
target frames) are learnt with KL updates so that ``W H`` approximates the *target*'s
magnitudes, while three constraints tighten gradually over the iterations ``l = 0..L-1``
with the paper's damping factor ``(1 - (l + 1) / L)``:

* repetition (time sparsity ``r``): in each row of ``H``, entries that are not the largest
  within a centred window of ``r`` target frames are damped;
* polyphony ``p``: in each column, all but the ``p`` largest entries (ranked by
  ``H * ||w_m||^2``) are damped;
* continuity ``c``: ``H`` is smoothed along its diagonals with a length-``c`` kernel.

After the last iteration polyphony is enforced once more, exactly (continuity smoothing
spreads entries again), and ``H`` is refitted once on that support, so no target frame
uses more than ``p`` source frames.

FluCoMa's integer division makes its damping 1 until the last iteration and 0 there, so
its constraints act only once; bufnmf follows the paper. The sound is the complex source
frames weighted by ``H`` (their phases a starting point), whose magnitude is kept while
fast Griffin-Lim (``griffin_lim_iterations``, momentum 0.99) makes the phase consistent.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.ndimage import convolve, maximum_filter1d

from ._random import flucoma_init
from .client import mixdown, validate_source
from .errors import BufNMFError, BufNMFWarning
from .nmf import EPS
from .phase import griffin_lim
from .resources import available_memory, fmt_bytes
from .spectral import resolve_fft_settings, stft_complex


def _odd(name: str, value: int) -> int:
    value = int(value)
    if value < 1:
        raise BufNMFError(f"{name} must be an odd integer >= 1, got {value}")
    if value % 2 == 0:
        warnings.warn(f"{name} {value} rounded up to {value + 1} (it must be odd)", BufNMFWarning, stacklevel=3)
        value += 1
    return value


def cross_memory(source_frames: int, target_frames: int, bins: int) -> int:
    """Peak bytes of :func:`cross`: H and three temporaries of its size, plus the spectra."""
    return 4 * source_frames * target_frames * 8 + 6 * bins * (source_frames + target_frames) * 16


def cross_activations(W: np.ndarray, V: np.ndarray, iterations: int, time_sparsity: int, polyphony: int,
                      continuity: int, seed: int) -> np.ndarray:
    """The constrained KL updates: ``W`` (bins x Ns) fixed, ``V`` (bins x Nt); returns ``H`` (Ns x Nt)."""
    Ns, Nt = W.shape[1], V.shape[1]
    H = flucoma_init(seed if seed >= 0 else int(np.random.default_rng().integers(2**62)), Ns, Nt)
    energy = np.sum(W * W, axis=0)
    colsum = np.maximum(W.sum(axis=0), EPS)[:, None]
    kernel = np.eye(continuity)
    p = min(polyphony, Ns)
    for it in range(iterations):
        damp = 1.0 - (it + 1) / iterations
        if time_sparsity > 1:
            peak = maximum_filter1d(H, size=time_sparsity, axis=1, mode="constant")
            H = np.where(H >= peak, H, H * damp)
        if p < Ns:
            score = H * energy[:, None]
            kth = np.partition(score, Ns - p, axis=0)[Ns - p]
            H = np.where(score >= kth[None, :], H, H * damp)
        if continuity > 1:
            H = convolve(H, kernel, mode="constant")
        H *= (W.T @ (V / np.maximum(W @ H, EPS))) / colsum
    if p < Ns:
        # The last continuity step spreads entries again: make polyphony hold exactly, then refit
        # once on that support (a multiplicative update keeps the zeros).
        drop = np.argsort(-(H * energy[:, None]), axis=0, kind="stable")[p:]  # all but the p best
        np.put_along_axis(H, drop, 0.0, axis=0)
        H *= (W.T @ (V / np.maximum(W @ H, EPS))) / colsum
    return H


def cross(
    source: np.ndarray,
    target: np.ndarray,
    time_sparsity: int = 7,
    polyphony: int = 10,
    continuity: int = 7,
    iterations: int = 50,
    seed: int = -1,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    griffin_lim_iterations: int = 50,
    max_memory: int | None = None,
) -> np.ndarray:
    """Rebuild ``target`` from the spectral frames of ``source`` (BufNMFCross).

    Args:
        source, target: mono samples (samples,) (multichannel input is mixed down).
        time_sparsity, continuity: odd integers >= 1 (window lengths with a centre; even values
            are rounded up with a warning, as FluCoMa does).
        polyphony: how many source frames may sound at once (>= 1). FluCoMa also rounds this
            count up to odd (its default 10 becomes 11); bufnmf keeps the count as given.
        iterations: KL updates of the activations.
        seed: >= 0 for a reproducible start (activations and Griffin-Lim phase).
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings).
        griffin_lim_iterations: phase refinement iterations (0: the source frames' phases only).
        max_memory: refuse when the estimate exceeds this many bytes (default: available memory).

    Returns:
        float64 samples of the target's length.
    """
    src = validate_source(source)
    tgt = validate_source(target)
    src, tgt = mixdown(src), mixdown(tgt)
    if int(iterations) < 1:
        raise BufNMFError(f"iterations must be at least 1, got {iterations}")
    settings = resolve_fft_settings(window_size, hop_size, fft_size)
    Ns, Nt = settings.num_frames(src.size), settings.num_frames(tgt.size)
    time_sparsity = _odd("time_sparsity", time_sparsity)
    continuity = _odd("continuity", continuity)
    polyphony = int(polyphony)
    if polyphony < 1:
        raise BufNMFError(f"polyphony must be at least 1, got {polyphony}")
    for name, value in (("time_sparsity", time_sparsity), ("continuity", continuity)):
        if value > Nt:
            raise BufNMFError(f"{name} {value} is larger than the target's {Nt} frames: use at most {Nt} "
                              "(or a longer target / smaller hop)")
    need = cross_memory(Ns, Nt, settings.bins)
    limit = available_memory() if max_memory is None else int(max_memory)
    if need > limit:
        raise BufNMFError(
            f"cross needs about {fmt_bytes(need)}: its activations are source frames x target frames = {Ns} x {Nt}, "
            f"but {fmt_bytes(limit)} is available: use shorter sounds or a larger hop (memory grows with the "
            "product of the two lengths)"
        )
    S = stft_complex(src, settings)
    W = np.abs(S)
    V = np.abs(stft_complex(tgt, settings))
    H = cross_activations(W, V, int(iterations), time_sparsity, polyphony, continuity, seed)
    Y = S @ H
    return griffin_lim(np.abs(Y), settings, tgt.size, griffin_lim_iterations, 0.99, np.angle(Y),
                       seed if seed >= 0 else 0)
