"""Files per second of ``bufnmf batch decompose`` against a plain loop, in one run.

A corpus of 200 files of 5 s (half mono, half stereo, 44.1 kHz float32), cut and looped from the
real recordings in ../shared/data (the synthetic drum loop when they are absent), is written to
a temporary folder. Every contender decomposes every file with K=3, 100 iterations, resynthesis
on, seed 1, writing the single-file command's outputs:

* ``jobs loop, 1 thread``: one Python process calling ``decompose_job`` per file on one numerical
  thread, as each batch worker does (the engine's baseline); ``jobs loop, all cores' threads``:
  the same with numba's default threads (every core), as a single-file command runs;
* ``batch, 1 worker`` and ``batch, 2 workers``: ``bufnmf.batch.run`` on a local cluster, in a new
  Python process that has imported bufnmf (as the command line's process when it starts a batch;
  its workers are forked from it on Linux), timed from the call to its return (cluster start-up,
  corpus scan, index and shut-down included); also reported: when the first file was done
  (start-up) and the files per second between 10% and 90% of the files done (the steady state);
  ``..., spawned``: the same with ``start_method="spawn"`` (fresh interpreters as workers, the
  way on macOS and Windows, and in a process that has used OpenMP);
* ``command loop``: ``bufnmf decompose FILE -o DIR`` in a new process per file, as a shell loop
  would (on the first ``--loop-files`` files; its per-file time is what 200 files would cost).

The contenders run in turns (their order rotated each round), ``--rounds`` times; medians are
reported with the CPU time used per file (this process and its children) and the load average
seen during each run, as the machine may be shared.

    python benchmarks/batch.py [--files 200] [--rounds 3] [--loop-files 20] [--no-spawn]
        [--json results/batch.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import bufnmf
import bufnmf.batch
from bufnmf.workflows.jobs import decompose_job

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
SR = 44100
PARAMS = {"components": 3, "iterations": 100, "seed": 1}


def material() -> tuple[np.ndarray, str]:
    names = ["drums/mix.wav", "drums_c/mix.wav", "piano/mix.wav", "piano_c/mix.wav", "piano88/mix.wav"]
    files = [SHARED / "data" / n for n in names]
    if all(f.exists() for f in files):
        return np.concatenate([sf.read(f, dtype="float32")[0] for f in files]), "shared/data recordings"
    from bufnmf.demo import drum_loop

    return drum_loop(seconds=20.0, sr=SR)[0].astype(np.float32), "synthetic drum loop (shared/data absent)"


def make_corpus(folder: Path, files: int, seconds: float) -> tuple[list[Path], str]:
    base, what = material()
    n = int(seconds * SR)
    looped = np.tile(base, 2 + (files * n) // base.size)
    paths = []
    for i in range(files):
        start = (i * 7919 * 37) % base.size  # different stretches, wrapping around the material
        a = looped[start : start + n]
        sub = "stereo" if i % 2 else "mono"
        data = np.stack([a, looped[start + n // 3 : start + n // 3 + n]], axis=1) if i % 2 else a
        p = folder / sub / f"f{i:03d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, data, SR, subtype="FLOAT")
        paths.append(p)
    return paths, what


def load() -> float:
    return os.getloadavg()[0]


def cpu() -> float:
    """CPU seconds of this process and its finished children (the workers once their cluster closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def jobs_loop(paths: list[Path], corpus: Path, out: Path, threads: int | None = None) -> float:
    """``decompose_job`` per file in this process; ``threads``: numerical threads (None: numba's default,
    every core; 1: as each batch worker runs)."""
    from bufnmf.batch.tasks import limit_threads

    t = time.perf_counter()
    with limit_threads(threads):
        for p in paths:
            decompose_job(p, out / p.relative_to(corpus).with_suffix(""), **PARAMS)
    return time.perf_counter() - t


#: per batch run: seconds to its first finished file, and the files per second between 10% and
#: 90% of the files done (the steady state, without start-up and shut-down)
PHASES: list[dict[str, float | str]] = []


def batch_run(corpus: Path, out: Path, workers: int, start_method: str = "auto") -> float:
    """``bufnmf.batch.run`` in a new Python process that has imported bufnmf, as the command line's
    has when it starts the batch (and has run no numerics: a process that has, e.g. this one after
    its jobs loops, spawns its workers, see ``bufnmf.batch.engine.choose_start_method``)."""
    proc = subprocess.run([sys.executable, __file__, "--one-batch", str(corpus), str(out), str(workers), start_method],
                          check=True, capture_output=True, text=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    PHASES.append(report["phases"])
    return float(report["seconds"])


def one_batch(corpus: Path, out: Path, workers: int, start_method: str) -> None:
    """The child of :func:`batch_run`: time one batch from the call to its return, print JSON."""
    from bufnmf.batch.engine import choose_start_method

    method = choose_start_method(start_method, workers=workers)
    stamps: list[float] = []
    t = time.perf_counter()
    index = bufnmf.batch.run("decompose", corpus, out, workers=workers, start_method=start_method,
                             progress=lambda row, done, total: stamps.append(time.perf_counter() - t) and None,
                             **PARAMS)
    sec = time.perf_counter() - t
    assert index.counts["ok"] == len(index), index.counts
    a, b = len(stamps) // 10, (9 * len(stamps)) // 10
    print(json.dumps({"seconds": sec, "phases": {
        "first_file_seconds": stamps[0], "steady_files_per_second": (b - a) / (stamps[b] - stamps[a]),
        "after_last_file_seconds": sec - stamps[-1], "start_method": method}}))


def command_loop(paths: list[Path], corpus: Path, out: Path) -> float:
    exe = shutil.which("bufnmf") or sys.executable
    pre = [] if exe.endswith("bufnmf") else ["-m", "bufnmf"]
    t = time.perf_counter()
    for p in paths:
        subprocess.run([exe, *pre, "decompose", str(p), "-o", str(out / p.relative_to(corpus).with_suffix("")),
                        "-k", "3", "--iterations", "100", "--seed", "1"], check=True)
    return time.perf_counter() - t


def main() -> None:
    if sys.argv[1:2] == ["--one-batch"]:
        corpus, out, workers, start_method = sys.argv[2:6]
        one_batch(Path(corpus), Path(out), int(workers), start_method)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loop-files", type=int, default=20, help="files the per-process command loop decomposes")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--no-spawn", action="store_true",
                    help="leave out the batches with spawned workers (the default on Linux forks them)")
    args = ap.parse_args()
    from threadpoolctl import threadpool_info

    from bufnmf.batch.engine import cores
    from bufnmf.models import _kernels

    tmp = Path(tempfile.mkdtemp(prefix="bufnmf-batch-bench-"))
    try:
        corpus = tmp / "corpus"
        paths, what = make_corpus(corpus, args.files, args.seconds)
        decompose_job(paths[0], tmp / "warm", **PARAMS)  # compiled kernels cached before any timing
        info = {"bufnmf": bufnmf.__version__, "python": platform.python_version(), "machine": platform.machine(),
                "cores": cores(), "numba_threads": _kernels.threads(),
                "blas": [{k: p.get(k) for k in ("internal_api", "num_threads")} for p in threadpool_info()],
                "files": args.files, "seconds_each": args.seconds, "material": what,
                "params": {**PARAMS, "resynth": True}}
        print("setup:", json.dumps(info))
        contenders = {
            "jobs loop, 1 thread (1 process)": lambda out: jobs_loop(paths, corpus, out, 1) / len(paths),
            "batch, 1 worker": lambda out: batch_run(corpus, out, 1) / len(paths),
            "batch, 2 workers": lambda out: batch_run(corpus, out, 2) / len(paths),
            "command loop (process per file)": lambda out: command_loop(paths[: args.loop_files], corpus, out)
            / min(args.loop_files, len(paths)),
            "jobs loop, all cores' threads": lambda out: jobs_loop(paths, corpus, out) / len(paths),
        }
        if not args.no_spawn:  # the same batches with fresh interpreters as workers (macOS's and Windows' way)
            contenders["batch, 1 worker, spawned"] = lambda out: batch_run(corpus, out, 1, "spawn") / len(paths)
            contenders["batch, 2 workers, spawned"] = lambda out: batch_run(corpus, out, 2, "spawn") / len(paths)
        names = list(contenders)
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                out = tmp / "out"
                l0, c0 = load(), cpu()
                PHASES.clear()
                per_file = contenders[name](out)
                n = min(args.loop_files, len(paths)) if name.startswith("command") else len(paths)
                cpu_per_file = (cpu() - c0) / n
                runs[name].append({"seconds_per_file": per_file, "cpu_seconds_per_file": cpu_per_file,
                                   "load_before": l0, "load_after": load(), **(PHASES[0] if PHASES else {})})
                phases = (f"  first file after {PHASES[0]['first_file_seconds']:.2f} s, steady "
                          f"{PHASES[0]['steady_files_per_second']:.2f} files/s" if PHASES else "")
                print(f"round {r + 1}: {name:32s} {per_file * 1000:8.1f} ms/file  {1 / per_file:6.2f} files/s  "
                      f"cpu {cpu_per_file * 1000:7.1f} ms/file  (load {l0:.2f} -> {load():.2f}){phases}", flush=True)
                shutil.rmtree(out)
        med = {n: statistics.median(x["seconds_per_file"] for x in runs[n]) for n in names}
        loop, w1, w2, cmd = (med[n] for n in ("jobs loop, 1 thread (1 process)", "batch, 1 worker",
                                              "batch, 2 workers", "command loop (process per file)"))
        rows = [{"contender": n, "median_seconds_per_file": med[n], "files_per_second": 1 / med[n],
                 "runs": runs[n]} for n in names]
        ratios = {"two_workers_over_one": w1 / w2, "one_worker_over_jobs_loop": w1 / loop,
                  "batch_2_workers_over_command_loop": cmd / w2, "batch_1_worker_over_command_loop": cmd / w1}
        per_round = [a["seconds_per_file"] / b["seconds_per_file"]
                     for a, b in zip(runs["batch, 1 worker"], runs["batch, 2 workers"], strict=True)]
        steady = {n: statistics.median(x["steady_files_per_second"] for x in runs[n])
                  for n in ("batch, 1 worker", "batch, 2 workers")}
        first = {n: statistics.median(x["first_file_seconds"] for x in runs[n]) for n in steady}
        ratios["two_workers_over_one_each_round"] = per_round
        if not args.no_spawn:
            ratios["spawned_two_workers_over_one"] = med["batch, 1 worker, spawned"] / med["batch, 2 workers, spawned"]
            first.update({n: statistics.median(x["first_file_seconds"] for x in runs[n])
                          for n in ("batch, 1 worker, spawned", "batch, 2 workers, spawned")})
        ratios["two_workers_over_one_steady_state"] = steady["batch, 2 workers"] / steady["batch, 1 worker"]
        print(f"\n{args.files} files of {args.seconds:g} s ({what}), K=3, 100 iterations, resynthesis; "
              f"medians of {args.rounds} interleaved rounds")
        print(f"{'contender':34s} {'ms/file':>9s} {'files/s':>8s} {'cpu ms/file':>12s} {'load avg (min-max)':>20s}")
        for n in names:
            loads = [x["load_before"] for x in runs[n]] + [x["load_after"] for x in runs[n]]
            cpu_med = statistics.median(x["cpu_seconds_per_file"] for x in runs[n])
            print(f"{n:34s} {med[n] * 1000:9.1f} {1 / med[n]:8.2f} {cpu_med * 1000:12.1f} "
                  f"{min(loads):9.2f} - {max(loads):.2f}")
        print(f"2 workers / 1 worker: {ratios['two_workers_over_one']:.2f}x (target >= 1.8); 1 worker / jobs loop "
              f"time per file: {ratios['one_worker_over_jobs_loop']:.2f} (target <= 1.10); batch (2 workers) / "
              f"command loop: {ratios['batch_2_workers_over_command_loop']:.1f}x faster (target >= 5)")
        print(f"2 workers / 1 worker in each round: {', '.join(f'{x:.2f}x' for x in per_round)}; in the steady "
              f"state (10% to 90% of the files done): {ratios['two_workers_over_one_steady_state']:.2f}x; first file "
              "done after " + ", ".join(f"{n.split(', ', 1)[1]} {first[n]:.2f} s" for n in first))
        if not args.no_spawn:
            print(f"with spawned workers: 2 workers / 1 worker {ratios['spawned_two_workers_over_one']:.2f}x")
        results = {"info": info, "rows": rows, "ratios": ratios}
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1))
        print("\nJSON:", json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
