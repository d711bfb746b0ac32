"""Templates and tracking on unseen instruments (issue 15): one table, models x the six public cases.

Cases (../shared/data, see its README):
  drums A->A     kit A's hits (drums/hits) tracking kit A's loop (drums/mix.wav)
  drums_c A->C   kit A's hits tracking kit C's loop (drums_c/mix.wav)
  drums_c C->C   kit C's own hits tracking kit C's loop
  piano          FluidR3 notes (piano/notes) tracking the same piano (piano/mix.wav)
  piano_c        FluidR3 notes tracking another sampled piano (piano_c/mix.wav)
  piano88        FluidR3's 88 keys (piano88/notes) tracking another piano's passage (piano88/mix.wav)

Scores (mir_eval): drums, onset F per instrument (kick/snare/hi-hat, +-50 ms); pianos, note F
(onset +-50 ms, pitch must match; precision/recall). SDR (bss_eval, dB, mean over the stems) of
the kit's stems (:func:`bufnmf.workflows.tracking.separate`) where the case has stems/ (all but
piano88). Models are the library's methods (``learn_bases(method=...)`` + ``track(method=...)``)
and variants of their presets (the rows marked "variant" change one setting of
:data:`bufnmf.workflows.tracking.PRESETS` for the run). basic-pitch 0.4's notes were measured in
the research session (basic-pitch needs its own environment); they are stored in
benchmarks/results/basic_pitch_notes.json and scored here with the same code. Figures of tools
that do not install here are quoted from the issue.

    OPENBLAS_NUM_THREADS=1 python benchmarks/tracking.py [--json benchmarks/results/tracking.json] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

import bufnmf
from bufnmf.io.events import note_number
from bufnmf.workflows import tracking as tr

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
DRUMS = ("kick", "snare", "hihat")
CASES = (  # name, kind, case whose hits/notes make the kit, case whose mix is tracked
    ("drums A->A", "drums", "drums", "drums"),
    ("drums_c A->C", "drums", "drums", "drums_c"),
    ("drums_c C->C", "drums", "drums_c", "drums_c"),
    ("piano", "piano", "piano", "piano"),
    ("piano_c", "piano", "piano", "piano_c"),
    ("piano88", "piano", "piano88", "piano88"),
)
QUOTED = {  # the figures for tools that do not install here (quoted, not measured)
    "ADTLib (quoted in the issue)": {"drums_c A->C": "mean .876 (kick .80)"},
    "libnmfd NMFD, kit A's hits (quoted)": {"drums_c A->C": "mean .885 (snare .80)"},
    "madmom RNN piano (quoted)": {"piano_c": ".96", "piano88": ".84"},
}


@dataclasses.dataclass(frozen=True)
class Model:
    """A row: how the kit is learnt, how it is tracked, and a change to the method's preset."""

    name: str
    learn: str  # learn_bases method, or "default" (auto by labels)
    track: str = "auto"
    preset: tuple[tuple[str, object], ...] = ()  # (field, value) changes of the track method's preset
    causal: bool = False
    extra: int = 0
    kinds: tuple[str, ...] = ("drums", "piano")


MODELS = (
    Model("FluCoMa-exact (learn+track --method flucoma)", "flucoma", "flucoma"),
    Model("variant: FluCoMa's bases, fixed, new picker", "flucoma", "percussive", (("adapt", None),)),
    Model("variant: NMFD T=8 fixed", "percussive", "percussive", (("adapt", None),)),
    Model("variant: NMFD T=8 semi-adaptive + 1 free component", "percussive", "percussive", extra=1),
    Model("variant: pitched without re-timing", "pitched", "pitched", (("refine_window", 0),)),
    Model("variant: pitched, semi-adaptive p=1", "pitched", "pitched", (("adapt", 1.0), ("log_bands", 0)),
          kinds=("piano",)),
    Model("percussive preset (NMFD T=8 semi-adaptive)", "percussive", "percussive"),
    Model("pitched preset (NMF 8192, log bands, re-timed)", "pitched", "pitched"),
    Model("DEFAULT (learn/track auto: preset by labels)", "default"),
    Model("Tracker / track(causal=True), default kit", "default", causal=True),
)


@contextlib.contextmanager
def preset_changed(method: str, changes: tuple[tuple[str, object], ...]) -> Iterator[None]:
    """Run with one method's preset changed (a benchmark variant; restored afterwards)."""
    if not changes or method not in tr.PRESETS:
        yield
        return
    before = tr.PRESETS[method]
    tr.PRESETS[method] = dataclasses.replace(before, **dict(changes))  # type: ignore[arg-type]
    try:
        yield
    finally:
        tr.PRESETS[method] = before


def files(data: Path, kind: str, case: str) -> list[Path]:
    if kind == "drums":
        return [data / case / "hits" / f"{n}.wav" for n in DRUMS]
    notes = (data / case / "notes").glob("*.wav")
    return sorted(notes, key=lambda p: note_number(p.stem) or 0)


_KITS: dict[tuple[str, str], bufnmf.Kit] = {}


def kit_for(data: Path, kind: str, case: str, learn: str) -> bufnmf.Kit:
    key = (case, learn)
    if key not in _KITS:
        _KITS[key] = bufnmf.learn_bases(files(data, kind, case), seed=0,
                                        method="auto" if learn == "default" else learn)
    return _KITS[key]


def note_f(roll: list[dict], est: list[tuple[float, float, int]], offsets: bool = False) -> tuple[float, float, float]:
    import mir_eval

    if not est:
        return 0.0, 0.0, 0.0
    ref_iv = np.array([[n["onset"], n["offset"]] for n in roll])
    ref_hz = np.array([440.0 * 2 ** ((n["pitch"] - 69) / 12) for n in roll])
    est_iv = np.array([[t, max(e, t + 0.01)] for t, e, _ in est])
    est_hz = np.array([440.0 * 2 ** ((m - 69) / 12) for _, _, m in est])
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=0.05, offset_ratio=0.2 if offsets else None)
    return float(p), float(r), float(f)


def score(data: Path, kind: str, case: str, events: list[bufnmf.Event]) -> dict:
    import mir_eval

    meta = json.loads((data / case / "meta.json").read_text())
    if kind == "drums":
        out: dict = {}
        for n in DRUMS:
            ref = np.array([o["time"] for o in meta["onsets"][n]])
            est = np.array(sorted(e.time for e in events if e.label == n))
            out[n] = float(mir_eval.onset.f_measure(ref, est, window=0.05)[0])
        out["mean_f"] = float(np.mean([out[n] for n in DRUMS]))
        out["worst_f"] = float(min(out[n] for n in DRUMS))
        return out
    roll = meta["piano_roll"]
    est = [(e.time, e.end, note_number(e.label)) for e in events if note_number(e.label) is not None]
    p, r, f = note_f(roll, est)  # type: ignore[arg-type]
    fo = note_f(roll, est, offsets=True)[2]  # type: ignore[arg-type]
    return {"note_f": f, "precision": p, "recall": r, "offset_f": fo, "events": len(events), "notes": len(roll),
            "worst_f": f}


def stems_sdr(data: Path, case: str, mix: np.ndarray, sr: int, kit: bufnmf.Kit, method: str) -> float | None:
    import mir_eval

    d = data / case / "stems"
    if not d.exists():
        return None
    sep = tr.separate(mix, kit, sample_rate=sr, method=method, seed=0)
    refs = np.stack([sf.read(d / f"{lab}.wav", always_2d=True)[0].mean(axis=1) for lab in sep.labels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bss_eval_sources: deprecated in mir_eval 0.8, still exact
        sdr = mir_eval.separation.bss_eval_sources(refs, sep.stems.T.astype(np.float64), compute_permutation=False)[0]
    return float(np.mean(sdr))


def run(data: Path, model: Model, case: tuple[str, str, str, str]) -> dict | None:
    _, kind, kit_case, mix_case = case
    if kind not in model.kinds:
        return None
    kit = kit_for(data, kind, kit_case, model.learn)
    mix, sr = sf.read(data / mix_case / "mix.wav", always_2d=True)
    mono = mix.mean(axis=1)
    method = model.track if model.track != "auto" else (kit.method if kit.method in tr.PRESETS else "flucoma")
    with preset_changed(method, model.preset):
        t0 = time.perf_counter()
        events = bufnmf.track(mono, kit, sample_rate=sr, seed=0, method=model.track, causal=model.causal,
                              extra_components=model.extra)
        seconds = time.perf_counter() - t0
        out = score(data, kind, mix_case, events)
        out["seconds"] = seconds
        out["sdr"] = None if (model.causal or model.extra) else stems_sdr(data, mix_case, mono, sr, kit, method)
    return out


def basic_pitch(data: Path) -> dict:
    stored = json.loads((ROOT / "benchmarks" / "results" / "basic_pitch_notes.json").read_text())
    rows: dict = {}
    for setting in ("defaults", "onset_threshold=0.8"):
        row = {}
        for name, kind, _, mix_case in CASES:
            got = stored.get(f"{mix_case}|{setting}")
            if kind != "piano" or got is None:
                continue
            roll = json.loads((data / mix_case / "meta.json").read_text())["piano_roll"]
            p, r, f = note_f(roll, [(a, b, int(m)) for a, b, m in got["notes"]])
            row[name] = {"note_f": f, "precision": p, "recall": r, "worst_f": f, "sdr": None}
        rows[f"basic-pitch 0.4 {setting} (measured in research, scored here)"] = row
    return rows


def cell(kind: str, r: dict | None) -> str:
    if r is None:
        return ""
    if kind == "drums":
        text = "/".join(f"{r[n]:.3f}".lstrip("0") if r[n] < 1 else "1" for n in DRUMS)
    else:
        text = f"{r['note_f']:.3f}".lstrip("0") if r["note_f"] < 1 else "1.000"
        text += f" ({r['precision']:.2f}/{r['recall']:.2f})"
    if r.get("sdr") is not None:
        text += f", {r['sdr']:.2f}"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="the baseline, the default and the Tracker only")
    args = ap.parse_args()
    data = SHARED / "data"
    if not data.exists():
        raise SystemExit(f"{data} is missing: this benchmark needs the shared recordings (set BUFNMF_SHARED)")
    models = [m for m in MODELS if not args.quick or m.name.startswith(("FluCoMa-exact", "DEFAULT", "Tracker"))]
    results: dict = {}
    for m in models:
        results[m.name] = {}
        for case in CASES:
            r = run(data, m, case)
            if r is not None:
                results[m.name][case[0]] = r
                print(f"  {m.name[:50]:50s} {case[0]:14s} {cell(case[1], r):28s} {r['seconds']:6.2f} s", flush=True)
    results.update(basic_pitch(data))
    kinds = {c[0]: c[1] for c in CASES}
    head = "| model | " + " | ".join(c[0] for c in CASES) + " |"
    lines = [head, "|" + "---|" * (len(CASES) + 1)]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(kinds[c[0]], row.get(c[0])) for c in CASES) + " |")
    for name, quoted in QUOTED.items():
        lines.append(f"| {name} | " + " | ".join(quoted.get(c[0], "") for c in CASES) + " |")
    print("\nDrums: onset F kick/snare/hi-hat; piano: note F (precision/recall); then mean stem SDR (dB) where the "
          "case has stems.\n")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "quoted": QUOTED,
                                         "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}, indent=1) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
