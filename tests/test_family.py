"""BufSTFT, BufNMFSeed, NMFMatch and NMFFilter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import bufnmf
from bufnmf import BufNMFError
from bufnmf.cli import main
from bufnmf.clients.nmfmatch import NMFFilter, NMFMatch
from bufnmf.demo import drum_loop
from bufnmf.dsp.fft import resolve_fft_settings
from bufnmf.dsp.stft import stft_complex


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return drum_loop(seconds=1.0, seed=3)[0].astype(np.float64)


@pytest.mark.parametrize(("window", "hop", "padding", "frames"), [
    (1024, 512, 1, 44100 // 512 + 1),
    (1024, 512, 0, 1 + (44100 - 1024) // 512),
    (1024, 256, 2, 1 + (-(-(44100 + 2 * 768) // 256) * 256 - 1024) // 256),
    (1000, 300, 1, 1 + 44100 // 300),
])
def test_stft_frame_counts_and_layout(x, window, hop, padding, frames):
    mag, ph = bufnmf.stft(x, window, hop, padding=padding)
    bins = bufnmf.dsp.fft.next_pow2(window) // 2 + 1
    assert mag.shape == ph.shape == (frames, bins)
    assert mag.min() >= 0 and np.abs(ph).max() <= np.pi


def test_stft_padding_1_is_bufnmfs_magnitude(x):
    mag, _ = bufnmf.stft(x, 1024, 512)
    ref = np.abs(stft_complex(x, resolve_fft_settings(1024, 512))).T
    np.testing.assert_allclose(mag, ref, atol=1e-12)


@pytest.mark.parametrize("padding", [1, 2])
@pytest.mark.parametrize(("n", "window", "hop", "fft"), [(44100, 1024, 512, -1), (20011, 1000, 250, 2048),
                                                         (5000, 512, 128, -1), (3001, 64, 48, 128)])
def test_round_trip(x, padding, n, window, hop, fft):
    sig = x[:n]
    mag, ph = bufnmf.stft(sig, window, hop, fft, padding)
    back = bufnmf.istft(mag, ph, window, hop, fft, padding, num_samples=n)
    assert back.shape == (n,)
    assert np.abs(back - sig).max() <= 1e-5 * np.abs(sig).max()


def test_padding_0_reconstructs_the_covered_interior(x):
    mag, ph = bufnmf.stft(x, 1024, 256, padding=0)
    back = bufnmf.istft(mag, ph, 1024, 256, padding=0)
    assert back.shape == ((mag.shape[0] - 1) * 256 + 1024,)
    np.testing.assert_allclose(back[300:-300], x[300 : back.size - 300], atol=1e-9)


def test_stft_errors(x):
    mag, ph = bufnmf.stft(x[:5000])
    with pytest.raises(BufNMFError, match=r"magnitude \(10, 513\) and phase \(9, 513\) must have the same shape"):
        bufnmf.istft(mag, ph[:9])
    with pytest.raises(BufNMFError, match="magnitude has 513 bins but fft_size 2048 needs 1025"):
        bufnmf.istft(mag, ph, window_size=2048)
    with pytest.raises(BufNMFError, match="padding must be 0"):
        bufnmf.stft(x, padding=3)
    with pytest.raises(BufNMFError, match="shorter than one window"):
        bufnmf.stft(x[:100], padding=0)
    with pytest.raises(BufNMFError, match="stft takes one channel"):
        bufnmf.stft(np.zeros((100, 2)))


def test_nmf_seed_rank_from_coverage_and_layout(x):
    low = bufnmf.nmf_seed(x, coverage=0.3)
    high = bufnmf.nmf_seed(x, coverage=0.9)
    assert low.method == 0 and low.method_name == "NMF-SVD"  # FluCoMa's default method
    assert 1 <= low.components < high.components
    assert low.coverage >= 0.3 and high.coverage >= 0.9
    S = np.linalg.svd(np.abs(stft_complex(x, resolve_fft_settings(1024))), compute_uv=False)
    np.testing.assert_allclose(high.singular_values, S, rtol=1e-9, atol=1e-12 * S[0])
    covered = np.cumsum(S) / np.sum(S)  # FluCoMa: the singular values themselves, not their squares
    assert covered[high.components - 2] < 0.9 <= covered[high.components - 1]  # the smallest rank that covers
    assert high.bases.shape == (513, high.components)
    assert high.activations.shape == (44100 // 512 + 1, high.components)
    assert high.bases.min() >= 0 and high.activations.min() >= 0
    np.testing.assert_allclose(np.linalg.norm(high.bases, axis=0), 1.0, rtol=1e-6)  # unit bases
    assert high.activations.max() == pytest.approx(1.0)  # activations scaled to peak 1
    assert bufnmf.nmf_seed(x, coverage=0.0, min_components=5).components == 5  # coverage 0: min_components
    assert bufnmf.nmf_seed(x, coverage=0.9, max_components=4).components == 4
    assert bufnmf.nmf_seed(x, coverage=0.1, min_components=6).components == 6
    fixed = bufnmf.nmf_seed(x, components=4, method="nndsvda")
    assert fixed.components == 4 and fixed.method == 2 and (fixed.bases > 0).all() and (fixed.activations > 0).all()
    r = bufnmf.nmf_seed(x, components=4, method=1, seed=1)
    assert r.method_name == "NNDSVDar" and (r.bases > 0).all()
    res = bufnmf.decompose(x, components=4, bases=fixed.bases, bases_mode=1, activations=fixed.activations,
                           act_mode=1, iterations=5)
    assert res.bases.shape == (513, 4)


def test_nmf_seed_errors(x):
    with pytest.raises(BufNMFError, match=r"coverage must be in \[0, 1\], got 1.5"):
        bufnmf.nmf_seed(x, coverage=1.5)
    with pytest.raises(BufNMFError, match="method 'svd' is not one of 0 'NMF-SVD', 1 'NNDSVDar'"):
        bufnmf.nmf_seed(x, components=2, method="svd")
    with pytest.raises(BufNMFError, match="method 4 is not one of"):
        bufnmf.nmf_seed(x, method=4)
    with pytest.raises(BufNMFError, match=r"max_components \(4\) must be at least min_components \(5\)"):
        bufnmf.nmf_seed(x, min_components=5, max_components=4)
    with pytest.raises(BufNMFError, match="min_components must be at least 1"):
        bufnmf.nmf_seed(x, min_components=0)
    with pytest.raises(BufNMFError, match="components must be at least 1"):
        bufnmf.nmf_seed(x, components=0)


def test_nmf_seed_silence_and_too_many_components():
    for method in range(4):  # FluCoMa divides the activations by their maximum, 0, for methods 0, 2 and 3
        r = bufnmf.nmf_seed(np.zeros(20000), method=method, seed=1)
        assert np.isfinite(r.bases).all() and np.isfinite(r.activations).all()
        if method != 1:  # method 1 fills with FluCoMa's random draws in [eps, 0.001 * mean) even here
            assert not r.activations.any()
    short = np.random.default_rng(0).standard_normal(2000)  # 4 frames: rank at most 4
    with pytest.warns(bufnmf.BufNMFWarning, match="6 components asked but the spectrogram has rank at most 4"):
        assert bufnmf.nmf_seed(short, min_components=6, max_components=8).components == 4


def test_nndsvd_start_beats_a_random_start(data_dir):
    mix, _ = sf.read(data_dir / "drums" / "mix.wav")
    seed = bufnmf.nmf_seed(mix, components=3)
    seeded = bufnmf.decompose(mix, components=3, iterations=10, bases=seed.bases, bases_mode=1,
                              activations=seed.activations, act_mode=1, track_divergence=True)
    for s in range(5):
        rand = bufnmf.decompose(mix, components=3, iterations=10, seed=s, track_divergence=True)
        assert seeded.divergences[0][-1] < rand.divergences[0][-1]


def _blocks(sig: np.ndarray, rng: np.random.Generator):
    i = 0
    while i < sig.size:
        n = int(rng.integers(0, 2500))
        yield sig[i : i + n]
        i += n


@pytest.fixture(scope="module")
def W() -> np.ndarray:  # noqa: N802 - the bases matrix, named as in the maths
    return np.abs(np.random.default_rng(7).standard_normal((513, 4)))


def test_match_streaming_equals_one_call(x, W):
    whole = bufnmf.match(x, W, iterations=10, seed=3)
    assert whole.shape == (44100 // 512 + 1, 20)  # FluCoMa's frames (frame 0 included) and maxComponents 20
    assert whole[0].max() < 1e-13  # frame 0 is the window before the first sample: v = eps, h ~ eps
    assert np.all(whole[:, 4:] == 0)  # four bases: the other 16 outputs are zeros
    m = NMFMatch(W, max_components=None, iterations=10, seed=3)
    parts = [m.process(b) for b in _blocks(x, np.random.default_rng(0))]
    assert all(p.shape[1] == 4 for p in parts)
    np.testing.assert_allclose(np.concatenate(parts), whole[:, :4], rtol=1e-12, atol=1e-14)


def test_match_honours_iterations(x, W):
    one = bufnmf.match(x, W, None, iterations=1, seed=3)
    ten = bufnmf.match(x, W, None, iterations=10, seed=3)
    assert not np.allclose(one, ten)
    # one update by hand, frame 21: the last `window` samples before 21 * hop
    Wn = W / np.linalg.norm(W, axis=0)
    frame = x[21 * 512 - 1024 : 21 * 512] * bufnmf.dsp.fft.hann(1024)
    v = np.maximum(np.abs(np.fft.rfft(frame)), 2.2e-16)
    h0 = bufnmf.dsp.random.uniform01(3, 4)
    h1 = h0 * (Wn.T @ (v / np.maximum(Wn @ h0, 2.2e-16))) / Wn.sum(axis=0)
    np.testing.assert_allclose(one[21], h1, rtol=1e-10)


def test_filter_streaming_sum_latency_and_equivalence(x, W):
    f = NMFFilter(W, max_components=None, iterations=10, seed=2)
    assert f.latency == 1024
    whole = f.process(x)
    assert whole.shape == (x.size, 4)
    assert not whole[:1024].any()
    np.testing.assert_allclose(whole.sum(axis=1)[1024:], x[:-1024], atol=1e-5 * np.abs(x).max())
    g = NMFFilter(W, max_components=None, iterations=10, seed=2)
    parts = [g.process(b) for b in _blocks(x, np.random.default_rng(1))]
    assert [p.shape[0] for p in parts] == [b.size for b in _blocks(x, np.random.default_rng(1))]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-12)
    aligned = bufnmf.nmf_filter(x, W, seed=2)
    assert aligned.shape == (x.size, 20) and not aligned[:, 4:].any()  # FluCoMa's 20 outputs
    np.testing.assert_allclose(aligned[:-1024, :4], whole[1024:], atol=1e-12)  # the same, latency removed
    np.testing.assert_allclose(aligned.sum(axis=1), x, atol=1e-5 * np.abs(x).max())


def test_realtime_errors(W):
    with pytest.raises(BufNMFError, match="bases have 513 rows but fft_size 2048 needs 1025"):
        NMFMatch(W, window_size=2048)
    with pytest.raises(BufNMFError, match="iterations must be at least 1"):
        NMFFilter(W, iterations=0)
    with pytest.raises(BufNMFError, match="max_components must be at least 1"):
        NMFMatch(W, max_components=0)
    with pytest.raises(BufNMFError, match="non-negative"):
        NMFMatch(-W)
    with pytest.raises(BufNMFError, match="NaN"):
        NMFMatch(W).process(np.array([0.0, np.nan]))
    with pytest.raises(BufNMFError, match="these bases have 2 components but the stream has 4 outputs"):
        NMFFilter(W, max_components=None).set_bases(W[:, :2])


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_stft_seed_match_filter(tmp_path, capsys, x, W):
    src = tmp_path / "x.wav"
    sf.write(src, x, 44100, subtype="FLOAT")
    code, _, err = run(["stft", src, "-o", tmp_path / "st", "--padding", "2", "--hop-size", "256"], capsys)
    assert code == 0, err
    mag, sr = sf.read(tmp_path / "st" / "magnitude.wav", always_2d=True)
    assert mag.shape == (np.load(tmp_path / "st" / "magnitude.npy").shape) and mag.shape[1] == 513
    meta = json.loads((tmp_path / "st" / "stft.json").read_text())
    assert meta["padding"] == 2 and meta["num_samples"] == x.size
    code, _, err = run(["stft", "--inverse", tmp_path / "st", "-o", tmp_path / "back.wav"], capsys)
    assert code == 0, err
    back, sr = sf.read(tmp_path / "back.wav")
    assert sr == 44100 and np.abs(back - x).max() <= 1e-5 * np.abs(x).max()

    code, _, err = run(["seed", src, "-o", tmp_path / "seed", "-k", "3"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "seed" / "bases.npy").shape == (513, 3)
    assert json.loads((tmp_path / "seed" / "seed.json").read_text())["components"] == 3

    np.save(tmp_path / "W.npy", W)
    code, _, err = run(["match", src, "--bases", tmp_path / "W.npy", "-o", tmp_path / "m.csv", "--seed", "1"],
                       capsys)
    assert code == 0, err
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0] == "time,1,2,3,4" and len(rows) == 1 + 44100 // 512 + 1  # frame 0 included
    assert rows[1].startswith("0.000000,") and rows[2].startswith(f"{512 / 44100:.6f},")
    np.testing.assert_allclose([float(v) for v in rows[5].split(",")[1:]],
                               bufnmf.match(x, W, seed=1)[4, :4], rtol=1e-6)
    code, _, err = run(["filter", src, "--bases", tmp_path / "W.npy", "-o", tmp_path / "f", "--seed", "1"], capsys)
    assert code == 0, err
    parts = [sf.read(tmp_path / "f" / f"component_{k}.wav")[0] for k in range(1, 5)]
    np.testing.assert_allclose(np.sum(parts, axis=0), x, atol=1e-5)
