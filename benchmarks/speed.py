"""Speed of bufnmf's NMF kernels against plain NumPy, scikit-learn and torchnmf, in one run.

Every contender gets the same V (bins x frames magnitudes of a real recording, or of the
synthetic drum loop when ../shared is absent), the same initial W and H, and exactly 100
KL multiplicative-update iterations (bases first, then activations). Reports the median
wall time of --repeats runs in ms per iteration, and the final generalised KL divergence
relative to the float64 NumPy loop. Then end to end: ``bufnmf.decompose`` of a 60 s stereo
44.1 kHz signal (K=3, 100 iterations, resynthesis) and the peak memory of a 10-minute one.

    python benchmarks/speed.py                 # all cases (several minutes: case C is large)
    python benchmarks/speed.py --cases A B --repeats 3 --json speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import bufnmf
from bufnmf.dsp.fft import EPS, resolve_fft_settings
from bufnmf.dsp.random import flucoma_init
from bufnmf.dsp.stft import stft_complex
from bufnmf.models.mu import kl_divergence, prepare_start
from bufnmf.models.mu import multiplicative_update as nmf_kl

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))

CASES = {  # name: (window, hop, frames, K)
    "A": (1024, 512, 5000, 3),
    "B": (4096, 1024, 2000, 10),
    "C": (2048, 1024, 40000, 20),
}
ITERATIONS = 100


def material(num_samples: int, sr: int = 44100) -> tuple[np.ndarray, str]:
    """A real recording looped to length (drum loop then piano passage), or the synthetic loop."""
    import soundfile as sf

    files = [SHARED / "data" / "drums" / "mix.wav", SHARED / "data" / "piano" / "mix.wav"]
    if all(f.exists() for f in files):
        base = np.concatenate([sf.read(f, dtype="float32")[0] for f in files])
        what = "real recordings (shared/data drums + piano mixes, looped)"
    else:
        from bufnmf.demo import drum_loop

        base = drum_loop(seconds=8.0, sr=sr)[0]
        what = "synthetic drum loop (bufnmf.demo; shared/data absent)"
    reps = -(-num_samples // base.size)
    return np.tile(base, reps)[:num_samples], what


def numpy_loop(V: np.ndarray, W: np.ndarray, H: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain NumPy KL-MU (FluCoMa's order: W then H), whole-matrix operations."""
    W, H = W.copy(), H.copy()
    eps = V.dtype.type(EPS)
    for _ in range(iterations):
        W *= ((V / np.maximum(W @ H, eps)) @ H.T) / np.maximum(H.sum(axis=1), eps)
        W /= np.linalg.norm(W, axis=0)
        H *= (W.T @ (V / np.maximum(W @ H, eps))) / np.maximum(W.sum(axis=0), eps)[:, None]
    return W, H


def sklearn_mu(V: np.ndarray, W: np.ndarray, H: np.ndarray, iterations: int):
    from sklearn.decomposition import NMF

    # X = V (bins x frames): sklearn's W is our W (bases), and its MU solver updates W first.
    model = NMF(n_components=W.shape[1], solver="mu", beta_loss="kullback-leibler", tol=0.0,
                max_iter=iterations, init="custom")
    Wn = model.fit_transform(V, W=W.copy(), H=H.copy())
    return Wn, model.components_


def torchnmf_run(V: np.ndarray, W: np.ndarray, H: np.ndarray, iterations: int):
    import torch
    from torchnmf.nmf import NMF

    Vt = torch.from_numpy(V)
    # torchnmf models V ~ H W^T with H (rows x K), W (cols x K): rows = bins here
    model = NMF(Vt.shape, rank=W.shape[1], H=torch.from_numpy(W.copy()), W=torch.from_numpy(H.T.copy()))
    model.fit(Vt, beta=1, tol=0, max_iter=iterations, verbose=False)
    return model.H.detach().numpy(), model.W.detach().numpy().T


def timed(fn, repeats: int):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def contenders(K: int):
    rows = [
        ("bufnmf numba float32", np.float32, lambda V, W, H: _nmf(V, W, H, "numba")),
        ("bufnmf numba float64", np.float64, lambda V, W, H: _nmf(V, W, H, "numba")),
        ("bufnmf numpy fallback float32", np.float32, lambda V, W, H: _nmf(V, W, H, "numpy")),
        ("numpy loop float32", np.float32, lambda V, W, H: numpy_loop(V, W, H, ITERATIONS)),
        ("numpy loop float64", np.float64, lambda V, W, H: numpy_loop(V, W, H, ITERATIONS)),
    ]
    try:
        import sklearn  # noqa: F401

        rows.append(("scikit-learn mu float64", np.float64, lambda V, W, H: sklearn_mu(V, W, H, ITERATIONS)))
    except ImportError:
        print("note: scikit-learn not installed: skipped (pip install scikit-learn)")
    try:
        import torchnmf  # noqa: F401

        rows.append(("torchnmf float32", np.float32, lambda V, W, H: torchnmf_run(V, W, H, ITERATIONS)))
    except ImportError:
        print("note: torchnmf not installed: skipped (pip install torch==2.13.0 torchnmf)")
    return rows


def _nmf(V, W, H, kernel):
    r = nmf_kl(V, W, H, ITERATIONS, kernel=kernel)
    return r.bases, r.activations


def kernel_cases(names: list[str], repeats: int) -> list[dict]:
    results = []
    for name in names:
        window, hop, frames, K = CASES[name]
        settings = resolve_fft_settings(window, hop, window)
        x, what = material((frames - 1) * hop)
        V64 = np.abs(stft_complex(x, settings))
        assert V64.shape == (settings.bins, frames), V64.shape
        W0, H0 = prepare_start(flucoma_init(1, settings.bins, K), flucoma_init(1, K, frames))
        print(f"\ncase {name}: V {V64.shape[0]} x {V64.shape[1]}, K={K}, {ITERATIONS} iterations, "
              f"median of {repeats}; V from {what}")
        ref_div = None
        rows = []
        for label, dtype, fn in contenders(K):
            V = V64.astype(dtype)
            W, H = W0.astype(dtype), H0.astype(dtype)
            fn(V[:, :64].copy(), W, H[:, :64].copy())  # warm-up (compilation, caches)
            sec, (Wf, Hf) = timed(lambda: fn(V, W, H), repeats)  # noqa: B023
            div = kl_divergence(V64, np.asarray(Wf, np.float64), np.asarray(Hf, np.float64))
            if label == "numpy loop float64":
                ref_div = div
            rows.append({"case": name, "contender": label, "ms_per_iteration": sec * 1000 / ITERATIONS,
                         "seconds": sec, "final_kl": div})
        for r in rows:
            r["kl_rel_to_numpy_float64"] = (r["final_kl"] - ref_div) / ref_div
        base = {r["contender"]: r["ms_per_iteration"] for r in rows}
        for r in rows:
            r["speedup_vs_numpy_float32"] = base["numpy loop float32"] / r["ms_per_iteration"]
        results += rows
        print_table(rows)
    return results


def print_table(rows: list[dict]) -> None:
    print(f"{'contender':32s} {'ms/iter':>9s} {'x numpy f32':>12s} {'KL rel. to f64 loop':>20s}")
    for r in rows:
        print(f"{r['contender']:32s} {r['ms_per_iteration']:9.2f} {r['speedup_vs_numpy_float32']:12.2f} "
              f"{r['kl_rel_to_numpy_float64']:20.2e}")


CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
from speed import material
import bufnmf

from bufnmf.resources import peak_memory as hwm, reset_peak_memory as reset_peak, resident_memory as rss

seconds, K, resynth = {seconds}, {K}, {resynth!r}
x, _ = material(int(seconds * 44100) * 2)
x = x.reshape(2, -1).T.copy()  # stereo: two different stretches of the material
bufnmf.decompose(x[:44100], components=K, iterations=2, seed=0)  # warm-up: compiled kernels loaded
sink = None
if resynth == "memmap":
    import tempfile
    tmp = tempfile.NamedTemporaryFile(suffix=".f32")
    sink = np.memmap(tmp.name, dtype=np.float32, mode="w+", shape=(x.shape[0], 2 * K))
reset_peak()
before = rss()
t = time.perf_counter()
res = bufnmf.decompose(x, components=K, iterations=100, seed=0, resynth=bool(resynth), resynth_out=sink)
wall = time.perf_counter() - t
peak = hwm()
frames = res.num_hops
print(json.dumps({{"wall_seconds": wall, "peak_bytes_over_start": peak - before,
                   "stft_bytes_complex64": res.num_bins * frames * 8,
                   "stft_bytes_complex128": res.num_bins * frames * 16,
                   "resynth_bytes": 0 if res.resynth is None else res.resynth.nbytes}}))
"""


def end_to_end(seconds: float, K: int, resynth: str) -> dict:
    """Run decompose in a fresh process; resynth: "" (off), "memory" (a new array) or "memmap" (a file)."""
    code = CHILD.format(bench=str(Path(__file__).parent), seconds=seconds, K=K, resynth=resynth)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update({"seconds_of_audio": seconds, "channels": 2, "components": K, "resynth": resynth or "off"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-end-to-end", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    from threadpoolctl import threadpool_info

    from bufnmf.models import _kernels

    info = {"bufnmf": bufnmf.__version__, "python": platform.python_version(), "numpy": np.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(), "numba_threads": _kernels.threads(),
            "blas": [{k: p.get(k) for k in ("internal_api", "num_threads", "version")} for p in threadpool_info()]}
    print("threads:", json.dumps(info))
    results = {"info": info, "kernels": kernel_cases(args.cases, args.repeats)}
    if not args.no_end_to_end:
        e2e = [end_to_end(60, 3, "memory"), end_to_end(600, 10, ""), end_to_end(600, 10, "memmap"),
               end_to_end(600, 10, "memory")]
        print("\nend to end, bufnmf.decompose, stereo 44.1 kHz, 100 iterations:")
        print(f"{'audio':>8s} {'K':>3s} {'resynth':>8s} {'wall s':>8s} {'peak MB':>9s} {'x STFT c64':>11s} "
              f"{'x STFT c128':>12s} {'resynth MB':>11s}")
        for r in e2e:
            p = r["peak_bytes_over_start"]
            print(f"{r['seconds_of_audio']:7.0f}s {r['components']:3d} {r['resynth']:>8s} {r['wall_seconds']:8.2f} "
                  f"{p / 2**20:9.0f} {p / r['stft_bytes_complex64']:11.2f} {p / r['stft_bytes_complex128']:12.2f} "
                  f"{r['resynth_bytes'] / 2**20:11.0f}")
        results["end_to_end"] = e2e
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("\nJSON:", json.dumps(results))


if __name__ == "__main__":
    main()
