"""Real-time phase gradient heap integration (RTPGHI): a phase for a stream of magnitude frames.

Prusa and Sondergaard, "Real-time spectrogram inversion using phase gradient heap integration"
(DAFx 2016), the one-frame look-ahead variant, as FluCoMa's RTPGHI.hpp (NMFMorph's phase):

* ``gamma = 0.25645 * window**2`` (a Hann window's Gaussian equivalent).
* The frame given to a call is the look-ahead; the frame returned is the previous call's, so
  the output is one frame late and the first call returns silence (the state starts at
  magnitude 0, log magnitude 0).
* Magnitudes are floored at eps and taken as logs. The phase's time derivative per bin is the
  centred difference of the current log magnitude across frequency times
  ``0.5 * hop * fft / gamma``, plus ``2 pi hop bin / fft``; its frequency derivative is
  ``0.5 (future - past) * (-gamma / (hop * fft))`` of the log magnitudes.
* Bins whose current log magnitude is within ``log(tolerance)`` of the larger of the current and
  previous frames' maxima get their phase from a max-heap of (log magnitude, bin) that starts with
  the previous frame's bins above that level: popped from the previous frame, a bin is integrated
  along time (the trapezoid of the two time derivatives); popped from the current frame, its
  neighbours are integrated along frequency. The other bins keep a random phase, uniform
  [0, 2 pi) from ``std::mt19937_64(seed)`` (the same draws every frame, as FluCoMa's for a
  fixed seed).
* The phase returned is the integrated one minus ``linspace(0, 1, bins) * pi * (window - 1) / 2``.

The heap orders by (value, index), a strict total order, so any correct heap pops FluCoMa's
sequence. One bufnmf addition: :meth:`RTPGHI.reset` takes the phase the integration starts from
(FluCoMa's is 0 in every bin).
"""

from __future__ import annotations

import heapq

import numpy as np

from .fft import EPS
from .random import uniform_range

GAMMA_HANN = 0.25645  # gamma / window**2 for a Hann window


class RTPGHI:
    """Streaming phase reconstruction for magnitude frames of one STFT setting.

    Args:
        window_size, hop_size, fft_size: the STFT the frames belong to (samples).
        tolerance: relative magnitude below which a bin keeps a random phase (FluCoMa: 1e-6).
    """

    def __init__(self, window_size: int, hop_size: int, fft_size: int, tolerance: float = 1e-6) -> None:
        self.window_size, self.hop_size, self.fft_size = int(window_size), int(hop_size), int(fft_size)
        self.tolerance = float(tolerance)
        self.bins = self.fft_size // 2 + 1
        self._gamma = GAMMA_HANN * self.window_size**2
        self._advance = 2 * np.pi * self.hop_size * np.arange(self.bins) / self.fft_size
        self._ramp = np.linspace(0.0, 1.0, self.bins) * np.pi * (self.window_size - 1) / 2
        self.reset()

    def reset(self, start_phase: np.ndarray | None = None) -> None:
        """FluCoMa's ``init``: magnitudes, log magnitudes and time derivatives zero; the phase the
        integration starts from is ``start_phase`` (float64 (bins,), radians), or 0 as FluCoMa's."""
        b = self.bins
        self._prev_mag = np.zeros(b)
        self._prev_log = np.zeros(b)
        self._prev_prev_log = np.zeros(b)
        self._prev_dt = np.zeros(b)
        self._prev_phase = np.zeros(b) if start_phase is None else np.array(start_phase, dtype=np.float64)

    def _time_derivative(self, log_mag: np.ndarray) -> np.ndarray:
        d = np.zeros(self.bins)
        d[1:-1] = log_mag[2:] - log_mag[:-2]
        return d * (0.5 * self.hop_size * self.fft_size / self._gamma) + self._advance

    def process(self, magnitude: np.ndarray, seed: int) -> np.ndarray:
        """Take the next magnitude frame, float64 (bins,); return the previous one with its phase, complex128 (bins,).

        ``seed`` (>= 0) draws the random phases of the bins below the tolerance.
        """
        b = self.bins
        mag = np.asarray(magnitude, dtype=np.float64)
        log_mag = np.log(np.maximum(mag, EPS))
        future, current, past = log_mag, self._prev_log, self._prev_prev_log
        dt = self._time_derivative(current)
        df = 0.5 * (future - past) * (-self._gamma / (self.hop_size * self.fft_size))
        level = np.log(self.tolerance) + max(float(current.max()), float(past.max()))
        todo = current > level
        left = int(todo.sum())
        phase = uniform_range(seed, b, 0.0, 2.0 * np.pi)
        prev_phase, prev_dt = self._prev_phase, self._prev_dt
        # entries (-value, -index): Python's min-heap popping FluCoMa's largest (value, index) first;
        # index < b is a bin of the previous frame, b + m bin m of the current one
        heap = [(-float(past[m]), -m) for m in np.flatnonzero(past > level).tolist()]
        heapq.heapify(heap)
        cur = current.tolist()
        while left > 0 and heap:
            node = -heapq.heappop(heap)[1]
            if node < b:
                if todo[node]:
                    phase[node] = prev_phase[node] + 0.5 * (dt[node] + prev_dt[node])
                    heapq.heappush(heap, (-cur[node], -(node + b)))
                    todo[node] = False
                    left -= 1
                continue
            m = node - b
            if m < b - 1 and todo[m + 1]:
                phase[m + 1] = phase[m] + 0.5 * (df[m] + df[m + 1])
                heapq.heappush(heap, (-cur[m + 1], -(node + 1)))
                todo[m + 1] = False
                left -= 1
            if m > 0 and todo[m - 1]:
                phase[m - 1] = phase[m] - 0.5 * (df[m] + df[m - 1])
                heapq.heappush(heap, (-cur[m - 1], -(node - 1)))
                todo[m - 1] = False
                left -= 1
        out = self._prev_mag * np.exp(1j * (phase - self._ramp))
        self._prev_prev_log = self._prev_log
        self._prev_log = log_mag
        self._prev_phase = phase
        self._prev_dt = dt
        self._prev_mag = mag.copy()
        return out
