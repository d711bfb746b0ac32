"""From activations to events: onset picking, and CSV / JSON / MIDI output.

``track`` decomposes a sound with a fixed kit of bases (FluCoMa's "NMF piano tracker"
workflow) and turns each component's activation into onset events.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .client import decompose, mixdown, validate_source
from .errors import BufNMFError
from .templates import Kit

# General MIDI percussion (channel 10) for common drum names.
GM_DRUMS = {
    "kick": 36, "bassdrum": 36, "bass_drum": 36, "bd": 36, "snare": 38, "sd": 38, "rim": 37, "rimshot": 37,
    "clap": 39, "hihat": 42, "hi-hat": 42, "hat": 42, "hh": 42, "closedhat": 42, "closed_hihat": 42,
    "pedalhat": 44, "openhat": 46, "open_hihat": 46, "oh": 46, "tom": 45, "lowtom": 41, "midtom": 47,
    "hightom": 50, "crash": 49, "ride": 51, "cowbell": 56, "tambourine": 54, "shaker": 70,
}
_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]?)(-?\d+)$")
_PITCH = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


@dataclass
class Event:
    """One detected onset.

    Attributes:
        time: onset in seconds from the start of the source.
        label: the component's label.
        strength: the activation's peak after the onset, 0..1 (1 = the loudest activation of the source).
        end: when the activation fell below the release threshold (seconds), for note-offs.
    """

    time: float
    label: str
    strength: float
    end: float


def note_number(label: str) -> int | None:
    """MIDI note of a note-name label (C4 = 60, F#3, Bb2), else None."""
    m = _NOTE_RE.match(label.strip())
    if not m:
        return None
    letter, accidental, octave = m.groups()
    n = 12 * (int(octave) + 1) + _PITCH[letter.lower()] + {"#": 1, "b": -1, "": 0}[accidental]
    return n if 0 <= n <= 127 else None


def note_hz(label: str) -> float | None:
    """Frequency of a note-name label (A4 = 440 Hz), else None."""
    n = note_number(label)
    return None if n is None else 440.0 * 2 ** ((n - 69) / 12)


def pick_onsets(
    activation: np.ndarray, hop_seconds: float, threshold: float = 0.3, min_gap: float = 0.05,
    smooth: float = 0.0, release: float = 0.1, delta: float = 0.02,
) -> list[tuple[float, float, float]]:
    """Onsets in one activation: ``[(time_s, peak, end_s), ...]``.

    Adaptive peak picking on the rise of the activation (its half-wave rectified
    difference): a frame is an onset where the rise is the largest within +-30 ms, at
    least ``threshold`` times the activation's own peak, above the local mean rise by
    ``delta`` (relative), and at least ``min_gap`` seconds after the previous onset.

    Args:
        activation: (frames,) non-negative.
        hop_seconds: seconds per frame.
        threshold: minimum rise, relative to the activation's peak (0..1).
        min_gap: seconds between onsets of this activation.
        smooth: moving-average length in seconds applied first (0: none).
        release: the event ends when the activation falls below this fraction of its peak,
            or when the next onset of this activation comes first.
        delta: the rise must exceed the local mean rise (+-100 ms) by this fraction of the peak.

    Returns:
        Onset time (s), the activation's peak after the onset (its own scale), end time (s).
    """
    a = np.asarray(activation, dtype=np.float64)
    peak = float(a.max(initial=0.0))
    if a.size == 0 or peak <= 0:
        return []
    x = a / peak
    if smooth > 0:
        size = max(1, round(smooth / hop_seconds))
        if size > 1:
            x = np.convolve(x, np.ones(size) / size, mode="same")
    rise = np.maximum(np.diff(x, prepend=0.0), 0.0)
    w_max = max(1, round(0.03 / hop_seconds))
    w_avg = max(1, round(0.1 / hop_seconds))
    gap = max(1, round(min_gap / hop_seconds))
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    local_max = maximum_filter1d(rise, size=2 * w_max + 1, mode="constant")
    local_avg = uniform_filter1d(rise, size=2 * w_avg + 1, mode="constant")
    cand = np.flatnonzero((rise >= local_max) & (rise >= threshold) & (rise >= local_avg + delta))
    events: list[tuple[float, float, float]] = []
    last = -gap
    n = x.size
    for t in cand:
        if t - last < gap:
            continue
        last = t
        top = t + int(np.argmax(x[t : min(n, t + w_max + 2)]))
        level = x[top]
        below = np.flatnonzero(x[top:] < release * level)
        end = top + (int(below[0]) if below.size else n - top)
        events.append((t * hop_seconds, float(level * peak), end * hop_seconds))
    # a note ends at the latest when the same component starts again (no overlapping MIDI notes)
    return [(t, lv, min(e, events[i + 1][0]) if i + 1 < len(events) else e) for i, (t, lv, e) in enumerate(events)]


def track(
    source: object,
    kit: Kit | np.ndarray,
    labels: Sequence[str] | None = None,
    sample_rate: int | None = None,
    threshold: float = 0.3,
    min_gap: float = 0.05,
    smooth: float = 0.0,
    release: float = 0.1,
    iterations: int = 100,
    seed: int = 0,
    window_size: int | None = None,
    hop_size: int | None = None,
    fft_size: int | None = None,
    extra_components: int = 0,
) -> list[Event]:
    """Decompose ``source`` with fixed bases and return the onsets of each component, in time order.

    Args:
        source: samples (samples,) or (samples, channels) (mixed down to mono), or an audio file path.
        kit: a :class:`Kit` (labels, FFT settings and rate come with it) or a bases array
            (bins x K) in FluCoMa layout.
        labels: labels for a bases array (default ``1..K``).
        sample_rate: the source's rate in Hz (files carry their own); needed for times.
        threshold, min_gap, smooth, release: see :func:`pick_onsets` (seconds, fractions).
        iterations, seed: NMF settings.
        window_size, hop_size, fft_size: FFT settings; default the kit's (1024/-1/-1 for arrays).
        extra_components: free components learnt beside the kit to absorb other sounds.

    Returns:
        Events sorted by time.
    """
    if isinstance(source, (str, os.PathLike)):
        from .io import read_audio

        data, sr = read_audio(source)
        sample_rate = sample_rate or sr
    else:
        data = validate_source(source)
    if sample_rate is None or sample_rate <= 0:
        raise BufNMFError("sample_rate is needed to give event times in seconds: pass sample_rate=<Hz>")
    if not 0 < threshold <= 1:
        raise BufNMFError(f"threshold must be in (0, 1] (relative to each component's peak), got {threshold}")
    if min_gap < 0 or smooth < 0 or not 0 <= release < 1:
        raise BufNMFError(f"min_gap and smooth must be >= 0 and release in [0, 1), got {min_gap}, {smooth}, {release}")
    mono = mixdown(data)
    if isinstance(kit, Kit):
        bases, names = kit.bases, list(kit.labels)
        w = kit.window_size if window_size is None else window_size
        h = kit.hop_size if hop_size is None else hop_size
        f = kit.fft_size if fft_size is None else fft_size
        from .spectral import resolve_fft_settings

        kit.check_compatible(resolve_fft_settings(w, h, f), sample_rate)
    else:
        bases = np.asarray(kit)
        if bases.ndim != 2:
            raise BufNMFError(f"bases must be 2-D (bins, components), got shape {bases.shape}")
        names = list(labels) if labels is not None else [str(i + 1) for i in range(bases.shape[1])]
        w, h, f = window_size or 1024, hop_size or -1, fft_size or -1
    if len(names) != bases.shape[1]:
        raise BufNMFError(f"{len(names)} labels for {bases.shape[1]} bases: give one label per basis")
    K = bases.shape[1]
    res = decompose(mono, components=K, iterations=iterations, window_size=w, hop_size=h, fft_size=f, seed=seed,
                    bases=bases, bases_mode="fixed", resynth=False, extra_components=extra_components)
    hop_seconds = res.hop_size / sample_rate
    events = []
    for k, name in enumerate(names):
        for t, level, end in pick_onsets(res.activations[:, k], hop_seconds, threshold, min_gap, smooth, release):
            events.append(Event(round(t, 6), name, round(level, 6), round(end, 6)))
    events.sort(key=lambda e: (e.time, e.label))
    return events


def events_to_text(events: Sequence[Event], fmt: str) -> str:
    """Events as CSV (columns time,label,strength,end) or JSON (a list of objects)."""
    if fmt == "json":
        return json.dumps([asdict(e) for e in events], indent=1) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["time", "label", "strength", "end"])
    for e in events:
        writer.writerow([f"{e.time:.6f}", e.label, f"{e.strength:.6f}", f"{e.end:.6f}"])
    return buf.getvalue()


def note_map(labels: Sequence[str], overrides: Mapping[str, int] | None = None) -> dict[str, tuple[int, bool]]:
    """Label -> (MIDI note, is_drum): overrides, then General MIDI drum names, then note names."""
    overrides = dict(overrides or {})
    out: dict[str, tuple[int, bool]] = {}
    missing = []
    for lab in dict.fromkeys(labels):
        key = lab.strip().lower()
        if lab in overrides:
            out[lab] = (int(overrides[lab]), key in GM_DRUMS)
        elif key in GM_DRUMS:
            out[lab] = (GM_DRUMS[key], True)
        elif note_number(lab) is not None:
            out[lab] = (int(note_number(lab)), False)  # type: ignore[arg-type]
        else:
            missing.append(lab)
    if missing:
        raise BufNMFError(f"no MIDI note for label(s) {', '.join(missing)}: map them with --note LABEL=NUMBER "
                          "(e.g. --note kick=36), or use note names (C4) or drum names as labels")
    for lab, (num, _) in out.items():
        if not 0 <= num <= 127:
            raise BufNMFError(f"MIDI note {num} for {lab} is outside 0..127")
    return out


def events_to_midi(events: Sequence[Event], overrides: Mapping[str, int] | None = None, bpm: float = 120.0) -> bytes:
    """A standard MIDI file (type 0): drums on channel 10, pitched labels on channel 1, velocity from strength."""
    import mido

    mapping = note_map([e.label for e in events], overrides)
    tpb = 480
    ticks_per_second = tpb * bpm / 60.0
    msgs: list[tuple[int, int, mido.Message]] = []
    for e in events:
        note, drum = mapping[e.label]
        channel = 9 if drum else 0
        vel = int(np.clip(round(e.strength * 127), 1, 127))
        on = round(e.time * ticks_per_second)
        off = max(on + 1, round(e.end * ticks_per_second))
        msgs.append((on, 1, mido.Message("note_on", note=note, velocity=vel, channel=channel)))
        msgs.append((off, 0, mido.Message("note_off", note=note, velocity=0, channel=channel)))
    msgs.sort(key=lambda m: (m[0], m[1]))
    track_ = mido.MidiTrack()
    track_.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    now = 0
    for tick, _, msg in msgs:
        track_.append(msg.copy(time=tick - now))
        now = tick
    track_.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=0, ticks_per_beat=tpb)
    mid.tracks.append(track_)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def output_format(path: str | os.PathLike[str]) -> str:
    """"csv" or "json" from the file extension, else an error."""
    ext = Path(path).suffix.lower()
    if ext not in (".csv", ".json"):
        raise BufNMFError(f"events output {path} must end in .csv or .json")
    return ext[1:]
