"""bufnmf reproduces FluCoMa's own BufNMF output (../shared/fixtures/flucoma)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bufnmf
from bufnmf.dsp.fft import resolve_fft_settings
from bufnmf.dsp.stft import stft_complex

from .conftest import FIXTURES

CASES = ["drums_k3_w1024", "drums_k2_w2048_h256_f4096", "piano_k4_w1000_h250"]


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    assert a.shape == ref.shape
    return float(np.abs(a.astype(np.float64) - ref).max() / np.abs(ref).max())


def test_all_cases_covered(fixtures_dir):
    assert sorted(json.loads((fixtures_dir / "cases.json").read_text())["cases"]) == sorted(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["numba", "numpy"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_matches_flucoma(fixtures_dir, case, precision, kernel):
    spec = json.loads((FIXTURES / "cases.json").read_text())["cases"][case]
    src = np.load(fixtures_dir / f"{case}_source.npy")
    assert src.shape == (spec["num_samples"],)
    res = bufnmf.decompose(
        src, components=spec["components"], iterations=spec["iterations"],
        window_size=spec["window_size"], hop_size=spec["hop_size"], fft_size=spec["fft_size"],
        seed=spec["seed"], precision=precision, kernel=kernel,
    )
    settings = resolve_fft_settings(spec["window_size"], spec["hop_size"], spec["fft_size"])
    magnitude = np.abs(stft_complex(src, settings)).T
    assert _rel(magnitude, np.load(fixtures_dir / f"{case}_magnitude.npy")) <= 1e-6
    tol = 1e-6 if precision == "float64" else 1e-4
    assert _rel(res.bases, np.load(fixtures_dir / f"{case}_bases.npy")) <= tol
    assert _rel(res.activations, np.load(fixtures_dir / f"{case}_activations.npy")) <= tol
    assert _rel(res.resynth, np.load(fixtures_dir / f"{case}_resynth.npy")) <= tol
