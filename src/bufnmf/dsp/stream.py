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
``process(block)`` returns as many samples as it was given. A processor whose output frame ``k``
renders an earlier frame, ``k - d`` (Sines: ``d = min_track_len``), adds ``d`` hops to the latency
(``StreamEngine(..., latency_frames=d)``).

Buffer objects run the same engine offline (:meth:`StreamEngine.offline`), as FluCoMa's
non-real-time wrapper runs a real-time client: the sound at an offset in a stream of zeros, the
output read back from ``latency + offset``, so that it lines up with the input.

The pieces are usable alone: :class:`Framer` (analysis only, e.g. NMFMatch), :class:`OverlapAdder`
(synthesis only, e.g. NMFMorph, which generates frames) and :class:`StreamEngine` (both, e.g.
NMFFilter, Sines). Every overlap-add goes through :func:`bufnmf.dsp.stft.overlap_add`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
    """Blocks in, frames through ``processor``, overlap-added blocks out.

    Args:
        settings: FFT settings.
        processor: see :data:`FrameProcessor`; called once per block with every frame the block completes.
        outputs: number of output signals the processor makes.
        latency_frames: the processor's own delay in frames: its output frame ``k`` renders analysis
            frame ``k - latency_frames`` (0 for a processor that works on each frame as it comes).

    ``process(block)`` takes a mono block of any length and returns float64 (len(block), outputs):
    output sample ``p`` renders input sample ``p - latency`` (zeros for the first ``latency``),
    ``latency = window_size + hop_size * latency_frames``.
    """

    def __init__(self, settings: FFTSettings, processor: FrameProcessor, outputs: int, *,
                 latency_frames: int = 0) -> None:
        self.settings = settings
        self.processor = processor
        self.framer = Framer(settings)
        self.adder = OverlapAdder(settings, outputs)
        self.latency = settings.window_size + settings.hop_size * int(latency_frames)

    def process(self, block: object) -> np.ndarray:
        spectra, first = self.framer.push(block)
        if spectra.shape[0]:
            self.adder.add(self.processor(spectra, first))
        return self.adder.take(self.framer.received - self.adder.taken)

    def offline_samples(self, num_samples: int, front: int = 0, min_frames: int = 0) -> int:
        """Stream samples :meth:`offline` feeds for a sound of ``num_samples``: enough for output sample
        ``latency + front + num_samples - 1`` to be final and for ``min_frames`` frames to be processed."""
        return max(self.latency + front + num_samples, (min_frames - 1) * self.settings.hop_size)

    def offline(self, signal: np.ndarray, *, front: int = 0, min_frames: int = 0,
                block_frames: int = 256) -> Iterator[tuple[int, np.ndarray]]:
        """Run a whole mono signal through this (fresh) engine, lined up with the input.

        As FluCoMa's non-real-time wrapper runs a real-time client: the signal sits at offset ``front``
        in a stream of zeros (FluCoMa puts it at ``window_size // 2``), the stream goes on with zeros
        for :meth:`offline_samples` samples in all, and engine output ``latency + front + i`` is output
        sample ``i``. The stream is fed ``block_frames`` hops at a time, so memory stays in proportion
        to a block, not to the signal.

        Args:
            signal: float (n,) samples.
            front: zeros before the signal, samples.
            min_frames: process at least this many frames (FluCoMa's host streams whole blocks of 64
                samples, so a processor with state sees a few frames more than the output needs).
            block_frames: hops per block fed.

        Yields:
            ``(start, samples)`` after each block fed: float64 (m, outputs), output samples
            ``start .. start + m - 1`` (m may be 0); together they cover ``0 .. n - 1`` once, in order.
            :attr:`framer` ``.next_frame`` says how many frames are done.
        """
        if self.framer.received:
            raise ValueError("offline() needs a fresh engine")  # programming error
        n = signal.shape[0]
        lead = self.latency + front
        total = self.offline_samples(n, front, min_frames)
        step = max(1, int(block_frames)) * self.settings.hop_size
        for a in range(0, total, step):
            b = min(total, a + step)
            block = np.zeros(b - a)
            s0, s1 = max(a - front, 0), min(b - front, n)
            if s1 > s0:
                block[s0 + front - a : s1 + front - a] = signal[s0:s1]
            out = self.process(block)  # engine output samples a .. b - 1
            o0, o1 = max(a, lead), min(b, lead + n)
            if o1 > o0:
                yield o0 - lead, out[o0 - a : o1 - a]
            else:
                yield min(max(a - lead, 0), n), out[:0]
