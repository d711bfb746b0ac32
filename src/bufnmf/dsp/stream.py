"""The streaming engine: blocks of any size in, analysis frames to a processor, overlap-added blocks out.

FluCoMa's real-time framing. Input samples are numbered from 0 as they arrive. Analysis frame
``k`` (``k = 0, 1, ...``) covers input samples ``[k * hop - window, k * hop)``, zeros before the
stream began, so frame 0 is silent and frame ``k`` is complete once ``k * hop`` samples have
arrived. Each frame is windowed with a periodic Hann and transformed (``rfft`` of ``fft_size``,
unscaled). A processor turns a batch of consecutive frames' spectra into output spectra;
their inverse transforms (first ``window`` samples, times the window) are overlap-added at
output samples ``[k * hop, k * hop + window)`` and divided by the overlap-added squared windows.
Output sample ``p`` therefore renders input sample ``p - window``: the latency is ``window``
samples, and after ``n`` input samples exactly ``n`` output samples are final, so
``process(block)`` returns as many samples as it was given.

The pieces are usable alone: :class:`Framer` (analysis only, e.g. NMFMatch), :class:`OverlapAdder`
(synthesis only, e.g. NMFMorph, which generates frames) and :class:`StreamEngine` (both, e.g.
NMFFilter, Sines). Every overlap-add goes through :func:`bufnmf.dsp.stft.overlap_add`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

from ..errors import BufNMFError
from .fft import EPS, FFTSettings, hann
from .stft import overlap_add

#: ``processor(spectra, first)``: ``spectra`` complex128 (m, bins) of frames ``first .. first + m - 1``;
#: returns complex (m, outputs, bins), the spectra to overlap-add for each output signal.
FrameProcessor = Callable[[np.ndarray, int], np.ndarray]


def _as_block(block: object) -> np.ndarray:
    """A block of mono samples as float64 (n,); refuses several channels, NaN and infinity."""
    try:
        x = np.asarray(block, dtype=np.float64)
    except (TypeError, ValueError):
        raise BufNMFError("a block must be an array of samples (n,)") from None
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise BufNMFError(
            f"a block must be mono, shape (n,), got shape {x.shape}: this object streams one channel; pass "
            "block[:, c] for channel c, or bufnmf.mixdown(block), or one object per channel"
        )
    if not np.isfinite(x).all():
        raise BufNMFError("the block contains NaN or infinite samples: clean the signal first")
    return x


class Framer:
    """Analysis side: append blocks, get the spectra of the frames they complete.

    Args:
        settings: FFT settings (window, hop, FFT size in samples).
    """

    def __init__(self, settings: FFTSettings) -> None:
        self.settings = settings
        self.window = hann(settings.window_size)
        self.received = 0  # input samples so far
        self.next_frame = 0  # index of the next frame to emit
        self._history = np.zeros(settings.window_size)  # the last `window` input samples

    def push(self, block: object) -> tuple[np.ndarray, int]:
        """Append a mono block (any length, 0 included).

        Returns:
            ``(spectra, first)``: complex128 (m, bins), the spectra of frames ``first .. first + m - 1``,
            every frame completed so far and not yet returned (frame 0 on the first call).
        """
        x = _as_block(block)
        s = self.settings
        w, h = s.window_size, s.hop_size
        stream = np.concatenate([self._history, x])  # stream[i] is input sample received - w + i
        base = self.received - w
        self.received += x.size
        last = self.received // h  # frames 0 .. last are complete
        first = self.next_frame
        count = max(0, last - first + 1)
        if count:
            starts = (np.arange(first, last + 1) * h - w) - base  # positions in `stream`
            frames = stream[starts[:, None] + np.arange(w)[None, :]] * self.window
            spectra = sfft.rfft(frames, n=s.fft_size, axis=1)
        else:
            spectra = np.zeros((0, s.bins), dtype=np.complex128)
        self.next_frame = last + 1
        self._history = stream[-w:]
        return spectra, first


class OverlapAdder:
    """Synthesis side: add frames' spectra in order, take out the samples that are final.

    Frame ``k`` lands on output samples ``[k * hop, k * hop + window)``; after frames ``0 .. k`` the
    samples before ``(k + 1) * hop`` are final.

    Args:
        settings: FFT settings.
        outputs: number of output signals.
    """

    def __init__(self, settings: FFTSettings, outputs: int) -> None:
        self.settings = settings
        self.outputs = int(outputs)
        self.window = hann(settings.window_size)
        self.frames = 0  # frames added so far
        self.taken = 0  # output samples taken so far
        self._acc = np.zeros((self.outputs, settings.window_size))  # output samples from `taken` on
        self._norm = np.zeros(settings.window_size)

    @property
    def available(self) -> int:
        """Final output samples not yet taken."""
        return self.frames * self.settings.hop_size - self.taken

    def add(self, spectra: np.ndarray) -> None:
        """Add the next frames: complex (m, outputs, bins)."""
        s = self.settings
        w, h = s.window_size, s.hop_size
        m = spectra.shape[0]
        if m == 0:
            return
        seg = sfft.irfft(spectra, n=s.fft_size, axis=-1)[..., :w] * self.window  # (m, outputs, w)
        offset = self.frames * h - self.taken  # where the first new frame lands in the buffers
        need = offset + (m - 1) * h + w
        if need > self._norm.size:
            grow = need - self._norm.size
            self._acc = np.concatenate([self._acc, np.zeros((self.outputs, grow))], axis=1)
            self._norm = np.concatenate([self._norm, np.zeros(grow)])
        for c in range(self.outputs):
            overlap_add(self._acc[c, offset:], seg[:, c, :], h)
        overlap_add(self._norm[offset:], np.broadcast_to(self.window**2, (m, w)), h)
        self.frames += m

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` final samples (``n <= available``), float64 (n, outputs)."""
        if n > self.available:
            raise ValueError(f"only {self.available} samples are final, {n} asked")  # programming error
        out = (self._acc[:, :n] / np.maximum(self._norm[:n], EPS)).T
        self._acc = self._acc[:, n:]
        self._norm = self._norm[n:]
        if self._norm.size < self.settings.window_size:  # keep room for the next frame's overlap
            pad = self.settings.window_size - self._norm.size
            self._acc = np.concatenate([self._acc, np.zeros((self.outputs, pad))], axis=1)
            self._norm = np.concatenate([self._norm, np.zeros(pad)])
        self.taken += n
        return out


class StreamEngine:
    """Blocks in, frames through ``processor``, overlap-added blocks out; latency ``window`` samples.

    Args:
        settings: FFT settings.
        processor: see :data:`FrameProcessor`; called once per block with every frame the block completes.
        outputs: number of output signals the processor makes.

    ``process(block)`` takes a mono block of any length and returns float64 (len(block), outputs):
    output sample ``p`` renders input sample ``p - latency`` (zeros for the first ``latency``).
    """

    def __init__(self, settings: FFTSettings, processor: FrameProcessor, outputs: int) -> None:
        self.settings = settings
        self.processor = processor
        self.framer = Framer(settings)
        self.adder = OverlapAdder(settings, outputs)
        self.latency = settings.window_size

    def process(self, block: object) -> np.ndarray:
        spectra, first = self.framer.push(block)
        if spectra.shape[0]:
            self.adder.add(self.processor(spectra, first))
        return self.adder.take(self.framer.received - self.adder.taken)
