"""Sines and BufSines: FluCoMa's sinusoidal model, offline (every channel) and streaming (one channel).

A sound is split into its sinusoidal partials and a residual (noise, transients) that sum to it.
Per analysis frame the peaks of the dB spectrum are detected (parabolic interpolation), tracked
into partials (greedy or Hungarian matching), and every partial that lasts at least
``min_track_len`` frames is drawn as the Hann window's transform over ``bandwidth`` bins; the frame's
complex spectrum is split by the ratio mask ``min(1, drawn / |X|)``. The numerics are
:mod:`bufnmf.dsp.sines`, on the streaming engine :mod:`bufnmf.dsp.stream`; this module holds
FluCoMa's parameters (snake_case, FluCoMa's defaults), their checks and the layouts.

- :func:`sines` is BufSines: each selected channel on its own, FluCoMa's non-real-time alignment
  (the sound at ``window_size // 2`` in a stream of zeros, read back from ``latency + window_size // 2``),
  so the outputs line up with the input and ``sines + residual == source``.
- :class:`Sines` is the real-time object: mono blocks of any size in, ``(sines, residual)`` blocks
  out, ``latency = window_size + hop_size * min_track_len`` samples late.

FluCoMa's code has three defects (flucoma-core 0626d7a; docs/flucoma-parity.md): the mask of
each frame is drawn from the next frame's peaks; the Hungarian tracker judges births after a frame
without peaks against a stale level; the window-transform table is misread when ``max_fft_size`` is
larger than the FFT. bufnmf does the right thing by default; ``flucoma_quirks=True`` reproduces all
three, and then the outputs equal FluCoMa's own (tests/test_sines.py, against FluCoMa's C++).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..checks import as_float, as_int
from ..dsp.fft import FFTSettings, resolve_fft_settings
from ..dsp.sines import SinesConfig, SinesProcessor, kernels_ready
from ..dsp.stream import StreamEngine
from ..errors import BufNMFError, Cancelled
from ..resources import available_memory, fmt_bytes
from .common import load_source, select

ProgressCallback = Callable[[int, int], "bool | None"]

#: ``track_method`` by name; 0 and 1 are FluCoMa's numbers.
TRACK_METHODS = {"greedy": 0, "hungarian": 1}
#: One row per track point: the track (ids per channel, from 1 greedy or 2 Hungarian, as FluCoMa),
#: the analysis frame, the centre of its window in seconds from the source's first sample, the
#: peak's frequency (Hz) and level (dB, FluCoMa's scale: 0 dB is a full-scale sinusoid), the channel.
TRACK_DTYPE = np.dtype([("track_id", np.int64), ("frame", np.int64), ("time_s", np.float64),
                        ("freq_hz", np.float64), ("mag_db", np.float64), ("channel", np.int64)])
__all__ = ["TRACK_DTYPE", "TRACK_METHODS", "Sines", "SinesResult", "kernels_ready", "parse_track_method",
           "resolve_sines_config", "sines"]
HOST_BLOCK = 64  # FluCoMa's non-real-time host streams whole blocks of this many samples
_BLOCK_FRAMES = 256  # hops fed to the engine at a time offline


def parse_track_method(method: object) -> int:
    """0/1 or "greedy"/"hungarian" -> 0/1, else :class:`BufNMFError`."""
    if isinstance(method, str):
        key = method.strip().lower()
        if key in TRACK_METHODS:
            return TRACK_METHODS[key]
        if key in ("0", "1"):
            return int(key)
    elif not isinstance(method, (bool, np.bool_)) and isinstance(method, (int, np.integer)) and int(method) in (0, 1):
        return int(method)
    raise BufNMFError(f"track_method must be 0 ('greedy') or 1 ('hungarian'), got {method!r}")


def resolve_sines_config(
    bandwidth: object = 76,
    detection_threshold: object = -96.0,
    birth_low_threshold: object = -24.0,
    birth_high_threshold: object = -60.0,
    min_track_len: object = 15,
    track_method: object = 0,
    track_mag_range: object = 15.0,
    track_freq_range: object = 50.0,
    track_prob: object = 0.5,
    window_size: object = 1024,
    hop_size: object = -1,
    fft_size: object = -1,
    *,
    sample_rate: object = 44100.0,
    max_fft_size: object = -1,
    flucoma_quirks: bool = False,
) -> SinesConfig:
    """Check FluCoMa's Sines parameters and resolve them (FluCoMa's ranges; FluCoMa clamps, bufnmf refuses).

    Raises:
        BufNMFError: naming the parameter, its range and what was given; also when ``min_track_len``
            frames of spectra would not fit in memory.
    """
    fft: FFTSettings = resolve_fft_settings(window_size, hop_size, fft_size)  # type: ignore[arg-type]
    bins = fft.bins
    bw = as_int("bandwidth", bandwidth)
    if not 1 <= bw <= bins:
        why = f"must be in [1, {bins}] bins (fft_size {fft.fft_size} has {bins}), got {bw}"
        raise BufNMFError(f"bandwidth {why}", cli=f"--bandwidth {why.replace('fft_size', '--fft-size')}")
    thresholds = {name: as_float(name, value, low=-144.0, high=0.0) for name, value in (
        ("detection_threshold", detection_threshold), ("birth_low_threshold", birth_low_threshold),
        ("birth_high_threshold", birth_high_threshold))}
    length = as_int("min_track_len", min_track_len)
    if length < 1:
        raise BufNMFError(f"min_track_len must be at least 1 frame, got {length}")
    table = as_int("max_fft_size", max_fft_size)
    if table == -1:
        table = fft.fft_size
    elif table < fft.fft_size or table & (table - 1) or table > 2**22:
        raise BufNMFError(f"max_fft_size must be -1 (the FFT size) or a power of two in [{fft.fft_size}, {2**22}] "
                          f"(at least fft_size), got {table}")
    config = SinesConfig(
        window_size=fft.window_size, hop_size=fft.hop_size, fft_size=fft.fft_size, bandwidth=bw,
        detection_threshold=thresholds["detection_threshold"],
        birth_low_threshold=thresholds["birth_low_threshold"],
        birth_high_threshold=thresholds["birth_high_threshold"],
        min_track_len=length, track_method=parse_track_method(track_method),
        track_mag_range=as_float("track_mag_range", track_mag_range, low=1.0, high=200.0),
        track_freq_range=as_float("track_freq_range", track_freq_range, low=1.0, high=10000.0),
        track_prob=as_float("track_prob", track_prob, low=0.0, high=1.0),
        sample_rate=as_float("sample_rate", sample_rate, low=0.0, low_open=True),
        table_size=table, mask_offset=bool(flucoma_quirks), stale_max_amp=bool(flucoma_quirks),
        table_interp=bool(flucoma_quirks),
    )
    need, have = config.state_bytes(), available_memory()
    if need > have:
        raise BufNMFError(f"min_track_len {length} at fft_size {fft.fft_size} keeps {length + 1} frames of spectra "
                          f"({fmt_bytes(need)}), more than the memory available now ({fmt_bytes(have)}): use a "
                          "smaller min_track_len or fft_size")
    return config


def _track_rows(points: np.ndarray, config: SinesConfig, first_sample: float, channel: int) -> np.ndarray:
    """Structured :data:`TRACK_DTYPE` rows from :meth:`SinesProcessor.take_track_points` output.

    ``first_sample``: where stream frame 0's window starts, in samples from the source's first sample.
    """
    out = np.empty(points.shape[0], dtype=TRACK_DTYPE)
    frames = points[:, 1]
    out["track_id"] = points[:, 2].astype(np.int64)
    out["frame"] = frames.astype(np.int64)
    # frame j's window covers stream samples [j * hop - window, j * hop)
    out["time_s"] = (first_sample + frames * config.hop_size - config.window_size / 2.0) / config.sample_rate
    out["freq_hz"] = points[:, 3]
    out["mag_db"] = points[:, 4]
    out["channel"] = channel
    return out


@dataclass
class SinesResult:
    """What :func:`sines` returns.

    Attributes:
        sines: float32 (num_samples, num_channels): the sinusoidal part of each selected channel,
            lined up with the source.
        residual: float32 (num_samples, num_channels): the rest; ``sines + residual`` is the source
            (to float32 rounding).
        tracks: one row per track point, a NumPy structured array of :data:`TRACK_DTYPE`
            (``track_id``, ``frame``, ``time_s``, ``freq_hz``, ``mag_db``, ``channel``): the peaks of the
            partials that make ``sines``, per channel in frame order and, within a frame, in track-id
            order. ``channel`` is the source's channel (``start_chan`` + column); track ids are per
            channel; ``time_s`` is the centre of the frame's window, seconds from the source's first
            sample. ``pandas.DataFrame(result.tracks)`` makes a table of it.
        sample_rate: Hz, the file's, the one given, or 44100 for an array without one.
        config: the resolved settings (FFT sizes, thresholds, ...), see :class:`bufnmf.dsp.sines.SinesConfig`.
        flucoma_quirks: whether FluCoMa's defects were reproduced.
        start_frame, start_chan: where the selection starts in the source.
        latency: samples, the streaming object's delay with these settings (for reference: the
            offline outputs are already lined up).
    """

    sines: np.ndarray
    residual: np.ndarray
    tracks: np.ndarray
    sample_rate: float
    config: SinesConfig
    flucoma_quirks: bool = False
    start_frame: int = 0
    start_chan: int = 0
    latency: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.sines.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self.sines.shape[1])

    def track_count(self, channel: int | None = None) -> int:
        """Distinct tracks (of one source channel, or all)."""
        t = self.tracks if channel is None else self.tracks[self.tracks["channel"] == channel]
        return int(np.unique(t[["channel", "track_id"]]).size) if t.size else 0


def _parameters(config: SinesConfig, flucoma_quirks: bool) -> dict[str, Any]:
    """FluCoMa's parameters as resolved, by their snake_case names."""
    c = asdict(config)
    keep = ("bandwidth", "detection_threshold", "birth_low_threshold", "birth_high_threshold", "min_track_len",
            "track_method", "track_mag_range", "track_freq_range", "track_prob", "window_size", "hop_size",
            "fft_size")
    return {**{k: c[k] for k in keep}, "max_fft_size": c["table_size"], "flucoma_quirks": bool(flucoma_quirks)}


def sines(
    source: object,
    bandwidth: int = 76,
    detection_threshold: float = -96.0,
    birth_low_threshold: float = -24.0,
    birth_high_threshold: float = -60.0,
    min_track_len: int = 15,
    track_method: int | str = 0,
    track_mag_range: float = 15.0,
    track_freq_range: float = 50.0,
    track_prob: float = 0.5,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    start_frame: int = 0,
    num_frames: int = -1,
    start_chan: int = 0,
    num_chans: int = -1,
    *,
    sample_rate: float | None = None,
    max_fft_size: int = -1,
    flucoma_quirks: bool = False,
    progress: ProgressCallback | None = None,
) -> SinesResult:
    """Split a sound into sinusoids and residual, as FluCoMa's BufSines (every channel, each on its own).

    Args:
        source: samples (samples,) or (samples, channels), any real dtype, or an audio file path.
        bandwidth: bins over which each sinusoid's window transform is drawn (1 .. fft_size // 2 + 1).
        detection_threshold: dB (-144 .. 0): quieter peaks are ignored.
        birth_low_threshold, birth_high_threshold: dB (-144 .. 0) relative to the frame's loudest bin: how
            loud a peak must be to start a track, at low and at high frequencies.
        min_track_len: frames (>= 1): shorter tracks go to the residual.
        track_method: 0 or "greedy", 1 or "hungarian".
        track_mag_range: dB (1 .. 200); track_freq_range: Hz (1 .. 10000): how far a track may move per frame.
        track_prob: matching probability (0 .. 1).
        window_size, hop_size, fft_size: samples, FluCoMa's meanings (-1: window / 2, next power of two).
        start_frame, num_frames, start_chan, num_chans: the selection (samples and channels; -1: the rest).
        sample_rate: Hz; default the file's, or 44100 for an array.
        max_fft_size: the size of the table of the window's transform that peaks are drawn from (FluCoMa's
            real-time ``maxFFTSize``; -1: ``fft_size``, FluCoMa's and BufSines' choice). Linear interpolation in a
            table at the FFT's resolution draws a peak too low between bins, so part of every sinusoid stays in
            the residual (a steady tone: about 14% of its energy); a power of two of 4 x ``fft_size`` or more
            draws it almost exactly (0.2%).
        flucoma_quirks: reproduce FluCoMa's three defects (see the module docstring) to get FluCoMa's
            output exactly; by default each frame is masked with its own peaks.
        progress: ``progress(done, total)`` in frames over all channels; returning False cancels
            (:class:`bufnmf.Cancelled`).

    Returns:
        :class:`SinesResult`: ``.sines`` and ``.residual`` float32 (samples, channels), ``.tracks``.

    Raises:
        BufNMFError: a parameter out of its range (named, with the range), a bad source or selection.
    """
    data, file_rate = load_source(source)
    rate = sample_rate if sample_rate is not None else (file_rate if file_rate is not None else 44100.0)
    config = resolve_sines_config(bandwidth, detection_threshold, birth_low_threshold, birth_high_threshold,
                                  min_track_len, track_method, track_mag_range, track_freq_range, track_prob,
                                  window_size, hop_size, fft_size, sample_rate=rate, max_fft_size=max_fft_size,
                                  flucoma_quirks=flucoma_quirks)
    view = select(data, start_frame, num_frames, start_chan, num_chans)
    s0 = as_int("start_frame", start_frame)
    c0 = as_int("start_chan", start_chan)
    n, channels = view.shape
    # outputs (float32, two), one channel as float64, a block of frames through the engine, the tracker
    need = n * channels * 8 + n * 8 + _BLOCK_FRAMES * (config.window_size * 8 * 3 + config.bins * 16 * 4) \
        + config.state_bytes()
    have = available_memory()
    if need > have:
        raise BufNMFError(f"this run needs about {fmt_bytes(need)} for {n} samples x {channels} channel(s) but the "
                          f"memory available now is {fmt_bytes(have)}: select fewer samples (num_frames) or "
                          "channels (num_chans)")
    fft = FFTSettings(config.window_size, config.hop_size, config.fft_size)
    front = config.window_size // 2  # FluCoMa's non-real-time padding
    # FluCoMa's host streams whole blocks of 64 samples: its tracker sees every frame they complete
    host = HOST_BLOCK * math.ceil((n + config.latency + config.window_size) / HOST_BLOCK)
    min_frames = -(-host // config.hop_size)
    out_s = np.empty((n, channels), dtype=np.float32)
    out_r = np.empty((n, channels), dtype=np.float32)
    tables = []
    per_channel = 0
    for c in range(channels):
        x = np.asarray(view[:, c], dtype=np.float64)
        proc = SinesProcessor(config)
        engine = StreamEngine(fft, proc, 1, latency_frames=config.min_track_len)
        per_channel = engine.offline_samples(n, front, min_frames) // config.hop_size + 1
        for i, block in engine.offline(x, front=front, min_frames=min_frames, block_frames=_BLOCK_FRAMES):
            m = block.shape[0]
            out_s[i : i + m, c] = block[:, 0]
            out_r[i : i + m, c] = x[i : i + m] - block[:, 0]
            if progress is not None:
                done = c * per_channel + engine.framer.next_frame
                if progress(done, channels * per_channel) is False:
                    raise Cancelled(f"cancelled by the progress callback after {done} of {channels * per_channel} "
                                    "frames")
        tables.append(_track_rows(proc.take_track_points(), config, s0 - front, c0 + c))
    tracks = np.concatenate(tables) if tables else np.empty(0, dtype=TRACK_DTYPE)
    return SinesResult(out_s, out_r, tracks, float(config.sample_rate), config, bool(flucoma_quirks), s0, c0,
                       config.latency, _parameters(config, flucoma_quirks))


class Sines:
    """FluCoMa's Sines, streaming: one channel, blocks of any size.

    Args: FluCoMa's parameters, as :func:`sines`; and, keyword-only,
        sample_rate: Hz (default 44100).
        max_fft_size: FluCoMa's ``maxFFTSize`` (-1: the FFT size): the size of the window-transform table
            peaks are drawn from (see :func:`sines`: 4 x ``fft_size`` draws them almost exactly).
        flucoma_quirks: reproduce FluCoMa's defects (see the module docstring).

    ``process(block)`` takes mono samples (n,) and returns ``(sines, residual)``, float64 (n,) each:
    output sample ``p`` renders input sample ``p - latency``, ``latency = window_size + hop_size *
    min_track_len`` (FluCoMa's): ``sines + residual`` is the input delayed by ``latency``. The first
    ``(min_track_len + 1) * hop_size`` samples are silent; the sines of the first frames with sound may
    spill up to ``window_size - hop_size`` samples before the delayed input starts (the residual cancels
    them).

    Frame ``k`` ends at input sample ``k * hop_size``; :func:`sines` (BufSines) puts ``window_size // 2``
    zeros before the sound, so when the hop divides ``window_size // 2`` (the default and every
    power-of-two overlap) both analyse the same frames and the stream's output equals :func:`sines`'
    delayed by ``latency``; otherwise it equals the offline result of the input preceded by
    ``window_size // 2`` zeros.
    """

    def __init__(
        self,
        bandwidth: int = 76,
        detection_threshold: float = -96.0,
        birth_low_threshold: float = -24.0,
        birth_high_threshold: float = -60.0,
        min_track_len: int = 15,
        track_method: int | str = 0,
        track_mag_range: float = 15.0,
        track_freq_range: float = 50.0,
        track_prob: float = 0.5,
        window_size: int = 1024,
        hop_size: int = -1,
        fft_size: int = -1,
        *,
        sample_rate: float = 44100.0,
        max_fft_size: int = -1,
        flucoma_quirks: bool = False,
    ) -> None:
        self.config = resolve_sines_config(
            bandwidth, detection_threshold, birth_low_threshold, birth_high_threshold, min_track_len, track_method,
            track_mag_range, track_freq_range, track_prob, window_size, hop_size, fft_size, sample_rate=sample_rate,
            max_fft_size=max_fft_size, flucoma_quirks=flucoma_quirks)
        self.flucoma_quirks = bool(flucoma_quirks)
        self.parameters = _parameters(self.config, flucoma_quirks)
        self.latency = self.config.latency
        self.reset()

    def reset(self) -> None:
        """Start again, as a new object: silence, no tracks."""
        c = self.config
        self._proc = SinesProcessor(c)
        self._engine = StreamEngine(FFTSettings(c.window_size, c.hop_size, c.fft_size), self._proc, 1,
                                    latency_frames=c.min_track_len)
        self._delay = np.zeros(self.latency)  # the last `latency` input samples

    def process(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed mono samples (n,) (n may be 0); returns ``(sines, residual)``, float64 (n,) each."""
        s = self._engine.process(block)[:, 0]  # checks the block: mono, finite
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        delayed = np.concatenate([self._delay, x])
        self._delay = delayed[x.shape[0] :]
        return s, delayed[: x.shape[0]] - s

    def take_tracks(self) -> np.ndarray:
        """Track points drawn since the last call, structured :data:`TRACK_DTYPE` (channel 0; ``time_s`` is the
        centre of the frame's window in seconds from the first input sample)."""
        return _track_rows(self._proc.take_track_points(), self.config, 0.0, 0)
