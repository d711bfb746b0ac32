"""Reading audio files and FluCoMa-layout buffers (WAV and anything libsndfile reads, or .npy).

Buffers are FluCoMa-layout arrays (frames x channels), stored as float32 WAV (loadable as
buffers in Max or SuperCollider) or ``.npy``. ``-`` as a path is standard input (spooled to a
temporary file once, so it can be read more than once in a run).

Every reader refuses a broken file with a :class:`BufNMFError` naming it: missing, a folder,
unreadable, empty, not audio, truncated (a header that declares more audio than the file holds,
for RIFF/RIFX WAV and WAVE_FORMAT_EXTENSIBLE, RF64/BW64, Sony Wave64, AIFF/AIFC and CAF, and for
any format a decoder that stops before the frames its header declares), or holding NaN/infinite
samples in the part read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

from ..checks import as_int, span
from ..errors import BufNMFError

STDIN = "-"
READ_BLOCK = 1 << 16  # frames per read: the temporaries of a read stay this small
_READ_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError)
_stdin_spool: tuple[object, IO[bytes]] | None = None  # (the stdin object it came from, its copy)


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says, checked against the file (nothing decoded).

    Attributes:
        name: the file as named in messages ("standard input" for ``-``).
        frames: samples per channel. channels: channel count. sample_rate: Hz.
        format, subtype: libsndfile's names (e.g. "WAV", "FLOAT").
    """

    name: str
    frames: int
    channels: int
    sample_rate: int
    format: str
    subtype: str


def is_stdin(path: object) -> bool:
    """Whether ``path`` names standard input (``-``)."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path) == STDIN


def display_name(path: str | os.PathLike[str]) -> str:
    """A path as messages show it: ``-`` is "standard input"."""
    return "standard input" if is_stdin(path) else str(path)


def _stdin_file() -> IO[bytes]:
    """Standard input, copied once into an anonymous temporary file (audio readers need to seek)."""
    global _stdin_spool
    stdin = sys.stdin
    if _stdin_spool is not None and _stdin_spool[0] is stdin:
        _stdin_spool[1].seek(0)
        return _stdin_spool[1]
    if stdin is None:
        raise BufNMFError("standard input is closed: give a file instead of -")
    if stdin.isatty():
        raise BufNMFError("standard input is a terminal: pipe audio into it (e.g. bufnmf decompose - -o out "
                          "< loop.wav), or give a file instead of -")
    spool = tempfile.TemporaryFile(prefix="bufnmf-stdin-")
    try:
        shutil.copyfileobj(stdin.buffer, spool, 1 << 20)
    except OSError as exc:
        spool.close()
        raise BufNMFError(f"cannot read standard input into a temporary file: {exc.strerror or exc}") from None
    if spool.tell() == 0:
        spool.close()
        raise BufNMFError("standard input is empty (0 bytes): pipe audio into it")
    spool.seek(0)
    _stdin_spool = (stdin, spool)
    return spool


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise BufNMFError(f"{what} {path} does not exist: check the path")
    if path.is_dir():
        raise BufNMFError(f"{what} {path} is a directory: give an audio file")
    if not os.access(path, os.R_OK):
        raise BufNMFError(f"{what} {path} cannot be read (permission denied)")
    if path.stat().st_size == 0:
        raise BufNMFError(f"{what} {path} is empty (0 bytes): give an audio file")


@contextlib.contextmanager
def _opened(path: str | os.PathLike[str], what: str) -> Iterator[tuple[sf.SoundFile, str]]:
    """The checked file open for reading, with its name for messages."""
    name = display_name(path)
    fh: IO[bytes]
    if is_stdin(path):
        fh = _stdin_file()
        own = False
    else:
        p = Path(path)
        _check_readable(p, what)
        try:
            fh = open(p, "rb")
        except OSError as exc:
            raise BufNMFError(f"{what} {name} cannot be read: {exc.strerror or exc}") from None
        own = True
    try:
        size = os.fstat(fh.fileno()).st_size
        short = declared_shortfall(fh, size)
        if short:
            raise BufNMFError(f"{what} {name} is truncated: its header promises {short[0]} bytes of audio but the "
                              f"file holds {short[1]}: export or copy it again")
        if _ogg_cut(fh, size):
            raise BufNMFError(f"{what} {name} is truncated: its last Ogg page is incomplete or the stream has no end "
                              "mark: export or copy it again")
        fh.seek(0)
        try:
            f = sf.SoundFile(fh)
        except _READ_ERRORS as exc:
            raise BufNMFError(f"{what} {name} is not a readable audio file ({short_reason(exc)}): use WAV, AIFF, "
                              "FLAC, OGG or MP3") from None
        with f:
            yield f, name
    finally:
        if own:
            fh.close()


def audio_info(path: str | os.PathLike[str], what: str = "source") -> AudioInfo:
    """The header of an audio file (``-``: standard input), checked; no samples are decoded.

    Raises:
        BufNMFError: missing, unreadable, empty, corrupt, truncated or unsupported files.
    """
    with _opened(path, what) as (f, name):
        info = AudioInfo(name, int(f.frames), int(f.channels), int(f.samplerate), str(f.format), str(f.subtype))
    if info.frames <= 0:
        raise BufNMFError(f"{what} {name} holds no samples: give a file with sound in it")
    if info.sample_rate <= 0:
        raise BufNMFError(f"{what} {name} declares a sample rate of {info.sample_rate} Hz: repair its header")
    return info


def read_audio(path: str | os.PathLike[str], what: str = "source", *, start_frame: int = 0, num_frames: int = -1,
               channels: int | slice | str | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file (any libsndfile format; ``-``: standard input), or only part of it.

    Only the frames and channels asked for are kept, read in blocks of :data:`READ_BLOCK` frames,
    so memory grows with the selection, not with the file.

    Args:
        start_frame, num_frames: the frames to read (``num_frames`` -1: to the end).
        channels: None (all), an index, a ``slice`` of channels, or "mix" (the mean of all
            channels, computed in float64).

    Returns:
        ``(samples, sample_rate)``: float32 array of shape (frames, channels) (float64 (frames, 1)
        for "mix"), rate in Hz.

    Raises:
        BufNMFError: missing, unreadable, empty, corrupt, truncated or unsupported files, a
            selection outside the file, or NaN/infinite samples in the selection (naming the file).
    """
    with _opened(path, what) as (f, name):
        total, nch = int(f.frames), int(f.channels)
        if total <= 0:
            raise BufNMFError(f"{what} {name} holds no samples: give a file with sound in it")
        s0, n = span("start_frame", "num_frames", start_frame, num_frames, total, "samples", f"{what} {name}")
        picked = _channels(channels, nch, what, name)
        mix = isinstance(picked, str)
        cols = picked if isinstance(picked, slice) else slice(0, nch)
        out = np.empty((n, 1 if mix else cols.stop - cols.start), dtype=np.float64 if mix else np.float32)
        try:
            if s0:
                f.seek(s0)
            done = 0
            while done < n:
                blk = f.read(min(READ_BLOCK, n - done), dtype="float32", always_2d=True)
                if blk.shape[0] == 0:
                    break
                rows = blk.shape[0]
                bad = ~np.isfinite(blk)
                if bad.any():
                    _refuse_nonfinite(f, bad, s0 + done, n - done - rows, what, name)
                if mix:
                    out[done : done + rows, 0] = blk.mean(axis=1, dtype=np.float64)
                else:
                    out[done : done + rows] = blk[:, cols]
                done += rows
        except _READ_ERRORS as exc:
            raise BufNMFError(f"{what} {name} cannot be decoded ({short_reason(exc)}): it may be truncated or "
                              "damaged; export or copy it again") from None
        if done < n:
            raise BufNMFError(f"{what} {name} is truncated: its header declares {total} frames but the audio ends "
                              f"after {s0 + done}: export or copy it again")
        return out, int(f.samplerate)


def _channels(channels: int | slice | str | None, nch: int, what: str, name: str) -> slice | str:
    if channels is None:
        return slice(0, nch)
    if isinstance(channels, str):
        if channels != "mix":
            raise BufNMFError(f"channels must be an index, a slice or 'mix', got {channels!r}")
        return "mix"
    if isinstance(channels, slice):
        picked = range(nch)[channels]
        if len(picked) == 0 or channels.step not in (None, 1):
            raise BufNMFError(f"channels {channels.start}..{channels.stop} select nothing in {what} {name}, which "
                              f"has {nch} channel(s)")
        if (channels.stop or 0) > nch:
            raise BufNMFError(f"channels up to {channels.stop - 1} are outside {what} {name}: it has {nch} "
                              f"channel(s) (0..{nch - 1})")
        return slice(picked.start, picked.stop)
    c = as_int("channel", channels)
    if not 0 <= c < nch:
        raise BufNMFError(f"channel {c} is outside {what} {name}: it has {nch} channel(s) (0..{nch - 1})")
    return slice(c, c + 1)


def _refuse_nonfinite(f: sf.SoundFile, bad: np.ndarray, first_row: int, rest: int, what: str, name: str) -> None:
    s, c = np.argwhere(bad)[0]
    count = int(bad.sum())
    while rest > 0:  # count the rest of the selection, a block at a time
        blk = f.read(min(READ_BLOCK, rest), dtype="float32", always_2d=True)
        if blk.shape[0] == 0:
            break
        count += int((~np.isfinite(blk)).sum())
        rest -= blk.shape[0]
    raise BufNMFError(f"{what} {name} has {count} NaN or infinite sample(s), first at sample {first_row + int(s)}, "
                      f"channel {int(c)}: clean the file before decomposing")


# ----------------------------------------------------------------------------------------------
# declared length against the bytes present

_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
_W64_DATA = b"data\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_MAX_CHUNKS = 10_000  # a corrupt file's chunk walk ends here


def declared_shortfall(fh: IO[bytes], size: int) -> tuple[int, int] | None:
    """For a file whose audio chunk declares more bytes than the file holds: (declared, present).

    Reads the container's chunk headers (RIFF/RIFX WAVE incl. WAVE_FORMAT_EXTENSIBLE, RF64/BW64,
    Sony Wave64, AIFF/AIFC, CAF); None for complete files, streamed files whose size is left open,
    and other formats (their decoders' frame counts are checked while reading).
    """
    try:
        fh.seek(0)
        head = fh.read(40)
        if len(head) < 12:
            return None
        magic, kind = head[:4], head[8:12]
        if magic in (b"RIFF", b"RIFX") and kind == b"WAVE":
            return _riff(fh, size, "little" if magic == b"RIFF" else "big")
        if magic in (b"RF64", b"BW64") and kind == b"WAVE":
            return _rf64(fh, size)
        if head[:16] == _W64_RIFF:
            return _w64(fh, size)
        if magic == b"FORM" and kind in (b"AIFF", b"AIFC"):
            return _aiff(fh, size)
        if magic == b"caff":
            return _caf(fh, size)
        if magic == b".snd":  # Sun/NeXT AU: data offset and size (0xFFFFFFFF: unknown) in the header
            offset, length = int.from_bytes(head[4:8], "big"), int.from_bytes(head[8:12], "big")
            present = size - offset
            return (length, present) if length != 0xFFFFFFFF and 0 <= present < length else None
    except (OSError, ValueError):
        return None
    return None


def _chunks(fh: IO[bytes], size: int, start: int, order: str, header: int = 8) -> Iterator[tuple[bytes, int, int]]:
    """(id, declared length, position of the chunk's body) of 4-byte-id / 4-byte-length chunks."""
    pos = start
    for _ in range(_MAX_CHUNKS):
        if pos + header > size:
            return
        fh.seek(pos)
        hdr = fh.read(header)
        cid, length = hdr[:4], int.from_bytes(hdr[4:8], order)  # type: ignore[arg-type]
        yield cid, length, pos + header
        pos += header + length + (length & 1)


def _riff(fh: IO[bytes], size: int, order: str) -> tuple[int, int] | None:
    for cid, length, body in _chunks(fh, size, 12, order):
        if cid == b"data":
            if length in (0, 0xFFFFFFFF):  # streamed writers leave the size open
                return None
            present = size - body
            return (length, present) if present < length else None
    return None


def _rf64(fh: IO[bytes], size: int) -> tuple[int, int] | None:
    data_size = None
    for cid, length, body in _chunks(fh, size, 12, "little"):
        if cid == b"ds64":
            fh.seek(body + 8)
            data_size = int.from_bytes(fh.read(8), "little")
        elif cid == b"data":
            declared = data_size if length == 0xFFFFFFFF and data_size is not None else length
            if declared in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
                return None
            present = size - body
            return (declared, present) if present < declared else None
        if length == 0xFFFFFFFF:
            return None
    return None


def _w64(fh: IO[bytes], size: int) -> tuple[int, int] | None:
    pos = 40  # riff GUID (16), file size (8), wave GUID (16)
    for _ in range(_MAX_CHUNKS):
        if pos + 24 > size:
            return None
        fh.seek(pos)
        hdr = fh.read(24)
        guid, length = hdr[:16], int.from_bytes(hdr[16:24], "little")  # length includes the 24-byte header
        if guid == _W64_DATA:
            declared, present = length - 24, size - pos - 24
            return (declared, present) if declared > 0 and present < declared else None
        if length < 24:
            return None
        pos += (length + 7) // 8 * 8
    return None


def _aiff(fh: IO[bytes], size: int) -> tuple[int, int] | None:
    for cid, length, body in _chunks(fh, size, 12, "big"):
        if cid == b"SSND":
            fh.seek(body)
            offset = int.from_bytes(fh.read(4), "big")
            declared = length - 8 - offset  # the chunk holds offset and block size before the samples
            present = size - body - 8 - offset
            return (declared, present) if declared > 0 and present < declared else None
    return None


def _caf(fh: IO[bytes], size: int) -> tuple[int, int] | None:
    pos = 8  # 'caff', version, flags
    for _ in range(_MAX_CHUNKS):
        if pos + 12 > size:
            return None
        fh.seek(pos)
        hdr = fh.read(12)
        cid, length = hdr[:4], int.from_bytes(hdr[4:12], "big", signed=True)
        if cid == b"data":
            if length < 0:  # -1: the data runs to the end of the file
                return None
            declared, present = length - 4, size - pos - 12 - 4  # an edit count comes first
            return (declared, present) if present < declared else None
        if length < 0:
            return None
        pos += 12 + length
    return None


def _ogg_cut(fh: IO[bytes], size: int) -> bool:
    """Whether an Ogg file ends early: its last page is incomplete or not marked end-of-stream.

    (Ogg declares no length; a complete stream's last page carries the end-of-stream flag.)
    """
    try:
        fh.seek(0)
        if fh.read(4) != b"OggS":
            return False
        tail_at = max(0, size - 70_000)  # a page is at most 65307 bytes
        fh.seek(tail_at)
        tail = fh.read()
    except OSError:
        return False
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at:]
        if len(page) >= 27 and page[4] == 0:  # stream structure version 0: a page header
            segments = page[26]
            if len(page) < 27 + segments:
                return True
            body = sum(page[27 : 27 + segments])
            if len(page) < 27 + segments + body:
                return True  # cut inside the page
            return not page[5] & 0x04  # no end-of-stream flag on the last page
        at = tail.rfind(b"OggS", 0, at)
    return False


def wav_shortfall(path: Path) -> tuple[int, int] | None:
    """For a file whose audio chunk is cut short: (declared bytes, present bytes); else None."""
    try:
        with open(path, "rb") as fh:
            return declared_shortfall(fh, os.fstat(fh.fileno()).st_size)
    except OSError:
        return None


def short_reason(exc: BaseException) -> str:
    """libsndfile's reason, without the "Error opening <file>:" prefix, on one line."""
    text = str(exc).strip().splitlines()
    last = text[-1] if text else type(exc).__name__
    if last.startswith("Error opening ") and ": " in last:
        last = last.split(": ", 1)[1]
    return last.removeprefix("Error : ").strip() or type(exc).__name__


def read_buffer(path: str | os.PathLike[str], what: str = "buffer") -> tuple[np.ndarray, int | None]:
    """Read a FluCoMa-layout buffer from ``.wav`` (any libsndfile format) or ``.npy``.

    Returns:
        ``(array, sample_rate)``: float64, shape (frames, channels); rate None for ``.npy``.
    """
    p = Path(path)
    if p.suffix.lower() == ".npy":
        _check_readable(p, what)
        try:
            arr: Any = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BufNMFError(f"{what} {p} is not a readable .npy array ({short_reason(exc)})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
            kind = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
            raise BufNMFError(f"{what} {p} holds {kind} values: it must be a real numeric array")
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.size == 0:
            raise BufNMFError(f"{what} {p} has shape {arr.shape}: a buffer is 2-D (frames, channels) and not empty")
        return arr, None
    data, sr = read_audio(p, what)
    return data.astype(np.float64), sr
