"""Spectral templates ("kits"): learn bases from example sounds, store and load them.

A kit is a bases buffer in FluCoMa layout (bins x templates, one column per basis, unit
L2 norm) with a sidecar JSON file (same name, ``.json``) holding each basis's label and
the FFT settings and sample rate it was learnt with.

How a kit is learnt (``method``), chosen by default from its labels (see :func:`method_for`):

- ``"percussive"`` (labels that are not note names): one NMFD template per example, its magnitude
  spectrogram over ``frames`` (8) frames of a 1024/512 STFT from one frame before its steepest
  rise, so the attack and the decay are both in the template. The buffer holds ``frames``
  columns per template (template ``k``'s frames in columns ``k * frames ..``), each template
  of unit L2 norm over all its frames.
- ``"pitched"`` (every label a note name, C4, Bb2): one KL-NMF basis per example, as FluCoMa's,
  on a long window (8192/512: 5.4 Hz bins, so low notes' partials are resolved).
- ``"flucoma"``: FluCoMa's "Seeding BufNMF" workflow exactly: ``components_per_file`` KL-NMF
  bases per example with BufNMF's defaults (1024/512).

The sidecar records the method, the templates' frames and what tracking needs (see
:data:`bufnmf.workflows.tracking.PRESETS`); kits written before (no method recorded) and bare
buffers load as FluCoMa kits.
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
from ..dsp.stft import stft_complex
from ..errors import BufNMFError, BufNMFWarning
from ..io.events import is_note_name

#: How kits are learnt: "auto" chooses from the labels (:func:`method_for`).
LEARN_METHODS = ("auto", "percussive", "pitched", "flucoma")
#: (window, hop, template frames) of each method's kits.
KIT_SETTINGS = {"percussive": (1024, 512, 8), "pitched": (8192, 512, 1), "flucoma": (1024, -1, 1)}


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
    frames: int = 1  # frames per template (NMFD templates: > 1; then `bases` holds frames columns each)
    method: str | None = None  # how it was learnt: "percussive", "pitched", "flucoma"; None: not recorded

    @property
    def sounds(self) -> list[str]:
        """Per template, the sound it belongs to: the example's label for the bases learnt from one
        example (``--components-per-file N`` gives N columns ``kick-1 .. kick-N`` of the sound
        ``kick``), else the template's own label. :func:`bufnmf.track` reports one event per sound."""
        return list(self.groups) if self.groups is not None else list(self.labels)

    @property
    def templates(self) -> np.ndarray:
        """The templates as (bins, K, frames) (a view of :attr:`bases`; frames = 1 for NMF bases)."""
        return self.bases.reshape(self.bases.shape[0], -1, self.frames)

    @property
    def spectra(self) -> np.ndarray:
        """One spectrum per template, (bins, K) float32 of unit L2 norm: the template summed over its
        frames (the bases themselves for a kit of NMF bases). What objects that take one basis per
        sound (NMFMatch, NMFFilter) use of an NMFD kit."""
        if self.frames == 1:
            return self.bases
        S = self.templates.astype(np.float64).sum(axis=2)
        norms = np.linalg.norm(S, axis=0)
        return (S / np.where(norms > 0, norms, 1.0)).astype(np.float32)

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


def method_for(labels: Sequence[str], components_per_file: int = 1) -> str:
    """The method ``"auto"`` learns a kit with: "pitched" when every label is a note name (C4, F#3,
    Bb2), else "percussive"; "flucoma" for several bases per example (``components_per_file`` > 1)
    that are not notes (NMFD templates are one per example)."""
    if labels and all(is_note_name(lab) for lab in labels):
        return "pitched"
    return "flucoma" if components_per_file > 1 else "percussive"


def check_method(method: object, allowed: Sequence[str] = LEARN_METHODS, what: str = "method") -> str:
    if not isinstance(method, str) or method not in allowed:
        raise BufNMFError(f"{what} must be one of {', '.join(repr(m) for m in allowed)}, got {method!r}")
    return method


def attack_template(magnitudes: np.ndarray, frames: int) -> np.ndarray:
    """An NMFD template from one example's magnitude spectrogram (bins, n): ``frames`` frames from one
    frame before the steepest rise of its total magnitude (zeros past the example's end), (bins, frames)."""
    total = magnitudes.sum(axis=0)
    steepest = int(np.argmax(np.diff(total, prepend=0.0)))
    start = max(0, steepest - 1)
    out = np.zeros((magnitudes.shape[0], frames))
    piece = magnitudes[:, start : start + frames]
    out[:, : piece.shape[1]] = piece
    return out


def learn_bases(
    examples: Sequence[object],
    components_per_file: int = 1,
    labels: Sequence[str] | None = None,
    merge_labels: bool = False,
    window_size: int | None = None,
    hop_size: int | None = None,
    fft_size: int | None = None,
    iterations: int = 100,
    seed: int = -1,
    sample_rate: int | None = None,
    *,
    max_memory: int | None = None,
    method: str = "auto",
    frames: int | None = None,
) -> Kit:
    """Learn templates from example sounds (one or ``components_per_file`` each) and stack them into one kit.

    Args:
        examples: mono audio file paths or arrays (samples,) (one channel each: pass ``x[:, c]``
            or ``bufnmf.mixdown(x)`` for several).
        components_per_file: NMF bases learnt from each example (>= 1; methods "flucoma" and "pitched").
        labels: one label per example (default: the file's stem, or ``example<i>`` for arrays);
            with several bases per file they are numbered ``label-1``, ``label-2``, ...
        merge_labels: average the templates that share a label into one (then unit norm).
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings); None: the method's
            (percussive 1024/512, pitched 8192/512, flucoma 1024/-1/-1).
        iterations: NMF iterations for each example. seed: the start of every example's NMF
            (-1 draws one, recorded as ``kit.seed`` and in the sidecar; >= 0 reproduces a kit).
        sample_rate: Hz of array examples (files carry their own).
        max_memory: refuse (before allocating) an example whose decomposition is estimated to
            need more bytes than this (default: the memory available now).
        method: "auto" (default: :func:`method_for` the labels), "percussive" (NMFD templates of
            ``frames`` frames), "pitched" (one NMF basis per note on a long window) or "flucoma"
            (FluCoMa's workflow exactly); see the module docstring.
        frames: frames per NMFD template ("percussive"; default 8).

    Returns:
        :class:`Kit`: bases of shape (fft_size // 2 + 1, templates * frames), float32.
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
    check_method(method)
    if method == "auto":
        names = list(labels) if labels is not None else [
            Path(e).stem if isinstance(e, (str, os.PathLike)) else f"example{i + 1}" for i, e in enumerate(examples)]
        method = method_for(names, components_per_file)
    w0, h0, t0 = KIT_SETTINGS[method]
    T = t0 if frames is None else as_int("frames", frames)
    if T < 1:
        raise BufNMFError(f"frames must be at least 1, got {T}")
    if method != "percussive" and frames is not None and T != 1:
        raise BufNMFError(f"frames {T} needs method 'percussive' (NMFD templates); method {method!r} learns one "
                          "spectrum per basis", cli=f"--frames {T} needs --method percussive")
    if method == "percussive" and components_per_file > 1:
        raise BufNMFError(f"method 'percussive' learns one NMFD template per example: components_per_file "
                          f"{components_per_file} needs method 'flucoma' or 'pitched'",
                          cli=f"--components-per-file {components_per_file} needs --method flucoma or pitched "
                              "(--method percussive learns one template per example)")
    if window_size is None and hop_size is None and fft_size is None:
        settings = resolve_fft_settings(w0, h0, -1)
    else:
        settings = resolve_fft_settings(1024 if window_size is None else window_size,
                                        -1 if hop_size is None else hop_size, -1 if fft_size is None else fft_size)
    seed = resolve_seed(seed)
    columns: list[np.ndarray] = []
    names = []
    groups: list[str] = []
    rates: dict[str, int] = {}
    sources: list[str] = []
    for i, example in enumerate(examples):
        data, sr, stem = _read(example, f"example {i + 1}")
        sr = sr if sr is not None else sample_rate
        if sr is not None:
            rates[str(example) if stem else f"example {i + 1}"] = sr
        label = labels[i] if labels is not None else (stem or f"example{i + 1}")
        if method == "percussive":
            mags = np.abs(stft_complex(np.asarray(data, dtype=np.float64), settings, dtype=np.complex128))
            columns.append(attack_template(mags, T))
            names.append(label)
            groups.append(label)
        else:
            res = decompose(data, components=components_per_file, iterations=iterations,
                            window_size=settings.window_size, hop_size=settings.hop_size,
                            fft_size=settings.fft_size, seed=seed, resynth=False, precision="float64",
                            # one or a few bases per example: whole-matrix NumPy is faster than the fused
                            # kernels' passes over a long window's 4097 bins (5x on the 88 keys)
                            kernel="numpy" if method == "pitched" else "auto", max_memory=max_memory)
            for j in range(components_per_file):
                columns.append(res.bases[:, j : j + 1].astype(np.float64))
                names.append(label if components_per_file == 1 else f"{label}-{j + 1}")
                groups.append(label)
        sources.append(str(example) if stem else f"array {i + 1}")
    if len(set(rates.values())) > 1:
        detail = ", ".join(f"{k}: {v} Hz" for k, v in rates.items())
        raise BufNMFError(f"the examples have different sample rates ({detail}): resample them to one rate")
    templates = np.stack(columns, axis=1)  # (bins, K, T)
    if method == "percussive":  # unit L2 as NMF bases from decompose are (so merging averages like with like)
        norms = np.sqrt(np.einsum("fkt,fkt->k", templates, templates))
        templates = templates / np.where(norms > 0, norms, 1.0)[None, :, None]
        # float32, as a kit stores them and as decompose's bases are: merging these here or merging
        # kits learnt one example each (stack_kits, bufnmf batch learn) gives the same values
        templates = templates.astype(np.float32).astype(np.float64)
    if merge_labels:
        order = list(dict.fromkeys(names))
        group_of = dict(zip(names, groups, strict=True))
        templates = merge_templates(templates, names)
        names = order
        groups = [group_of[n] for n in order]
    bases = templates.reshape(templates.shape[0], -1)
    return Kit(bases.astype(np.float32), names, settings.window_size, settings.hop_size, settings.fft_size,
               next(iter(rates.values()), None), sources, seed=seed,
               groups=groups if components_per_file > 1 else None, frames=T if method == "percussive" else 1,
               method=method)


def merge_templates(templates: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Average the templates of ``templates`` (bins, n, frames) that share a label, then give each
    unit L2 norm (over its bins and frames).

    Returns:
        float64 (bins, distinct labels, frames), the labels in order of first appearance.
    """
    order = list(dict.fromkeys(labels))
    merged = np.stack([templates[:, [n == lab for n in labels]].mean(axis=1) for lab in order], axis=1)
    norms = np.sqrt(np.einsum("fkt,fkt->k", merged, merged))
    return merged / np.where(norms > 0, norms, 1.0)[None, :, None]


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
    kinds = {(kit.method, kit.frames) for kit in kits}
    if len(kinds) > 1:
        detail = ", ".join(sorted(f"{m or 'unrecorded'} ({t} frame(s))" for m, t in kinds))
        raise BufNMFError(f"the kits were learnt with different methods ({detail}): learn them with one method")
    templates = np.concatenate([kit.templates for kit in kits], axis=1).astype(np.float64)
    names = [lab for kit in kits for lab in kit.labels]
    groups = [g for kit in kits for g in (kit.groups if kit.groups is not None else kit.labels)]
    if merge_labels:
        group_of = dict(zip(names, groups, strict=True))
        templates = merge_templates(templates, names)
        names = list(dict.fromkeys(names))
        groups = [group_of[n] for n in names]
    rate = next((kit.sample_rate for kit in kits if kit.sample_rate is not None), None)
    bases = templates.reshape(templates.shape[0], -1)
    return Kit(bases.astype(np.float32), names, first.window_size, first.hop_size, first.fft_size, rate,
               [src for kit in kits for src in kit.sources], seed=first.seed,
               groups=groups if any(kit.groups is not None for kit in kits) else None, frames=first.frames,
               method=first.method)


def sidecar(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a kit buffer: same name, ``.json``."""
    return Path(path).with_suffix(".json")


def kit_metadata(kit: Kit) -> dict:
    """The sidecar JSON contents of ``kit``."""
    from .. import __version__

    meta = {"bufnmf_version": __version__, "labels": kit.labels, "window_size": kit.window_size,
            "hop_size": kit.hop_size, "fft_size": kit.fft_size, "sample_rate": kit.sample_rate,
            "sources": kit.sources, "seed": kit.seed,
            "layout": "bins x templates (FluCoMa bases buffer), unit L2 norm" if kit.frames == 1 else
            f"bins x (templates * {kit.frames} frames): template k in columns k*{kit.frames} .. "
            f"k*{kit.frames}+{kit.frames - 1}, unit L2 norm per template"}
    if kit.groups is not None:
        meta["groups"] = kit.groups
    if kit.method is not None:
        meta["method"] = kit.method
        meta["frames"] = kit.frames
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

    def strings(field: str, count: int) -> list[str] | None:
        value = meta.get(field)
        if value is None and field != "labels":
            return None
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise bad(field, f"must be a list of strings, got {value!r:.80}")
        if len(value) != count:
            what = "bases" if count == bases.shape[1] else f"templates ({bases.shape[1]} columns of {frames} frames)"
            raise bad(field, f"has {len(value)} entries for the {count} {what}")
        return value

    frames = whole("frames", 1, required=False) or 1
    method = meta.get("method")
    if method is not None and method not in KIT_SETTINGS:
        raise bad("method", f"must be one of {', '.join(KIT_SETTINGS)}, got {method!r:.60}")
    if frames > 1 and method != "percussive":
        raise bad("frames", f"{frames} needs method 'percussive' (NMFD templates), got method {method!r:.60}")
    if bases.shape[1] % frames:
        raise bad("frames", f"{frames} does not divide the buffer's {bases.shape[1]} columns")
    count = bases.shape[1] // frames
    labels = strings("labels", count)
    assert labels is not None
    w, h, f = whole("window_size", 4), whole("hop_size", 1), whole("fft_size", 4)
    assert w is not None and h is not None and f is not None
    sr = whole("sample_rate", 1, required=False)
    kit_seed = whole("seed", 0, required=False)
    groups = strings("groups", count) if "groups" in meta else _numbered_groups(labels)
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
    return Kit(bases.astype(np.float32), labels, w, h, f, sr, sources, seed=kit_seed, groups=groups, frames=frames,
               method=method)


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
