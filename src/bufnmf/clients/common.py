"""What every FluCoMa object's client shares: sources (arrays or files), channels, modes, ranges.

The channel policy (docs/api.md): buffer objects (``decompose``, ``sines``) process every
channel, each on its own, as FluCoMa's buffer objects do; mono objects refuse several channels
with a message naming ``bufnmf.mixdown(x)`` and ``x[:, c]``, never mixing down silently.
Sources are arrays (samples,) / (samples, channels) or audio file paths, everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..checks import span
from ..errors import BufNMFError

#: FluCoMa's modes for supplied bases/activations: the one table (the CLI's choices come from it).
MODES: Mapping[str, int] = {"none": 0, "seed": 1, "fixed": 2}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_CHECK_ROWS = 1 << 16  # rows per finiteness check: no temporary in proportion to the source


class SeededArray(np.ndarray):
    """An array that remembers the seed that made it (``.seed``): what one-call functions returning
    samples or frames give back (``cross``, ``morph``, ``match``, ``nmf_filter``), so that a run with
    seed -1 can be repeated. Behaves as the plain array in every other way."""

    seed: int

    @classmethod
    def wrap(cls, array: np.ndarray, seed: int) -> SeededArray:
        out = np.asarray(array).view(cls)
        out.seed = int(seed)
        return out

    def __array_finalize__(self, obj: object) -> None:
        self.seed = getattr(obj, "seed", -1)


def parse_mode(name: str, mode: int | str) -> int:
    """Map 0/1/2 or "none"/"seed"/"fixed" to 0/1/2, or raise :class:`BufNMFError`."""
    if isinstance(mode, str):
        key = mode.strip().lower()
        if key in MODES:
            return MODES[key]
        if key.isdigit():
            mode = int(key)
        else:
            raise BufNMFError(f"{name} {mode!r} is not a mode: use 0/'none', 1/'seed' or 2/'fixed'")
    if isinstance(mode, (bool, np.bool_)) or not isinstance(mode, (int, np.integer)) or int(mode) not in (0, 1, 2):
        raise BufNMFError(f"{name} {mode!r} is not a mode: use 0/'none', 1/'seed' or 2/'fixed'")
    return int(mode)


def validate_source(source: object, what: str = "source") -> np.ndarray:
    """Check an array source; return it as a 2-D view (samples, channels), never modified or copied.

    Any real dtype is accepted (int sources are converted chunk by chunk where they are used).

    Raises:
        BufNMFError: not numeric, complex, empty, more than 2-D, NaN/infinite or beyond float32.
    """
    try:
        arr = np.asarray(source)
    except Exception as exc:  # ragged lists and the like
        raise BufNMFError(f"{what} must be an array of samples: {exc}") from None
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise BufNMFError(f"{what} must hold real numbers (float or int samples), got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.ndim > 2:
        raise BufNMFError(f"{what} must be 1-D (samples,) or 2-D (samples, channels), got {arr.ndim} dimensions "
                          f"with shape {arr.shape}")
    if arr.size == 0:
        raise BufNMFError(f"{what} is empty (shape {arr.shape}): give at least one sample")
    data = arr.reshape(-1, 1) if arr.ndim == 1 else arr
    if data.dtype.kind == "f":
        big = 0.0
        for r0 in range(0, data.shape[0], _CHECK_ROWS):
            chunk = data[r0 : r0 + _CHECK_ROWS]
            bad = ~np.isfinite(chunk)
            if bad.any():
                s, c = np.argwhere(bad)[0]
                total = sum(int((~np.isfinite(data[r : r + _CHECK_ROWS])).sum())
                            for r in range(r0, data.shape[0], _CHECK_ROWS))
                raise BufNMFError(f"{what} has {total} NaN or infinite sample(s), first at sample {r0 + s}, "
                                  f"channel {c}: clean the signal first")
            big = max(big, float(np.max(np.abs(chunk))))
        if big > _FLOAT32_MAX:
            raise BufNMFError(f"{what} has samples up to {big:.3g}, beyond what float32 outputs can hold "
                              f"({_FLOAT32_MAX:.3g}): scale the signal down")
    return data


def load_source(source: object, what: str = "source") -> tuple[np.ndarray, int | None]:
    """A source given as an array or as an audio file path.

    Returns:
        ``(samples, sample_rate)``: a 2-D array (samples, channels) and the file's rate in Hz,
        or None for arrays.
    """
    if isinstance(source, (str, os.PathLike)):
        from ..io.audio import read_audio

        return read_audio(source, what)
    return validate_source(source, what), None


def mixdown(source: object) -> np.ndarray:
    """Mono samples (samples,) float64: the mean of the channels of (samples, channels), or a copy of (samples,).

    Example:
        >>> import numpy as np, bufnmf
        >>> bufnmf.mixdown(np.array([[1.0, 0.0], [0.5, 0.5]]))
        array([0.5, 0.5])
    """
    data = validate_source(source)
    return data.mean(axis=1, dtype=np.float64) if data.shape[1] > 1 else data[:, 0].astype(np.float64)


def require_mono(data: np.ndarray, who: str, what: str = "source") -> np.ndarray:
    """The one channel of ``data`` (samples, channels) as (samples,); several channels are refused."""
    if data.shape[1] != 1:
        raise BufNMFError(
            f"{who} takes one channel, got {data.shape[1]} in the {what}: pass x[:, c] for channel c, or "
            "bufnmf.mixdown(x) for the mean of the channels"
        )
    return data[:, 0]


def select(data: np.ndarray, start_frame: object, num_frames: object, start_chan: object,
           num_chans: object) -> np.ndarray:
    """The FluCoMa selection of ``data`` (samples, channels): a view, samples and channels ranged."""
    n, c = data.shape
    s0, ns = span("start_frame", "num_frames", start_frame, num_frames, n, "samples")
    c0, nc = span("start_chan", "num_chans", start_chan, num_chans, c, "channel(s)")
    return data[s0 : s0 + ns, c0 : c0 + nc]
