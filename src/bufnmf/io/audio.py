"""Reading audio files and FluCoMa-layout buffers (WAV and anything libsndfile reads, or .npy).

Buffers are FluCoMa-layout arrays (frames x channels), stored as float32 WAV (loadable as
buffers in Max or SuperCollider) or ``.npy``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import BufNMFError


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise BufNMFError(f"{what} {path} does not exist: check the path")
    if path.is_dir():
        raise BufNMFError(f"{what} {path} is a directory: give an audio file")
    if not os.access(path, os.R_OK):
        raise BufNMFError(f"{what} {path} cannot be read (permission denied)")
    if path.stat().st_size == 0:
        raise BufNMFError(f"{what} {path} is empty (0 bytes): give an audio file")


def read_audio(path: str | os.PathLike[str], what: str = "source") -> tuple[np.ndarray, int]:
    """Read any file libsndfile reads.

    Returns:
        ``(samples, sample_rate)``: float32 array of shape (frames, channels), rate in Hz.

    Raises:
        BufNMFError: missing, unreadable, empty, corrupt or unsupported files (naming the file).
    """
    p = Path(path)
    _check_readable(p, what)
    try:
        with sf.SoundFile(str(p)) as f:
            data = f.read(dtype="float32", always_2d=True)  # exact for 8- to 24-bit files; half of float64
            sr = int(f.samplerate)
            fmt = f.format
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise BufNMFError(
            f"{what} {p} is not a readable audio file ({short_reason(exc)}): use WAV, AIFF, FLAC, OGG or MP3"
        ) from None
    if data.shape[0] == 0:
        raise BufNMFError(f"{what} {p} holds no samples: give a file with sound in it")
    if fmt == "WAV":
        short = wav_shortfall(p)
        if short:
            raise BufNMFError(f"{what} {p} is truncated: its header promises {short[0]} bytes of audio but the file "
                              f"holds {short[1]}: export or copy it again")
    bad = ~np.isfinite(data)
    if bad.any():
        s, c = np.argwhere(bad)[0]
        raise BufNMFError(f"{what} {p} has {int(bad.sum())} NaN or infinite sample(s), first at sample {s}, "
                          f"channel {c}: clean the file before decomposing")
    return data, sr


def wav_shortfall(path: Path) -> tuple[int, int] | None:
    """For a RIFF WAV whose 'data' chunk is cut short: (declared bytes, present bytes); else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                hdr = fh.read(8)
                cid, length = hdr[:4], int.from_bytes(hdr[4:8], "little")
                if cid == b"data":
                    present = size - pos - 8
                    if length in (0, 0xFFFFFFFF):  # streamed writers leave the size open
                        return None
                    return (length, present) if present < length else None
                pos += 8 + length + (length & 1)
    except OSError:
        return None
    return None


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def read_buffer(path: str | os.PathLike[str], what: str = "buffer") -> tuple[np.ndarray, int | None]:
    """Read a FluCoMa-layout buffer from ``.wav`` (any libsndfile format) or ``.npy``.

    Returns:
        ``(array, sample_rate)``: float64, shape (frames, channels); rate None for ``.npy``.
    """
    p = Path(path)
    if p.suffix.lower() == ".npy":
        _check_readable(p, what)
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise BufNMFError(f"{what} {p} is not a readable .npy array ({short_reason(exc)})") from None
        if arr.dtype.kind not in "fiu":
            raise BufNMFError(f"{what} {p} holds {arr.dtype} values: it must be a real numeric array")
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise BufNMFError(f"{what} {p} has shape {arr.shape}: a buffer is 2-D (frames, channels)")
        return arr, None
    return read_audio(p, what)
