"""What a batch remembers, so that a rerun skips finished files and redoes the rest.

Each file's output folder holds ``.bufnmf-batch.json``: the job, its parameters and their key
(a hash), the source's size and modification time (and those of the kit or buffers it reads), the
status ("running" while its job runs, "ok" once its outputs are all written), the index row and
the outputs. The batch's output folder holds one too, for the batch as a whole. A file is
skipped when its record is "ok" with the same key and stamps and its outputs are all there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD = ".bufnmf-batch.json"


def key(job: str, params: Mapping[str, Any]) -> str:
    """A short hash of the job's name and parameters (as given, so seed -1 stays -1)."""
    text = json.dumps({"job": job, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def stamp(paths: Mapping[str, str | None]) -> dict[str, list[int] | None]:
    """``name -> [size, mtime_ns]`` of each input file (None for a missing one)."""
    out: dict[str, list[int] | None] = {}
    for name, path in paths.items():
        if path is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            out[name] = None
        else:
            out[name] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def read(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record in ``folder``, or None (absent or unreadable: treated as absent)."""
    try:
        data = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write(folder: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Replace the record in ``folder`` atomically (a temporary file renamed over it)."""
    f = Path(folder)
    f.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{RECORD}.", suffix=".part", dir=f)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, allow_nan=False, default=str)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, f / RECORD)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove(folder: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        (Path(folder) / RECORD).unlink()


def complete(folder: str | os.PathLike[str], record: Mapping[str, Any] | None, key_: str,
             stamps: Mapping[str, Any]) -> bool:
    """Whether ``record`` says the job with this key finished here on these inputs, and its outputs are there."""
    if not record or record.get("status") != "ok" or record.get("key") != key_:
        return False
    if record.get("stamp") != dict(stamps):
        return False
    outputs = record.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return False
    return all((Path(folder) / name).is_file() for name in outputs)


def has_visible_files(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds anything but hidden files (another program's outputs, say)."""
    try:
        return any(not e.name.startswith(".") for e in os.scandir(folder))
    except OSError:
        return False


def prune(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``top`` while they are empty."""
    f = folder
    while f != top and _inside(f, top):
        try:
            f.rmdir()
        except OSError:
            return
        f = f.parent


def _inside(path: Path, top: Path) -> bool:
    try:
        path.relative_to(top)
    except ValueError:
        return False
    return True
