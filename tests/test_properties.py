"""Property-based checks of the invariants over random signals and settings."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bufnmf


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 6000),
    channels=st.integers(1, 3),
    components=st.integers(1, 4),
    window=st.sampled_from([4, 16, 64, 100, 256, 1000]),
    hop_div=st.sampled_from([2, 3, 4, 8]),
    fft_mul=st.sampled_from([-1, 1, 2]),
    seed=st.integers(0, 2**32),
    scale=st.sampled_from([1e-3, 1.0, 100.0]),
    precision=st.sampled_from(["float32", "float64"]),
)
def test_components_sum_to_the_input(n, channels, components, window, hop_div, fft_mul, seed, scale, precision):
    x = np.random.default_rng(seed).standard_normal((n, channels)) * scale
    hop = max(1, window // hop_div)
    fft = -1 if fft_mul == -1 else bufnmf.dsp.fft.next_pow2(window) * fft_mul
    res = bufnmf.decompose(x, components=components, iterations=5, window_size=window, hop_size=hop,
                           fft_size=fft, seed=seed % 1000, precision=precision)
    bins = fft // 2 + 1 if fft != -1 else bufnmf.dsp.fft.next_pow2(window) // 2 + 1
    assert res.bases.shape == (bins, channels * components)
    assert res.activations.shape == (n // hop + 1, channels * components)
    assert res.resynth.shape == (n, channels * components)
    assert np.isfinite(res.resynth).all() and np.isfinite(res.bases).all()
    assert res.bases.min() >= 0 and res.activations.min() >= 0
    total = res.resynth.reshape(n, channels, components).sum(axis=2)
    assert np.abs(total - x).max() <= 1e-5 * np.abs(x).max()


def test_hop_over_half_window_warns_that_the_sum_may_fail():
    import pytest

    with pytest.warns(bufnmf.BufNMFWarning, match="may not sum to the input"):
        res = bufnmf.decompose(np.ones(3), window_size=4, hop_size=4, iterations=1, seed=0)
    assert res.resynth.shape == (3, 1)
