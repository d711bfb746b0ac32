"""bufnmf.decompose: shapes, layouts, modes, determinism and every error path."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import bufnmf
from bufnmf import BufNMFError, BufNMFWarning
from bufnmf.demo import drum_loop


@pytest.fixture(scope="module")
def loop() -> np.ndarray:
    return drum_loop(seconds=1.0)[0]


@pytest.fixture(scope="module")
def stereo(loop) -> np.ndarray:
    return np.stack([loop, np.roll(loop, 1000) * 0.5], axis=1)


def test_mono_shapes_and_dtypes(loop):
    res = bufnmf.decompose(loop, components=3, iterations=5, seed=1)
    assert res.bases.shape == (513, 3) and res.bases.dtype == np.float32
    assert res.activations.shape == (44100 // 512 + 1, 3) and res.activations.dtype == np.float32
    assert res.resynth.shape == (44100, 3) and res.resynth.dtype == np.float32
    assert (res.hop_size, res.fft_size, res.num_samples, res.num_channels) == (512, 1024, 44100, 1)
    np.testing.assert_allclose(np.linalg.norm(res.bases, axis=0), 1.0, rtol=1e-5)
    assert res.activations.max() == pytest.approx(1.0)
    assert res.bases.min() >= 0 and res.activations.min() >= 0


def test_stereo_layout_is_chan_major(stereo):
    res = bufnmf.decompose(stereo, components=2, iterations=5, seed=3)
    assert res.bases.shape == (513, 4)
    assert res.activations.shape == (87, 4)
    assert res.resynth.shape == (44100, 4)
    right = bufnmf.decompose(stereo[:, 1], components=2, iterations=5, seed=3)
    np.testing.assert_array_equal(res.bases[:, 2:4], right.bases)
    np.testing.assert_array_equal(res.activations[:, 2:4], right.activations)
    np.testing.assert_array_equal(res.resynth[:, 2:4], right.resynth)
    for c in range(2):
        assert res.channel_block(res.activations, c).max() == pytest.approx(1.0)
        np.testing.assert_allclose(res.resynth[:, 2 * c : 2 * c + 2].sum(axis=1), stereo[:, c], atol=1e-5)


def test_odd_sizes(loop):
    res = bufnmf.decompose(loop[:20000], components=2, iterations=3, window_size=1000, hop_size=250,
                           fft_size=2048, seed=0)
    assert res.bases.shape == (1025, 2)
    assert res.activations.shape == (20000 // 250 + 1, 2)
    assert res.resynth.shape == (20000, 2)
    np.testing.assert_allclose(res.resynth.sum(axis=1), loop[:20000], atol=1e-5)


def test_hop_defaults_and_fft_rounding(loop):
    with pytest.warns(BufNMFWarning, match="fft_size 1000 adjusted to 1024"):
        res = bufnmf.decompose(loop[:5000], window_size=600, fft_size=1000, iterations=1, seed=0)
    assert (res.hop_size, res.fft_size) == (300, 1024)
    with pytest.warns(BufNMFWarning, match="fft_size 256 adjusted to 1024"):
        res = bufnmf.decompose(loop[:5000], window_size=1024, fft_size=256, iterations=1, seed=0)
    assert res.bases.shape == (513, 1)


def test_selection_of_frames_and_channels(stereo):
    res = bufnmf.decompose(stereo, components=2, iterations=4, seed=5, start_frame=1000, num_frames=8000,
                           start_chan=1, num_chans=1)
    assert res.resynth.shape == (8000, 2)
    assert res.activations.shape == (8000 // 512 + 1, 2)
    assert (res.start_frame, res.start_chan, res.num_channels) == (1000, 1, 1)
    direct = bufnmf.decompose(stereo[1000:9000, 1], components=2, iterations=4, seed=5)
    np.testing.assert_array_equal(res.activations, direct.activations)
    np.testing.assert_allclose(res.resynth.sum(axis=1), stereo[1000:9000, 1], atol=1e-5)


def test_seeded_runs_are_deterministic_and_seeds_differ(loop):
    a = bufnmf.decompose(loop, components=2, iterations=10, seed=11)
    b = bufnmf.decompose(loop, components=2, iterations=10, seed=11)
    c = bufnmf.decompose(loop, components=2, iterations=10, seed=12)
    np.testing.assert_array_equal(a.bases, b.bases)
    np.testing.assert_array_equal(a.resynth, b.resynth)
    assert not np.allclose(a.bases, c.bases)


def test_random_seed_is_reported_and_reproduces(loop):
    a = bufnmf.decompose(loop[:8000], components=2, iterations=5)
    assert a.seed >= 0
    b = bufnmf.decompose(loop[:8000], components=2, iterations=5, seed=a.seed)
    np.testing.assert_array_equal(a.bases, b.bases)


def test_fixed_bases_come_back_normalised(loop):
    rng = np.random.default_rng(0)
    W = rng.uniform(0, 3, size=(513, 3))
    res = bufnmf.decompose(loop, components=3, iterations=10, bases=W, bases_mode="fixed", seed=0)
    np.testing.assert_allclose(res.bases, W / np.linalg.norm(W, axis=0), rtol=1e-6)
    assert W.max() > 1.5  # the caller's array is untouched
    np.testing.assert_allclose(res.resynth.sum(axis=1), loop, atol=1e-5)


def test_fixed_activations_come_back_scaled(loop):
    H = np.random.default_rng(1).uniform(0, 5, size=(87, 2))
    res = bufnmf.decompose(loop, components=2, iterations=5, activations=H, act_mode=2, seed=0)
    Hn = H / np.linalg.norm(H, axis=0)
    np.testing.assert_allclose(res.activations, Hn / Hn.max(), rtol=1e-6)


def test_seed_modes_move_from_the_seed_and_reduce_divergence(loop):
    base = bufnmf.decompose(loop, components=3, iterations=30, seed=2, track_divergence=True)
    W0 = base.bases
    res = bufnmf.decompose(loop, components=3, iterations=10, bases=W0, bases_mode=1, seed=9,
                           track_divergence=True)
    assert not np.allclose(res.bases, W0, atol=1e-4)
    assert np.abs(res.bases - W0).max() < 0.5  # moved, but from the seed
    d = res.divergences[0]
    assert len(d) == 10 and all(x >= y - 1e-6 * abs(x) for x, y in itertools.pairwise(d))


def test_components_columns_apply_to_every_channel(stereo):
    W = np.random.default_rng(2).uniform(size=(513, 2))
    both = bufnmf.decompose(stereo, components=2, iterations=3, bases=W, bases_mode=2, seed=0)
    np.testing.assert_allclose(both.bases[:, :2], both.bases[:, 2:])
    full = bufnmf.decompose(stereo, components=2, iterations=3, bases=np.hstack([W, W]), bases_mode=2, seed=0)
    np.testing.assert_array_equal(both.activations, full.activations)


def test_both_fixed_resynthesises_without_iterating(loop):
    W = np.random.default_rng(3).uniform(size=(513, 2))
    H = np.random.default_rng(4).uniform(size=(87, 2))
    res = bufnmf.decompose(loop, components=2, bases=W, bases_mode=2, activations=H, act_mode=2)
    assert res.iterations == 0
    np.testing.assert_allclose(res.resynth.sum(axis=1), loop, atol=1e-5)
    with pytest.warns(BufNMFWarning, match="no work to do"):
        bufnmf.decompose(loop, components=2, bases=W, bases_mode=2, activations=H, act_mode=2, resynth=False)


def test_resynth_off(loop):
    res = bufnmf.decompose(loop, components=2, iterations=3, resynth=False, seed=0)
    assert res.resynth is None


@pytest.mark.parametrize("signal", [np.zeros(5000), np.full(5000, 0.25), np.full(5000, 1e-310)])
def test_silent_dc_and_denormal_input_is_finite(signal):
    res = bufnmf.decompose(signal, components=3, iterations=20, seed=0)
    for arr in (res.bases, res.activations, res.resynth):
        assert np.isfinite(arr).all()
    np.testing.assert_allclose(res.resynth.sum(axis=1), signal, atol=1e-5)
    if not signal.any():
        assert not res.resynth.any()


def test_short_source_is_padded_like_flucoma():
    res = bufnmf.decompose(np.ones(10), components=1, iterations=5, seed=0)
    assert res.activations.shape == (1, 1)
    assert res.resynth.shape == (10, 1)


def test_integer_and_float16_sources(loop):
    ints = (loop * 32767).astype(np.int16)
    res = bufnmf.decompose(ints, iterations=2, seed=0)
    np.testing.assert_allclose(res.resynth[:, 0], ints, atol=1e-5 * 32767)
    res16 = bufnmf.decompose(loop.astype(np.float16), iterations=2, seed=0)
    assert res16.resynth.shape == (44100, 1)


def test_progress_callback_counts_and_cancels(stereo):
    seen = []
    bufnmf.decompose(stereo, components=2, iterations=4, seed=0, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 8) for i in range(1, 9)]
    with pytest.raises(bufnmf.Cancelled, match="after 3 of 8"):
        bufnmf.decompose(stereo, components=2, iterations=4, seed=0, progress=lambda d, t: d < 3)


def test_input_array_is_not_modified(stereo):
    before = stereo.copy()
    bufnmf.decompose(stereo, components=2, iterations=2, seed=0)
    np.testing.assert_array_equal(stereo, before)


def test_ignored_array_warns(loop):
    with pytest.warns(BufNMFWarning, match="bases given but bases_mode is 0"):
        bufnmf.decompose(loop[:4000], bases=np.ones((513, 1)), iterations=1, seed=0)


W513 = np.ones((513, 2))

ERRORS = [
    (dict(source=np.array([])), "source is empty"),
    (dict(source=np.zeros((0, 2))), "source is empty"),
    (dict(source=np.array([0.0, np.nan, 1.0])), "NaN or infinite sample.*sample 1, channel 0"),
    (dict(source=np.array([0.0, np.inf])), "NaN or infinite"),
    (dict(source=np.zeros((4, 2, 2))), "got 3 dimensions with shape \\(4, 2, 2\\)"),
    (dict(source=np.float64(1.0)), "got 0 dimensions"),
    (dict(source=np.array(["a", "b"])), "real numbers"),
    (dict(source=np.zeros(100, dtype=complex)), "real numbers"),
    (dict(start_frame=5000), "start_frame 5000 is outside the source: it has 4000 samples"),
    (dict(start_frame=-1), "start_frame -1 is outside"),
    (dict(start_frame=3000, num_frames=2000), "num_frames 2000 from start_frame 3000.*use 1..1000"),
    (dict(num_frames=0), "num_frames 0"),
    (dict(start_chan=1), "start_chan 1 is outside the source: it has 1 channel"),
    (dict(num_chans=2), "num_chans 2 from start_chan 0"),
    (dict(components=0), "components must be at least 1, got 0"),
    (dict(iterations=0), "iterations must be at least 1, got 0"),
    (dict(components=2.5), "components must be an integer, got 2.5"),
    (dict(iterations="ten"), "iterations must be an integer"),
    (dict(window_size=3), "window_size must be at least 4 samples, got 3"),
    (dict(window_size=512, hop_size=1024), "hop_size \\(1024\\) must not exceed window_size \\(512\\)"),
    (dict(fft_size=-5), "fft_size must be -1"),
    (dict(seed=-2), "seed must be -1"),
    (dict(bases_mode=1), "bases_mode is 1 \\('seed'\\) but no bases were given"),
    (dict(act_mode="fixed"), "act_mode is 2 \\('fixed'\\) but no activations were given"),
    (dict(bases_mode="sed", bases=W513), "bases_mode 'sed' is not a mode"),
    (dict(act_mode=3, activations=np.ones((8, 1))), "act_mode 3 is not a mode"),
    (dict(components=2, bases=np.ones((512, 2)), bases_mode=2),
     "bases has shape \\(512, 2\\), expected \\(513, 2\\)"),
    (dict(components=2, bases=np.ones((513, 3)), bases_mode=1), "bases has shape \\(513, 3\\), expected \\(513, 2\\)"),
    (dict(components=2, bases=-W513, bases_mode=1), "bases contains negative values"),
    (dict(components=2, bases=W513 * np.nan, bases_mode=1), "bases contains NaN"),
    (dict(activations=np.ones((7, 1)), act_mode=1),
     "activations has shape \\(7, 1\\), expected \\(8, 1\\).*num_frames // hop_size \\+ 1 = 4000 // 512 \\+ 1"),
    (dict(precision="float16"), "precision must be"),
]


@pytest.mark.parametrize(("kwargs", "message"), ERRORS)
def test_errors_name_the_problem(kwargs, message):
    kwargs = dict(kwargs)
    source = kwargs.pop("source", np.random.default_rng(0).standard_normal(4000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BufNMFWarning)
        with pytest.raises(BufNMFError, match=message):
            bufnmf.decompose(source, **kwargs)


def test_error_is_a_value_error():
    assert issubclass(BufNMFError, ValueError)


def test_stereo_shape_error_mentions_both_layouts(stereo):
    with pytest.raises(BufNMFError, match=r"expected \(513, 4 \(channels \* components\) or 2\)"):
        bufnmf.decompose(stereo, components=2, bases=np.ones((513, 3)), bases_mode=1)


def test_chunked_stft_and_resynthesis_do_not_depend_on_chunk_size(loop, monkeypatch):
    from bufnmf.dsp import masks
    from bufnmf.dsp import stft as spectral

    ref = bufnmf.decompose(loop, components=2, iterations=5, seed=0, window_size=1000, hop_size=300,
                           precision="float64")
    monkeypatch.setattr(spectral, "CHUNK_FRAMES", 7)
    monkeypatch.setattr(masks, "CHUNK_FRAMES", 7)
    small = bufnmf.decompose(loop, components=2, iterations=5, seed=0, window_size=1000, hop_size=300,
                             precision="float64")
    np.testing.assert_allclose(small.activations, ref.activations, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(small.resynth, ref.resynth, atol=1e-6)
    np.testing.assert_allclose(small.resynth.sum(axis=1), loop, atol=1e-5)


def test_resynth_into_a_memory_map(loop, tmp_path):
    ref = bufnmf.decompose(loop, components=2, iterations=5, seed=0)
    mm = np.lib.format.open_memmap(tmp_path / "r.npy", mode="w+", dtype=np.float32, shape=(44100, 2))
    res = bufnmf.decompose(loop, components=2, iterations=5, seed=0, resynth_out=mm)
    assert res.resynth is mm
    mm.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), ref.resynth)
    with pytest.raises(BufNMFError, match=r"resynth_out has shape \(10, 2\).*expected a float array of shape "
                                          r"\(44100, 2\)"):
        bufnmf.decompose(loop, components=2, iterations=1, resynth_out=np.zeros((10, 2)))


def test_very_loud_and_out_of_range_sources(loop):
    loud = loop.astype(np.float64) * 1e30
    res = bufnmf.decompose(loud, components=2, iterations=5, seed=0)
    quiet = bufnmf.decompose(loop.astype(np.float64), components=2, iterations=5, seed=0)
    assert np.isfinite(res.resynth).all()
    np.testing.assert_allclose(res.resynth.sum(axis=1), loud, rtol=0, atol=1e-5 * np.abs(loud).max())
    np.testing.assert_allclose(res.activations, quiet.activations, rtol=1e-4, atol=1e-6)
    with pytest.raises(BufNMFError, match="beyond what float32 outputs can hold"):
        bufnmf.decompose(np.array([0.0, 1e300]))
