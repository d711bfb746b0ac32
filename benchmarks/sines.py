"""Speed of BufSines (``bufnmf.sines``) and the streaming ``bufnmf.Sines``, against FluCoMa's C++.

Offline: 60 s of mono 44.1 kHz audio (the shared piano and drums recordings, looped), default
settings, greedy and Hungarian tracking, bufnmf's default (FluCoMa's defects fixed) and
``flucoma_quirks=True`` (FluCoMa's exact output). FluCoMa's own BufSines (C++, -O2) takes 1.56 s
(greedy) and 6.3 s (Hungarian) for this work on this machine (figures from issue 13; FluCoMa is
not installed here); the targets are 0.5 s and 2 s. Reference in the same run: the streaming
engine alone (the same framing, FFTs and overlap-add with a processor that passes spectra
through), the floor under any frame processor.

Streaming: ``Sines.process`` fed hop-sized blocks (512 samples = 11.61 ms), time per call as a
share of the hop's duration (target < 10%).

First run: numba compiles the kernels once and caches them. Measured in fresh processes with an
empty cache (``NUMBA_CACHE_DIR``), then again with that cache.

The machine is shared: every repeat is interleaved across the configurations; the table shows
the median and the best wall time, the median CPU time of the process, and the load average.

    python benchmarks/sines.py [--seconds 60] [--repeats 5] [--json benchmarks/results/sines.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import bufnmf
from bufnmf.dsp.fft import FFTSettings
from bufnmf.dsp.stream import StreamEngine

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
FLUCOMA_SECONDS = {"greedy": 1.56, "hungarian": 6.3}  # FluCoMa's BufSines, 60 s mono, default settings
TARGET_SECONDS = {"greedy": 0.5, "hungarian": 2.0}
METHODS = {"greedy": 0, "hungarian": 1}


def source(name: str, seconds: float) -> tuple[np.ndarray, int]:
    x, sr = sf.read(SHARED / "data" / name / "mix.wav", dtype="float32", always_2d=True)
    return np.resize(x[:, 0], round(seconds * sr)), sr


def timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def engine_floor(x: np.ndarray) -> None:
    """The streaming engine offline with a pass-through processor: framing, rfft, irfft, overlap-add."""
    engine = StreamEngine(FFTSettings(1024, 512, 1024), lambda spectra, first: spectra[:, None, :], 1,
                          latency_frames=15)
    for _ in engine.offline(x.astype(np.float64), front=512, block_frames=256):
        pass


def first_run_seconds() -> dict[str, float]:
    """Seconds of the first ``bufnmf.sines`` call in a fresh process: with an empty numba cache (compiling),
    then with the cache that run left (loading). Both methods in each process; import excluded."""
    code = ("import time, numpy as np, bufnmf\n"
            "x = np.random.default_rng(0).standard_normal(8192) * 0.1\n"
            "t = time.perf_counter()\n"
            "bufnmf.sines(x); bufnmf.sines(x, track_method=1); bufnmf.Sines().process(x)\n"
            "print(time.perf_counter() - t)\n")
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT / "src")}
        for label in ("compile_s", "cache_load_s"):
            proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out[label] = float(proc.stdout.split()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stream-seconds", type=float, default=30.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    load_start = os.getloadavg()
    first = first_run_seconds()
    sources = {name: source(name, args.seconds) for name in ("piano", "drums")}
    for x, _ in sources.values():  # warm (the kernels are cached by now)
        bufnmf.sines(x[:44100])
        bufnmf.sines(x[:44100], track_method=1)
    configs = [(name, method, quirks) for name in sources for method in METHODS for quirks in (False, True)]
    wall: dict[tuple, list[float]] = {c: [] for c in configs}
    cpu: dict[tuple, list[float]] = {c: [] for c in configs}
    floor = {name: [] for name in sources}
    for _ in range(args.repeats):
        for name, (x, _sr) in sources.items():
            floor[name].append(timed(lambda x=x: engine_floor(x))[0])
        for c in configs:
            name, method, quirks = c
            x, sr = sources[name]
            w, p = timed(lambda x=x, sr=sr, m=METHODS[method], q=quirks: bufnmf.sines(
                x, track_method=m, sample_rate=sr, flucoma_quirks=q))
            wall[c].append(w)
            cpu[c].append(p)
    scale = args.seconds / 60.0
    rows = []
    for c in configs:
        name, method, quirks = c
        med = float(np.median(wall[c]))
        rows.append({"source": name, "method": method, "flucoma_quirks": quirks, "wall_median_s": med,
                     "wall_best_s": float(np.min(wall[c])), "cpu_median_s": float(np.median(cpu[c])),
                     "flucoma_s": FLUCOMA_SECONDS[method] * scale, "target_s": TARGET_SECONDS[method] * scale,
                     "speedup_vs_flucoma": FLUCOMA_SECONDS[method] * scale / med,
                     "engine_floor_s": float(np.median(floor[name]))})

    hop = 512
    budget = hop / 44100
    stream_rows = []
    for name in sources:
        x = sources[name][0][: int(args.stream_seconds * 44100)].astype(np.float64)
        for method in METHODS:
            st = bufnmf.Sines(track_method=METHODS[method])
            st.process(x[: 20 * hop])  # warm-up
            st.reset()
            times = []
            for i in range(0, x.size - hop + 1, hop):
                t = time.perf_counter()
                st.process(x[i : i + hop])
                times.append(time.perf_counter() - t)
            t_arr = np.array(times)
            stream_rows.append({"source": name, "method": method, "mean_ms": float(t_arr.mean() * 1e3),
                                "median_ms": float(np.median(t_arr) * 1e3),
                                "p99_ms": float(np.percentile(t_arr, 99) * 1e3), "max_ms": float(t_arr.max() * 1e3),
                                "percent_of_hop": float(t_arr.mean() / budget * 100), "hops": int(t_arr.size)})
    load_end = os.getloadavg()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end (the machine is shared)")
    print(f"first run (fresh process, empty numba cache): {first['compile_s']:.1f} s compiling; "
          f"with the cache: {first['cache_load_s']:.2f} s")
    print(f"\noffline, {args.seconds:g} s mono 44.1 kHz, default settings, {args.repeats} interleaved repeats:")
    print(f"{'source':7s} {'method':10s} {'quirks':6s} {'median s':>9s} {'best s':>7s} {'CPU s':>7s} "
          f"{'FluCoMa s':>9s} {'target s':>8s} {'speed-up':>8s} {'engine s':>8s}")
    for r in rows:
        print(f"{r['source']:7s} {r['method']:10s} {'yes' if r['flucoma_quirks'] else 'no':6s} "
              f"{r['wall_median_s']:9.3f} {r['wall_best_s']:7.3f} {r['cpu_median_s']:7.3f} {r['flucoma_s']:9.2f} "
              f"{r['target_s']:8.2f} {r['speedup_vs_flucoma']:7.1f}x {r['engine_floor_s']:8.3f}")
    print("(engine s: the streaming engine alone, pass-through processor, the same framing, FFTs and overlap-add)")
    print(f"\nstreaming, {hop}-sample blocks (a hop lasts {budget * 1e3:.2f} ms; target < 10%), "
          f"{args.stream_seconds:g} s:")
    print(f"{'source':7s} {'method':10s} {'mean ms':>8s} {'median':>8s} {'p99':>8s} {'max':>8s} {'% of hop':>9s}")
    for r in stream_rows:
        print(f"{r['source']:7s} {r['method']:10s} {r['mean_ms']:8.3f} {r['median_ms']:8.3f} {r['p99_ms']:8.3f} "
              f"{r['max_ms']:8.3f} {r['percent_of_hop']:9.2f}")
    result = {"machine": {"cpus": os.cpu_count(), "load_average_start": load_start[0], "load_average_end": load_end[0],
                          "python": platform.python_version(), "numpy": np.__version__},
              "settings": {"seconds": args.seconds, "repeats": args.repeats, "sr": 44100, "window": 1024, "hop": hop,
                           "fft": 1024},
              "first_run": first, "offline": rows, "streaming": stream_rows, "budget_ms": budget * 1e3}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\nJSON:", json.dumps(result))


if __name__ == "__main__":
    main()
