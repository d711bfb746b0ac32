"""All-or-nothing output writing: a run's files appear together, under a folder lock, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import BufNMFError
from .audio import short_reason

LOCK_NAME = ".bufnmf.lock"
WAV_MAX_CHANNELS = 1024  # libsndfile's limit: wider buffers are written as .npy only


class OutputSet:
    """Write a set of files into one folder all together, or not at all.

    Each file is written to a hidden temporary name in the folder and renamed into
    place only when every file has been written (:meth:`commit`). Existing files
    are refused unless ``force``. On any exception (Ctrl-C included) the
    temporaries are removed and existing files stay untouched.

    Use::

        with OutputSet(outdir, ["a.wav", "b.json"], force=False) as out:
            out.write_audio("a.wav", data, sr)
            out.write_json("b.json", {...})
    """

    def __init__(self, folder: str | os.PathLike[str], names: list[str], force: bool = False) -> None:
        self.folder = Path(folder)
        self.names = list(names)
        self.force = force
        self._temps: dict[str, Path] = {}
        self._scratch: list[Path] = []
        self.written: list[Path] = []

    def targets(self) -> list[Path]:
        return [self.folder / n for n in self.names]

    def check(self) -> None:
        """Fail early (before any work) if the folder cannot take the outputs."""
        f = self.folder
        if f.exists() and not f.is_dir():
            raise BufNMFError(f"output folder {f} is a file: give a folder path with -o")
        if not self.force:
            existing = [p for p in self.targets() if p.exists()]
            if existing:
                more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
                where = "output folder" if len(self.names) > 1 else "output name"
                raise BufNMFError(f"{existing[0]}{more} already exist(s): use --force to overwrite, "
                                  f"or choose another {where}")
        try:
            f.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufNMFError(f"cannot create output folder {f}: {exc.strerror or exc}") from None
        if not os.access(f, os.W_OK):
            raise BufNMFError(f"output folder {f} is not writable: choose another with -o")

    def __enter__(self) -> OutputSet:
        self.check()
        self._lock()
        try:
            self.check()  # again, now that no other bufnmf run can write here
        except BaseException:
            self._unlock()
            raise
        return self

    def _lock(self) -> None:
        """Hold an exclusive lock on the folder while writing; a second run refuses at once."""
        self._lockfile = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX: no cross-process lock
            return
        path = self.folder / LOCK_NAME
        fh = open(path, "a+")  # held until _unlock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise BufNMFError(f"another bufnmf run is writing to {self.folder} right now: wait for it, "
                              "or choose another output folder") from None
        self._lockfile = fh

    def _unlock(self) -> None:
        fh = getattr(self, "_lockfile", None)
        if fh is not None:
            with contextlib.suppress(OSError):
                (self.folder / LOCK_NAME).unlink()
            fh.close()
            self._lockfile = None

    def _temp(self, name: str) -> Path:
        if name not in self.names:
            raise ValueError(f"{name} was not declared")  # programming error
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=self.folder)
        os.close(fd)
        self._temps[name] = Path(tmp)
        return Path(tmp)

    def scratch(self, shape: tuple[int, ...], dtype: type = np.float32) -> np.memmap:
        """A temporary memory-mapped array in the folder, removed with the temporaries."""
        fd, tmp = tempfile.mkstemp(prefix=".scratch.", suffix=".part", dir=self.folder)
        os.close(fd)
        self._scratch.append(Path(tmp))
        try:
            return np.memmap(tmp, dtype=dtype, mode="w+", shape=shape)
        except OSError as exc:
            raise BufNMFError(f"cannot make a scratch file in {self.folder}: {exc.strerror or exc}") from None

    def _guard(self, name: str, writer: Callable[[Path], None]) -> None:
        tmp = self._temp(name)
        try:
            writer(tmp)
        except OSError as exc:
            raise BufNMFError(f"cannot write {self.folder / name}: {exc.strerror or exc}") from None
        except sf.LibsndfileError as exc:
            raise BufNMFError(f"cannot write {self.folder / name}: {short_reason(exc)}") from None

    def write_audio(self, name: str, data: np.ndarray, sample_rate: float,
                    after_block: Callable[[int, int], None] | None = None) -> None:
        """Float32 WAV, data shape (frames, channels), rate rounded to whole Hz (>= 1); NaN/Inf refused.

        Written in blocks, so ``data`` may be a view of a memory map larger than memory;
        ``after_block(start, stop)`` is called after each block of rows (e.g. to release its pages).
        """
        if data.ndim == 1:
            data = data[:, None]
        sr = max(1, round(sample_rate))
        block = 1 << 18

        def write(p: Path) -> None:
            with sf.SoundFile(str(p), "w", sr, data.shape[1], subtype="FLOAT", format="WAV") as f:
                for i in range(0, max(1, data.shape[0]), block):
                    chunk = np.asarray(data[i : i + block], dtype=np.float32)
                    if not np.isfinite(chunk).all():
                        raise BufNMFError(f"refusing to write {name}: it would contain NaN or infinite values")
                    f.write(chunk)
                    if after_block is not None:
                        after_block(i, i + chunk.shape[0])

        self._guard(name, write)

    def write_npy(self, name: str, array: np.ndarray) -> None:
        def w(p: Path) -> None:
            with open(p, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        self._guard(name, w)

    def write_json(self, name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
        self._guard(name, lambda p: self._write_file(p, text.encode()))

    def write_bytes(self, name: str, data: bytes) -> None:
        self._guard(name, lambda p: self._write_file(p, data))

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def write_with(self, name: str, writer: Callable[[Path], None]) -> None:
        """Let ``writer(temp_path)`` write the file (e.g. a matplotlib figure)."""
        self._guard(name, writer)

    def commit(self) -> list[Path]:
        missing = [n for n in self.names if n not in self._temps]
        if missing:
            raise RuntimeError(f"outputs not written: {missing}")  # programming error
        for name in self.names:
            tmp = self._temps.pop(name)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.folder / name)
            self.written.append(self.folder / name)
        return self.written

    def discard(self) -> None:
        for tmp in [*self._temps.values(), *self._scratch]:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._temps.clear()
        self._scratch.clear()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.discard()
            self._unlock()
