"""Spectral templates ("kits"): learn bases from example sounds, store and load them.

A kit is a bases buffer in FluCoMa layout (bins x templates, one column per basis, unit
L2 norm) with a sidecar JSON file (same name, ``.json``) holding each basis's label and
the FFT settings and sample rate it was learnt with.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import as_int, as_labels, resolve_seed
from ..clients.bufnmf import decompose
from ..clients.common import load_source, require_mono
from ..dsp.fft import FFTSettings, resolve_fft_settings
from ..errors import BufNMFError, BufNMFWarning


@dataclass
class Kit:
    """Learnt templates.

    Attributes:
        bases: float32, shape (fft_size // 2 + 1, templates), unit L2 norm per column.
        labels: one label per column.
        window_size, hop_size, fft_size: FFT settings (samples) the bases were learnt with.
        sample_rate: Hz of the examples (None when learnt from arrays without a rate).
        groups: per column, the sound (example label) it was learnt from, when an example gave
            several columns; see :attr:`sounds`.
    """

    bases: np.ndarray
    labels: list[str]
    window_size: int
    hop_size: int
    fft_size: int
    sample_rate: int | None = None
    sources: list[str] = field(default_factory=list)
    settings_known: bool = True  # False for a bare buffer: only its row count is known
    seed: int | None = None  # the seed the kit was learnt with (None: unknown)
    groups: list[str] | None = None  # per column, the sound it belongs to (None: each column its own)

    @property
    def sounds(self) -> list[str]:
        """Per column, the sound it belongs to: the example's label for the bases learnt from one
        example (``--components-per-file N`` gives N columns ``kick-1 .. kick-N`` of the sound
        ``kick``), else the column's own label. :func:`bufnmf.track` reports one event per sound."""
        return list(self.groups) if self.groups is not None else list(self.labels)

    @property
    def settings(self) -> FFTSettings:
        return FFTSettings(self.window_size, self.hop_size, self.fft_size)

    def settings_for(self, window_size: int | None = None, hop_size: int | None = None, fft_size: int | None = None,
                     sample_rate: float | None = None, source: str = "source") -> FFTSettings:
        """The FFT settings to analyse a source with this kit: the kit's own when none is given.

        This is the one rule for "take the FFT settings from the kit" (the library, the jobs and
        the command line all use it). As FluCoMa's ``fftSettings`` is one parameter, the three
        settings go together: all three from the kit when none is given, else the ones given with
        FluCoMa's defaults (1024, -1, -1) for the others. The result is checked against the kit
        (and ``sample_rate`` against the kit's rate), refusing a mismatch with both sides named.
        """
        if window_size is None and hop_size is None and fft_size is None:
            settings = self.settings if self.settings_known else resolve_fft_settings(
                self.window_size, self.hop_size, self.fft_size)
        else:
            settings = resolve_fft_settings(1024 if window_size is None else window_size,
                                            -1 if hop_size is None else hop_size, -1 if fft_size is None else fft_size)
        self.check_compatible(settings, None if sample_rate is None else round(sample_rate), source)
        return settings

    def check_compatible(self, settings: FFTSettings, sample_rate: int | None, source: str = "source") -> None:
        """Raise :class:`BufNMFError` naming both sides if FFT settings or sample rates differ."""
        if not self.settings_known:
            if settings.bins != self.bases.shape[0]:
                raise BufNMFError(
                    f"the bases have {self.bases.shape[0]} rows but fft_size {settings.fft_size} gives "
                    f"{settings.bins} bins: use --fft-size {(self.bases.shape[0] - 1) * 2}"
                )
            return
        mine = (self.window_size, self.hop_size, self.fft_size)
        theirs = (settings.window_size, settings.hop_size, settings.fft_size)
        if mine != theirs:
            raise BufNMFError(
                f"the kit was learnt with window/hop/fft {mine[0]}/{mine[1]}/{mine[2]} but the {source} is analysed "
                f"with {theirs[0]}/{theirs[1]}/{theirs[2]}: use the kit's settings (leave the FFT options unset) "
                "or learn the kit again with these"
            )
        if self.sample_rate is not None and sample_rate is not None and self.sample_rate != sample_rate:
            raise BufNMFError(
                f"the kit was learnt at {self.sample_rate} Hz but the {source} is at {sample_rate} Hz: resample "
                "one of them, or learn the kit from examples at the source's rate"
            )


def _read(example: object, what: str) -> tuple[np.ndarray, int | None, str]:
    data, sr = load_source(example, what)
    stem = Path(example).stem if isinstance(example, (str, os.PathLike)) else ""
    return require_mono(data, "learn_bases", what), sr, stem


def learn_bases(
    examples: Sequence[object],
    components_per_file: int = 1,
    labels: Sequence[str] | None = None,
    merge_labels: bool = False,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    iterations: int = 100,
    seed: int = -1,
    sample_rate: int | None = None,
    *,
    max_memory: int | None = None,
) -> Kit:
    """Learn ``components_per_file`` bases from each example and stack them into one kit.

    Args:
        examples: mono audio file paths or arrays (samples,) (one channel each: pass ``x[:, c]``
            or ``bufnmf.mixdown(x)`` for several).
        components_per_file: bases learnt from each example (>= 1).
        labels: one label per example (default: the file's stem, or ``example<i>`` for arrays);
            with several bases per file they are numbered ``label-1``, ``label-2``, ...
        merge_labels: average the bases that share a label into one (then unit norm).
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings).
        iterations: NMF iterations for each example. seed: the start of every example's NMF
            (-1 draws one, recorded as ``kit.seed`` and in the sidecar; >= 0 reproduces a kit).
        sample_rate: Hz of array examples (files carry their own).
        max_memory: refuse (before allocating) an example whose decomposition is estimated to
            need more bytes than this (default: the memory available now).

    Returns:
        :class:`Kit` with bases of shape (fft_size // 2 + 1, templates).
    """
    examples = list(examples)
    if not examples:
        raise BufNMFError("learn_bases needs at least one example sound")
    if labels is not None:
        labels = as_labels("labels", labels)
        if len(labels) != len(examples):
            raise BufNMFError(f"{len(labels)} label(s) given for {len(examples)} example(s): give one label per "
                              "example")
    components_per_file = as_int("components_per_file", components_per_file)
    if components_per_file < 1:
        raise BufNMFError(f"components_per_file must be at least 1, got {components_per_file}")
    settings = resolve_fft_settings(window_size, hop_size, fft_size)
    seed = resolve_seed(seed)
    columns: list[np.ndarray] = []
    names: list[str] = []
    groups: list[str] = []
    rates: dict[str, int] = {}
    sources: list[str] = []
    for i, example in enumerate(examples):
        data, sr, stem = _read(example, f"example {i + 1}")
        sr = sr if sr is not None else sample_rate
        if sr is not None:
            rates[str(example) if stem else f"example {i + 1}"] = sr
        res = decompose(data, components=components_per_file, iterations=iterations, window_size=settings.window_size,
                        hop_size=settings.hop_size, fft_size=settings.fft_size, seed=seed, resynth=False,
                        precision="float64", max_memory=max_memory)
        label = labels[i] if labels is not None else (stem or f"example{i + 1}")
        for j in range(components_per_file):
            columns.append(res.bases[:, j])
            names.append(label if components_per_file == 1 else f"{label}-{j + 1}")
            groups.append(label)
        sources.append(str(example) if stem else f"array {i + 1}")
    if len(set(rates.values())) > 1:
        detail = ", ".join(f"{k}: {v} Hz" for k, v in rates.items())
        raise BufNMFError(f"the examples have different sample rates ({detail}): resample them to one rate")
    bases = np.stack(columns, axis=1).astype(np.float64)
    if merge_labels:
        group_of = dict(zip(names, groups, strict=True))
        bases, names = merge_columns(bases, names)
        groups = [group_of[n] for n in names]
    return Kit(bases.astype(np.float32), names, settings.window_size, settings.hop_size, settings.fft_size,
               next(iter(rates.values()), None), sources, seed=seed,
               groups=groups if components_per_file > 1 else None)


def merge_columns(bases: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Average the columns of ``bases`` (bins, n) that share a label, then give each unit L2 norm.

    Returns:
        float64 (bins, distinct labels) and the labels in order of first appearance.
    """
    order = list(dict.fromkeys(labels))
    merged = np.stack([bases[:, [n == lab for n in labels]].mean(axis=1) for lab in order], axis=1)
    norms = np.linalg.norm(merged, axis=0)
    return merged / np.where(norms > 0, norms, 1.0), order


def stack_kits(kits: Sequence[Kit], merge_labels: bool = False) -> Kit:
    """One kit from several (e.g. one learnt per example file, in parallel): their templates side by side.

    Stacking the kits that :func:`learn_bases` learns from each example alone, with the same seed and
    settings, gives what it learns from all examples at once (``merge_labels`` included).

    Raises:
        BufNMFError: no kits, or kits with different FFT settings, sample rates or seeds.
    """
    if not kits:
        raise BufNMFError("stack_kits needs at least one kit")
    first = kits[0]
    for kit in kits[1:]:
        first.check_compatible(kit.settings, kit.sample_rate, "kit stacked onto the first")
        if kit.bases.shape[0] != first.bases.shape[0]:
            raise BufNMFError(f"kits have {first.bases.shape[0]} and {kit.bases.shape[0]} rows: stack kits learnt "
                              "with one FFT size")
    seeds = {kit.seed for kit in kits}
    if len(seeds) > 1:
        raise BufNMFError(f"the kits were learnt with different seeds ({', '.join(sorted(map(str, seeds)))}): "
                          "learn them with one seed")
    bases = np.concatenate([kit.bases for kit in kits], axis=1).astype(np.float64)
    names = [lab for kit in kits for lab in kit.labels]
    groups = [g for kit in kits for g in (kit.groups if kit.groups is not None else kit.labels)]
    if merge_labels:
        group_of = dict(zip(names, groups, strict=True))
        bases, names = merge_columns(bases, names)
        groups = [group_of[n] for n in names]
    rate = next((kit.sample_rate for kit in kits if kit.sample_rate is not None), None)
    return Kit(bases.astype(np.float32), names, first.window_size, first.hop_size, first.fft_size, rate,
               [src for kit in kits for src in kit.sources], seed=first.seed,
               groups=groups if any(kit.groups is not None for kit in kits) else None)


def sidecar(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a kit buffer: same name, ``.json``."""
    return Path(path).with_suffix(".json")


def kit_metadata(kit: Kit) -> dict:
    """The sidecar JSON contents of ``kit``."""
    from .. import __version__

    meta = {"bufnmf_version": __version__, "labels": kit.labels, "window_size": kit.window_size,
            "hop_size": kit.hop_size, "fft_size": kit.fft_size, "sample_rate": kit.sample_rate,
            "sources": kit.sources, "seed": kit.seed,
            "layout": "bins x templates (FluCoMa bases buffer), unit L2 norm"}
    if kit.groups is not None:
        meta["groups"] = kit.groups
    return meta


def load_kit(path: str | os.PathLike[str]) -> Kit:
    """Load a kit buffer (.wav or .npy) and its sidecar JSON.

    Without a sidecar (e.g. a buffer exported from Max), labels are ``1..n`` and the FFT
    size is inferred from the row count (window = fft, hop = window / 2), sample rate unknown.

    Raises:
        BufNMFError: an unreadable buffer, or a sidecar that is not valid JSON or whose fields have
            the wrong types or values (naming the file and the field).
    """
    from ..io.audio import read_buffer

    bases, _ = read_buffer(path, "bases")
    meta_path = sidecar(path)
    if meta_path.exists():
        return _kit_from_sidecar(path, bases, meta_path)
    f = (bases.shape[0] - 1) * 2
    return Kit(bases.astype(np.float32), [str(i + 1) for i in range(bases.shape[1])], f, f // 2, f, None,
               settings_known=False)


def _kit_from_sidecar(path: str | os.PathLike[str], bases: np.ndarray, meta_path: Path) -> Kit:
    def bad(field: str, why: str) -> BufNMFError:
        message = f"kit description {meta_path}: {field} {why}: repair it, or learn the kit again"
        return BufNMFError(message, cli=message)  # the file's field names, on the command line too

    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BufNMFError(f"kit description {meta_path} is not valid JSON ({exc}): remove it or learn the kit "
                          "again") from None
    if not isinstance(meta, dict):
        raise bad("the file", f"holds a {type(meta).__name__}, not an object")

    def whole(field: str, low: int, required: bool = True) -> int | None:
        value = meta.get(field)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise bad(field, f"must be a whole number >= {low}, got {value!r}")
        return value

    def strings(field: str) -> list[str] | None:
        value = meta.get(field)
        if value is None and field != "labels":
            return None
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise bad(field, f"must be a list of strings, got {value!r:.80}")
        if len(value) != bases.shape[1]:
            raise bad(field, f"has {len(value)} entries for the {bases.shape[1]} bases")
        return value

    labels = strings("labels")
    assert labels is not None
    w, h, f = whole("window_size", 4), whole("hop_size", 1), whole("fft_size", 4)
    assert w is not None and h is not None and f is not None
    sr = whole("sample_rate", 1, required=False)
    kit_seed = whole("seed", 0, required=False)
    groups = strings("groups") if "groups" in meta else _numbered_groups(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BufNMFWarning)
        try:
            resolved = resolve_fft_settings(w, h, f)
        except BufNMFError as exc:
            raise bad("window_size/hop_size/fft_size", f"are not valid FFT settings ({exc})") from None
    if (resolved.window_size, resolved.hop_size, resolved.fft_size) != (w, h, f):
        raise bad("window_size/hop_size/fft_size", f"{w}/{h}/{f} are not consistent (the fft size must be a power "
                  "of two at least the window)")
    if bases.shape[0] != f // 2 + 1:
        raise BufNMFError(f"kit {path} has {bases.shape[0]} rows but its description says fft_size {f} "
                          f"({f // 2 + 1} rows)")
    sources = meta.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
        raise bad("sources", f"must be a list of file names, got {sources!r:.80}")
    return Kit(bases.astype(np.float32), labels, w, h, f, sr, sources, seed=kit_seed, groups=groups)


def _numbered_groups(labels: list[str]) -> list[str] | None:
    """Sounds of a kit learnt before kits recorded them: ``x-1 .. x-N`` runs, as
    ``components_per_file=N`` names them, are one sound ``x`` (when every label is in such a run)."""
    import re

    groups: list[str] = []
    i = 0
    while i < len(labels):
        m = re.fullmatch(r"(.+)-1", labels[i])
        if not m:
            return None
        stem, n = m.group(1), 1
        while i + n < len(labels) and labels[i + n] == f"{stem}-{n + 1}":
            n += 1
        if n < 2:
            return None
        groups += [stem] * n
        i += n
    return groups or None


def save_kit(kit: Kit, path: str | os.PathLike[str], force: bool = False, *,
             inputs: Sequence[str | os.PathLike[str]] = ()) -> list[Path]:
    """Write ``kit`` as a float32 WAV (or .npy) buffer plus its JSON sidecar, both or neither.

    ``inputs``: files the kit was made from, which it may not overwrite.
    """
    from ..io.outputs import OutputSet

    p = Path(path)
    if p.suffix.lower() not in (".wav", ".npy"):
        raise BufNMFError(f"kit output {p} must end in .wav or .npy")
    meta = sidecar(p)
    with OutputSet.files([p, meta], force=force, inputs=inputs) as out:
        if p.suffix.lower() == ".wav":
            rate = (kit.sample_rate or 44100) / kit.fft_size
            out.write_audio(p, kit.bases, rate)
        else:
            out.write_npy(p, kit.bases)
        out.write_json(meta, kit_metadata(kit))
    return out.written
