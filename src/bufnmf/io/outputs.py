"""All-or-nothing output writing: a run's files appear together, under a folder lock, or not at all.

:class:`OutputSet` is what every job writes through; the rules it keeps are the project's:

- **Temporaries, then one commit.** Each file is written to a hidden temporary in its own folder
  (``.bufnmf-<token>-<n>.part``) and renamed into place only when every file of the run is
  complete. The commit moves the files it replaces aside first, renames the new ones in, and
  only then drops the old ones; an error or Ctrl-C during the commit puts everything back, and a
  commit journal (``.bufnmf-commit.json``) lets the next run roll back one that was killed.
- **Run folders.** A folder output (``run_folder=True``: decompose, stft, seed, filter, ...) holds
  one run: a manifest (``.bufnmf-run.json``) records what the run wrote; a later run into the
  folder needs ``force``, and a forced commit removes the earlier run's files with the same
  all-or-nothing care. Single-file outputs (``OutputSet.files``) replace just those files.
- **Inputs are never outputs.** A target, or a file a forced commit would remove, that is one of
  the run's inputs (``inputs=``: sources, kits and their sidecars, buffers) is refused,
  ``force`` or not.
- **One writer per folder.** A run folder is locked (``.bufnmf.lock``, ``flock``) for the whole
  run, so a second run refuses at once; single files lock their folders for the commit only.
  Under the lock, what killed runs left (temporaries, scratch maps, journals, lock files) is
  cleaned up.
- **Faults are one clear error.** A full disk, a file-size limit, a name too long for the file
  system, a read-only or unwritable place: :class:`BufNMFError` ("no space left on device ...",
  ...), every temporary removed, earlier outputs intact, and no folder left behind that the run
  created. Scratch memory maps have their space reserved before they are mapped, so a full disk
  is an error, never a bus error.
- **Formats by extension.** Audio is written as the name's extension says (``.wav`` float32 by
  default, ``.flac``, ``.ogg``, ``.aiff``, ``.caf``, ... whatever libsndfile writes), or as
  ``format``/``subtype`` say. ``-`` is standard output (one single-file output per run).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf

from .. import __version__
from ..errors import BufNMFError, BufNMFWarning, InterruptedAfterCommit
from .audio import is_stdin, short_reason

LOCK_NAME = ".bufnmf.lock"
MANIFEST_NAME = ".bufnmf-run.json"
JOURNAL_NAME = ".bufnmf-commit.json"
PREFIX = ".bufnmf-"  # temporaries, scratch maps, owner marks and set-aside files all start so
WAV_MAX_CHANNELS = 1024  # libsndfile's limit: wider buffers are written as .npy only
LOCK_WAIT_SECONDS = 60.0  # how long a single-file commit waits for a folder another run holds
STDOUT = "-"

#: Audio formats by extension: (libsndfile major format, default subtype).
AUDIO_EXTENSIONS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "FLOAT"), ".wave": ("WAV", "FLOAT"), ".aif": ("AIFF", "FLOAT"), ".aiff": ("AIFF", "FLOAT"),
    ".aifc": ("AIFF", "FLOAT"), ".caf": ("CAF", "FLOAT"), ".w64": ("W64", "FLOAT"), ".rf64": ("RF64", "FLOAT"),
    ".au": ("AU", "FLOAT"), ".snd": ("AU", "FLOAT"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS"),
    ".oga": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS"), ".mp3": ("MP3", "MPEG_LAYER_III"),
}
#: ``format`` names (``--format``) -> (major format, default subtype, extension).
AUDIO_FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "FLOAT", ".wav"), "aiff": ("AIFF", "FLOAT", ".aiff"), "caf": ("CAF", "FLOAT", ".caf"),
    "w64": ("W64", "FLOAT", ".w64"), "rf64": ("RF64", "FLOAT", ".rf64"), "au": ("AU", "FLOAT", ".au"),
    "flac": ("FLAC", "PCM_24", ".flac"), "ogg": ("OGG", "VORBIS", ".ogg"), "opus": ("OGG", "OPUS", ".opus"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
}
#: What a folder output must not be named like (it would read as a file).
FILE_LIKE_SUFFIXES = {*AUDIO_EXTENSIONS, ".npy", ".json", ".csv", ".mid", ".midi", ".png", ".txt"}
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}


def audio_format(name: str | os.PathLike[str], format: str | None = None, subtype: str | None = None,
                 ) -> tuple[str, str]:
    """libsndfile (major format, subtype) for an audio output: ``format`` (a :data:`AUDIO_FORMATS`
    name) if given, else the name's extension, else float32 WAV; ``subtype`` (e.g. "PCM_16",
    "FLOAT") overrides the format's default. Checked against what libsndfile can write."""
    ext = Path(os.fspath(name)).suffix.lower()
    if format is not None:
        key = str(format).lower().lstrip(".")
        if key not in AUDIO_FORMATS:
            raise BufNMFError(f"audio format {format!r} is not known: use one of {', '.join(AUDIO_FORMATS)}")
        major, sub, _ = AUDIO_FORMATS[key]
        if ext in AUDIO_EXTENSIONS and AUDIO_EXTENSIONS[ext][0] != major:
            raise BufNMFError(f"{name} is named as {AUDIO_EXTENSIONS[ext][0]} ({ext}) but the format asked is {key}: "
                              "give the name the format's extension, or leave the format to the name",
                              cli=f"-o {name} is named as {AUDIO_EXTENSIONS[ext][0]} ({ext}) but --format is {key}: "
                                  "give the name the format's extension, or leave out --format")
    elif ext in AUDIO_EXTENSIONS:
        major, sub = AUDIO_EXTENSIONS[ext]
    elif ext and not ext[1:].isdigit():
        known = ", ".join(AUDIO_FORMATS)
        raise BufNMFError(f"cannot tell the audio format of {name} from its extension {ext}: name it .wav, .flac, "
                          f".ogg, .aiff, ... ({known}), or give the format",
                          cli=f"cannot tell the audio format of {name} from its extension {ext}: name it .wav, "
                              f".flac, .ogg, .aiff, ... ({known}), or give --format")
    else:
        major, sub = "WAV", "FLOAT"  # no extension (or standard output): float32 WAV
    if subtype is not None:
        sub = str(subtype).upper()
        if sub not in sf.available_subtypes(major):
            raise BufNMFError(f"subtype {subtype!r} cannot be written as {major}: use one of "
                              f"{', '.join(sorted(sf.available_subtypes(major)))}")
    if not sf.check_format(major, sub):
        raise BufNMFError(f"this libsndfile cannot write {major} {sub}: choose another format")
    return major, sub


def audio_extension(format: str | None) -> str:
    """The file extension of a :data:`AUDIO_FORMATS` name (".wav" when None)."""
    if format is None:
        return ".wav"
    key = str(format).lower().lstrip(".")
    if key not in AUDIO_FORMATS:
        raise BufNMFError(f"audio format {format!r} is not known: use one of {', '.join(AUDIO_FORMATS)}")
    return AUDIO_FORMATS[key][2]


def check_audio_output(name: str, channels: int, sample_rate: float, format: str | None = None,
                       subtype: str | None = None) -> tuple[str, str]:
    """Refuse, before any work, an audio output its format cannot hold (channel count, sample rate)."""
    import io as _io

    major, sub = audio_format(name, format, subtype)
    sr = max(1, round(sample_rate))
    try:
        with sf.SoundFile(_io.BytesIO(), "w", sr, int(channels), sub, format=major):
            pass
    except (sf.LibsndfileError, ValueError, TypeError, RuntimeError) as exc:
        raise BufNMFError(f"{name} cannot be written as {major} {sub} with {channels} channel(s) at {sr} Hz "
                          f"({short_reason(exc)}): choose another format (e.g. .wav)") from None
    return major, sub


def os_error_message(exc: OSError, path: Path | str, folder: Path | str | None = None) -> str:
    """One line for an OSError met while writing ``path``, naming the fix."""
    where = folder if folder is not None else Path(path).parent
    code = exc.errno
    if code == errno.ENOSPC:
        return (f"no space left on device writing {path}: free some space in {where} or choose another output "
                "folder (nothing was written; earlier outputs are as they were)")
    if code == getattr(errno, "EDQUOT", -1):
        return f"disk quota exceeded writing {path}: free some space or choose another output folder"
    if code == errno.EFBIG:
        return (f"file too large: {path} is more than the file system or the file-size limit (ulimit -f) allows: "
                "choose another output folder, or a shorter selection")
    if code == errno.ENAMETOOLONG:
        return f"file name too long for the file system: {path}: choose a shorter output name or label"
    if code == errno.EROFS:
        return f"{where} is on a read-only file system: choose another output folder"
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot write to {where} (permission denied): choose another output folder"
    return f"cannot write {path}: {exc.strerror or exc}"


class _ErrnoFile:
    """A binary file for libsndfile's virtual I/O that keeps what stopped a write (the OSError of a
    full disk or a size limit, or a Ctrl-C), which would otherwise be lost inside the C callback
    behind libsndfile's "System error"; :meth:`OutputSet.write_audio` raises it again."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.error: BaseException | None = None

    def _keep(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc

    def write(self, data: bytes) -> int:
        if self.error is not None:
            return 0
        try:
            return self.fh.write(data)
        except (OSError, KeyboardInterrupt) as exc:
            self._keep(exc)
            return 0

    def read(self, n: int = -1) -> bytes:
        try:
            return self.fh.read(n)
        except (OSError, KeyboardInterrupt) as exc:
            self._keep(exc)
            return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self.fh.seek(offset, whence)
        except (OSError, KeyboardInterrupt) as exc:  # a buffered file flushes before it seeks
            self._keep(exc)
            return -1

    def tell(self) -> int:
        try:
            return self.fh.tell()
        except (OSError, KeyboardInterrupt) as exc:
            self._keep(exc)
            return -1

    def flush(self) -> None:
        try:
            self.fh.flush()
        except (OSError, KeyboardInterrupt) as exc:
            self._keep(exc)


def _folder_key(folder: Path) -> Path:
    """One key per folder, however it is named (relative, absolute, through links)."""
    return Path(os.path.realpath(folder))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _name_max(folder: Path) -> int:
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(os.pathconf(p, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _listed(data: dict[str, Any] | None, key: str) -> list[str]:
    """A manifest's or journal's list of plain file names in its folder (anything else in it, and
    bufnmf's own working files, are ignored; the manifest may be listed)."""
    items = data.get(key) if data else None
    if not isinstance(items, list):
        return []
    return [n for n in items if isinstance(n, str) and n and "/" not in n and "\0" not in n
            and n not in (".", "..", LOCK_NAME, JOURNAL_NAME) and (n == MANIFEST_NAME or not n.startswith(PREFIX))]


class _Folder:
    """One folder of a set: the lock, the owner mark, what was created, the commit's progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_fh: IO[str] | None = None
        self.owner: Path | None = None
        self.owner_fh: IO[str] | None = None
        self.created: list[Path] = []
        self.backup: Path | None = None
        self.moved: list[str] = []  # old files set aside in ``backup``
        self.placed: list[str] = []  # new files renamed into place
        self.journal = False


class OutputSet:
    """Write a set of files all together, or not at all (see the module's rules).

    Use::

        with OutputSet(outdir, ["a.wav", "b.json"], force=False, run_folder=True, inputs=[src]) as out:
            out.write_audio("a.wav", data, sr)
            out.write_json("b.json", {...})

        with OutputSet.files([events_path, midi_path], force=force, inputs=[src]) as out:
            out.write_bytes(events_path, ...)   # the key is the path as given

    Args:
        folder: the output folder (created if needed; removed again if the run fails and it made it).
        names: the file names the run writes, in writing order.
        force: replace existing outputs (and, in a run folder, the earlier run's files).
        inputs: the files the run reads; none of them may be replaced or removed.
        run_folder: the folder holds this run only (a manifest records what it wrote).
        job: the job's name, recorded in the manifest.
    """

    def __init__(self, folder: str | os.PathLike[str], names: Sequence[str], force: bool = False, *,
                 inputs: Iterable[str | os.PathLike[str] | None] = (), run_folder: bool = False,
                 job: str | None = None) -> None:
        self.folder = Path(folder)
        self.names = [str(n) for n in names]
        self._paths: dict[str, Path | None] = {n: self.folder / n for n in self.names}
        self._init(force, inputs, run_folder, job)

    @classmethod
    def files(cls, paths: Sequence[str | os.PathLike[str]], force: bool = False, *,
              inputs: Iterable[str | os.PathLike[str] | None] = ()) -> OutputSet:
        """A set of single files, in any folders (``-``: standard output); each is written under
        the key it is given here (``write_bytes(path, ...)``)."""
        self = cls.__new__(cls)
        self.names = [os.fspath(p) for p in paths]
        self._paths = {n: (None if is_stdin(n) else Path(n)) for n in self.names}
        real = [p for p in self._paths.values() if p is not None]
        self.folder = real[0].parent if real else Path(".")
        self._init(force, inputs, False, None)
        return self

    def _init(self, force: bool, inputs: Iterable[str | os.PathLike[str] | None], run_folder: bool,
              job: str | None) -> None:
        self.force = force
        self.run_folder = run_folder
        self.job = job
        self.inputs = [Path(p) for p in inputs if p is not None and not is_stdin(p)]
        self._temps: dict[str, Path] = {}
        self._scratch: list[Path] = []
        self._folders: dict[Path, _Folder] = {}
        for p in self._paths.values():
            if p is not None:
                self._folders.setdefault(_folder_key(p.parent), _Folder(p.parent))
        self._token = secrets.token_hex(6)
        self._count = 0
        self._entered = False
        self.written: list[Path] = []
        self.replaced: list[Path] = []  # files of an earlier run removed by a forced commit

    # ------------------------------------------------------------------------------------------
    # checks

    def targets(self) -> list[Path]:
        return [p if p is not None else Path(STDOUT) for p in self._paths.values()]

    def check(self) -> None:
        """Fail early, before any work, if the outputs cannot be written.

        Changes nothing on disk but what a killed run left in the output folders (a half-done
        commit is rolled back, its temporaries removed), when no other run holds them.
        """
        self._check_names()
        for fs in self._folders.values():
            self._check_folder(fs.path)
            self._tidy(fs)
        self._check_targets(locked=False)

    def _tidy(self, fs: _Folder) -> None:
        """Clean up after killed runs now, if the folder has anything of theirs and is free."""
        if fs.lock_fh is not None or not fs.path.is_dir():
            return
        try:
            leftovers = any(n.startswith(PREFIX) and n != MANIFEST_NAME for n in os.listdir(fs.path))
        except OSError:
            return
        if not leftovers:
            return
        try:
            self._lock(fs, wait=0.0)
        except BufNMFError:
            if self.run_folder:
                raise
            return  # another run is committing here; the commit will look again
        try:
            self._recover(fs)
        finally:
            self._unlock(fs)

    def _check_names(self) -> None:
        twice = [n for i, n in enumerate(self.names) if n in self.names[:i] and n != STDOUT]
        if twice:
            raise BufNMFError(f"{twice[0]} is given for two outputs of this run: give each output its own name")
        outs = [p for p in self._paths.values() if p is not None]
        for i, p in enumerate(outs):
            for q in outs[:i]:
                if p == q or _same_file(p, q):
                    raise BufNMFError(f"{p} is given for two outputs of this run: give each output its own name")
        if self.names.count(STDOUT) > 1:
            raise BufNMFError("only one output can go to standard output (-)")
        for p in outs:
            limit = _name_max(p.parent)
            if len(os.fsencode(p.name)) > limit:
                raise BufNMFError(f"file name too long for the file system ({len(os.fsencode(p.name))} bytes, at "
                                  f"most {limit}): {p.name}: choose a shorter output name or label")

    def _check_folder(self, f: Path) -> None:
        if f.exists() and not f.is_dir():
            if self.run_folder:
                raise BufNMFError(f"output folder {f} is a file: give a folder path with -o")
            raise BufNMFError(f"cannot write into {f}: it is a file, not a folder: choose another output path")
        if self.run_folder and not f.exists() and f.suffix.lower() in FILE_LIKE_SUFFIXES:
            raise BufNMFError(f"output folder {f} is named like a file ({f.suffix}), but this job writes a folder "
                              f"of files: give a folder name (e.g. {f.with_suffix('')})",
                              cli=f"-o {f} is named like a file ({f.suffix}), but this command writes a folder of "
                                  f"files: give a folder name (e.g. -o {f.with_suffix('')})")
        self._probe(f)

    def _probe(self, f: Path) -> None:
        """Try writing where the outputs go: a file created and removed in the folder, or in its
        nearest existing parent when the folder is still to be made (nothing is left either way,
        and no folder is made and removed, which could race with another run making it)."""
        p = f
        while not p.exists() and p != p.parent:
            p = p.parent
        if not p.is_dir():
            raise BufNMFError(f"cannot create output folder {f}: {p} is a file")
        try:
            fd, probe = tempfile.mkstemp(prefix=f"{PREFIX}probe-", dir=p)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise BufNMFError(os_error_message(exc, f, p)) from None
            where = f"create output folder {f}" if p != f else f"write to {f}"
            raise BufNMFError(f"cannot {where}: {exc.strerror or exc}") from None

    def _check_targets(self, locked: bool) -> None:
        for p in self._paths.values():
            if p is None:
                continue
            for inp in self.inputs:
                if _same_file(p, inp):
                    raise BufNMFError(f"{p} is an input of this run and would be overwritten: choose another output "
                                      "name (--force does not change this)")
        for p in self._paths.values():
            if p is not None and p.is_dir() and not p.is_symlink():
                raise BufNMFError(f"{p} is a folder, where this run writes a file: move it, or choose another "
                                  "output name (--force does not replace folders)")
        existing = [p for p in self._paths.values() if p is not None and (p.exists() or p.is_symlink())]
        earlier = self._earlier_run() if self.run_folder else []
        if (existing or earlier) and not self.force:
            first = (existing or earlier)[0]
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            if earlier:
                raise BufNMFError(f"output folder {self.folder} holds the outputs of an earlier run ({len(earlier)} "
                                  f"file(s){'; ' + str(first) + more + ' already exist(s)' if existing else ''}): "
                                  "use --force to replace them, or choose another output folder")
            where = "output folder" if self.run_folder else "output name"
            raise BufNMFError(f"{first}{more} already exist(s): use --force to overwrite, or choose another {where}")
        if self.run_folder:
            for p in earlier:
                for inp in self.inputs:
                    if _same_file(p, inp):
                        raise BufNMFError(f"{p} is an input of this run, but it belongs to the earlier run in "
                                          f"{self.folder}, which --force would remove: copy it elsewhere first, or "
                                          "choose another output folder")

    def _earlier_run(self) -> list[Path]:
        """The files of the run recorded in the folder's manifest that are still there."""
        data = _read_json(self.folder / MANIFEST_NAME)
        return [self.folder / n for n in _listed(data, "files")
                if n != MANIFEST_NAME and ((self.folder / n).is_file() or (self.folder / n).is_symlink())]

    # ------------------------------------------------------------------------------------------
    # entering: folders, marks, the run folder's lock

    def __enter__(self) -> OutputSet:
        self.check()
        try:
            for fs in self._folders.values():
                for attempt in range(3):  # a failing run may remove the folder it made just as we come in
                    self._make_folder(fs)
                    if self._mark_owner(fs, last=attempt == 2):
                        break
            if self.run_folder:
                fs = self._folders[_folder_key(self.folder)]
                self._lock(fs, wait=0.0)
                self._recover(fs)
                self._check_targets(locked=True)  # again, now that no other bufnmf run can write here
        except BaseException:
            self._leave(failed=True)
            raise
        self._entered = True
        return self

    def _make_folder(self, fs: _Folder) -> None:
        missing: list[Path] = []
        p = fs.path
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            fs.created.append(d)  # first: an interrupt right after mkdir must still find it to remove
            try:
                d.mkdir()
            except FileExistsError:
                fs.created.pop()
                continue
            except OSError as exc:
                fs.created.pop()
                raise BufNMFError(f"cannot create output folder {fs.path}: {exc.strerror or exc}") from None

    def _mark_owner(self, fs: _Folder, last: bool = True) -> bool:
        """A mark file held locked while this set lives: its temporaries are not anyone's leftovers."""
        path = fs.path / f"{PREFIX}{self._token}.owner"
        try:
            fh = open(path, "w")
        except FileNotFoundError as exc:
            if not last:
                return False
            raise BufNMFError(os_error_message(exc, path, fs.path)) from None
        except OSError as exc:
            raise BufNMFError(os_error_message(exc, path, fs.path)) from None
        _flock(fh, blocking=False)
        fs.owner, fs.owner_fh = path, fh
        return True

    def _lock(self, fs: _Folder, wait: float) -> None:
        """The folder's exclusive lock: refused at once (``wait`` 0) or after ``wait`` seconds."""
        path = fs.path / LOCK_NAME
        deadline = time.monotonic() + wait
        while True:
            try:
                fh = open(path, "a+")
            except OSError as exc:
                raise BufNMFError(os_error_message(exc, path, fs.path)) from None
            if _flock(fh, blocking=False):
                try:
                    st, held = os.stat(path), os.fstat(fh.fileno())
                    same = (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)
                except OSError:
                    same = False
                if same:  # the file locked is the one at the path (not one a finishing run just removed)
                    fs.lock_fh = fh
                    return
            fh.close()
            if time.monotonic() >= deadline:
                raise BufNMFError(f"another bufnmf run is writing to {fs.path} right now: wait for it, or choose "
                                  "another output folder")
            time.sleep(0.05)

    def _unlock(self, fs: _Folder) -> None:
        if fs.lock_fh is not None:
            with contextlib.suppress(OSError):
                (fs.path / LOCK_NAME).unlink()  # while still holding it: a waiter re-checks the path
            fs.lock_fh.close()
            fs.lock_fh = None

    # ------------------------------------------------------------------------------------------
    # what killed runs left behind (only ever called holding the folder's lock)

    def _recover(self, fs: _Folder) -> None:
        journal = _read_json(fs.path / JOURNAL_NAME)
        if journal is not None or (fs.path / JOURNAL_NAME).exists():
            self._roll_back_journal(fs.path, journal)
        try:
            names = os.listdir(fs.path)
        except OSError:
            return
        dead = set()
        for n in names:
            if n.startswith(PREFIX) and n.endswith(".owner") and n != f"{PREFIX}{self._token}.owner":
                if _owner_dead(fs.path / n):
                    dead.add(n[len(PREFIX) : -len(".owner")])
        for n in names:
            if not n.startswith(PREFIX):
                if self.run_folder and _old_temporary(n):  # left by bufnmf <= 0.2, which held this lock to write
                    with contextlib.suppress(OSError):
                        (fs.path / n).unlink()
                continue
            if n in (MANIFEST_NAME, JOURNAL_NAME):
                continue
            token = n[len(PREFIX) :].split("-", 1)[0].split(".", 1)[0]
            if token in dead:
                target = fs.path / n
                with contextlib.suppress(OSError):
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink()

    @staticmethod
    def _roll_back_journal(folder: Path, journal: dict[str, Any] | None) -> None:
        """Undo a commit that was killed half-way: the earlier files back, the new ones out."""
        if journal is not None:
            backup = folder / str(journal.get("backup", ""))
            new = journal.get("new") if isinstance(journal.get("new"), dict) else {}
            assert isinstance(new, dict)
            for name, temp in new.items():
                if not isinstance(name, str) or "/" in name or not isinstance(temp, str) or "/" in temp:
                    continue
                if (folder / temp).exists():
                    continue  # never placed; its owner's cleanup removes the temporary
                moved_aside = backup.is_dir() and (backup / name).exists()
                if name in _listed(journal, "old") and not moved_aside:
                    continue  # the old file was never moved: what is there is the old file
                with contextlib.suppress(OSError):
                    (folder / name).unlink()
            if backup.is_dir() and backup.name.startswith(PREFIX):
                for name in _listed(journal, "old"):
                    if (backup / name).exists():
                        with contextlib.suppress(OSError):
                            os.replace(backup / name, folder / name)
                shutil.rmtree(backup, ignore_errors=True)
        with contextlib.suppress(OSError):
            (folder / JOURNAL_NAME).unlink()

    # ------------------------------------------------------------------------------------------
    # writing

    def _temp(self, name: str) -> Path:
        key = os.fspath(name)
        if key not in self._paths:
            raise ValueError(f"{key} was not declared")  # programming error
        if not self._entered:
            raise RuntimeError("write inside 'with OutputSet(...)'")  # programming error
        path = self._paths[key]
        self._count += 1
        if path is None:  # standard output: a temporary file, copied out at the commit
            fd, tmp = tempfile.mkstemp(prefix="bufnmf-stdout-", suffix=".part")
            os.close(fd)
            t = Path(tmp)
        else:
            t = path.parent / f"{PREFIX}{self._token}-{self._count}.part"
        old = self._temps.get(key)
        if old is not None:
            with contextlib.suppress(OSError):
                old.unlink()
        self._temps[key] = t
        return t

    def _display(self, key: str) -> str:
        p = self._paths[key]
        return "standard output" if p is None else str(p)

    def _guard(self, name: str, writer: Callable[[Path], None]) -> None:
        key = os.fspath(name)
        tmp = self._temp(key)
        try:
            writer(tmp)
        except OSError as exc:
            raise BufNMFError(os_error_message(exc, self._display(key), tmp.parent)) from None
        except sf.LibsndfileError as exc:
            raise BufNMFError(f"cannot write {self._display(key)}: {short_reason(exc)}") from None

    def scratch(self, shape: tuple[int, ...], dtype: type = np.float32) -> np.memmap:
        """A temporary memory-mapped array in the (first) folder, removed with the temporaries.

        Its whole size is reserved on disk before it is mapped, so a full disk is a
        :class:`BufNMFError` here and never a bus error later.
        """
        if not self._entered:
            raise RuntimeError("scratch inside 'with OutputSet(...)'")  # programming error
        folder = next(iter(self._folders)) if self._folders else Path(tempfile.gettempdir())
        self._count += 1
        path = folder / f"{PREFIX}{self._token}-scratch{self._count}.part"
        self._scratch.append(path)
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        try:
            with open(path, "wb") as fh:
                _reserve(fh, nbytes)
            return np.memmap(path, dtype=dtype, mode="r+", shape=shape)
        except OSError as exc:
            raise BufNMFError(os_error_message(exc, f"a {nbytes / 2**20:.0f} MiB scratch file in {folder}",
                                               folder)) from None

    def write_audio(self, name: str | os.PathLike[str], data: np.ndarray, sample_rate: float,
                    after_block: Callable[[int, int], None] | None = None, *, format: str | None = None,
                    subtype: str | None = None) -> None:
        """Audio of shape (frames, channels) or (frames,), rate rounded to whole Hz (>= 1).

        The format is ``format``/``subtype`` if given, else the name's extension (float32 WAV for
        ``.wav`` and names without a known extension; see :func:`audio_format`). NaN/Inf are
        refused; an integer or lossy subtype clips samples beyond +-1, with a warning. Written in
        blocks, so ``data`` may be a view of a memory map larger than memory; ``after_block(start,
        stop)`` is called after each block of rows (e.g. to release its pages).
        """
        key = os.fspath(name)
        if data.ndim == 1:
            data = data[:, None]
        sr = max(1, round(sample_rate))
        major, sub = audio_format(key if self._paths.get(key) is not None else STDOUT, format, subtype)
        block = 1 << 18
        clipped = [0, 0.0]

        def write(p: Path) -> None:
            with open(p, "w+b") as raw:
                fh = _ErrnoFile(raw)
                try:
                    with sf.SoundFile(fh, "w", sr, data.shape[1], subtype=sub, format=major) as f:
                        for i in range(0, max(1, data.shape[0]), block):
                            chunk = np.asarray(data[i : i + block], dtype=np.float32)
                            if not np.isfinite(chunk).all():
                                raise BufNMFError(f"refusing to write {self._display(key)}: it would contain NaN "
                                                  "or infinite values")
                            if sub not in _FLOAT_SUBTYPES:
                                over = np.abs(chunk) > 1.0
                                if over.any():
                                    clipped[0] += int(over.sum())
                                    clipped[1] = max(clipped[1], float(np.abs(chunk).max()))
                                    chunk = np.clip(chunk, -1.0, 1.0)
                            f.write(chunk)
                            if fh.error is not None:
                                raise fh.error
                            if after_block is not None:
                                after_block(i, i + chunk.shape[0])
                except (sf.LibsndfileError, AssertionError):  # soundfile asserts a short write
                    if fh.error is not None:
                        raise fh.error from None
                    raise
                if fh.error is not None:
                    raise fh.error
                raw.flush()

        self._guard(key, write)
        if clipped[0]:
            warnings.warn(f"{self._display(key)}: {clipped[0]} sample(s) beyond +-1 (up to {clipped[1]:.3g}) were "
                          f"clipped, as {major} {sub} holds no more: write float32 (.wav, .aiff, .caf or subtype "
                          "FLOAT) to keep them", BufNMFWarning, stacklevel=2)

    def write_npy(self, name: str | os.PathLike[str], array: np.ndarray) -> None:
        def w(p: Path) -> None:
            with open(p, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
        self._guard(os.fspath(name), w)

    def write_json(self, name: str | os.PathLike[str], obj: Any) -> None:
        text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
        self._guard(os.fspath(name), lambda p: self._write_file(p, text.encode()))

    def write_bytes(self, name: str | os.PathLike[str], data: bytes) -> None:
        self._guard(os.fspath(name), lambda p: self._write_file(p, data))

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def write_with(self, name: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
        """Let ``writer(temp_path)`` write the file (e.g. a matplotlib figure)."""
        self._guard(os.fspath(name), writer)

    # ------------------------------------------------------------------------------------------
    # the commit

    def commit(self) -> list[Path]:
        """Put every file in place together; on any error or interrupt, put everything back."""
        missing = [n for n in self._paths if n not in self._temps]
        if missing:
            raise RuntimeError(f"outputs not written: {missing}")  # programming error
        folders = sorted(self._folders.values(), key=lambda fs: str(fs.path))
        try:
            for fs in folders:  # single files lock their folders now; a run folder is locked already
                if fs.lock_fh is None:
                    self._lock(fs, wait=LOCK_WAIT_SECONDS)
                    self._recover(fs)
            self._check_targets(locked=True)
            if self.run_folder:
                self._write_manifest()
            for fs in folders:
                for key in self._keys_in(fs):
                    _fsync_file(self._temps[key])
            with signals_deferred() as deferred:
                try:
                    self._place(folders)
                except BaseException as exc:
                    for fs in reversed(folders):
                        self._undo(fs)
                    if isinstance(exc, OSError):
                        raise BufNMFError(f"could not put the outputs in place ({exc.strerror or exc}): nothing was "
                                          "written; earlier outputs are as they were") from None
                    raise
                self._finish(folders)
            self._to_stdout()
        finally:
            if not self.run_folder:
                for fs in folders:
                    self._unlock(fs)
        if deferred.pending:
            deferred.deliver(self.written)
        return self.written

    def _keys_in(self, fs: _Folder) -> list[str]:
        here = _folder_key(fs.path)
        return [k for k, p in self._paths.items() if p is not None and _folder_key(p.parent) == here]

    def _write_manifest(self) -> None:
        key = MANIFEST_NAME
        self._paths[key] = self.folder / MANIFEST_NAME
        files = [n for n in self.names if n != MANIFEST_NAME]
        self.write_json(key, {"bufnmf_version": __version__, "job": self.job, "files": files,
                              "inputs": [str(p) for p in self.inputs],
                              "committed": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def _place(self, folders: list[_Folder]) -> None:
        for fs in folders:
            keys = self._keys_in(fs)
            names = {k: self._paths[k].name for k in keys}  # type: ignore[union-attr]
            old = [n for n in names.values() if (fs.path / n).exists() or (fs.path / n).is_symlink()]
            if self.run_folder and _folder_key(fs.path) == _folder_key(self.folder):
                old += [p.name for p in self._earlier_run() if p.name not in old]
            fs.backup = fs.path / f"{PREFIX}{self._token}.old"
            journal = {"backup": fs.backup.name, "old": old,
                       "new": {names[k]: self._temps[k].name for k in keys}}
            jtmp = fs.path / f"{PREFIX}{self._token}.journal"
            jtmp.write_text(json.dumps(journal))
            _fsync_file(jtmp)
            os.replace(jtmp, fs.path / JOURNAL_NAME)
            fs.journal = True
            fs.backup.mkdir()
            for n in old:
                os.replace(fs.path / n, fs.backup / n)
                fs.moved.append(n)
            for k in keys:
                os.chmod(self._temps[k], 0o644)
                os.replace(self._temps[k], self._paths[k])  # type: ignore[arg-type]
                fs.placed.append(names[k])
            _fsync_dir(fs.path)

    def _undo(self, fs: _Folder) -> None:
        for n in reversed(fs.placed):
            with contextlib.suppress(OSError):
                (fs.path / n).unlink()
        for n in reversed(fs.moved):
            if fs.backup is not None:
                with contextlib.suppress(OSError):
                    os.replace(fs.backup / n, fs.path / n)
        if fs.backup is not None:
            shutil.rmtree(fs.backup, ignore_errors=True)
        if fs.journal:
            with contextlib.suppress(OSError):
                (fs.path / JOURNAL_NAME).unlink()
        with contextlib.suppress(OSError):
            (fs.path / f"{PREFIX}{self._token}.journal").unlink()
        fs.placed.clear()
        fs.moved.clear()
        fs.journal = False

    def _finish(self, folders: list[_Folder]) -> None:
        for fs in folders:  # the commit point: no journal, no rollback
            with contextlib.suppress(OSError):
                (fs.path / JOURNAL_NAME).unlink()
            fs.journal = False
        for fs in folders:
            self.replaced += [fs.path / n for n in fs.moved if n not in fs.placed]
            if fs.backup is not None:
                shutil.rmtree(fs.backup, ignore_errors=True)
            _fsync_dir(fs.path)
        for key, p in self._paths.items():
            if p is not None and key != MANIFEST_NAME:
                self.written.append(p)
                self._temps.pop(key, None)
        self._temps.pop(MANIFEST_NAME, None)

    def _to_stdout(self) -> None:
        for key, p in self._paths.items():
            if p is None:
                tmp = self._temps.pop(key)
                try:
                    out = sys.stdout.buffer
                    with open(tmp, "rb") as fh:
                        shutil.copyfileobj(fh, out, 1 << 20)
                    out.flush()
                finally:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                self.written.append(Path(STDOUT))

    # ------------------------------------------------------------------------------------------
    # leaving

    def discard(self) -> None:
        for tmp in [*self._temps.values(), *self._scratch]:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._temps.clear()
        self._scratch.clear()

    def _leave(self, failed: bool) -> None:
        self.discard()
        for fs in self._folders.values():
            if fs.owner_fh is not None:
                with contextlib.suppress(OSError):
                    fs.owner.unlink()  # type: ignore[union-attr]
                fs.owner_fh.close()
                fs.owner_fh = None
            self._unlock(fs)
            if failed:
                for d in reversed(fs.created):  # no empty folder left by a run that wrote nothing
                    with contextlib.suppress(OSError):
                        d.rmdir()
        self._entered = False

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        ok = False
        try:
            if exc_type is None:
                self.commit()
                ok = True
        finally:
            self._leave(failed=not ok and not self.written)


# ----------------------------------------------------------------------------------------------
# helpers


def _flock(fh: IO[str], blocking: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no cross-process lock
        return True
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _owner_dead(path: Path) -> bool:
    """Whether the run that made an owner mark is gone (its lock on the mark is free)."""
    try:
        import fcntl  # noqa: F401 - without locks nothing can be known: nothing is cleaned
    except ImportError:  # pragma: no cover - not on POSIX
        return False
    try:
        with open(path) as fh:
            return _flock(fh, blocking=False)
    except OSError:
        return False


def _old_temporary(name: str) -> bool:
    """Temporaries of earlier bufnmf versions: ``.scratch.XXXXXXXX.part`` and ``.<name>.XXXXXXXX.part``."""
    if not (name.startswith(".") and name.endswith(".part")):
        return False
    parts = name[1:-5].rsplit(".", 1)
    return len(parts) == 2 and len(parts[1]) == 8 and all(c.isalnum() or c == "_" for c in parts[1])


def _reserve(fh: IO[bytes], nbytes: int) -> None:
    """Allocate ``nbytes`` on disk for an open file (ENOSPC/EFBIG now rather than a bus error later)."""
    fd = fh.fileno()
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, nbytes)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", -1)):
                raise
    zeros = bytes(1 << 20)  # no fallocate here: write the zeros
    left = nbytes
    while left > 0:
        n = min(left, len(zeros))
        fh.write(zeros[:n])
        left -= n
    fh.flush()


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        os.fsync(fh.fileno())


class _Deferred:
    """Signals that arrived while held, delivered to the handlers they had once the block is done."""

    def __init__(self, repeat_delivers: bool = False) -> None:
        self.pending: list[int] = []
        self.old: dict[int, Any] = {}
        self.repeat_delivers = repeat_delivers

    def record(self, signum: int, frame: object) -> None:
        if self.repeat_delivers and signum in self.pending:  # pressed again: the user will not wait
            for s, old in self.old.items():
                signal.signal(s, old if old is not None else signal.SIG_DFL)
            self.redeliver()
            self.pending.clear()  # delivered now (a handler that returns): not again at the block's end
            return
        self.pending.append(signum)

    def redeliver(self) -> None:
        """Each held signal (once), to its old handler: Python's default raises KeyboardInterrupt."""
        for signum in dict.fromkeys(self.pending):
            handler = self.old.get(signum)
            if signum == signal.SIGINT and handler is None:
                raise KeyboardInterrupt
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)

    def deliver(self, written: list[Path]) -> None:
        """:meth:`redeliver` after a commit: an interrupt says which files were written."""
        try:
            self.redeliver()
        except KeyboardInterrupt:
            raise InterruptedAfterCommit(written) from None


@contextlib.contextmanager
def signals_deferred(repeat_delivers: bool = False) -> Iterator[_Deferred]:
    """Hold SIGINT and SIGTERM in the block (main thread only: elsewhere Python delivers no
    signals anyway), e.g. while a commit's files are renamed, so an interrupt cannot land between
    two renames; the caller then delivers them (``.deliver(written)`` or ``.redeliver()``).
    ``repeat_delivers``: a signal that comes a second time is delivered at once (for a wait that
    the user may not want to sit out)."""
    d = _Deferred(repeat_delivers)
    if threading.current_thread() is not threading.main_thread():
        yield d
        return
    for s in (signal.SIGINT, signal.SIGTERM):
        old = signal.getsignal(s)
        if old == signal.SIG_IGN:
            continue
        d.old[s] = old
        signal.signal(s, d.record)
    try:
        yield d
    finally:
        for signum, old in d.old.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
