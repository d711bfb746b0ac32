"""FluCoMa's sinusoidal model as a frame processor: spectra in, the sines part of the spectra out.

:class:`SinesProcessor` is FluCoMa's ``algorithm::SineExtraction`` with its ``PartialTracking``
(flucoma-core 0626d7a): per analysis frame it detects the peaks of the dB spectrum (parabolic
interpolation), tracks them into partials (greedy or Hungarian matching), draws each long-enough
track's peak as the Hann window's transform over ``bandwidth`` bins, and splits the spectrum queued
``min_track_len`` frames earlier with the ratio mask ``min(1, drawn / |X|)``. It runs on the
streaming engine (:class:`bufnmf.dsp.stream.StreamEngine`, ``latency_frames = min_track_len``):
frames arrive in batches of any size, in order, and every bit of the result is independent of the
batching. The numerics are the numba kernels of :mod:`._sines_kernels`.

Framing (the engine's): analysis frame ``k`` is the unscaled ``rfft(frame_k * hann, fft_size)`` of
samples ``[k * hop - window, k * hop)`` of the stream; the first frame a processor sees is frame 0.

FluCoMa's three defects are switches of :class:`SinesConfig` (each True reproduces FluCoMa):

- ``mask_offset``: FluCoMa masks the spectrum of frame ``k - L`` with the track peaks of frame
  ``k + 1 - L`` (``getActivePeaks`` runs after the frame counter moved on). False: the peaks of the
  frame that is masked.
- ``stale_max_amp``: FluCoMa's Hungarian tracker keeps an older frame's loudest level as the
  "previous" one after a frame without peaks (and 0 dB at the start), so the next births are judged
  against the wrong level. False: the previous frame's own level.
- ``table_interp``: FluCoMa's linear interpolation in the window-transform table divides the slope
  by the table step, wrong when the table is larger than the FFT (a real-time object created with a
  larger ``maxFFTSize``). False: plain linear interpolation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _sines_kernels as kern
from .fft import hann


@dataclass(frozen=True)
class SinesConfig:
    """Resolved settings of the sinusoidal model (checked by :mod:`bufnmf.clients.sines`).

    Attributes:
        window_size, hop_size, fft_size: samples (resolved: no -1 here).
        bandwidth: bins over which each peak's window transform is drawn.
        detection_threshold: dB; peaks at or below it are ignored.
        birth_low_threshold, birth_high_threshold: dB relative to the frame's loudest bin: the
            level a new track needs at 0 Hz and at high frequencies.
        min_track_len: frames; shorter tracks are not synthesised; also the extra latency in hops.
        track_method: 0 greedy, 1 Hungarian.
        track_mag_range: dB; track_freq_range: Hz: scales of the matching cost.
        track_prob: matching probability, 0..1.
        sample_rate: Hz.
        table_size: length of the window-transform table (FluCoMa's ``maxFFTSize``; ``fft_size`` for
            the buffer object).
        mask_offset, stale_max_amp, table_interp: FluCoMa's defects (see the module docstring);
            True reproduces FluCoMa.
    """

    window_size: int = 1024
    hop_size: int = 512
    fft_size: int = 1024
    bandwidth: int = 76
    detection_threshold: float = -96.0
    birth_low_threshold: float = -24.0
    birth_high_threshold: float = -60.0
    min_track_len: int = 15
    track_method: int = 0
    track_mag_range: float = 15.0
    track_freq_range: float = 50.0
    track_prob: float = 0.5
    sample_rate: float = 44100.0
    table_size: int = 1024
    mask_offset: bool = False
    stale_max_amp: bool = False
    table_interp: bool = False

    @property
    def bins(self) -> int:
        """Spectrum length, ``fft_size // 2 + 1``."""
        return self.fft_size // 2 + 1

    @property
    def latency(self) -> int:
        """Streaming latency, samples: ``window + hop * min_track_len`` (SinesClient.hpp:117-121)."""
        return self.window_size + self.hop_size * self.min_track_len

    @property
    def max_peaks(self) -> int:
        """The most peaks a frame can hold (strict local maxima of ``bins`` values)."""
        return self.bins // 2 + 1

    def state_bytes(self) -> int:
        """Bytes of the tracker's queue: ``min_track_len + 1`` frames of spectra, magnitudes and peaks."""
        return (self.min_track_len + 1) * (self.bins * 24 + self.max_peaks * 32) + self.table_size * 8


def window_transform_table(window_size: int, table_size: int) -> np.ndarray:
    """``SineExtraction::computeWindowTransform``: float64 (table_size,), ``tab[T/2 + i] = tab[T/2 - i]
    = |rfft(hann(window), T)[i]|`` for ``0 <= i < T/2``, ``tab[0] = 0``."""
    t = np.abs(np.fft.rfft(hann(window_size), table_size))
    half = table_size // 2
    tab = np.zeros(table_size)
    tab[half:] = t[:half]
    tab[1 : half + 1] = t[:half][::-1]
    return tab


#: Columns of :meth:`SinesProcessor.take_track_points`.
TRACK_POINT_COLUMNS = ("call", "frame", "track_id", "freq_hz", "mag_db")


class SinesProcessor:
    """FluCoMa's SineExtraction for a stream of analysis frames, in batches of any size.

    Args:
        config: the settings.
        record_peaks: also keep every frame's detected peaks (:meth:`take_peaks`).

    Call :meth:`process` (or the engine's ``processor(spectra, first)``) with the spectra of frames
    ``0, 1, 2, ...`` in order. Output frame ``k`` is the sines part of analysis frame
    ``k - min_track_len`` (zeros for ``k < min_track_len``).
    """

    def __init__(self, config: SinesConfig, *, record_peaks: bool = False) -> None:
        s = config
        self.config = s
        self.record_peaks = bool(record_peaks)
        self._bins = s.bins
        self._max_peaks = s.max_peaks
        self._scale = 1.0 / (s.window_size / 4.0)
        # PartialTracking::updateVariances: var = -zeta^2 * log((d - 1) / (d - 2)) (inf for d = 1)
        with np.errstate(divide="ignore"):
            lg = float(np.log(np.float64(s.track_prob - 1.0) / np.float64(s.track_prob - 2.0)))
        self._var_a = -(s.track_mag_range * s.track_mag_range) * lg  # g++ folds pow(x, 2) to x * x
        self._var_f = -(s.track_freq_range * s.track_freq_range) * lg
        # a greedy pair passes only if dF^2/varF < ln((2-d)/(1-d)) = -lg, i.e. |dF| < zetaF * -lg:
        # only peaks inside that window (plus a safety margin) are scored
        self._freq_window = s.track_freq_range * -lg * (1.0 + 1e-6) + 1e-9 if math.isfinite(lg) else math.inf
        # Hungarian: pairs further apart than this have dF^2/varF >= 38, so 1 - exp(-x) == 1 exactly
        self._band_hz = math.sqrt(38.0 * self._var_f) * (1.0 + 1e-9) if math.isfinite(self._var_f) else math.inf
        self._tab = window_transform_table(s.window_size, s.table_size)
        self._incr = float(s.table_size // (s.bins - 1) // 2)
        self._inv_incr = 1.0 / self._incr if s.table_interp else 1.0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything: the next call's first spectrum is analysis frame 0."""
        s = self.config
        ring = s.min_track_len + 1
        self._ist = np.zeros(4, dtype=np.int64)
        self._ist[kern.I_LAST_ID] = 1
        self._fst = np.zeros(2)
        self._tr: tuple[np.ndarray, ...] = ()
        self._alloc_tracks(8 * self._max_peaks)
        self._ring_n = np.zeros(ring, dtype=np.int64)
        self._ring_f = np.zeros((ring, self._max_peaks))
        self._ring_m = np.zeros((ring, self._max_peaks))
        self._ring_t = np.zeros((ring, self._max_peaks), dtype=np.int64)
        self._spec_ring = np.zeros((ring, self._bins), dtype=np.complex128)
        self._mag_ring = np.zeros((ring, self._bins))
        self._points: list[np.ndarray] = []
        self._peaks: list[np.ndarray] = []

    def _alloc_tracks(self, cap: int, keep: int = 0) -> None:
        old = self._tr
        tr: tuple[np.ndarray, ...] = (
            np.zeros(cap, dtype=np.int64),  # id
            np.zeros(cap, dtype=np.int64),  # start frame
            np.zeros(cap, dtype=np.int64),  # end frame (-1 while running)
            np.zeros(cap, dtype=np.uint8),  # active
            np.zeros(cap, dtype=np.uint8),  # assigned this frame
            np.zeros(cap),  # last peak, Hz
            np.zeros(cap),  # last peak, dB
        )
        if old and keep:
            for new, o in zip(tr, old, strict=True):
                new[:keep] = o[:keep]
        self._tr = tr

    @property
    def frames_processed(self) -> int:
        """Analysis frames consumed so far."""
        return int(self._ist[kern.I_FRAME])

    # --------------------------------------------------------------- process
    def process(self, spectra: np.ndarray, *, residual: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Process the next ``m`` analysis frames.

        Args:
            spectra: complex (m, bins): unscaled ``rfft(frame * hann, fft_size)`` of consecutive
                frames, continuing where the last call stopped. ``m`` may be 0.
            residual: also return the residual spectra as FluCoMa makes them (``X * (1 - mask)``).

        Returns:
            ``sines``, complex128 (m, bins): the sines part of analysis frames ``k - min_track_len``
            for the ``m`` frames ``k`` of this call (zeros while ``k < min_track_len``);
            or ``(sines, residual)`` with ``residual``.
        """
        x = np.ascontiguousarray(spectra, dtype=np.complex128)
        if x.ndim != 2 or x.shape[1] != self._bins:
            raise ValueError(f"spectra must have shape (m, {self._bins}), got {x.shape}")  # programming error
        m = x.shape[0]
        s = self.config
        out_s = np.empty((m, self._bins), dtype=np.complex128)
        out_r = np.empty((m, self._bins) if residual else (0, self._bins), dtype=np.complex128)
        act = np.empty((m * self._max_peaks, 4))
        pk = np.empty((m * self._max_peaks if self.record_peaks else 0, 3))
        counts = np.zeros(2, dtype=np.int64)
        done = 0
        while done < m:
            got = kern.process_frames(  # type: ignore[call-arg]
                x[done:], out_s[done:], out_r[done:] if residual else out_r, residual, float(s.sample_rate),
                int(s.fft_size), self._scale, float(s.detection_threshold), int(s.min_track_len),
                float(s.birth_low_threshold), float(s.birth_high_threshold), int(s.track_method), self._var_a,
                self._var_f, float(s.track_prob), self._freq_window, self._band_hz, int(s.bandwidth // 2), self._tab,
                self._incr, self._inv_incr, self.record_peaks, bool(s.mask_offset), bool(s.stale_max_amp),
                self._ist, self._fst, *self._tr, self._ring_n, self._ring_f, self._ring_m, self._ring_t,
                self._spec_ring, self._mag_ring, act, pk, counts,
            )
            done += got
            if done < m:  # the live track table is full: grow it and go on
                self._alloc_tracks(2 * self._tr[0].shape[0], keep=int(self._ist[kern.I_LIVE]))
        if counts[0]:
            self._points.append(act[: counts[0]].copy())
        if counts[1]:
            self._peaks.append(pk[: counts[1]].copy())
        return (out_s, out_r) if residual else out_s

    def __call__(self, spectra: np.ndarray, first: int) -> np.ndarray:
        """The engine's frame processor (:data:`bufnmf.dsp.stream.FrameProcessor`): complex (m, 1, bins), the
        sines part of each frame. ``first`` must be :attr:`frames_processed` (frames in order, none skipped)."""
        if first != self.frames_processed:
            raise ValueError(f"expected frame {self.frames_processed}, got {first}")  # programming error
        sines = self.process(spectra)
        assert isinstance(sines, np.ndarray)
        return sines[:, None, :]

    # ----------------------------------------------------------------- tables
    def take_track_points(self) -> np.ndarray:
        """Track points drawn since the last take, float64 (rows, 5), columns :data:`TRACK_POINT_COLUMNS`:
        ``[call k, analysis frame of the peak, track id, Hz, dB]``.

        Rows are FluCoMa's active peaks: in call order and, within a call, in track-id order. The peak's
        frame is ``k - min_track_len``, the frame whose spectrum the call masks, or with ``mask_offset``
        (FluCoMa) ``k + 1 - min_track_len``, one frame later than that.
        """
        rows = np.concatenate(self._points) if self._points else np.empty((0, 4))
        self._points = []
        out = np.empty((rows.shape[0], 5))
        out[:, 0] = rows[:, 0]
        out[:, 1] = rows[:, 0] - self.config.min_track_len + (1 if self.config.mask_offset else 0)
        out[:, 2:] = rows[:, 1:]
        return out

    def take_peaks(self) -> np.ndarray:
        """Detected peaks since the last take (only with ``record_peaks``), float64 (rows, 3):
        ``[analysis frame, Hz, dB]``, in frame order and ascending Hz."""
        rows = np.concatenate(self._peaks) if self._peaks else np.empty((0, 3))
        self._peaks = []
        return rows


def kernels_ready() -> bool:
    """Whether the numba kernels run without compiling first: compiled in this process or cached on disk."""
    fn: Any = kern.process_frames
    if fn.signatures:
        return True
    try:
        return bool(os.path.exists(fn._cache._cache_file._index_path))
    except AttributeError:  # numba internals moved: assume a cache, as numba itself will look
        return True
