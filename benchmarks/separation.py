"""Unsupervised separation of the shared drum loop: FluCoMa's KL-NMF against bufnmf's opt-in models.

The shared loop (``../shared/data/drums``: mix.wav and its kick, snare and hi-hat stems), K=3,
1024/512 STFT, 100 iterations, ``bufnmf.decompose`` at its defaults otherwise (float32), seeds
0..N-1. Score: mean SDR of the three separated stems against the true ones (mir_eval's
``bss_eval_sources``, best permutation), per seed; the table gives its mean, min and max over the
seeds, and the median seconds of one decomposition (STFT, factorisation and resynthesis; after
one untimed warm-up run). The reference, FluCoMa's KL-NMF (``model="flucoma"``, the default),
runs in the same process.

    OPENBLAS_NUM_THREADS=1 python benchmarks/separation.py [--seeds 10] [--json benchmarks/results/separation.json]

(single-threaded BLAS: on a loaded machine, multi-threaded OpenBLAS makes NMFD's small products slower.)
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
STEMS = ("kick", "snare", "hihat")

# name -> decompose keywords; the first is the reference
VARIANTS: dict[str, dict[str, object]] = {
    "FluCoMa KL-NMF (model='flucoma', the default)": {},
    "nmfd default (beta 0.5, T=4, 30 KL iterations first)": {"model": "nmfd"},
    "nmfd beta 0.5, T=4, no KL warm start": {"model": "nmfd", "warm_iterations": 0},
    "nmfd beta 1 (KL-NMFD), T=4": {"model": "nmfd", "beta": 1.0},
    "nmfd beta 0.5, T=1 (beta-NMF), 30 KL first": {"model": "nmfd", "template_frames": 1},
    "nmfd beta 0.5, T=2, 30 KL first": {"model": "nmfd", "template_frames": 2},
    "nmfd beta 0.5, T=3, 30 KL first": {"model": "nmfd", "template_frames": 3},
    "nmfd beta 0.5, T=8, 30 KL first": {"model": "nmfd", "template_frames": 8},
    "nmfd default + continuity 1": {"model": "nmfd", "continuity": 1.0},
    "nmfd default + sparsity 0.5": {"model": "nmfd", "sparsity": 0.5},
}


def mean_sdr(refs: np.ndarray, parts: np.ndarray) -> float:
    """Mean SDR (dB) of ``parts`` (sources, samples) against ``refs``, best permutation."""
    import mir_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval's deprecation notice
        sdr, _, _, _ = mir_eval.separation.bss_eval_sources(refs, parts, compute_permutation=True)
    return float(np.mean(sdr))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    d = SHARED / "data" / "drums"
    if not d.exists():
        raise SystemExit(f"{d} not found: put the shared data beside the repository or set BUFNMF_SHARED")
    mix, sr = sf.read(d / "mix.wav", dtype="float32")
    refs = np.stack([sf.read(d / "stems" / f"{s}.wav", dtype="float64")[0] for s in STEMS])
    rows = []
    for name, kw in VARIANTS.items():
        sdrs, secs = [], []
        bufnmf.decompose(mix, components=3, seed=0, **kw)  # type: ignore[arg-type]  # warm-up, untimed
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            res = bufnmf.decompose(mix, components=3, seed=seed, **kw)  # type: ignore[arg-type]
            secs.append(time.perf_counter() - t0)
            assert res.resynth is not None
            sdrs.append(mean_sdr(refs, res.resynth.T.astype(np.float64)))
        rows.append({"model": name, "options": kw, "mean_sdr_db": float(np.mean(sdrs)),
                     "min_sdr_db": float(np.min(sdrs)), "max_sdr_db": float(np.max(sdrs)),
                     "seconds": float(np.median(secs)), "per_seed_sdr_db": sdrs})
        print(f"  {name}: {np.mean(sdrs):.2f} dB", flush=True)
    ref = rows[0]["mean_sdr_db"]
    print(f"\nshared drum loop ({mix.size / sr:.1f} s, {sr} Hz), K=3, 1024/512, 100 iterations, "
          f"seeds 0..{args.seeds - 1}: mean stem SDR (dB, bss_eval, best permutation)")
    print(f"| {'model':55s} | {'mean':>6s} | {'vs FluCoMa':>10s} | {'min':>6s} | {'max':>6s} | {'seconds':>7s} |")
    print(f"|{'-' * 57}|{'-' * 8}|{'-' * 12}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for r in rows:
        print(f"| {r['model']:55s} | {r['mean_sdr_db']:6.2f} | {r['mean_sdr_db'] - ref:+10.2f} | "
              f"{r['min_sdr_db']:6.2f} | {r['max_sdr_db']:6.2f} | {r['seconds']:7.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"case": "shared drums loop", "components": 3, "seeds": args.seeds,
                                         "iterations": 100, "window_size": 1024, "hop_size": 512,
                                         "bufnmf_version": bufnmf.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
