"""BufNMFCross (mosaicing) and NMFMorph (optimal-transport morphing)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import bufnmf
from bufnmf import BufNMFError, BufNMFWarning
from bufnmf.cli import main
from bufnmf.demo import drum_loop
from bufnmf.dsp.fft import resolve_fft_settings
from bufnmf.dsp.stft import stft_complex
from bufnmf.dsp.transport import OptimalTransport, assign, segment_spectrum
from bufnmf.models.cross import cross_activations

S1024 = resolve_fft_settings(1024)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return drum_loop(seconds=2.0, seed=1)[0].astype(np.float64)


def _rel_mag_error(y: np.ndarray, ref: np.ndarray) -> float:
    """||  |STFT y| - |STFT ref|  ||_F / || |STFT ref| ||_F (BufNMF framing, window 1024)."""
    a, b = np.abs(stft_complex(y, S1024)), np.abs(stft_complex(ref, S1024))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.slow
def test_cross_with_itself_and_polyphony_1_rebuilds_the_target(x):
    # measured: 0.0, 0.054, 0.0 at 150 iterations; at the default 50, at most 0.21
    for seed in (0, 1, 2):
        y = bufnmf.cross(x, x, polyphony=1, iterations=150, seed=seed)
        assert y.shape == x.shape
        assert _rel_mag_error(y, x) <= 0.1, seed
    assert _rel_mag_error(bufnmf.cross(x, x, polyphony=1, seed=0), x) <= 0.25


@pytest.mark.parametrize("p", [1, 2, 5])
def test_polyphony_bounds_active_source_frames(x, p):
    W = np.abs(stft_complex(x, S1024))
    V = np.abs(stft_complex(x[::-1].copy(), S1024))
    H = cross_activations(W, V, 30, 7, p, 7, seed=3)
    assert (np.count_nonzero(H, axis=0) <= p).all()
    assert np.count_nonzero(H, axis=0).max() >= 1


def test_continuity_favours_diagonal_runs(x):
    W = np.abs(stft_complex(x, S1024))

    def diagonal_fraction(c: int) -> float:
        best = cross_activations(W, W, 50, 7, 3, c, seed=0).argmax(axis=0)
        return float(np.mean(np.diff(best) == 1))

    assert diagonal_fraction(7) > diagonal_fraction(1) + 0.2  # measured 0.78 against 0.30


def test_cross_parameters_and_errors(x):
    with pytest.warns(BufNMFWarning, match="time_sparsity 4 rounded up to 5"):
        bufnmf.cross(x[:20000], x[:20000], time_sparsity=4, iterations=2, seed=0, griffin_lim_iterations=0)
    with pytest.raises(BufNMFError, match="continuity 99 is larger than the target's 20 frames"):
        bufnmf.cross(x, x[:10000], continuity=99)
    with pytest.raises(BufNMFError, match="source is empty"):
        bufnmf.cross(np.array([]), x)
    with pytest.raises(BufNMFError, match="polyphony must be at least 1"):
        bufnmf.cross(x, x, polyphony=0)
    with pytest.raises(BufNMFError, match=r"cross needs about .* source frames x target frames = 173 x 173"):
        bufnmf.cross(x, x, max_memory=10**6)


def _bumps(centres: list[int], widths: list[float], heights: list[float], n: int = 513) -> np.ndarray:
    i = np.arange(n)
    return sum(h * np.exp(-0.5 * ((i - c) / w) ** 2) for c, w, h in zip(centres, widths, heights, strict=True))


def test_morph_end_points_are_the_bases():
    """At 0 (1) every source (target) mass comes back in place, scaled by the share of it the plan moves."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        a, b = rng.random(513) ** 4, rng.random(513) ** 4
        ot = OptimalTransport(a, b)
        for t, spec, masses, side in ((0.0, a, ot.masses_source, 0), (1.0, b, ot.masses_target, 1)):
            moved = np.zeros(len(masses))
            for entry in ot.plan:
                moved[entry[side]] += entry[2]
            want = np.zeros(spec.size)
            for m, amount in zip(masses, moved, strict=True):
                want[m.start_bin : m.end_bin] = spec[m.start_bin : m.end_bin] * (amount / m.mass)
            np.testing.assert_allclose(ot.interpolate(t), want, rtol=1e-9, atol=1e-15)
    own = OptimalTransport(a, a)  # the same spectrum on both sides: everything moves, to itself
    covered = np.zeros(513, bool)
    for m in own.masses_source:
        covered[m.start_bin : m.end_bin] = True
    assert covered.mean() > 0.99 and own.cost == 0.0
    for t in (0.0, 0.5, 1.0):
        np.testing.assert_allclose(own.interpolate(t)[covered], a[covered], rtol=1e-9)


@pytest.mark.parametrize("t", [0.0, 0.1, 0.25, 0.5, 0.77, 1.0])
def test_a_peak_moves_rigidly_in_frequency(t):
    """A partial glides: its peak sits at rint((1 - t) i + t j) with its shape intact, no cross-fade."""
    a = _bumps([100, 400], [12.0, 30.0], [1.0, 0.2])
    b = _bumps([300, 470], [20.0, 30.0], [3.0, 0.2])
    y = OptimalTransport(a, b).interpolate(t)
    low = y[:350]
    assert int(np.argmax(low)) == int(np.rint((1 - t) * 100 + t * 300))
    peaks = np.flatnonzero((low[1:-1] > low[:-2]) & (low[1:-1] > low[2:]) & (low[1:-1] > 1e-3))
    assert peaks.size == 1  # one moving peak, never two fading ones


def test_segmentation_follows_flucoma():
    mag = np.array([0, 3, 1, 4, 1, 5, 2, 6, 0.5])  # peaks 1, 3, 5, 7; valleys 2, 4, 6
    assert [(m.start_bin, m.center_bin, m.end_bin) for m in segment_spectrum(mag)] == [(0, 1, 2), (2, 3, 4), (4, 5, 6)]
    mag2 = np.array([0, 3, 1, 4, 1, 5, 0.5, 2])  # rising at the end: the last mass runs to n - 1
    ms = segment_spectrum(mag2)
    assert [(m.start_bin, m.center_bin, m.end_bin) for m in ms] == [(0, 1, 2), (2, 3, 4), (4, 5, 7)]
    assert ms[-1].mass == pytest.approx(mag2[4:7].sum() / mag2.sum())
    assert segment_spectrum(np.linspace(0, 1, 9)) == []  # no peak: nothing to move
    plateau = np.array([0, 3, 1, 4, 2, 2, 5, 0])  # peaks 1, 3, 6 but one valley (2): the 2, 2 plateau is none
    assert [(m.start_bin, m.center_bin, m.end_bin) for m in segment_spectrum(plateau)] == [(0, 1, 2)]  # FluCoMa
    # would read past its valley list at peak 3; bufnmf stops there
    with pytest.raises(BufNMFError, match="the source spectrum has no peak between two valleys"):
        OptimalTransport(np.linspace(0, 1, 9), mag)


def test_autoassign_finds_the_permutation():
    rng = np.random.default_rng(2)
    S = rng.random((513, 5)) ** 6
    perm = np.array([3, 0, 4, 1, 2])
    pairing = assign(S, S[:, perm])
    np.testing.assert_array_equal(perm[pairing], np.arange(5))  # each basis finds its own copy


def test_morph_renders_and_streams():
    rng = np.random.default_rng(3)
    S, T = rng.random((513, 3)) ** 4, rng.random((513, 3)) ** 4
    H = rng.random((40, 3))
    y = bufnmf.morph(S, T, H, interpolation=0.3, seed=0)
    assert y.shape == (39 * 512,) and np.isfinite(y).all() and np.abs(y).max() > 0
    curve = bufnmf.morph(S, T, H, interpolation=[0.0, 1.0], seed=0, griffin_lim_iterations=2)
    assert curve.shape == y.shape
    m = bufnmf.NMFMorph(S, T, H, seed=0)
    assert m.interpolation == 0.0  # FluCoMa's default
    first = m.process(3000)
    m.interpolation = 1.0
    second = m.process(2000)
    assert first.shape == (3000,) and second.shape == (2000,) and np.isfinite(second).all()
    assert not first[:512].any()  # RTPGHI returns the previous frame: the first hop is silent
    assert m.process(0).shape == (0,)
    with pytest.raises(BufNMFError, match="interpolation must lie in"):
        m.interpolation = 1.5


def test_offline_morph_is_the_stream_aligned_like_bufnmf():
    """Offline (no Griffin-Lim) = the stream's frames, latency (a hop for RTPGHI, half a window) removed."""
    rng = np.random.default_rng(4)
    S, T, H = rng.random((513, 3)) ** 4, rng.random((513, 3)) ** 4, rng.random((30, 3))
    y = bufnmf.morph(S, T, H, 0.5, seed=5)
    z = bufnmf.NMFMorph(S, T, H, 0.5, seed=5).process(512 + 512 + y.size)
    np.testing.assert_allclose(y, z[1024:], atol=1e-12)


def test_morph_errors_are_loud():
    S = np.ones((513, 3))
    with pytest.raises(BufNMFError, match="source_bases have 513 rows but target_bases have 257"):
        bufnmf.morph(S, np.ones((257, 3)), np.ones((10, 3)))
    with pytest.raises(BufNMFError, match="source_bases have 3 components but target_bases have 2"):
        bufnmf.morph(S, np.ones((513, 2)), np.ones((10, 3)))
    with pytest.raises(BufNMFError, match="fft_size 2048 needs 1025"):
        bufnmf.morph(S, S, np.ones((10, 3)), window_size=2048)
    with pytest.raises(BufNMFError, match="activations have 4 components"):
        bufnmf.morph(S, S, np.ones((10, 4)))
    with pytest.raises(BufNMFError, match="source_bases column 0 has no peak between two valleys"):
        bufnmf.morph(S, S, np.ones((10, 3)))  # FluCoMa falls silent
    peaked = np.random.default_rng(0).random((513, 3)) ** 4
    with pytest.raises(BufNMFError, match=r"interpolation must lie in \[0, 1\], got 1\.5"):
        bufnmf.morph(peaked, peaked, np.ones((10, 3)), interpolation=1.5)
    with pytest.raises(BufNMFError, match=r"interpolation must lie in \[0, 1\], got -0\.2"):
        bufnmf.morph(peaked, peaked, np.ones((10, 3)), interpolation=[0.0, -0.2, 1.0])
    with pytest.raises(BufNMFError, match=r"activation_scale must be a number, 3 numbers \(one per component\) or one"):
        bufnmf.morph(peaked, peaked, np.ones((10, 3)), activation_scale=[1.0, 2.0])
    with pytest.raises(BufNMFError, match=r"activation_scale must be finite and >= 0, got \[-1.0\]"):
        bufnmf.NMFMorph(peaked, peaked, np.ones((10, 3)), activation_scale=-1.0)


def test_cli_cross_and_morph(tmp_path, capsys, x):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, x, 44100, subtype="FLOAT")
    sf.write(b, x[::-1].copy(), 44100, subtype="FLOAT")
    assert main(["cross", str(a), str(b), "-o", str(tmp_path / "c.wav"), "--iterations", "5", "--seed", "0"]) == 0
    y, sr = sf.read(tmp_path / "c.wav")
    assert sr == 44100 and y.shape == x.shape
    sf.write(tmp_path / "b22.wav", x, 22050)
    assert main(["cross", str(a), str(tmp_path / "b22.wav"), "-o", str(tmp_path / "d.wav")]) == 2
    assert "is at 44100 Hz but target" in capsys.readouterr().err
    assert main(["decompose", str(a), "-o", str(tmp_path / "A"), "-k", "2", "--iterations", "10"]) == 0
    assert main(["decompose", str(b), "-o", str(tmp_path / "B"), "-k", "2", "--iterations", "10"]) == 0
    code = main(["morph", "--source-bases", str(tmp_path / "A" / "bases.wav"), "--target-bases",
                 str(tmp_path / "B" / "bases.wav"), "--activations", str(tmp_path / "A" / "activations.wav"),
                 "-o", str(tmp_path / "m.wav"), "--interpolation", "0,1", "--seed", "0"])
    assert code == 0, capsys.readouterr().err
    m, sr = sf.read(tmp_path / "m.wav")
    assert sr == 44100 and m.shape == x.shape  # the length the summary.json beside the activations gives


def test_activation_scale_per_channel(x):
    """decompose reports the factor it divided each channel's activations by; morph takes it per channel."""
    stereo = np.stack([x, 0.25 * x[::-1]], axis=1)
    r = bufnmf.decompose(stereo, components=2, iterations=20, seed=1, resynth=False, precision="float64")
    assert r.activation_scale.shape == (2,) and r.activation_scale.dtype == np.float64
    for c in range(2):  # bases @ (activations * scale).T is the channel's model, which KL-NMF keeps at sum(V)
        V = np.abs(stft_complex(stereo[:, c], S1024))
        model = r.channel_block(r.bases, c).astype(np.float64) @ (
            r.channel_block(r.activations, c).astype(np.float64) * r.activation_scale[c]).T
        assert model.sum() == pytest.approx(V.sum(), rel=1e-3)
    m = bufnmf.NMFMorph(r.bases, r.bases, r.activations, seed=0, activation_scale=r.activation_scale)
    np.testing.assert_allclose(m.H, r.activations * np.repeat(r.activation_scale, 2), rtol=1e-12)
    assert r.activation_scale[0] > 2 * r.activation_scale[1]  # the quieter channel's factor is smaller


def test_morph_reports_progress_and_cancels():
    rng = np.random.default_rng(5)
    S, T, H = rng.random((513, 2)) ** 4, rng.random((513, 2)) ** 4, rng.random((150, 2))
    seen: list[tuple[int, int]] = []
    y = bufnmf.morph(S, T, H, seed=1, griffin_lim_iterations=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(64, 153), (128, 153), (150, 153), (151, 153), (152, 153), (153, 153)]
    np.testing.assert_array_equal(np.asarray(y), np.asarray(bufnmf.morph(S, T, H, seed=1, griffin_lim_iterations=3)))
    with pytest.raises(bufnmf.Cancelled, match="after 151 of 153 steps"):
        bufnmf.morph(S, T, H, seed=1, griffin_lim_iterations=3, progress=lambda d, t: d < 151)
