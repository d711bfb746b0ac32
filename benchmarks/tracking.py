"""Templates and tracking measured on real recordings (../shared/data), with mir_eval.

Drums: one basis per instrument learnt from hits/, fixed, decompose mix.wav -> onset
F-measure (+-50 ms) per instrument against meta.json, and SDR (bss_eval) of each named
stem against stems/. Piano: one basis per note from notes/, fixed, track mix.wav ->
note-onset F-measure (+-50 ms, pitch must match) against the piano roll.

    python benchmarks/tracking.py [--json tracking.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

import bufnmf
from bufnmf.io.events import note_hz
from bufnmf.workflows.tracking import track

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
DRUMS = ("kick", "snare", "hihat")


def drums(data: Path) -> dict:
    import mir_eval

    d = data / "drums"
    meta = json.loads((d / "meta.json").read_text())
    kit = bufnmf.learn_bases([d / "hits" / f"{n}.wav" for n in DRUMS])
    mix, sr = sf.read(d / "mix.wav")
    t = time.perf_counter()
    events = track(mix, kit, sample_rate=sr)
    res = bufnmf.decompose(mix, components=len(DRUMS), bases=kit.bases, bases_mode="fixed", seed=0)
    elapsed = time.perf_counter() - t
    out: dict = {"onset_f": {}, "sdr_db": {}, "seconds": elapsed}
    for n in DRUMS:
        ref = np.array([o["time"] for o in meta["onsets"][n]])
        est = np.array([e.time for e in events if e.label == n])
        out["onset_f"][n] = float(mir_eval.onset.f_measure(ref, est, window=0.05)[0])
    refs = np.stack([sf.read(d / "stems" / f"{n}.wav")[0] for n in DRUMS])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # bss_eval_sources: deprecated in mir_eval 0.8, still exact
        sdr = mir_eval.separation.bss_eval_sources(refs, res.resynth.T.astype(np.float64), compute_permutation=False)[0]
    out["sdr_db"] = {n: float(v) for n, v in zip(DRUMS, sdr, strict=True)}
    out["mean_sdr_db"] = float(np.mean(sdr))
    return out


def piano(data: Path) -> dict:
    import mir_eval

    p = data / "piano"
    meta = json.loads((p / "meta.json").read_text())
    names = list(meta["notes_isolated"])
    kit = bufnmf.learn_bases([p / "notes" / f"{n}.wav" for n in names])
    mix, sr = sf.read(p / "mix.wav")
    t = time.perf_counter()
    events = track(mix, kit, sample_rate=sr)
    elapsed = time.perf_counter() - t
    roll = meta["piano_roll"]
    ref_iv = np.array([[n["onset"], n["offset"]] for n in roll])
    ref_hz = np.array([n["hz"] for n in roll])
    est_iv = np.array([[e.time, max(e.end, e.time + 0.01)] for e in events]).reshape(-1, 2)
    est_hz = np.array([note_hz(e.label) for e in events], dtype=float)
    prec, rec, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_iv, ref_hz, est_iv, est_hz, onset_tolerance=0.05, offset_ratio=None)
    return {"note_onset_f": float(f), "precision": float(prec), "recall": float(rec), "notes": len(roll),
            "events": len(events), "seconds": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    data = SHARED / "data"
    if not data.exists():
        raise SystemExit(f"{data} is missing: this benchmark needs the shared recordings (set BUFNMF_SHARED)")
    dr, pi = drums(data), piano(data)
    print("drums (kit learnt from hits/, fixed; mix.wav):")
    print(f"{'instrument':12s} {'onset F':>8s} {'SDR dB':>8s}")
    for n in DRUMS:
        print(f"{n:12s} {dr['onset_f'][n]:8.3f} {dr['sdr_db'][n]:8.2f}")
    print(f"{'mean':12s} {np.mean(list(dr['onset_f'].values())):8.3f} {dr['mean_sdr_db']:8.2f}")
    print(f"\npiano (one basis per note from notes/, fixed; mix.wav): note-onset F {pi['note_onset_f']:.3f} "
          f"(precision {pi['precision']:.3f}, recall {pi['recall']:.3f}, {pi['events']} events for "
          f"{pi['notes']} notes)")
    result = {"drums": dr, "piano": pi}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("\nJSON:", json.dumps(result))


if __name__ == "__main__":
    main()
