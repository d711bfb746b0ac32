"""BufSTFT: FluCoMa's buffer STFT and its inverse (magnitude and phase buffers).

Layout as FluCoMa's BufSTFT: rows are hops (frames), columns are bins (the transpose of
BufNMF's bases buffer). Padding per side: 0 none; 1 ``window_size // 2`` (default); 2
``window_size - hop_size``, with the padded length rounded up to a multiple of the hop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..checks import as_int, real_array
from ..dsp.fft import FFTSettings, resolve_fft_settings
from ..dsp.stft import istft as spectral_istft
from ..dsp.stft import stft_complex
from ..errors import BufNMFError
from .common import load_source, require_mono

PADDINGS = (0, 1, 2)


@dataclass(frozen=True)
class STFTLayout:
    """Where the frames of a BufSTFT lie: frame ``i`` starts at sample ``i * hop - front``."""

    settings: FFTSettings
    padding: int
    front: int
    num_frames: int
    num_samples: int


def _front(settings: FFTSettings, padding: int) -> int:
    """Zeros before the first sample: padding 0 none, 1 window // 2, 2 window - hop."""
    return {0: 0, 1: settings.window_size // 2, 2: settings.window_size - settings.hop_size}[padding]


def layout(num_samples: int, settings: FFTSettings, padding: int = 1) -> STFTLayout:
    """Frame count and front padding of a BufSTFT of ``num_samples`` samples (FluCoMa's rules)."""
    if padding not in PADDINGS:
        raise BufNMFError(f"padding must be 0 (none), 1 (window/2) or 2 (window - hop), got {padding!r}")
    w, h = settings.window_size, settings.hop_size
    front = _front(settings, padding)
    padded = num_samples + 2 * front
    if padding == 2:
        padded = -(-padded // h) * h
    if padded < w:
        raise BufNMFError(f"the source ({num_samples} samples) is shorter than one window ({w}) with padding 0: "
                          "use padding 1 or 2, or a smaller window_size")
    return STFTLayout(settings, padding, front, 1 + (padded - w) // h, num_samples)


class STFTResult(NamedTuple):
    """Magnitude and phase buffers of :func:`stft` (unpack as ``mag, phase = bufnmf.stft(x)``).

    Attributes:
        magnitude: float64 (frames, fft_size // 2 + 1), unscaled ``|rfft|``.
        phase: float64 (frames, fft_size // 2 + 1), radians in (-pi, pi].
    """

    magnitude: np.ndarray
    phase: np.ndarray


def stft(
    source: object, window_size: int = 1024, hop_size: int = -1, fft_size: int = -1, padding: int = 1
) -> STFTResult:
    """Magnitude and phase of a mono signal, FluCoMa BufSTFT layout.

    Args:
        source: mono samples, shape (samples,) (or (samples, 1)), or an audio file path.
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings).
        padding: 0, 1 or 2 (see the module docstring).

    Returns:
        :class:`STFTResult` ``(magnitude, phase)``: float64, each of shape (frames, fft_size // 2 + 1);
        phase in radians.
    """
    x = require_mono(load_source(source)[0], "stft")
    lay = layout(x.shape[0], resolve_fft_settings(window_size, hop_size, fft_size), padding)
    spec = stft_complex(x, lay.settings, np.complex128, front=lay.front, num_frames=lay.num_frames).T
    return STFTResult(np.abs(spec), np.angle(spec))


def default_length(num_frames: int, settings: FFTSettings, padding: int) -> int:
    """A source length that gives ``num_frames`` frames with this padding (the inverse's default when the
    original length is unknown: the longest for padding 0, the shortest for 1, the unpadded span for 2)."""
    w, h = settings.window_size, settings.hop_size
    if padding == 0:
        return (num_frames - 1) * h + w
    if padding == 1:
        return (num_frames - 1) * h
    return max(0, (num_frames - 1) * h + w - 2 * (w - h))


def istft(
    magnitude: np.ndarray, phase: np.ndarray, window_size: int = 1024, hop_size: int = -1, fft_size: int = -1,
    padding: int = 1, num_samples: int | None = None,
) -> np.ndarray:
    """Inverse of :func:`stft`: polar to complex, inverse FFT, windowed overlap-add, divided
    by the summed squared windows, padding trimmed.

    Args:
        magnitude, phase: (frames, fft_size // 2 + 1) each, as :func:`stft` returns.
        num_samples: output length; default the longest length with this many frames.

    Returns:
        float64 samples, shape (num_samples,).
    """
    mag = real_array("magnitude", magnitude)
    ph = real_array("phase", phase)
    if mag.ndim != 2 or ph.ndim != 2:
        raise BufNMFError(f"magnitude and phase must be 2-D (frames, bins), got shapes {mag.shape} and {ph.shape}")
    if mag.shape != ph.shape:
        raise BufNMFError(f"magnitude {mag.shape} and phase {ph.shape} must have the same shape (frames, bins)")
    s = resolve_fft_settings(window_size, hop_size, fft_size)
    if mag.shape[1] != s.bins:
        raise BufNMFError(f"magnitude has {mag.shape[1]} bins but fft_size {s.fft_size} needs {s.bins} "
                          f"(fft_size // 2 + 1): give the FFT settings used for the forward transform")
    if not (np.isfinite(mag).all() and np.isfinite(ph).all()):
        raise BufNMFError("magnitude or phase contains NaN or infinite values")
    if padding not in PADDINGS:
        raise BufNMFError(f"padding must be 0, 1 or 2, got {padding!r}")
    n = default_length(mag.shape[0], s, padding) if num_samples is None else as_int("num_samples", num_samples)
    longest = (mag.shape[0] - 1) * s.hop_size + s.window_size  # what the frames cover, padding included
    if not 0 <= n <= longest:
        raise BufNMFError(f"num_samples must be 0..{longest} (what {mag.shape[0]} frames of hop {s.hop_size} and "
                          f"window {s.window_size} cover), got {n}")
    return spectral_istft((mag * np.exp(1j * ph)).T, s, n, front=_front(s, padding))
