"""FluCoMa parity for the family: every (non-Sines) case of ../shared/fixtures/flucoma-family.

The fixtures are FluCoMa's own C++ outputs (flucoma-core 0626d7a3, its README gives every
convention). Tolerances, relative to the largest reference value: float32 buffers 1e-5,
float64 values 1e-6. Where FluCoMa's code is wrong and bufnmf does the right thing, the test
reproduces FluCoMa's slip *inside the test* (never in the package) and shows that everything
else matches; docs/flucoma-parity.md lists each difference.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from pathlib import Path

import numpy as np
import pytest

import bufnmf
import bufnmf.models.nndsvd as nndsvd_module
from bufnmf.clients.bufstft import inverse_length
from bufnmf.dsp.fft import hann, resolve_fft_settings
from bufnmf.dsp.stft import istft as spectral_istft

from .conftest import FAMILY

F32_TOL = 1e-5  # float32 buffers, relative to the largest reference value
F64_TOL = 1e-6  # float64 values

STFT_CASES = [f"stft_drums_w{w}_h{h}_f{f}_p{p}" for w, h in ((1024, 256), (1000, 333)) for f in (1024,)
              for p in (0, 1, 2)] + ["stft_drums_w1000_h333_f2048_p1"]
SEED_CASES = [f"nmfseed_drums_m{m}_c{c}" for m in range(4) for c in ("0.5", "0.9")]
MATCH_CASES = ["nmfmatch_drums_k3_seed42"]
BUFNMF_CASES = ["bufnmf_piano_k3_w1024"]
MORPH_CASES = ["nmfmorph_assign_a0.25", "nmfmorph_assign_a0.5", "nmfmorph_assign_a0.75", "nmfmorph_noassign_a0.5"]


def _case(name: str) -> dict:
    return json.loads((FAMILY / "cases.json").read_text())["cases"][name]


def _load(family_dir: Path, name: str) -> np.ndarray:
    return np.load(family_dir / name)


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref|, in float64 (shapes must agree)."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.fixture
def drums(family_dir: Path) -> np.ndarray:
    return _load(family_dir, "input_drums_3s.npy")


def test_every_case_but_sines_is_covered(family_dir):
    cases = json.loads((family_dir / "cases.json").read_text())["cases"]
    ours = STFT_CASES + SEED_CASES + MATCH_CASES + BUFNMF_CASES + MORPH_CASES
    assert sorted(ours) == sorted(k for k, v in cases.items() if v["kind"] != "sines")


# ---------------------------------------------------------------------------------------------
# BufSTFT


@pytest.mark.parametrize("name", STFT_CASES)
def test_bufstft_forward(name, family_dir, drums):
    case = _case(name)
    w, h, f = case["params"]["fftSettings"]
    mag, ph = bufnmf.stft(drums[: case["num_samples"]], w, h, f, case["params"]["padding"])
    ref_mag = _load(family_dir, case["outputs"]["magnitude"]["file"])
    ref_ph = _load(family_dir, case["outputs"]["phase"]["file"])
    assert mag.shape == ref_mag.shape == (case["effective"]["frames"], case["effective"]["bins"])
    assert rel_err(mag, ref_mag) < F32_TOL
    # phase modulo 2 pi (a purely real bin can be +pi or -pi), relative to pi
    d = np.angle(np.exp(1j * (ph - ref_ph.astype(np.float64))))
    assert np.abs(d).max() < F32_TOL * np.pi


def _polar_float32(mag: np.ndarray, ph: np.ndarray) -> np.ndarray:
    """std::polar<float>(m, p) as FluCoMa's inverse forms it: glibc's cosf/sinf, float products."""
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.cosf.restype = libm.sinf.restype = ctypes.c_float
    libm.cosf.argtypes = libm.sinf.argtypes = [ctypes.c_float]
    p = ph.ravel().tolist()
    c = np.array([libm.cosf(v) for v in p], dtype=np.float32).reshape(ph.shape)
    s = np.array([libm.sinf(v) for v in p], dtype=np.float32).reshape(ph.shape)
    return (mag * c).astype(np.float64) + 1j * (mag * s).astype(np.float64)


@pytest.mark.parametrize("name", [n for n in STFT_CASES if "f2048" not in n])
def test_bufstft_inverse(name, family_dir):
    """FluCoMa's inverse, length included; FluCoMa's float32 polar is reproduced here only."""
    case = _case(name)
    w, h, f = case["params"]["fftSettings"]
    p = case["params"]["padding"]
    mag = _load(family_dir, case["outputs"]["magnitude"]["file"])
    ph = _load(family_dir, case["outputs"]["phase"]["file"])
    ref = _load(family_dir, case["outputs"]["inverse"]["file"])
    s = resolve_fft_settings(w, h, f)
    assert inverse_length(mag.shape[0], s, p) == ref.size == case["effective"]["inverse_length"]
    front = (0, w // 2, w - h)[p]
    y32 = spectral_istft(_polar_float32(mag, ph).T, s, ref.size, front=front)  # the package's inverse
    assert rel_err(y32, ref) < F32_TOL
    # the default (float64 polar) differs from that only where the summed windows are tiny
    y = bufnmf.istft(mag, ph, w, h, f, p)
    assert y.shape == ref.shape
    norm = np.zeros((mag.shape[0] - 1) * h + w)
    for i in range(mag.shape[0]):
        norm[i * h : i * h + w] += hann(w) ** 2
    well = norm[front:] > 1e-3
    assert np.abs(y - ref)[well].max() / np.abs(ref).max() < F32_TOL
    if p == 0:
        assert not well.all()  # padding 0: the edges are only partly covered


@pytest.mark.parametrize(("padding", "length"), [(0, 11008), (1, 11520), (2, 12032)])
def test_bufstft_inverse_length_rule(padding, length, drums):
    y = bufnmf.istft(*bufnmf.stft(drums[:11025], 1024, 256, 1024, padding), 1024, 256, 1024, padding)
    assert y.shape == (length,)


def test_bufstft_round_trip_must_show(data_dir):
    import soundfile as sf

    x, _ = sf.read(data_dir / "drums" / "mix.wav")
    x = x[:88200]
    y = bufnmf.istft(*bufnmf.stft(x, 1024, 256, 1024), 1024, 256, 1024)
    assert y.size >= x.size
    assert np.abs(y[: x.size] - x).max() < 1e-5


@pytest.mark.parametrize(("w", "h", "f"), [(1000, 333, 2048), (1024, 256, 4096), (300, 100, 1024)])
def test_bufstft_fft_larger_than_window(w, h, f, drums):
    """fft/2 + 1 > window: FluCoMa's inverse overflows a heap buffer; here the round trip is exact."""
    x = drums[:11025].astype(np.float64)
    for p in (1, 2):
        y = bufnmf.istft(*bufnmf.stft(x, w, h, f, p), w, h, f, p)
        assert y.size == inverse_length(bufnmf.stft(x, w, h, f, p)[0].shape[0], resolve_fft_settings(w, h, f), p)
        assert y.size >= x.size
        assert np.abs(y[: x.size] - x).max() < 1e-12


def test_bufstft_selection(drums):
    x = drums.astype(np.float64)
    m1, p1 = bufnmf.stft(x, 1024, 256, 1024, 1, start_frame=5000, num_frames=20000)
    m2, p2 = bufnmf.stft(x[5000:25000], 1024, 256, 1024, 1)
    assert np.array_equal(m1, m2) and np.array_equal(p1, p2)
    assert bufnmf.stft(x, 1024, 256, 1024, 1, start_frame=130000).magnitude.shape == (1 + 2300 // 256, 513)
    stereo = np.stack([x, -2 * x], axis=1)
    m3, _ = bufnmf.stft(stereo, 1024, 256, 1024, 1, start_chan=1, num_frames=4096)
    np.testing.assert_allclose(m3, 2 * bufnmf.stft(x[:4096], 1024, 256, 1024).magnitude, rtol=1e-12)
    for bad, message in ((dict(start_frame=x.size), "start_frame 132300 is outside the source"),
                         (dict(start_frame=-1), "start_frame -1 is outside the source"),
                         (dict(num_frames=x.size + 1), "num_frames 132301 from start_frame 0 is not in"),
                         (dict(start_frame=100, num_frames=x.size), "num_frames 132300 from start_frame 100"),
                         (dict(start_chan=1), "start_chan 1 is outside the source: it has 1 channel")):
        with pytest.raises(bufnmf.BufNMFError, match=message):
            bufnmf.stft(x, **bad)
    with pytest.raises(bufnmf.BufNMFError, match=r"the selection \(500 samples\) is shorter than one window"):
        bufnmf.stft(x[:500], 1024, 256, 1024, padding=0)


def test_bufstft_num_samples_option(drums):
    x = drums[:11025].astype(np.float64)
    y = bufnmf.istft(*bufnmf.stft(x, 1024, 256, 1024, 0), 1024, 256, 1024, 0, num_samples=x.size)
    assert y.size == x.size and np.all(y[11008:] == 0)


# ---------------------------------------------------------------------------------------------
# BufNMFSeed


def _eigen_signs(family_dir: Path, U: np.ndarray, s: np.ndarray, Vt: np.ndarray) -> tuple:
    """numpy's SVD with each pair (u_j, v_j) flipped to Eigen's signs (the fixture's sign anchors)."""
    anchor = _load(family_dir, "nmfseed_drums_svd_u_sign.npy")
    cols = np.arange(U.shape[1])
    flip = np.where(np.sign(U[np.argmax(np.abs(U), axis=0), cols]) != anchor, -1.0, 1.0)
    return U * flip, s, Vt * flip[:, None]


_PART_NORMS = nndsvd_module.part_norms


def _flucoma_slip(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """NNDSVD.hpp:83, reproduced: the norm of v's negative part taken from u's negative part."""
    nxp, nyp, nxn, _ = _PART_NORMS(x, y)
    return nxp, nyp, nxn, nxn


@pytest.fixture
def spectrum(drums) -> np.ndarray:
    from bufnmf.dsp.stft import stft_complex

    return np.abs(stft_complex(drums, resolve_fft_settings(1024)))


def test_nmfseed_singular_values(family_dir, spectrum):
    s = np.linalg.svd(spectrum, compute_uv=False)
    assert rel_err(s, _load(family_dir, "nmfseed_drums_svd_s.npy")) < F64_TOL


@pytest.mark.parametrize(("coverage", "rank"), [(0.5, 3), (0.9, 30)])
def test_nmfseed_rank_must_show(coverage, rank, family_dir, drums):
    """The first 3 s of the drum loop: 3 components at coverage 0.5 and 30 at 0.9, default method, as FluCoMa."""
    r = bufnmf.nmf_seed(drums, coverage=coverage)
    assert (r.components, r.method_name) == (rank, "NMF-SVD")
    assert r.bases.shape == (513, rank) and r.activations.shape == (259, rank)
    assert nndsvd_module.coverage_rank(_load(family_dir, "nmfseed_drums_svd_s.npy"), coverage) == rank


@pytest.mark.parametrize("name", SEED_CASES)
def test_nmfseed_with_flucomas_slip(name, family_dir, drums, monkeypatch):
    """FluCoMa's norm slip and Eigen's SVD signs reproduced here: then ``nmf_seed`` writes FluCoMa's buffers."""
    case = _case(name)
    p = case["params"]
    svd = np.linalg.svd
    monkeypatch.setattr(np.linalg, "svd", lambda a, **kw: _eigen_signs(family_dir, *svd(a, **kw)))
    monkeypatch.setattr(nndsvd_module, "part_norms", _flucoma_slip)
    r = bufnmf.nmf_seed(drums, p["minComponents"], p["maxComponents"], p["coverage"], p["method"], p["seed"],
                        *p["fftSettings"])
    assert r.components == case["rank"] and r.method_name == p["method_name"]
    assert r.bases.dtype == r.activations.dtype == np.float32
    assert rel_err(r.bases, _load(family_dir, case["outputs"]["bases"]["file"])) < F32_TOL
    assert rel_err(r.activations, _load(family_dir, case["outputs"]["activations"]["file"])) < F32_TOL


@pytest.mark.parametrize("name", SEED_CASES)
def test_nmfseed_default(name, family_dir, drums):
    """Without the slip: method 0 (which it does not touch) is FluCoMa's exactly; 1-3 differ where the slip acted."""
    case = _case(name)
    p = case["params"]
    r = bufnmf.nmf_seed(drums, p["minComponents"], p["maxComponents"], p["coverage"], p["method"], p["seed"])
    assert r.components == case["rank"] and r.seed == p["seed"]
    bases_err = rel_err(r.bases, _load(family_dir, case["outputs"]["bases"]["file"]))
    acts_err = rel_err(r.activations, _load(family_dir, case["outputs"]["activations"]["file"]))
    if p["method"] == 0:
        assert bases_err < F32_TOL and acts_err < F32_TOL
    else:
        assert acts_err > 1e-3  # the negative-part components' activations are scaled differently
        assert r.activations[:, 0].tolist() == pytest.approx(  # the first component has no negative part
            _load(family_dir, case["outputs"]["activations"]["file"])[:, 0].tolist(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("method", [1, 2, 3])
def test_nmfseed_does_not_depend_on_svd_signs(method, spectrum, family_dir, monkeypatch):
    U, s, Vt = np.linalg.svd(spectrum, full_matrices=False)
    flip = np.where(np.random.default_rng(0).random(s.size) < 0.5, -1.0, 1.0)
    runs = [nndsvd_module.nndsvd(spectrum, 1, 200, 0.9, method, 42, svd=svd)
            for svd in ((U, s, Vt), (U * flip, s, Vt * flip[:, None]), _eigen_signs(family_dir, U, s, Vt))]
    for W, H, k, peak in runs[1:]:
        np.testing.assert_allclose(W, runs[0][0], atol=1e-12)
        np.testing.assert_allclose(H, runs[0][1], rtol=1e-9, atol=1e-12)
        assert k == runs[0][2] and peak == pytest.approx(runs[0][3])
    monkeypatch.setattr(nndsvd_module, "part_norms", _flucoma_slip)
    slip_a = nndsvd_module.nndsvd(spectrum, 1, 200, 0.9, method, 42, svd=(U, s, Vt))
    slip_b = nndsvd_module.nndsvd(spectrum, 1, 200, 0.9, method, 42, svd=_eigen_signs(family_dir, U, s, Vt))
    assert not np.allclose(slip_a[1], slip_b[1])  # FluCoMa's result depends on the signs


def test_nmfseed_is_the_papers_nndsvd(spectrum):
    """Boutsidis and Gallopoulos: the dominant part of each singular pair, with FluCoMa's scale on H."""
    U, s, Vt = np.linalg.svd(spectrum, full_matrices=False)
    W, H, k, _ = nndsvd_module.nndsvd(spectrum, 1, 200, 0.9, 3, 0, svd=(U, s, Vt))
    for j in range(1, k):
        x, y = U[:, j], Vt[j]
        parts = [(np.maximum(x, 0), np.maximum(y, 0)), (np.maximum(-x, 0), np.maximum(-y, 0))]
        sig = [np.linalg.norm(a) * np.linalg.norm(b) for a, b in parts]
        a, b = parts[0] if sig[0] > sig[1] else parts[1]
        np.testing.assert_allclose(W[:, j], a / np.linalg.norm(a), atol=1e-15)
        np.testing.assert_allclose(H[j], np.sqrt(s[j] * max(sig)) * b / np.linalg.norm(b), rtol=1e-12, atol=1e-15)


def test_nmfseed_method_one_fill_follows_max_components(drums):
    """W's fill is column-major, so its first columns take the first draws; H's depends on max_components."""
    a = bufnmf.nmf_seed(drums, max_components=200, method=1, seed=42)
    b = bufnmf.nmf_seed(drums, max_components=50, method=1, seed=42)
    assert np.array_equal(a.bases, b.bases)
    assert not np.array_equal(a.activations, b.activations)
    assert bufnmf.nmf_seed(drums, method=1, seed=43).activations.tolist() != a.activations.tolist()


# ---------------------------------------------------------------------------------------------
# NMFMatch and NMFFilter

MATCH = "nmfmatch_drums_k3_seed42_"


@pytest.fixture
def match_input(family_dir, drums) -> tuple[np.ndarray, np.ndarray]:
    return drums[: _case(MATCH_CASES[0])["num_samples"]], _load(family_dir, MATCH + "bases.npy")


def test_nmfmatch_framing(family_dir, match_input):
    """Frame k covers input [k * hop - window, k * hop), zeros before 0, k = 0 .. n // hop: the engine's Framer."""
    from bufnmf.dsp.stream import Framer

    x, _ = match_input
    ref = _load(family_dir, MATCH + "magnitude.npy")
    spectra, first = Framer(resolve_fft_settings(1024, 512)).push(x)
    assert first == 0 and spectra.shape[0] == x.size // 512 + 1 == _case(MATCH_CASES[0])["effective"]["frames"]
    assert rel_err(np.abs(spectra), ref) < F64_TOL


def test_nmfmatch_activations(family_dir, match_input):
    x, W = match_input
    ref = _load(family_dir, MATCH + "activations.npy")
    a = bufnmf.match(x, W, seed=42)
    assert a.shape == (ref.shape[0], 20) and a.seed == 42  # maxComponents 20: FluCoMa's width
    assert rel_err(a[:, :3], ref) < F64_TOL
    assert np.all(a[:, 3:] == 0)


@pytest.mark.parametrize("block", [1, 64, 100, 512, 513, 5000])
def test_nmfmatch_streaming_any_block_size(block, family_dir, match_input):
    x, W = match_input
    m = bufnmf.NMFMatch(W, max_components=None, seed=42)
    got = np.concatenate([m.process(x[i : i + block]) for i in range(0, x.size, block)])
    assert rel_err(got, _load(family_dir, MATCH + "activations.npy")) < F64_TOL


def _flucoma_block_report(activations: np.ndarray, hop: int, blocks: int, block: int = 64) -> np.ndarray:
    """What FluCoMa's NMFMatch shows per host block: frame k is computed in block floor(k hop / block) and,
    as the output is written before the block is processed, shown from the next block on."""
    out = np.zeros((blocks, activations.shape[1]))
    done = (np.arange(activations.shape[0]) * hop) // block
    for b in range(1, blocks):
        ready = np.flatnonzero(done < b)
        if ready.size:
            out[b] = activations[ready[-1]]
    return out


def test_nmfmatch_real_client_schedule(family_dir, match_input):
    """The real client's per-block control output: the same frames, a block later (NMFMatchClient.hpp)."""
    x, W = match_input
    ref = _load(family_dir, MATCH + "rt_blocks.npy")
    a = bufnmf.match(x, W, None, seed=42)
    assert rel_err(_flucoma_block_report(a, 512, ref.shape[0]), ref) < F64_TOL


def test_nmfmatch_iterations_are_honoured(match_input):
    """FluCoMa's NMFMatch ignores iterations (10, hard-coded); bufnmf honours it."""
    x, W = match_input
    assert not np.allclose(bufnmf.match(x, W, None, 10, seed=42), bufnmf.match(x, W, None, 50, seed=42))


def test_nmfmatch_max_components(match_input):
    x, W = match_input
    two = bufnmf.match(x, W, max_components=2, seed=42)
    assert two.shape[1] == 2
    np.testing.assert_allclose(two, bufnmf.match(x, W[:, :2], None, seed=42), rtol=1e-12)  # extra bases dropped
    wide = bufnmf.match(x, W, max_components=5, seed=42)
    assert wide.shape[1] == 5 and np.all(wide[:, 3:] == 0)


@pytest.mark.parametrize("cls", [bufnmf.NMFMatch, bufnmf.NMFFilter])
def test_nmfmatch_swap_bases_between_blocks(cls, match_input):
    x, W = match_input
    W2 = W[:, ::-1][:, :2].copy()
    m = cls(W, max_components=4, seed=42)
    first = m.process(x[:10000])
    m.set_bases(W2)
    second = m.process(x[10000:])
    if cls is bufnmf.NMFMatch:
        full1 = bufnmf.match(x, W, max_components=4, seed=42)
        full2 = bufnmf.match(x, W2, max_components=4, seed=42)
        k = first.shape[0]
        np.testing.assert_allclose(first, full1[:k], rtol=1e-12)
        np.testing.assert_allclose(second, full2[k:], rtol=1e-12)
    else:  # frames completed after the swap (from 10000 // 512 + 1 on) are masked with the new bases
        y = np.concatenate([first, second])
        np.testing.assert_allclose(y.sum(axis=1)[1024:], x[:-1024], atol=1e-6)
        later = (10000 // 512 + 1) * 512 + 1024  # output of the first frame after the swap, on
        ref = bufnmf.NMFFilter(W2, max_components=4, seed=42).process(x)
        np.testing.assert_allclose(y[later:], ref[later:], atol=1e-12)
        second = y[(10000 // 512) * 512 + 1024 :]  # after the last frame made with the old bases has sounded
    assert np.all(second[:, 2:] == 0)  # the unused outputs are silent (FluCoMa's repeat their last frame)


def test_nmffilter_sums_to_the_input(match_input):
    x, W = match_input
    y = bufnmf.nmf_filter(x, W, seed=42)
    assert y.shape == (x.size, 20) and np.all(y[:, 3:] == 0)
    assert np.abs(y.sum(axis=1) - x).max() < 1e-6
    f = bufnmf.NMFFilter(W, max_components=None, seed=42)
    z = np.concatenate([f.process(x[i : i + 77]) for i in range(0, x.size, 77)] + [f.process(np.zeros(1024))])
    np.testing.assert_allclose(z[1024:], y[:, :3], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# BufNMF (the family's fixture case; ../shared/fixtures/flucoma holds the main ones)


@pytest.mark.parametrize("name", BUFNMF_CASES)
def test_bufnmf_case(name, family_dir):
    case = _case(name)
    p = case["params"]
    x = _load(family_dir, case["input"])[: case["num_samples"]]
    r = bufnmf.decompose(x, components=p["components"], iterations=p["iterations"], window_size=p["fftSettings"][0],
                         seed=p["seed"], resynth=False, precision="float64")
    assert rel_err(r.bases, _load(family_dir, case["outputs"]["bases"]["file"])) < F32_TOL
    assert rel_err(r.activations, _load(family_dir, case["outputs"]["activations"]["file"])) < F32_TOL


# ---------------------------------------------------------------------------------------------
# NMFMorph

import bufnmf.dsp.transport as transport_module  # noqa: E402

_ASSIGNMENT_COSTS = transport_module.assignment_costs


def _flucoma_running_cost(source_bases: np.ndarray, target_bases: np.ndarray) -> np.ndarray:
    """NMFMorph.hpp reuses one OptimalTransport whose cost is never reset: each pair's cost is the running
    sum of every pair's cost so far, in row-major order. Reproduced here only."""
    own = _ASSIGNMENT_COSTS(source_bases, target_bases)
    return np.cumsum(own.ravel()).reshape(own.shape)


@pytest.fixture
def morph_buffers(family_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (_load(family_dir, "nmfmorph_source_bases.npy"), _load(family_dir, "bufnmf_piano_k3_w1024_bases.npy"),
            _load(family_dir, "nmfmorph_activations.npy"))


def _frames_mag(m: bufnmf.NMFMorph, calls: int) -> np.ndarray:
    return np.array([np.abs(m.process_frame()) for _ in range(calls)])


@pytest.mark.parametrize("name", MORPH_CASES)
def test_nmfmorph_with_flucomas_running_cost(name, family_dir, morph_buffers, monkeypatch):
    """FluCoMa's accumulating autoassign cost reproduced: pairing, interpolated bases and frames all match."""
    monkeypatch.setattr(transport_module, "assignment_costs", _flucoma_running_cost)
    S, T, H = morph_buffers
    case = _case(name)
    p, o = case["params"], case["outputs"]
    m = bufnmf.NMFMorph(S, T, H, p["interpolation"], bool(p["autoassign"]), p["seed"], *p["fftSettings"])
    assert np.array_equal(m.perm, _load(family_dir, o["perm"]["file"]))
    assert rel_err(m.bases(), _load(family_dir, o["interp_bases"]["file"])) < F64_TOL
    ref = _load(family_dir, o["frames_mag"]["file"])
    got = _frames_mag(m, p["calls"])
    assert not got[0].any() and not ref[0].any()  # call 0: RTPGHI has no previous frame yet
    assert rel_err(got, ref) < F64_TOL


@pytest.mark.parametrize("name", MORPH_CASES)
def test_nmfmorph_default_given_flucomas_pairing(name, family_dir, morph_buffers):
    """The default code path, handed FluCoMa's pairing, matches too; only the pairing differs."""
    S, T, H = morph_buffers
    case = _case(name)
    p, o = case["params"], case["outputs"]
    perm = _load(family_dir, o["perm"]["file"])
    m = bufnmf.NMFMorph(S, T[:, perm], H, p["interpolation"], False, p["seed"])
    assert rel_err(m.bases(), _load(family_dir, o["interp_bases"]["file"])) < F64_TOL
    assert rel_err(_frames_mag(m, p["calls"]), _load(family_dir, o["frames_mag"]["file"])) < F64_TOL


def test_nmfmorph_assignment_is_the_least_cost(morph_buffers, monkeypatch):
    S, T, _ = morph_buffers
    own = transport_module.assignment_costs(S, T)
    best = min(((a, b, c) for a in range(3) for b in range(3) for c in range(3) if len({a, b, c}) == 3),
               key=lambda q: sum(own[i, q[i]] for i in range(3)))
    assert tuple(bufnmf.NMFMorph(S, T, np.ones((2, 3))).perm) == best == (1, 0, 2)
    monkeypatch.setattr(transport_module, "assignment_costs", _flucoma_running_cost)
    assert tuple(bufnmf.NMFMorph(S, T, np.ones((2, 3))).perm) == (2, 0, 1)  # FluCoMa's


def test_nmfmorph_frames_cycle(morph_buffers):
    S, T, H = morph_buffers
    m = bufnmf.NMFMorph(S, T, H, 0.3, seed=1)
    B = m.bases()
    got = _frames_mag(m, 2 * H.shape[0] + 2)
    want = np.array([B @ H[(t - 1) % H.shape[0]] for t in range(1, got.shape[0])])
    np.testing.assert_allclose(got[1:], want, rtol=1e-12, atol=1e-15)


def test_nmfmorph_stream_is_overlap_added_calls(morph_buffers):
    S, T, H = morph_buffers
    y = np.concatenate([bufnmf.NMFMorph(S, T, H, 0.5, seed=3).process(n) for n in (0,)] +
                       [p for m in [bufnmf.NMFMorph(S, T, H, 0.5, seed=3)] for p in
                        (m.process(1), m.process(63), m.process(64), m.process(1000), m.process(5000))])
    b = bufnmf.NMFMorph(S, T, H, 0.5, seed=3)
    w, h = 1024, 512
    calls = -(-y.size // h)
    out, g = np.zeros(calls * h + w), np.zeros(calls * h + w)
    for t in range(calls):
        out[t * h : t * h + w] += np.fft.irfft(b.process_frame(), 1024)[:w] * hann(w)
        g[t * h : t * h + w] += hann(w) ** 2
    ref = np.where(g > 0, out / np.where(g > 0, g, 1), 0)[: y.size]
    np.testing.assert_allclose(y, ref, atol=1e-14)
    assert not y[:h].any()  # call 0 is silent


def test_rtpghi_steady_tone():
    """A steady tone: RTPGHI advances the peak bin's phase by 2 pi f hop / sr per frame, exactly."""
    from bufnmf.dsp.rtpghi import RTPGHI

    w, h, f, k0 = 1024, 256, 1024, 40.0
    x = np.cos(2 * np.pi * k0 / f * np.arange(w * 20))
    mags = np.abs(np.fft.rfft(np.stack([x[i * h : i * h + w] * hann(w) for i in range(12)]), axis=1))
    r = RTPGHI(w, h, f)
    out = np.array([r.process(m, 0) for m in mags])
    np.testing.assert_allclose(np.abs(out[1:]), mags[:-1], rtol=1e-12)  # one frame late
    step = np.angle(np.exp(1j * (np.diff(np.angle(out[2:, int(k0)])) - 2 * np.pi * k0 * h / f)))
    assert np.abs(step).max() < 1e-9


def test_nmfmorph_seed_matters_and_reproduces(morph_buffers):
    S, T, H = morph_buffers
    a = bufnmf.morph(S, T, H, 0.5)
    assert a.seed >= 0
    np.testing.assert_array_equal(np.asarray(bufnmf.morph(S, T, H, 0.5, seed=a.seed)), np.asarray(a))
    # the seed sets RTPGHI's starting phase of every partial (FluCoMa's starts at 0 whatever the seed)
    one, two = np.asarray(bufnmf.morph(S, T, H, 0.5, seed=1)), np.asarray(bufnmf.morph(S, T, H, 0.5, seed=2))
    assert np.abs(one - two).max() > 0.1 * np.abs(one).max()
    assert abs(_db(one, two)) < 1.0  # the same frames' magnitudes: the same level


@pytest.fixture(scope="module")
def piano() -> tuple[np.ndarray, bufnmf.DecomposeResult]:
    import soundfile as sf

    from .conftest import DATA, need_shared

    x, _ = sf.read(need_shared(DATA / "piano" / "mix.wav"))
    return x, bufnmf.decompose(x, components=3, seed=1, resynth=False)


def _db(y: np.ndarray, x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(y))) / np.sqrt(np.mean(np.square(x[: y.size])))))


@pytest.mark.parametrize("griffin_lim_iterations", [0, 20])
def test_nmfmorph_level_must_show(piano, griffin_lim_iterations):
    """Interpolation 0, a sound's own bases and activations, with the scale BufNMF divided out: its own level."""
    x, r = piano
    assert r.activation_scale.shape == (1,) and r.activation_scale[0] > 10  # BufNMF's max(H) (99.3 here)
    y = bufnmf.morph(r.bases, r.bases, r.activations, seed=1, activation_scale=r.activation_scale,
                     griffin_lim_iterations=griffin_lim_iterations, num_samples=x.size)
    assert abs(_db(y, x)) < 1.0
    flucoma = bufnmf.morph(r.bases, r.bases, r.activations, seed=1, griffin_lim_iterations=griffin_lim_iterations)
    assert _db(flucoma, x) < -30.0  # FluCoMa's level: the model divided by max(H)


def test_nmfmorph_own_bases_pair_with_themselves(piano, monkeypatch):
    """Per-pair costs pair a sound's bases with themselves; FluCoMa's running cost need not."""
    W = bufnmf.decompose(piano[0], components=5, seed=1, resynth=False).bases
    assert np.array_equal(transport_module.assign(W, W), np.arange(5))
    monkeypatch.setattr(transport_module, "assignment_costs", _flucoma_running_cost)
    assert not np.array_equal(transport_module.assign(W, W), np.arange(5))


# ---------------------------------------------------------------------------------------------
# BufNMFCross (no fixture: FluCoMa's differences are documented in docs/flucoma-parity.md)


def test_nmfcross_griffin_lim_momentum_is_flucomas(drums):
    x = drums[:30000].astype(np.float64)
    kw = dict(iterations=5, seed=3, griffin_lim_iterations=5)
    default = np.asarray(bufnmf.cross(x, x[::-1].copy(), **kw))
    np.testing.assert_array_equal(default, np.asarray(bufnmf.cross(x, x[::-1].copy(), griffin_lim_momentum=0.9, **kw)))
    assert not np.allclose(default, np.asarray(bufnmf.cross(x, x[::-1].copy(), griffin_lim_momentum=0.99, **kw)))
    with pytest.raises(bufnmf.BufNMFError, match=r"griffin_lim_momentum must be in \[0, 1\), got 1"):
        bufnmf.cross(x, x, griffin_lim_momentum=1.0)


@pytest.mark.slow
def test_cli_morph_reads_the_level_from_the_summary(tmp_path, data_dir, capsys):
    """bufnmf morph finds the activation scale (and the length) in the summary.json beside the activations."""
    import shutil

    import soundfile as sf

    from bufnmf.cli import main

    src = data_dir / "piano" / "mix.wav"
    x, _ = sf.read(src)
    assert main(["decompose", str(src), "-o", str(tmp_path / "p"), "-k", "3", "--seed", "1", "--no-resynth"]) == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert len(summary["activation_scale"]) == 1 and summary["activation_scale"][0] > 10
    bases, acts = str(tmp_path / "p" / "bases.wav"), tmp_path / "p" / "activations.wav"
    assert main(["morph", "--source-bases", bases, "--target-bases", bases, "--activations", str(acts),
                 "-o", str(tmp_path / "own.wav"), "--seed", "2"]) == 0, capsys.readouterr().err
    y, sr = sf.read(tmp_path / "own.wav")
    assert sr == 44100 and y.shape == x.shape and abs(_db(y, x)) < 1.0
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(acts, tmp_path / "elsewhere" / "acts.wav")  # no summary.json beside it: FluCoMa's level
    assert main(["morph", "--source-bases", bases, "--target-bases", bases, "--activations",
                 str(tmp_path / "elsewhere" / "acts.wav"), "-o", str(tmp_path / "quiet.wav"), "--seed", "2"]) == 0
    assert _db(sf.read(tmp_path / "quiet.wav")[0], x) < -30.0
    assert main(["morph", "--source-bases", bases, "--target-bases", bases, "--activations",
                 str(tmp_path / "elsewhere" / "acts.wav"), "-o", str(tmp_path / "given.wav"), "--seed", "2",
                 "--activation-scale", str(summary["activation_scale"][0])]) == 0
    assert abs(_db(sf.read(tmp_path / "given.wav")[0], x)) < 1.0
