"""BufSTFT: FluCoMa's buffer STFT and its inverse (magnitude and phase buffers), FluCoMa-exact.

Layout as FluCoMa's BufSTFT: rows are hops (frames), columns are bins (the transpose of
BufNMF's bases buffer). The selection ``source[start_frame : start_frame + num_frames]`` of
one channel gets ``P`` zeros on each side: padding 0 none; 1 ``window_size // 2`` (default);
2 ``window_size - hop_size``, with the padded length then rounded up to a multiple of the hop.
``frames = 1 + (padded length - window) // hop``; frame ``i`` is the padded signal's
``[i * hop, i * hop + window)`` times a periodic Hann, zero-padded to ``fft_size``, unscaled
real FFT. Magnitude ``|X|``, phase ``arg X`` in (-pi, pi].

The inverse (FluCoMa's ``inverse=1``) is ``irfft(mag * exp(i phase), fft)[:window] * hann``,
overlap-added, divided by the summed squared windows (floored at eps), with the first ``P``
samples dropped; it is **``(frames - 1) * hop + window - P`` samples long**, as FluCoMa's
(which does not know the original length): at least the original length with paddings 1 and
2, and equal to the original on its first ``len(x)`` samples; with padding 0 the tail past
the last whole frame is not covered.

Differences from FluCoMa (docs/flucoma-parity.md):

* ``fft_size // 2 + 1 > window_size`` (e.g. window 1000, fft 2048): FluCoMa's inverse copies
  the bins into a buffer of ``window`` values, a heap overflow that aborts. Here the inverse
  is the same as for every other size, and the round trip is exact.
* FluCoMa forms the spectrum ``std::polar(m, p)`` in float32 (its buffers' type); this forms it
  in float64. They differ by float32 rounding, visible only where the summed windows are
  tiny (the first and last ``window - hop`` samples with padding 0).
* ``start_chan`` defaults to None: the source must then be mono (the channel policy,
  docs/api.md). FluCoMa's default 0 silently takes channel 0 of a multichannel buffer.
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
from .common import load_source, span

PADDINGS = (0, 1, 2)


@dataclass(frozen=True)
class STFTLayout:
    """Where the frames of a BufSTFT lie: frame ``i`` starts at sample ``i * hop - front``."""

    settings: FFTSettings
    padding: int
    front: int
    num_frames: int
    num_samples: int


def _check_padding(padding: object) -> int:
    if isinstance(padding, (bool, np.bool_)) or not isinstance(padding, (int, np.integer)) or padding not in PADDINGS:
        raise BufNMFError(f"padding must be 0 (none), 1 (window/2) or 2 (window - hop), got {padding!r}")
    return int(padding)


def padding_per_side(settings: FFTSettings, padding: int) -> int:
    """Zeros added before (and after) the selection: padding 0 none, 1 window // 2, 2 window - hop."""
    return (0, settings.window_size // 2, settings.window_size - settings.hop_size)[_check_padding(padding)]


def layout(num_samples: int, settings: FFTSettings, padding: int = 1) -> STFTLayout:
    """Frame count and front padding of a BufSTFT of ``num_samples`` samples (FluCoMa's rules)."""
    w, h = settings.window_size, settings.hop_size
    front = padding_per_side(settings, padding)
    padded = num_samples + 2 * front
    if padding == 2:
        padded = -(-padded // h) * h
    if padded < w:
        raise BufNMFError(f"the selection ({num_samples} samples) is shorter than one window ({w}) with padding 0: "
                          "use padding 1 or 2, or a smaller window_size")
    return STFTLayout(settings, int(padding), front, 1 + (padded - w) // h, num_samples)


def inverse_length(num_frames: int, settings: FFTSettings, padding: int = 1) -> int:
    """Length of FluCoMa's inverse of ``num_frames`` frames: ``(num_frames - 1) * hop + window - P``."""
    return (num_frames - 1) * settings.hop_size + settings.window_size - padding_per_side(settings, padding)


class STFTResult(NamedTuple):
    """Magnitude and phase buffers of :func:`stft` (unpack as ``mag, phase = bufnmf.stft(x)``).

    Attributes:
        magnitude: float64 (frames, fft_size // 2 + 1), unscaled ``|rfft|``.
        phase: float64 (frames, fft_size // 2 + 1), radians in (-pi, pi].
    """

    magnitude: np.ndarray
    phase: np.ndarray


def _one_channel(data: np.ndarray, start_chan: object) -> np.ndarray:
    """The analysed channel of ``data`` (samples, channels): ``start_chan``, or the only one when None."""
    if start_chan is None:
        if data.shape[1] != 1:
            raise BufNMFError(
                f"stft takes one channel, got {data.shape[1]} in the source: pass start_chan=c (or x[:, c]) for "
                "channel c, or bufnmf.mixdown(x) for the mean of the channels"
            )
        return data[:, 0]
    c, _ = span("start_chan", "num_chans", start_chan, 1, data.shape[1], "channel(s)")
    return data[:, c]


def stft(
    source: object,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    padding: int = 1,
    start_frame: int = 0,
    num_frames: int = -1,
    start_chan: int | None = None,
) -> STFTResult:
    """Magnitude and phase of one channel, FluCoMa BufSTFT layout (see the module docstring).

    Args:
        source: samples, shape (samples,) or (samples, channels), or an audio file path.
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings: 1024, -1 = window / 2,
            -1 = next power of two).
        padding: 0, 1 (default) or 2.
        start_frame: first sample analysed (FluCoMa ``startFrame``).
        num_frames: samples analysed, -1 for the rest (FluCoMa ``numFrames``).
        start_chan: the channel analysed (FluCoMa ``startChan``); None: the source must be mono.

    Returns:
        :class:`STFTResult` ``(magnitude, phase)``: float64, each of shape (frames, fft_size // 2 + 1);
        phase in radians.

    Raises:
        BufNMFError: a range outside the source, several channels without ``start_chan``, a
            selection shorter than one window with padding 0, bad FFT settings.

    Example:
        >>> import numpy as np, bufnmf
        >>> mag, phase = bufnmf.stft(np.zeros(44100), 1024, 256)
        >>> mag.shape
        (173, 513)
    """
    data = load_source(source)[0]
    s0, n = span("start_frame", "num_frames", start_frame, num_frames, data.shape[0], "samples")
    x = _one_channel(data, start_chan)[s0 : s0 + n]
    lay = layout(n, resolve_fft_settings(window_size, hop_size, fft_size), _check_padding(padding))
    spec = stft_complex(x, lay.settings, np.complex128, front=lay.front, num_frames=lay.num_frames).T
    return STFTResult(np.abs(spec), np.angle(spec))


def istft(
    magnitude: np.ndarray, phase: np.ndarray, window_size: int = 1024, hop_size: int = -1, fft_size: int = -1,
    padding: int = 1, num_samples: int | None = None,
) -> np.ndarray:
    """Inverse of :func:`stft` (FluCoMa's BufSTFT with ``inverse=1``).

    Args:
        magnitude, phase: (frames, fft_size // 2 + 1) each, as :func:`stft` returns (float32
            buffers are read as float64).
        window_size, hop_size, fft_size, padding: those of the forward transform.
        num_samples: bufnmf option: the output length, e.g. the original's (cut, or zero-extended).
            Default: FluCoMa's, ``(frames - 1) * hop + window - P`` (see :func:`inverse_length`).

    Returns:
        float64 samples, shape (num_samples,).

    Example:
        >>> import numpy as np, bufnmf
        >>> x = np.random.default_rng(0).standard_normal(5000)
        >>> y = bufnmf.istft(*bufnmf.stft(x, 1024, 256, 1024), 1024, 256, 1024)
        >>> len(y) >= len(x), bool(np.allclose(y[: len(x)], x))
        (True, True)
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
    if mag.shape[0] < 1:
        raise BufNMFError("magnitude and phase have no frames (rows)")
    if not (np.isfinite(mag).all() and np.isfinite(ph).all()):
        raise BufNMFError("magnitude or phase contains NaN or infinite values")
    front = padding_per_side(s, padding)
    if num_samples is None:
        n = inverse_length(mag.shape[0], s, padding)
    else:
        n = as_int("num_samples", num_samples)
        # the longest source that gives this many frames (the tail past the last window is zeros)
        longest = mag.shape[0] * s.hop_size + s.window_size
        if not 0 <= n <= longest:
            raise BufNMFError(f"num_samples must be 0..{longest} (no longer source gives {mag.shape[0]} frames of hop "
                              f"{s.hop_size} and window {s.window_size}), got {n}")
    return spectral_istft((mag * np.exp(1j * ph)).T, s, n, front=front)
