"""Short-time Fourier transform in FluCoMa's conventions (pure numerics, no I/O).

FluCoMa's BufNMF chain: periodic Hann window, the signal zero-padded by
``window_size // 2`` in front, frame ``i`` starting at ``i * hop_size`` of the
padded signal, ``num_samples // hop_size + 1`` frames, magnitudes ``|rfft|``
without scaling. The inverse is window-weighted overlap-add divided by the sum
of squared windows, so ``istft(stft(x)) == x`` wherever the windows overlap.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from .fft import EPS, FFTSettings, fft_threads, hann

CHUNK_FRAMES = 1024  # frames per chunk: bounds the temporaries of the STFT and its inverse


def frame_chunk(
    signal: np.ndarray, settings: FFTSettings, c0: int, c1: int, real: type, front: int | None = None
) -> np.ndarray:
    """Unwindowed frames ``c0..c1-1``, shape (c1 - c0, window_size).

    Frame ``i`` starts at sample ``i * hop - front`` (``front`` defaults to BufNMF's
    ``window_size // 2``); samples outside the signal are zeros.
    """
    w, h = settings.window_size, settings.hop_size
    front = w // 2 if front is None else front
    a = c0 * h - front
    b = (c1 - 1) * h + w - front
    piece: np.ndarray = np.zeros(b - a, dtype=real)
    s0, s1 = max(a, 0), min(b, signal.shape[0])
    if s1 > s0:
        piece[s0 - a : s1 - a] = signal[s0:s1]
    return sliding_window_view(piece, w)[::h][: c1 - c0]


def stft_complex(
    signal: np.ndarray, settings: FFTSettings, dtype: type = np.complex128, out: np.ndarray | None = None,
    front: int | None = None, num_frames: int | None = None,
) -> np.ndarray:
    """Complex STFT of a mono signal, computed in chunks of frames (no full-size temporaries).

    Args:
        signal: real samples, shape ``(num_samples,)``; any real dtype, any stride.
        settings: resolved FFT settings.
        dtype: complex dtype of the result (complex128: float64 arithmetic; complex64: float32).
        out: optional array of shape (bins, num_frames) and ``dtype`` to fill.
        front, num_frames: frame ``i`` starts at sample ``i * hop - front``; defaults are
            BufNMF's (``window_size // 2`` and ``num_samples // hop + 1``); BufSTFT's paddings
            set their own.

    Returns:
        Complex array, shape ``(bins, num_frames)`` (bins = ``fft_size // 2 + 1``).
    """
    real = np.float64 if np.dtype(dtype) == np.complex128 else np.float32
    nf = settings.num_frames(signal.shape[0]) if num_frames is None else num_frames
    spec = np.empty((settings.bins, nf), dtype=dtype) if out is None else out
    win = hann(settings.window_size).astype(real)
    for c0 in range(0, nf, CHUNK_FRAMES):
        c1 = min(nf, c0 + CHUNK_FRAMES)
        seg = frame_chunk(signal, settings, c0, c1, real, front) * win
        spec[:, c0:c1] = sfft.rfft(seg, n=settings.fft_size, axis=1, workers=fft_threads()).T
    return spec


def overlap_add_frames(
    seg: np.ndarray, first_frame: int, settings: FFTSettings, out: np.ndarray, offset: int = 0,
    front: int | None = None,
) -> None:
    """Overlap-add windowed frames into the signal's own sample positions (padding trimmed).

    Args:
        seg: frames ``first_frame ..``, shape (m, window_size).
        first_frame: index of the first row of ``seg``.
        settings: FFT settings.
        out: 1-D array holding samples ``offset .. offset + len(out) - 1``; added into.
        offset: the sample position of ``out[0]``.
        front: frame ``i`` starts at sample ``i * hop - front`` (default ``window_size // 2``).
    """
    w, h = settings.window_size, settings.hop_size
    m = seg.shape[0]
    a = first_frame * h - (w // 2 if front is None else front)
    buf = np.zeros((m - 1) * h + w, dtype=np.float64)
    overlap_add(buf, seg, h)
    s0, s1 = max(a, offset), min(a + buf.shape[0], offset + out.shape[0])
    if s1 > s0:
        out[s0 - offset : s1 - offset] += buf[s0 - a : s1 - a]


def window_norm(settings: FFTSettings, num_frames: int, start: int, stop: int, front: int | None = None) -> np.ndarray:
    """Sum of squared windows over samples ``start..stop-1`` (float64), floored at eps."""
    w, h = settings.window_size, settings.hop_size
    front = w // 2 if front is None else front
    p0, p1 = start + front, stop + front  # padded positions
    j0 = max(0, (p0 - w) // h + 1)
    j1 = min(num_frames, (p1 - 1) // h + 1)
    out = np.zeros(stop - start, dtype=np.float64)
    if j1 > j0:
        overlap_add_frames(np.broadcast_to(hann(w) ** 2, (j1 - j0, w)), j0, settings, out, offset=start, front=front)
    return np.maximum(out, EPS)


def normalise_overlap_add(out: np.ndarray, settings: FFTSettings, num_frames: int, front: int | None = None) -> None:
    """Divide ``out`` (num_samples,) or (num_samples, K) in place by the summed squared windows."""
    n = out.shape[0]
    step = CHUNK_FRAMES * settings.hop_size
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        norm = window_norm(settings, num_frames, s0, s1, front)
        if out.ndim == 2:
            out[s0:s1] /= norm[:, None]
        else:
            out[s0:s1] /= norm


def istft(spec: np.ndarray, settings: FFTSettings, num_samples: int, dtype: type = np.float64,
          front: int | None = None) -> np.ndarray:
    """Inverse of :func:`stft_complex`: overlap-add divided by the summed squared windows.

    Args:
        spec: complex, shape ``(bins, num_frames)``.
        settings: the settings used for the forward transform.
        num_samples: length of the output in samples.
        dtype: real dtype of the output.
        front: as for :func:`stft_complex`.

    Returns:
        Real array, shape ``(num_samples,)``.
    """
    nf = spec.shape[1]
    win = hann(settings.window_size)
    out = np.zeros(num_samples, dtype=np.float64)
    for c0 in range(0, nf, CHUNK_FRAMES):
        c1 = min(nf, c0 + CHUNK_FRAMES)
        seg = sfft.irfft(spec[:, c0:c1].T, n=settings.fft_size, axis=1, workers=fft_threads())
        seg = seg[:, : settings.window_size] * win
        overlap_add_frames(seg, c0, settings, out, front=front)
    normalise_overlap_add(out, settings, nf, front=front)
    return out.astype(dtype, copy=False)


def overlap_add(out: np.ndarray, seg: np.ndarray, hop: int) -> None:
    """Add rows of ``seg`` (frames x window) into ``out`` at multiples of ``hop``.

    Frames are zero-extended to a multiple of the hop, then split into groups of
    frames that do not overlap each other; each group is one vectorised add.
    ``out`` must hold at least ``(frames - 1) * hop + window`` samples.
    """
    _nf, w = seg.shape
    r = -(-w // hop)
    span = r * hop
    for j in range(r):
        rows = seg[j::r]
        count = rows.shape[0]
        if count == 0:
            continue
        start = j * hop
        stop = min(start + count * span, out.shape[0])
        full = (stop - start) // span  # groups that fit whole
        if full:
            view = out[start : start + full * span].reshape(full, span)
            view[:, :w] += rows[:full]
        for i in range(full, count):  # at most one trailing frame
            a = start + i * span
            out[a : a + w] += rows[i]
