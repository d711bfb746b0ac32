"""Event files: CSV, JSON and standard MIDI files of detected onsets, and label -> MIDI note names."""

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

from ..errors import BufNMFError

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
        strength: how loud the event is, 0..1 (1 = the loudest of the source: the FluCoMa method's
            activation peak; the other methods' level of the sound, in the mix's units, relative
            to the loudest event's).
        end: when the sound stopped (seconds), for note-offs (``math.inf`` while a streaming
            tracker has not seen it end).
        velocity: MIDI velocity 1..127 (None: from ``strength``, as the FluCoMa method's events).
        pitch: the MIDI note of a note-name label (C4 = 60), else None.
    """

    time: float
    label: str
    strength: float
    end: float
    velocity: int | None = None
    pitch: int | None = None

    @property
    def midi_velocity(self) -> int:
        """The velocity a MIDI file gets: ``velocity``, else ``round(127 * strength)``, 1..127."""
        v = self.velocity if self.velocity is not None else round(self.strength * 127)
        return int(np.clip(v, 1, 127))


def note_number(label: str) -> int | None:
    """MIDI note of a note-name label (C4 = 60, F#3, Bb2), else None."""
    m = _NOTE_RE.match(label.strip())
    if not m:
        return None
    letter, accidental, octave = m.groups()
    n = 12 * (int(octave) + 1) + _PITCH[letter.lower()] + {"#": 1, "b": -1, "": 0}[accidental]
    return n if 0 <= n <= 127 else None


_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")


def note_name(number: int) -> str:
    """The note name of a MIDI note (60 -> C4, 61 -> Db4; flats, as the piano88 files are named)."""
    n = int(number)
    if not 0 <= n <= 127:
        raise BufNMFError(f"MIDI note {n} is outside 0..127")
    return f"{_NAMES[n % 12]}{n // 12 - 1}"


def is_note_name(label: str) -> bool:
    """Whether a label is a note name (C4, F#3, Bb2) of a MIDI note."""
    return note_number(label) is not None


def note_hz(label: str) -> float | None:
    """Frequency of a note-name label (A4 = 440 Hz), else None."""
    n = note_number(label)
    return None if n is None else 440.0 * 2 ** ((n - 69) / 12)


def events_to_text(events: Sequence[Event], fmt: str) -> str:
    """Events as CSV (columns time,label,strength,end, then velocity,pitch when the events have them)
    or JSON (a list of objects; velocity and pitch only where known)."""
    extra = any(e.velocity is not None or e.pitch is not None for e in events)
    if fmt == "json":
        rows = [{k: v for k, v in asdict(e).items() if v is not None or k not in ("velocity", "pitch")}
                for e in events]
        return json.dumps(rows, indent=1) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["time", "label", "strength", "end", *(["velocity", "pitch"] if extra else [])])
    for e in events:
        row = [f"{e.time:.6f}", e.label, f"{e.strength:.6f}", f"{e.end:.6f}"]
        if extra:
            row += ["" if e.velocity is None else str(e.velocity), "" if e.pitch is None else str(e.pitch)]
        writer.writerow(row)
    return buf.getvalue()


def read_events(path: str | os.PathLike[str]) -> list[Event]:
    """Events from a file :func:`events_to_text` wrote (CSV or JSON, by extension)."""
    p = Path(path)
    fmt = output_format(p)
    try:
        text = p.read_text()
        if fmt == "json":
            items = json.loads(text)
            return [Event(float(d["time"]), str(d["label"]), float(d["strength"]), float(d["end"])) for d in items]
        rows = list(csv.DictReader(io.StringIO(text)))
        return [Event(float(r["time"]), r["label"], float(r["strength"]), float(r["end"])) for r in rows]
    except OSError as exc:
        raise BufNMFError(f"cannot read events file {p}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BufNMFError(f"events file {p} is not valid ({exc}): write it again with 'bufnmf track'") from None


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
    """A standard MIDI file (type 0): drums on channel 10 (General MIDI), pitched labels on channel 1;
    note-on at ``time`` with the event's velocity (:attr:`Event.midi_velocity`), note-off at ``end``."""
    import mido

    mapping = note_map([e.label for e in events], overrides)
    tpb = 480
    ticks_per_second = tpb * bpm / 60.0
    msgs: list[tuple[int, int, mido.Message]] = []
    for e in events:
        note, drum = mapping[e.label]
        channel = 9 if drum else 0
        vel = e.midi_velocity
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


def output_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """"csv" or "json": ``format`` if given, else from the file extension ("csv" for ``-``,
    standard output); anything else is an error."""
    if format is not None:
        key = str(format).lower().lstrip(".")
        if key not in ("csv", "json"):
            raise BufNMFError(f"events format {format!r} must be csv or json")
        return key
    if os.fspath(path) == "-":
        return "csv"
    ext = Path(path).suffix.lower()
    if ext not in (".csv", ".json"):
        raise BufNMFError(f"events output {path} must end in .csv or .json (or give the format; - is standard "
                          "output)", cli=f"-o {path} must end in .csv or .json (or give --format csv|json; -o - is "
                                         "standard output)")
    return ext[1:]
