"""Memory estimates, so that a run that would not fit is refused before it starts."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .dsp.fft import FFTSettings
from .dsp.stft import CHUNK_FRAMES
from .errors import BufNMFError, MemoryLimitError

MAX_ITERATIONS = 100_000


@dataclass
class MemoryEstimate:
    """Bytes a decomposition needs at its peak, by part."""

    spectrum: int  # one channel's complex STFT and magnitudes
    factors: int  # W, H and the kernel's partial sums, for one channel
    work: int  # chunked STFT / resynthesis temporaries, whole-matrix temporaries of the NumPy kernel
    outputs: int  # bases, activations and (unless streamed to resynth_out) the resynthesis
    source: int  # a float copy of the source when its dtype needs converting, and a source read from a file

    @property
    def total(self) -> int:
        return self.spectrum + self.factors + self.work + self.outputs + self.source

    def describe(self) -> str:
        parts = [("STFT", self.spectrum), ("factors", self.factors), ("work", self.work),
                 ("outputs", self.outputs), ("source", self.source)]
        return ", ".join(f"{name} {fmt_bytes(b)}" for name, b in parts if b)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def parse_bytes(text: str, name: str = "memory size") -> int:
    """'8G', '500M', '2GiB', '1.5g', '1000000' -> bytes (a whole, positive number)."""
    t = text.strip().upper().replace("IB", "").replace("B", "")
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    scale = 1
    if t and t[-1] in mult:
        t, scale = t[:-1], mult[t[-1]]
    try:
        value = float(t) * scale
    except ValueError:
        raise BufNMFError(f"{name} {text!r} is not understood: use e.g. 500M, 8G or a number of bytes") from None
    if not math.isfinite(value) or value < 1 or value > 2**62:
        raise BufNMFError(f"{name} {text!r} must be a size between 1 byte and 4 EiB: use e.g. 500M or 8G")
    return int(value)


def memory_limit(value: object, name: str = "max_memory") -> int | None:
    """A memory limit as given to ``max_memory``: None (the memory available now), a number of bytes
    (an int, or a whole float) or a size such as "4G"; anything else raises :class:`BufNMFError`."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_bytes(value, name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BufNMFError(f"{name} must be a number of bytes or a size such as '4G', got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 1 or v > 2**62 or not v.is_integer():
        raise BufNMFError(f"{name} must be a whole number of bytes between 1 and 2**62 (or a size such as '4G'), "
                          f"got {value!r}")
    return int(value)


def _proc_kib(path: str, key: str) -> int | None:
    """Bytes from a ``key  N kB`` line of a /proc file (Linux), else None."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory() -> int:
    """Memory the system can give now (MemAvailable), or the physical memory where that is unknown."""
    avail = _proc_kib("/proc/meminfo", "MemAvailable:")
    if avail is not None:
        return avail
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 1 << 62


def estimate(num_samples: int, channels: int, components: int, settings: FFTSettings, precision: str,
             resynth: bool, resynth_streamed: bool = False, kernel: str = "numba", source_copy: bool = False,
             ) -> MemoryEstimate:
    """Peak bytes of :func:`bufnmf.decompose` for these sizes (channels are processed one at a time)."""
    item = 4 if precision == "float32" else 8
    bins = settings.bins
    frames = settings.num_frames(num_samples)
    cells = bins * frames
    spectrum = cells * 3 * item  # complex STFT (2 items a cell) and magnitudes (1), both alive together
    factors = (bins + frames) * components * item * 3 + 8 * bins * components * 8
    chunk = min(frames, CHUNK_FRAMES)
    work = chunk * settings.fft_size * 8 * 4 + chunk * bins * 16 * 3 + num_samples * 8 * 2
    if kernel == "numpy":
        work += 3 * cells * item
    outputs = (bins + frames) * channels * components * 4
    if resynth and not resynth_streamed:
        outputs += num_samples * channels * components * 4
    source = num_samples * channels * 8 if source_copy else 0
    return MemoryEstimate(spectrum, factors, work, outputs, source)


def check_fits(est: MemoryEstimate, max_memory: int | str | None) -> None:
    """Raise :class:`MemoryLimitError` (a :class:`BufNMFError`) when ``est`` exceeds ``max_memory``
    (default: the memory available now)."""
    given = memory_limit(max_memory)
    limit = available_memory() if given is None else given
    if est.total > limit:
        source = "the memory available now" if given is None else "the max_memory limit"
        raise MemoryLimitError(
            f"this run needs about {fmt_bytes(est.total)} ({est.describe()}) but {source} is {fmt_bytes(limit)}: "
            "use fewer components, a shorter selection (num_frames), a larger hop, no resynthesis, "
            "or raise the limit (max_memory)", needed=est.total, limit=limit)


def page_releaser(arr: np.ndarray) -> Callable[[int, int], None] | None:
    """For a row-major shared memory map (``np.memmap`` mode "r+"/"w+"): a function
    ``release(start_row, stop_row)`` that unmaps the pages of rows that are no longer needed,
    so resident memory stays small; the data stays in the file and the page cache.
    None for anything else."""
    import mmap

    if not isinstance(arr, np.memmap) or getattr(arr, "mode", "") not in ("r+", "w+"):
        return None
    base = arr.base if isinstance(arr.base, mmap.mmap) else getattr(arr, "_mmap", None)
    if not isinstance(base, mmap.mmap) or not hasattr(base, "madvise") or arr.strides[0] <= 0:
        return None
    start_in_map = arr.ctypes.data - np.frombuffer(base, dtype=np.uint8).ctypes.data
    row = arr.strides[0]
    page = mmap.PAGESIZE

    def release(a: int, b: int) -> None:
        lo = 0 if a == 0 else (start_in_map + a * row) // page * page  # whole pages inside the rows only
        hi = (start_in_map + b * row) // page * page
        if hi > lo:
            base.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    return release


def reset_peak_memory() -> None:
    """Start the process's peak resident size (VmHWM) afresh (Linux; a no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_memory() -> int | None:
    """The process's peak resident size in bytes since start or :func:`reset_peak_memory` (Linux).

    Read from VmHWM: ``getrusage``'s ru_maxrss would carry a parent's peak across ``exec``.
    """
    return _proc_kib("/proc/self/status", "VmHWM:")


def resident_memory() -> int | None:
    """The process's resident size now, in bytes (Linux)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None
