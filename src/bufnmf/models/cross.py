"""BufNMFCross's constrained activations ("Let it Bee", Driedger, Pratzlich and Muller, ISMIR 2015).

Every magnitude frame of the source is a fixed basis ``W`` (bins x Ns); activations ``H``
(Ns x Nt) are learnt with KL updates (:func:`bufnmf.models.mu.multiplicative_update`) so that
``W H`` approximates the target's magnitudes ``V`` (bins x Nt), while three constraints,
applied before each H step, tighten over the iterations ``l = 0 .. L-1`` with the paper's
damping factor ``1 - (l + 1) / L``:

* repetition (time sparsity ``r``): in each row of ``H``, entries that are not the largest
  within a centred window of ``r`` target frames are damped;
* polyphony ``p``: in each column, all but the ``p`` largest entries (ranked by
  ``H * ||w_m||^2``) are damped;
* continuity ``c``: ``H`` is smoothed along its diagonals with a length-``c`` kernel.

After the last iteration polyphony is enforced once more, exactly (continuity smoothing spreads
entries again), and ``H`` is refitted once on that support, so no target frame uses more than
``p`` source frames.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve, maximum_filter1d

from ..dsp.random import flucoma_init
from .mu import multiplicative_update


class Constraints:
    """The hook applied before each H step: ``Constraints(...)(H, iteration) -> H``.

    Args:
        W: the fixed bases (bins x Ns). iterations: L, for the damping.
        time_sparsity, polyphony, continuity: r, p, c (r and c odd, >= 1; p >= 1).
    """

    def __init__(self, W: np.ndarray, iterations: int, time_sparsity: int, polyphony: int, continuity: int) -> None:
        self.energy = np.sum(W * W, axis=0)
        self.iterations = iterations
        self.time_sparsity = time_sparsity
        self.polyphony = min(polyphony, W.shape[1])
        self.continuity = continuity
        self.kernel = np.eye(continuity)

    def __call__(self, H: np.ndarray, it: int) -> np.ndarray:
        damp = 1.0 - (it + 1) / self.iterations
        Ns = H.shape[0]
        if self.time_sparsity > 1:
            peak = maximum_filter1d(H, size=self.time_sparsity, axis=1, mode="constant")
            H = np.where(H >= peak, H, H * damp)
        if self.polyphony < Ns:
            score = H * self.energy[:, None]
            kth = np.partition(score, Ns - self.polyphony, axis=0)[Ns - self.polyphony]
            H = np.where(score >= kth[None, :], H, H * damp)
        if self.continuity > 1:
            H = convolve(H, self.kernel, mode="constant")
        return H

    def enforce_polyphony(self, H: np.ndarray) -> np.ndarray:
        """Zero all but the ``p`` best entries of each column (in place; returns ``H``)."""
        if self.polyphony < H.shape[0]:
            drop = np.argsort(-(H * self.energy[:, None]), axis=0, kind="stable")[self.polyphony :]
            np.put_along_axis(H, drop, 0.0, axis=0)
        return H


def cross_activations(W: np.ndarray, V: np.ndarray, iterations: int, time_sparsity: int, polyphony: int,
                      continuity: int, seed: int) -> np.ndarray:
    """The constrained KL updates: ``W`` (bins x Ns) fixed, ``V`` (bins x Nt); returns ``H`` (Ns x Nt), float64.

    ``seed`` (>= 0) starts ``H`` from FluCoMa's seeded uniform values.
    """
    H = flucoma_init(seed, W.shape[1], V.shape[1])
    hook = Constraints(W, iterations, time_sparsity, polyphony, continuity)
    H = multiplicative_update(V, W, H, iterations, update_bases=False, normalise_bases=False, before_h=hook,
                              kernel="numpy").activations
    if hook.polyphony < W.shape[1]:
        # The last continuity step spreads entries again: make polyphony hold exactly, then refit
        # once on that support (a multiplicative update keeps the zeros).
        H = multiplicative_update(V, W, hook.enforce_polyphony(H), 1, update_bases=False, normalise_bases=False,
                                  kernel="numpy").activations
    return H
