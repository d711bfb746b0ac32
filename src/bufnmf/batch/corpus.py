"""A corpus: the audio files a batch works on, and the output folder each one gets.

A corpus is given as folders (searched recursively), glob patterns, text files listing paths
(one a line; blank lines and ``#`` comments skipped; relative paths are relative to the list),
or audio files, in any mix. Each file's outputs go to ``OUTDIR/<relative path without
extension>/``, relative to the corpus's root: the folder given, the fixed part of a glob, the
folder of a list (or the folders the listed files share), or, for several of these, the folder
they all share.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import BufNMFError

#: File name extensions searched for in folders and globs (formats libsndfile reads).
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".bwf", ".aif", ".aiff", ".aifc", ".flac", ".ogg", ".oga", ".opus",
                              ".mp3", ".au", ".snd", ".caf", ".w64", ".rf64"})
_MAGIC = set("*?[")


@dataclass(frozen=True)
class Source:
    """One file of a corpus.

    Attributes:
        path: the file, absolute. rel: its output folder under OUTDIR (POSIX, no extension).
        label: its top folder under the corpus root, or its name without extension when it is at
            the root (``batch learn``'s label).
    """

    path: str
    rel: str
    label: str


def is_audio(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _walk(folder: Path, exclude: Path | None) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        d = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and not _inside(d / n, exclude))
        found += [d / n for n in filenames if not n.startswith(".") and is_audio(n)]
    return sorted(found, key=lambda f: f.relative_to(folder).parts)


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _MAGIC & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _list_file(path: Path) -> tuple[list[Path], Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BufNMFError(f"cannot read the corpus list {path}: {getattr(exc, 'strerror', None) or exc}") from None
    base = path.parent
    files = []
    for line in lines:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        p = Path(item).expanduser()
        files.append(Path(os.path.abspath(p if p.is_absolute() else base / p)))
    if not files:
        raise BufNMFError(f"the corpus list {path} names no files: give one audio file path per line")
    parents = [str(f.parent) for f in files]
    root = Path(base) if all(_inside(f, Path(base)) for f in files) else Path(os.path.commonpath(parents))
    return files, root


def find(corpus: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
         exclude: str | os.PathLike[str] | None = None) -> list[Source]:
    """The audio files of ``corpus`` (see the module's doc), in a stable order, each with its output folder.

    Args:
        corpus: a folder, glob, list file or audio file, or a sequence of them.
        exclude: a folder never searched (the batch's output folder, when it is inside the corpus).

    Raises:
        BufNMFError: a path that does not exist, or nothing found.
    """
    items = [corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    if not items:
        raise BufNMFError("no corpus given: give a folder, a glob, a text file listing paths, or audio files")
    skip = Path(os.path.abspath(exclude)) if exclude is not None else None
    files: list[Path] = []
    roots: list[Path] = []
    for item in items:
        text = os.fspath(item)
        p = Path(text).expanduser()
        if p.is_dir():
            root = Path(os.path.abspath(p))
            if skip is not None and _inside(root, skip):
                other = skip.parent / f"{Path(text).expanduser().resolve().name or 'corpus'}-parts"
                raise BufNMFError(f"the output folder {skip} is the corpus folder {text} or holds it: a batch never "
                                  "reads its own output folder; choose an output folder outside the corpus, e.g. "
                                  f"{other}",
                                  cli=f"-o {skip} is the corpus folder {text} or holds it: a batch never reads its own "
                                      f"output folder; choose one outside the corpus, e.g. -o {other}")
            found = _walk(root, skip)
            if not found:
                raise BufNMFError(f"no audio files in {text} (looked for {', '.join(sorted(AUDIO_EXTENSIONS))} "
                                  "in it and its subfolders)")
        elif p.is_file() and is_audio(p):
            root, found = Path(os.path.abspath(p.parent)), [Path(os.path.abspath(p))]
        elif p.is_file():
            found, root = _list_file(Path(os.path.abspath(p)))
        elif _MAGIC & set(text):
            root = Path(os.path.abspath(_glob_root(str(p))))
            found = [Path(os.path.abspath(m)) for m in sorted(glob.glob(str(p), recursive=True))
                     if os.path.isfile(m) and is_audio(m)]
            found = [f for f in found if not _inside(f, skip) and not _hidden(f.relative_to(root))]
            if not found:
                raise BufNMFError(f"no audio files match {text}")
        else:
            raise BufNMFError(f"corpus {text} does not exist: give a folder, a glob, a text file listing paths, "
                              "or audio files")
        files += found
        roots.append(root)
    root = roots[0] if len(roots) == 1 else Path(os.path.commonpath([str(r) for r in roots]))
    unique = list(dict.fromkeys(files))
    return _name(unique, root)


def _name(files: list[Path], root: Path) -> list[Source]:
    rels = [PurePosixPath(*f.relative_to(root).parts) for f in files]
    stems = [str(r.with_suffix("")) for r in rels]
    seen: dict[str, int] = {}
    for s in stems:
        seen[s] = seen.get(s, 0) + 1
    out = []
    for f, r, s in zip(files, rels, stems, strict=True):
        folder = str(r) if seen[s] > 1 else s  # kick.wav and kick.aiff side by side keep their extensions
        label = r.parts[0] if len(r.parts) > 1 else r.stem
        out.append(Source(str(f), folder, label))
    return out
