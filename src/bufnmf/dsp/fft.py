"""FFT settings in FluCoMa's conventions, and the analysis window.

``hop_size <= 0`` means ``window_size // 2``; ``fft_size == -1`` means the next power of two
at or above the window; bins = ``fft_size // 2 + 1``. The window is a periodic Hann.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

from ..checks import as_int
from ..errors import BufNMFError, BufNMFWarning

EPS = float(np.finfo(np.float64).eps)  # guards every division, as FluCoMa (float64 machine epsilon)

_threads = threading.local()


def fft_threads() -> int:
    """Threads each ``scipy.fft`` call of the STFT and resynthesis uses in this thread: -1 (every
    core) unless :func:`set_fft_threads` set a number (e.g. one per worker process of a batch)."""
    return int(getattr(_threads, "n", -1))


def set_fft_threads(n: int) -> int:
    """Use ``n`` FFT threads (-1: every core) in the calling thread from now on; returns the previous setting."""
    n = as_int("fft threads", n)
    if n == 0 or n < -1:
        raise BufNMFError(f"fft threads must be -1 (every core) or at least 1, got {n}")
    old = fft_threads()
    _threads.n = n
    return old


def next_pow2(n: int) -> int:
    """Smallest power of two >= ``n`` (``n >= 1``)."""
    return 1 << max(0, int(n - 1).bit_length())


@dataclass(frozen=True)
class FFTSettings:
    """Resolved FFT settings (all in samples).

    Attributes:
        window_size: analysis window length.
        hop_size: distance between frames.
        fft_size: FFT length (a power of two >= window_size).
    """

    window_size: int
    hop_size: int
    fft_size: int

    @property
    def bins(self) -> int:
        """Number of frequency bins, ``fft_size // 2 + 1``."""
        return self.fft_size // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """STFT frame count for ``num_samples`` samples: ``num_samples // hop_size + 1``."""
        return int(num_samples) // self.hop_size + 1


def resolve_fft_settings(window_size: int = 1024, hop_size: int = -1, fft_size: int = -1) -> FFTSettings:
    """Resolve FluCoMa-style FFT settings.

    ``hop_size <= 0`` means ``window_size // 2``; ``fft_size == -1`` means the next
    power of two >= ``window_size``. An explicit FFT size that is not a power of two,
    or is smaller than the window, is raised to the next power of two that is at
    least ``max(fft_size, window_size)``, with a :class:`BufNMFWarning`, as FluCoMa
    does.

    Raises:
        BufNMFError: window < 4, hop > window, or non-integer values.
    """
    window_size = as_int("window_size", window_size)
    hop_size = as_int("hop_size", hop_size)
    fft_size = as_int("fft_size", fft_size)
    if window_size < 4:
        raise BufNMFError(f"window_size must be at least 4 samples, got {window_size}")
    if window_size > 2**22:
        raise BufNMFError(f"window_size must be at most {2**22} samples, got {window_size}")
    if hop_size <= 0:
        hop_size = window_size // 2
    if hop_size > window_size:
        raise BufNMFError(
            f"hop_size ({hop_size}) must not exceed window_size ({window_size}): "
            "frames would leave gaps and the sound could not be reconstructed; "
            "use a hop of at most the window size (-1 gives window_size // 2)"
        )
    if fft_size == -1:
        fft_size = next_pow2(window_size)
    elif fft_size <= 0 and fft_size != -1:
        raise BufNMFError(f"fft_size must be -1 (automatic) or a positive integer, got {fft_size}")
    else:
        wanted = next_pow2(max(fft_size, window_size))
        if wanted != fft_size:
            warnings.warn(
                f"fft_size {fft_size} adjusted to {wanted} (FFT sizes must be powers of two "
                f"and at least the window size {window_size})",
                BufNMFWarning,
                stacklevel=3,
            )
            fft_size = wanted
    if fft_size > 2**22:
        raise BufNMFError(f"fft_size must be at most {2**22}, got {fft_size}")
    return FFTSettings(window_size, hop_size, fft_size)


def hann(window_size: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi i / N)``, float64, shape ``(N,)``."""
    i = np.arange(window_size, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * i / window_size)


