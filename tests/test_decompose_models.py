"""decompose(model=...): FluCoMa's KL-NMF stays the exact default; the opt-in β-NMFD separates better."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

import bufnmf
from bufnmf.cli import main
from bufnmf.clients.bufnmf import nmfd_start
from bufnmf.demo import drum_loop
from bufnmf.dsp.fft import EPS, resolve_fft_settings
from bufnmf.dsp.masks import _component_models, resynthesise
from bufnmf.dsp.random import flucoma_init
from bufnmf.dsp.stft import stft_complex
from bufnmf.errors import BufNMFError
from bufnmf.models import nmfd
from bufnmf.models.mu import multiplicative_update, prepare_start


@pytest.fixture(scope="module")
def loop() -> np.ndarray:
    return drum_loop(seconds=1.5, sr=22050)[0].astype(np.float32)


def test_default_is_flucoma_and_says_so(loop):
    a = bufnmf.decompose(loop, components=3, seed=4, iterations=30)
    b = bufnmf.decompose(loop, components=3, seed=4, iterations=30, model="flucoma")
    for x, y in ((a.bases, b.bases), (a.activations, b.activations), (a.resynth, b.resynth)):
        np.testing.assert_array_equal(x, y)
    assert a.model.name == "flucoma" and a.templates is None and a.model.describe() == {"name": "flucoma"}


def test_component_models_are_the_convolution_over_any_frame_range():
    rng = np.random.default_rng(0)
    W = rng.random((7, 3, 4))
    H = rng.random((3, 20))
    Wt = np.ascontiguousarray(W.transpose(1, 2, 0))
    for c0, c1 in ((0, 20), (0, 5), (2, 9), (13, 20), (19, 20)):
        got = _component_models(H, Wt, c0, c1)
        for k in range(3):
            np.testing.assert_allclose(got[k], nmfd.component_model(W, H, k)[:, c0:c1].T, rtol=1e-12)


def test_template_masks_sum_to_the_input_and_follow_each_component(loop):
    settings = resolve_fft_settings(1024, 256, -1)
    X = stft_complex(loop.astype(np.float64), settings, dtype=np.complex128)
    rng = np.random.default_rng(1)
    W = rng.random((settings.bins, 2, 3))
    H = rng.random((2, X.shape[1]))
    parts = resynthesise(X, W, H, settings, loop.size)
    assert parts.shape == (loop.size, 2)
    np.testing.assert_allclose(parts.sum(axis=1), loop, atol=2e-5)
    # a component whose activation is zero gets nothing; the other gets everything
    H[1] = 0.0
    parts = resynthesise(X, W, H, settings, loop.size)
    np.testing.assert_allclose(parts[:, 0], loop, atol=2e-5)
    assert np.abs(parts[:, 1]).max() == 0.0
    # one-frame templates mask as the bases they are
    W1 = rng.random((settings.bins, 2))
    H1 = rng.random((2, X.shape[1]))
    np.testing.assert_allclose(resynthesise(X, W1[:, :, None], H1, settings, loop.size),
                               resynthesise(X, W1, H1, settings, loop.size), atol=1e-6)


def test_nmfd_outputs_their_model(loop):
    """bases are the templates' spectra; templates over activations * scale is the fitted NMFD model."""
    res = bufnmf.decompose(loop, components=3, seed=2, iterations=40, model="nmfd", precision="float64",
                           window_size=512)
    bins, hops = 257, loop.size // 256 + 1
    assert res.model.describe() == {"name": "nmfd", "beta": 0.5, "template_frames": 4, "warm_iterations": 12,
                                    "sparsity": 0.0, "continuity": 0.0}
    assert res.templates is not None and res.templates.shape == (bins, 3, 4) and res.templates.dtype == np.float32
    assert res.bases.shape == (bins, 3) and res.activations.shape == (hops, 3) and res.kernel == "numpy"
    np.testing.assert_allclose(res.templates.sum(axis=2), res.bases, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(res.bases, axis=0), 1.0, rtol=1e-5)
    assert res.activations.max() == 1.0
    # the same model, fitted directly: 12 KL iterations, then 28 at beta 0.5, from the seeded start
    settings = resolve_fft_settings(512, -1, -1)
    V = np.abs(stft_complex(loop, settings, dtype=np.complex128))
    W0 = np.maximum(nmfd_start(2, bins, 3, 4), EPS)
    W0 /= np.linalg.norm(W0, axis=(0, 2), keepdims=True)
    H0 = np.maximum(flucoma_init(2, 3, hops), EPS)
    H0 /= np.linalg.norm(H0, axis=1, keepdims=True)
    warm = nmfd.nmfd_update(V, W0, H0, 12, beta=1.0)
    fit = nmfd.nmfd_update(V, warm.bases, warm.activations, 28, beta=0.5)
    want = nmfd.conv_model(fit.bases, fit.activations)
    got = nmfd.conv_model(res.templates.astype(np.float64), res.activations.T * res.activation_scale[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * want.max())
    assert res.resynth is not None
    np.testing.assert_allclose(res.resynth.sum(axis=1), loop, atol=2e-5)


def test_nmfd_default_template_shrinks_to_a_short_selection(loop):
    res = bufnmf.decompose(loop[:600], components=2, seed=1, iterations=5, model="nmfd")
    assert res.model.template_frames == 2 and res.templates is not None and res.templates.shape == (513, 2, 2)
    with pytest.raises(BufNMFError, match="template_frames 3 is more than the 2 STFT frames"):
        bufnmf.decompose(loop[:600], components=2, seed=1, iterations=5, model="nmfd", template_frames=3)


def test_nmfd_start_with_one_frame_is_flucomas():
    np.testing.assert_array_equal(nmfd_start(7, 20, 3, 1)[:, :, 0], flucoma_init(7, 20, 3))


def test_nmfd_with_one_frame_and_kl_is_flucomas_fit(loop):
    a = bufnmf.decompose(loop, components=2, seed=3, iterations=25, precision="float64", kernel="numpy")
    b = bufnmf.decompose(loop, components=2, seed=3, iterations=25, precision="float64", model="nmfd", beta=1.0,
                         template_frames=1)
    np.testing.assert_allclose(b.bases, a.bases, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(b.activations, a.activations, rtol=1e-4, atol=1e-6)


def test_nmfd_continuity_is_the_nmf_rules_penalty():
    rng = np.random.default_rng(5)
    V = rng.random((20, 30)) + 0.05
    W, H = prepare_start(rng.random((20, 3)), rng.random((3, 30)))
    a = multiplicative_update(V, W, H, 15, beta=0.5, continuity=0.7, kernel="numpy")
    b = nmfd.nmfd_update(V, W[:, :, None], H, 15, beta=0.5, continuity=0.7)
    np.testing.assert_allclose(b.activations, a.activations, rtol=1e-9)
    plain = nmfd.nmfd_update(V, W[:, :, None], H, 15, beta=0.5)
    assert not np.allclose(plain.activations, b.activations)


def test_nmfd_is_reproducible_and_cancellable(loop):
    a = bufnmf.decompose(loop, components=2, seed=9, iterations=20, model="nmfd")
    b = bufnmf.decompose(loop, components=2, seed=9, iterations=20, model="nmfd")
    np.testing.assert_array_equal(a.resynth, b.resynth)
    seen: list[tuple[int, int]] = []
    bufnmf.decompose(loop, components=2, seed=9, iterations=20, model="nmfd", progress=lambda d, t: seen.append((d, t)))
    assert seen == [(d, 20) for d in range(1, 21)]  # the KL warm start, then beta, one count
    with pytest.raises(bufnmf.Cancelled, match="after 8 of 20"):
        bufnmf.decompose(loop, components=2, seed=9, iterations=20, model="nmfd", progress=lambda d, t: d < 8)


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "beta"}, "model must be 'flucoma' .* or 'nmfd'"),
    ({"beta": 0.5}, "beta is an option of model 'nmfd'.*pass model='nmfd'"),
    ({"template_frames": 2}, "template_frames is an option of model 'nmfd'"),
    ({"continuity": 0.0}, "continuity is an option of model 'nmfd'"),
    ({"model": "nmfd", "beta": 2.5}, r"beta must be between 0 \(Itakura-Saito\) and 2 \(Euclidean\).*got 2.5"),
    ({"model": "nmfd", "beta": -0.1}, "beta must be between 0"),
    ({"model": "nmfd", "beta": float("nan")}, "beta must be a finite number"),
    ({"model": "nmfd", "beta": "kl"}, "beta must be a number, got 'kl'"),
    ({"model": "nmfd", "template_frames": 0}, "template_frames must be at least 1"),
    ({"model": "nmfd", "template_frames": 500}, "template_frames 500 is more than the 65 STFT frames"),
    ({"model": "nmfd", "warm_iterations": 31}, r"warm_iterations must be between 0 and iterations \(30\), got 31"),
    ({"model": "nmfd", "warm_iterations": -1}, "warm_iterations must be between 0"),
    ({"model": "nmfd", "sparsity": -1.0}, "sparsity must be >= 0"),
    ({"model": "nmfd", "continuity": float("inf")}, "continuity must be a finite number"),
    ({"model": "nmfd", "kernel": "numba"}, "kernel 'numba' runs model 'flucoma' only"),
    ({"model": "nmfd", "bases": np.ones((513, 2)), "bases_mode": "fixed"},
     "model 'nmfd' learns its templates and activations from the sound"),
    ({"model": "nmfd", "activations": np.ones((65, 2)), "act_mode": "seed"}, "supplied bases or activations"),
])
def test_bad_model_options_are_refused(loop, kwargs, message):
    with pytest.raises(BufNMFError, match=message):
        bufnmf.decompose(loop[:33000], components=2, iterations=30, seed=0, **kwargs)


def test_cli_nmfd_end_to_end(tmp_path, capsys, loop):
    src = tmp_path / "loop.wav"
    sf.write(src, loop, 22050, subtype="FLOAT")
    out = tmp_path / "parts"
    code = main([str(a) for a in ["decompose", src, "-o", out, "-k", "2", "--iterations", "30", "--seed", "1",
                                  "--model", "nmfd", "--template-frames", "3", "--beta", "0.8"]])
    _, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == {"name": "nmfd", "beta": 0.8, "template_frames": 3, "warm_iterations": 9,
                                "sparsity": 0.0, "continuity": 0.0}
    assert summary["outputs"] == ["component_1.wav", "component_2.wav", "bases.wav", "activations.wav", "bases.npy",
                                  "activations.npy", "templates.npy", "summary.json"]
    templates = np.load(out / "templates.npy")
    assert templates.shape == (513, 2, 3)
    np.testing.assert_allclose(templates.sum(axis=2), np.load(out / "bases.npy"), rtol=1e-5, atol=1e-7)
    parts = np.stack([sf.read(out / f"component_{k}.wav", dtype="float32")[0] for k in (1, 2)])
    np.testing.assert_allclose(parts.sum(axis=0), loop, atol=2e-5)
    ref = bufnmf.decompose(loop, components=2, iterations=30, seed=1, model="nmfd", template_frames=3, beta=0.8)
    np.testing.assert_array_equal(parts.T, ref.resynth)
    # the default run records FluCoMa's model and writes no templates
    code = main([str(a) for a in ["decompose", src, "-o", tmp_path / "plain", "-k", "2", "--iterations", "5"]])
    assert code == 0
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["model"] == {"name": "flucoma"}
    assert not (tmp_path / "plain" / "templates.npy").exists()


@pytest.mark.parametrize("args, message", [
    (["--beta", "0.5"], "--beta is an option of --model nmfd; --model flucoma (the default) is FluCoMa's KL-NMF "
                        "exactly: add --model nmfd to use --beta"),
    (["--model", "nmfd", "--warm-iterations", "200"], "--warm-iterations must be between 0 and --iterations (100)"),
    (["--model", "nmfd", "--template-frames", "0"], "--template-frames must be at least 1"),
    (["--model", "nmfd", "--beta", "3"], "--beta must be between 0 (Itakura-Saito) and 2 (Euclidean)"),
])
def test_cli_model_errors_are_one_line(tmp_path, capsys, loop, args, message):
    src = tmp_path / "loop.wav"
    sf.write(src, loop, 22050, subtype="FLOAT")
    code = main([str(a) for a in ["decompose", src, "-o", tmp_path / "out", "-k", "2", *args]])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_nmfd_beats_flucoma_on_the_shared_drum_loop(data_dir):
    """The issue's target: >= 1 dB more mean stem SDR than FluCoMa's KL-NMF, averaged over seeds
    (benchmarks/separation.py measures 10 seeds; here 3, with a floor a little below what they give)."""
    import mir_eval

    d = data_dir / "drums"
    mix, _ = sf.read(d / "mix.wav", dtype="float32")
    refs = np.stack([sf.read(d / "stems" / f"{s}.wav", dtype="float64")[0] for s in ("kick", "snare", "hihat")])

    def sdr(res: bufnmf.DecomposeResult) -> float:
        assert res.resynth is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = mir_eval.separation.bss_eval_sources(refs, res.resynth.T.astype(np.float64), compute_permutation=True)
        return float(np.mean(s[0]))

    base = [sdr(bufnmf.decompose(mix, components=3, seed=s)) for s in range(3)]
    ours = [sdr(bufnmf.decompose(mix, components=3, seed=s, model="nmfd")) for s in range(3)]
    assert 15.4 < np.mean(base) < 15.8  # FluCoMa's, as the issue quotes it (15.65 dB)
    assert np.mean(ours) - np.mean(base) >= 1.5, (base, ours)  # measured: +2.16 dB on these seeds
    assert min(ours) > max(base) + 1.0, (base, ours)
