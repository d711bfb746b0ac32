"""The fast Sines kernels against literal transcriptions of FluCoMa's code: the whole sinusoidal model
(tests/sines_reference.py), its Munkres, and libstdc++'s std::sort (compiled with g++ here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.fft as sfft
import soundfile as sf
from scipy.optimize import linear_sum_assignment

from bufnmf.clients.sines import resolve_sines_config
from bufnmf.dsp._munkres import munkres_fast, munkres_reference
from bufnmf.dsp._stlsort import _heap_sort, stl_sort
from bufnmf.dsp.fft import hann
from bufnmf.dsp.sines import SinesConfig, SinesProcessor

from .conftest import DATA, need_shared
from .sines_reference import RefModel

HERE = Path(__file__).parent

VARIANTS = {
    "default": {},
    "alt": dict(window_size=2048, hop_size=256, detection_threshold=-60.0, min_track_len=5),
    "ties_prob1": dict(track_prob=1.0),  # every distance 0: the std::sort replay every frame
    "prob0": dict(track_prob=0.0),
    "many_peaks": dict(detection_threshold=-144.0, birth_low_threshold=-144.0, birth_high_threshold=-144.0),
    "narrow": dict(track_freq_range=1.0, track_mag_range=1.0, bandwidth=1),
    "len1": dict(min_track_len=1),
    "len2_wide": dict(min_track_len=2, track_freq_range=10000.0, track_mag_range=200.0, bandwidth=301),
    "birth_inverted": dict(birth_low_threshold=-70.0, birth_high_threshold=-10.0),
    "fft_pad": dict(window_size=1000, hop_size=333, fft_size=2048, min_track_len=3),
    "quirks": dict(flucoma_quirks=True),
    "quirks_table": dict(max_fft_size=4096, flucoma_quirks=True),  # FluCoMa's misread larger table
    "table": dict(max_fft_size=4096),
}


def _spectra(x: np.ndarray, config: SinesConfig, frames: int) -> np.ndarray:
    w, h = config.window_size, config.hop_size
    padded = np.zeros(frames * h + w)
    padded[w : w + min(x.size, frames * h)] = x[: frames * h]
    view = np.lib.stride_tricks.sliding_window_view(padded, w)[::h][:frames]
    return sfft.rfft(view * hann(w), n=config.fft_size, axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("method", [0, 1])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_kernels_equal_the_literal_model_bit_for_bit(variant, method):
    """Every shortcut of the kernels (peaks only around magnitude maxima, greedy candidates limited to the
    reachable Hz window and sorted unless distances tie, Hungarian costs of far pairs without exp, the birth
    test's pow skipped when decided, column-major Munkres, a track table and a peak ring instead of track
    objects) against FluCoMa's algorithm as written: identical sines, residuals, track points and peaks."""
    config = resolve_sines_config(track_method=method, **VARIANTS[variant])
    x, _ = sf.read(need_shared(DATA / "drums" / "mix.wav"), dtype="float32")
    frames = 36 if variant == "many_peaks" else 48
    spec = _spectra(x[20000:].astype(np.float64), config, frames)
    ref = RefModel(config)
    proc = SinesProcessor(config, record_peaks=True)
    sines, res = proc.process(spec, residual=True)
    pts, det = proc.take_track_points(), proc.take_peaks()
    ref_pts, ref_det = [], []
    for k in range(frames):
        rs, rr, act, peaks = ref.process_frame(spec[k])
        np.testing.assert_array_equal(sines[k], rs, err_msg=f"sines, frame {k}")
        np.testing.assert_array_equal(res[k], rr, err_msg=f"residual, frame {k}")
        ref_pts += [(k, tid, f, m) for tid, f, m in act]
        ref_det += [(k, p.freq, p.mag) for p in peaks]
    np.testing.assert_array_equal(pts[:, [0, 2, 3, 4]], np.array(ref_pts).reshape(-1, 4))
    np.testing.assert_array_equal(det, np.array(ref_det).reshape(-1, 3))
    assert len(ref_det) > 300  # the comparison is not vacuous
    if variant in ("default", "alt", "quirks", "table", "len1"):
        assert len(ref_pts) > 50


def _tracker_like(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    f1, f2 = np.sort(rng.random(n) * 3000), np.sort(rng.random(m) * 3000)
    a1, a2 = rng.random(n) * -80, rng.random(m) * -80
    lg = np.log(0.5 / 1.5)
    u = 1 - np.exp(-((f1[:, None] - f2[None]) ** 2) / (-2500 * lg) - (a1[:, None] - a2[None]) ** 2 / (-225 * lg))
    s = 1 - 0.5 * u
    return np.where(u < s, np.abs(u), s)


def test_fast_munkres_makes_flucomas_choices_and_is_optimal():
    rng = np.random.default_rng(0)
    for t in range(600):
        n, m = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        kind = t % 5
        if kind == 0:
            c = rng.random((n, m))
        elif kind == 1:
            c = rng.integers(0, 3, (n, m)) * 0.25  # heavy ties
        elif kind == 2:
            c = _tracker_like(rng, n, m)
        elif kind == 3:
            c = np.zeros((n, m))
        else:
            c = rng.random((n, m)) * 1e-300 + rng.integers(0, 2, (n, m))  # rounding in step 6
        a = munkres_reference(c)
        np.testing.assert_array_equal(munkres_fast(c), a)
        np.testing.assert_array_equal(munkres_fast(np.asfortranarray(c)), a)
        big = 10 * c.max()
        k = max(n, m)
        p = np.full((k, k), big)
        p[:n, :m] = c
        r, cols = linear_sum_assignment(p)
        if n >= m:  # every real column is assigned: the cost is the optimum's
            assert abs(p[np.arange(n), a].sum() - p[r, cols].sum()) <= 1e-9 * max(1.0, big)
        assert len(set(a.tolist())) == n


@pytest.fixture(scope="module")
def gxx_sort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed: the std::sort reference is compiled from tests/cpp/stlsort_ref.cpp")
    out = tmp_path_factory.mktemp("cpp") / "stlsort_ref"
    subprocess.run([gxx, "-O2", "-std=c++17", "-o", str(out), str(HERE / "cpp" / "stlsort_ref.cpp")], check=True)
    return out


def _sort_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    cases: list[np.ndarray] = []
    for n in [0, 1, 2, 3, 15, 16, 17, 18, 31, 33, 64, 100, 257, 1000, 5000]:
        for levels in [1, 2, 3, 10, 10**9]:
            cases.append(rng.integers(0, levels, n).astype(np.float64))
    for n in [40, 300, 3000]:  # sorted, reversed, organ pipe, all equal, runs: shapes that stress the pivot
        a = np.arange(n, dtype=np.float64)
        cases += [a, a[::-1].copy(), np.concatenate([a[: n // 2], a[: n // 2][::-1]]), np.zeros(n), np.floor(a / 7)]
    return cases


def _gxx(binary: Path, mode: int, cases: list[np.ndarray]) -> list[np.ndarray]:
    text = "".join(f"{mode} {c.size} " + " ".join(repr(float(x)) for x in c) + "\n" for c in cases)
    out = subprocess.run([str(binary)], input=text, capture_output=True, text=True, check=True).stdout
    return [np.array(line.split(), dtype=np.int64) for line in out.splitlines()]


@pytest.mark.parametrize("mode", [0, 1])
def test_std_sort_replay_orders_ties_as_gxx(gxx_sort, mode):
    """mode 0: std::sort (FluCoMa's greedy tracker); mode 1: its heap sort (introsort's fallback)."""
    cases = _sort_cases()
    for c, ref in zip(cases, _gxx(gxx_sort, mode, cases), strict=True):
        keys, vals = c.copy(), np.arange(c.size, dtype=np.int64)
        if mode == 0:
            stl_sort(keys, vals, c.size)
        else:
            _heap_sort(keys, vals, 0, c.size)
        np.testing.assert_array_equal(vals, ref)
        np.testing.assert_array_equal(keys, c[ref])
