"""Time per hop of the streaming NMFMatch and NMFFilter (one hop-sized block per call).

Settings as the issue asks: hop 512, window 1024, K=10 bases, 10 iterations per frame,
44.1 kHz. The budget for real time is the hop's duration (11.6 ms); the target is 10%
of it (1.16 ms). Reference in the same run: the same per-frame work done offline for
all frames at once (``bufnmf.match``), to show the per-call overhead.

    python benchmarks/realtime.py [--seconds 30] [--json realtime.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import bufnmf
from bufnmf.demo import drum_loop

SR, HOP, WINDOW, K, ITERATIONS = 44100, 512, 1024, 10, 10


def per_hop(obj, x: np.ndarray) -> np.ndarray:
    times = []
    for i in range(0, x.size - HOP + 1, HOP):
        t = time.perf_counter()
        obj.process(x[i : i + HOP])
        times.append(time.perf_counter() - t)
    return np.array(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    x = np.tile(drum_loop(seconds=4.0, sr=SR)[0].astype(np.float64), int(np.ceil(args.seconds / 4)))
    x = x[: int(args.seconds * SR)]
    bases = np.abs(np.random.default_rng(0).standard_normal((WINDOW // 2 + 1, K))) ** 2
    budget = HOP / SR
    rows = []
    for name, cls in (("NMFMatch", bufnmf.NMFMatch), ("NMFFilter", bufnmf.NMFFilter)):
        obj = cls(bases, max_components=None, iterations=ITERATIONS, seed=0, window_size=WINDOW, hop_size=HOP)
        obj.process(x[: 10 * HOP])  # warm-up
        t = per_hop(obj, x)
        rows.append({"object": name, "mean_ms": t.mean() * 1e3, "median_ms": float(np.median(t)) * 1e3,
                     "p99_ms": float(np.percentile(t, 99)) * 1e3, "max_ms": t.max() * 1e3,
                     "percent_of_hop": t.mean() / budget * 100, "hops": int(t.size)})
    t0 = time.perf_counter()
    frames = bufnmf.match(x, bases, None, ITERATIONS, 0, WINDOW, HOP).shape[0]
    offline = (time.perf_counter() - t0) / frames
    print(f"hop {HOP}, window {WINDOW}, K={K}, {ITERATIONS} iterations, {SR} Hz: a hop lasts {budget * 1e3:.2f} ms, "
          f"target < {budget * 100:.2f} ms (10%)")
    print(f"{'object':10s} {'mean ms':>8s} {'median':>8s} {'p99':>8s} {'max':>8s} {'% of hop':>9s}")
    for r in rows:
        print(f"{r['object']:10s} {r['mean_ms']:8.3f} {r['median_ms']:8.3f} {r['p99_ms']:8.3f} {r['max_ms']:8.3f} "
              f"{r['percent_of_hop']:9.2f}")
    print(f"reference: bufnmf.match offline, all frames in one call: {offline * 1e3:.3f} ms per frame")
    result = {"settings": {"hop": HOP, "window": WINDOW, "components": K, "iterations": ITERATIONS, "sr": SR},
              "budget_ms": budget * 1e3, "streaming": rows, "offline_ms_per_frame": offline * 1e3}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("\nJSON:", json.dumps(result))


if __name__ == "__main__":
    main()
