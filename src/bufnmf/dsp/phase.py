"""Phase for magnitude-only spectrograms: fast Griffin-Lim (Perraudin, Balazs and Sondergaard, 2013)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import Cancelled
from .fft import FFTSettings
from .stft import istft, stft_complex


def griffin_lim(
    magnitude: np.ndarray, settings: FFTSettings, num_samples: int, iterations: int = 50, momentum: float = 0.9,
    init_phase: np.ndarray | None = None, seed: int = 0, progress: Callable[[int], bool | None] | None = None,
) -> np.ndarray:
    """A signal whose STFT magnitude approaches ``magnitude`` (bins x frames, BufNMF framing).

    Fast Griffin-Lim: each iteration projects onto consistent spectrograms (ISTFT then STFT)
    and extrapolates with ``momentum`` (0 gives plain Griffin-Lim). The default 0.9 is FluCoMa's
    (GriffinLim.hpp's ``t_n - 0.9 / 1.9 t_(n-1)``, normalised, is this update with alpha 0.9). Starts from
    ``init_phase`` (radians, bins x frames) or from uniform random phase (``seed``).

    ``progress(done)`` is called after each iteration; returning False raises :class:`bufnmf.Cancelled`.

    Returns:
        float64 samples, shape (num_samples,).
    """
    mag = np.asarray(magnitude, dtype=np.float64)
    if init_phase is None:
        init_phase = np.random.default_rng(seed).uniform(-np.pi, np.pi, mag.shape)
    spec = mag * np.exp(1j * init_phase)
    prev = np.zeros_like(spec)
    for it in range(max(0, iterations)):
        proj = stft_complex(istft(spec, settings, num_samples), settings)
        spec_new = proj + momentum * (proj - prev)
        prev = proj
        spec = mag * np.exp(1j * np.angle(spec_new))
        if progress is not None and progress(it + 1) is False:
            raise Cancelled(f"cancelled by the progress callback after {it + 1} of {iterations} Griffin-Lim iterations")
    return istft(spec, settings, num_samples)
