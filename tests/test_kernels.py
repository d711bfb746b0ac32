"""Every NMF kernel gives the results of the exact NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

import bufnmf
from bufnmf.dsp.random import flucoma_init
from bufnmf.models import _kernels
from bufnmf.models.mu import available_kernels, kl_divergence, prepare_start
from bufnmf.models.mu import multiplicative_update as nmf_kl

pytestmark = pytest.mark.skipif(not _kernels.AVAILABLE, reason="numba is not installed: only the NumPy kernel exists")


def _problem(bins: int, frames: int, K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    V = rng.gamma(0.3, 1.0, size=(bins, frames))
    V[rng.random(V.shape) < 0.05] = 0.0  # exact zeros, as in silent bins
    W, H = prepare_start(flucoma_init(seed, bins, K), flucoma_init(seed, K, frames))
    return V, W, H


def test_numba_is_the_default_when_installed():
    assert available_kernels() == ["numba", "numpy"]


@pytest.mark.slow
@pytest.mark.parametrize(("bins", "frames", "K"), [(513, 700, 3), (129, 1500, 10), (7, 3, 1), (33, 1, 2),
                                                   (2049, 130, 20)])
def test_numba_matches_numpy_float64(bins, frames, K):
    V, W, H = _problem(bins, frames, K)
    a = nmf_kl(V, W, H, 30, kernel="numpy", track_divergence=True)
    b = nmf_kl(V, W, H, 30, kernel="numba", track_divergence=True)
    np.testing.assert_allclose(b.bases, a.bases, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.activations, a.activations, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.divergences, a.divergences, rtol=1e-10, atol=1e-10 * a.divergences[0])


@pytest.mark.slow
@pytest.mark.parametrize(("bins", "frames", "K"), [(513, 700, 3), (257, 2100, 10)])
def test_numba_float32_matches_the_float64_path(bins, frames, K):
    V, W, H = _problem(bins, frames, K, seed=1)
    ref = nmf_kl(V, W, H, 50, kernel="numpy")
    f32 = nmf_kl(V.astype(np.float32), W, H, 50, kernel="numba")
    assert f32.bases.dtype == np.float32
    np.testing.assert_allclose(f32.bases, ref.bases, atol=2e-5 * ref.bases.max())
    np.testing.assert_allclose(f32.activations, ref.activations, atol=2e-5 * ref.activations.max())
    d_ref = kl_divergence(V, ref.bases, ref.activations)
    assert abs(kl_divergence(V, f32.bases, f32.activations) - d_ref) <= 1e-5 * d_ref


def test_partial_and_one_sided_updates_match():
    V, W, H = _problem(200, 300, 5, seed=2)
    mask = np.array([True, False, True, False, False])
    for kwargs in (dict(update_bases=mask), dict(update_bases=False), dict(update_activations=False)):
        a = nmf_kl(V, W, H, 20, kernel="numpy", **kwargs)
        b = nmf_kl(V, W, H, 20, kernel="numba", **kwargs)
        np.testing.assert_allclose(b.bases, a.bases, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b.activations, a.activations, rtol=1e-9, atol=1e-12)
    b = nmf_kl(V, W, H, 20, kernel="numba", update_bases=mask)
    np.testing.assert_array_equal(b.bases[:, ~mask], W[:, ~mask])


def test_all_zero_input_stays_finite():
    V = np.zeros((65, 40))
    W, H = prepare_start(np.ones((65, 2)), np.ones((2, 40)))
    b = nmf_kl(V, W, H, 10, kernel="numba")
    assert np.isfinite(b.bases).all() and np.isfinite(b.activations).all()
    assert not b.activations.any()


def test_decompose_kernels_agree_on_audio():
    x = np.random.default_rng(3).standard_normal((20000, 2))
    a = bufnmf.decompose(x, components=3, iterations=40, seed=4, kernel="numpy", precision="float64")
    b = bufnmf.decompose(x, components=3, iterations=40, seed=4, kernel="numba", precision="float64")
    np.testing.assert_allclose(b.bases, a.bases, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b.resynth, a.resynth, rtol=1e-5, atol=1e-6)


def test_unknown_kernel_is_an_error():
    with pytest.raises(bufnmf.BufNMFError, match="kernel must be 'auto', 'numba' or 'numpy', got 'cuda'"):
        bufnmf.decompose(np.ones(100), kernel="cuda")


def test_auto_kernel_avoids_compiling_for_small_jobs(monkeypatch):
    from bufnmf.models.mu import resolve_kernel

    monkeypatch.setattr(_kernels, "compiled", lambda: False)
    assert resolve_kernel("auto", (513, 400, 3, 100)) == "numpy"  # ~0.2 s of NumPy: not worth 20 s compiling
    assert resolve_kernel("auto", (1025, 40000, 20, 100)) == "numba"
    monkeypatch.setattr(_kernels, "compiled", lambda: True)
    assert resolve_kernel("auto", (513, 400, 3, 100)) == "numba"
    monkeypatch.setenv("BUFNMF_KERNEL", "numpy")
    assert resolve_kernel("auto", (1025, 40000, 20, 100)) == "numpy"
    x = np.random.default_rng(0).standard_normal(8000)
    assert bufnmf.decompose(x, iterations=2, kernel="numba").kernel == "numba"
