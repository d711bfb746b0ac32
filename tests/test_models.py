"""The update rule's options beyond FluCoMa (β, sparsity, continuity, semi-adaptive bases) and the
convolutive model (NMFD, batch and online)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from bufnmf.models import nmfd
from bufnmf.models.mu import continuity_gradients, divergence, multiplicative_update, prepare_start


def _problem(bins=30, frames=40, K=4, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.random((bins, frames)) ** 2
    W = rng.random((bins, K)) + 0.1
    H = rng.random((K, frames)) + 0.1
    return V, W, H


def _shift(A, tau):
    out = np.zeros_like(A)
    if tau == 0:
        return A.copy()
    if tau > 0:
        out[:, tau:] = A[:, :-tau]
    else:
        out[:, :tau] = A[:, -tau:]
    return out


def naive_nmfd_kl(V, W, H, iterations, update_W=True):
    """Textbook per-lag NMFD under KL (Smaragdis 2004, the exact MU of the model), templates unit L2."""
    W, H = W.copy(), H.copy()
    T = W.shape[2]
    for _ in range(iterations):
        if update_W:
            L = sum(W[:, :, t] @ _shift(H, t) for t in range(T))
            R = V / L
            new = W.copy()
            for t in range(T):
                Ht = _shift(H, t)
                new[:, :, t] = W[:, :, t] * (R @ Ht.T) / (np.ones_like(V) @ Ht.T)
            W = new / np.sqrt((new**2).sum(axis=(0, 2)))[None, :, None]
        L = sum(W[:, :, t] @ _shift(H, t) for t in range(T))
        R = V / L
        up = sum(W[:, :, t].T @ _shift(R, -t) for t in range(T))
        dn = sum(W[:, :, t].T @ _shift(np.ones_like(V), -t) for t in range(T))
        H = H * up / dn
    return W, H


@pytest.mark.parametrize("update_W", [False, True])
def test_nmfd_is_the_textbook_per_lag_update(update_W):
    rng = np.random.default_rng(1)
    V = rng.random((20, 30)) + 0.1
    W0 = rng.random((20, 3, 4)) + 0.1
    W0 /= np.sqrt((W0**2).sum(axis=(0, 2)))[None, :, None]
    H0 = rng.random((3, 30)) + 0.1
    res = nmfd.nmfd_update(V, W0, H0, 5, update_bases=update_W)
    Wn, Hn = naive_nmfd_kl(V, W0, H0, 5, update_W)
    np.testing.assert_allclose(res.bases, Wn, rtol=1e-10)
    np.testing.assert_allclose(res.activations, Hn, rtol=1e-10)
    np.testing.assert_allclose(nmfd.conv_model(res.bases, res.activations),
                               sum(Wn[:, :, t] @ _shift(Hn, t) for t in range(4)), rtol=1e-10)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 2.0])
def test_nmfd_with_one_frame_is_the_nmf_rule(beta):
    V, W, H = _problem(15, 25, 3, seed=2)
    W, H = prepare_start(W, H)
    a = multiplicative_update(V, W, H, 10, beta=beta, kernel="numpy")
    b = nmfd.nmfd_update(V, W[:, :, None], H, 10, beta=beta)
    np.testing.assert_allclose(b.bases[:, :, 0], a.bases, rtol=1e-9)
    np.testing.assert_allclose(b.activations, a.activations, rtol=1e-9)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 2.0])
def test_divergence_never_rises(beta):
    V, W, H = _problem(seed=3)
    d = multiplicative_update(V, W, H, 40, beta=beta, track_divergence=True, kernel="numpy").divergences
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(d)), (beta, d[:4])
    rng = np.random.default_rng(3)
    d2 = nmfd.nmfd_update(V, rng.random((30, 3, 3)) + 0.1, rng.random((3, 40)) + 0.1, 40, beta=beta,
                          track_divergence=True).divergences
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(d2)), (beta, d2[:4])
    assert d2[-1] < 0.9 * d2[0]


def test_kl_sparsity_only_rescales_the_activations():
    """Under KL the L1 penalty on the components' contributions divides H by 1 + λ: the model's shape
    (its masks, its events) is the same; for β != 1 it changes the fit."""
    V, W, H = _problem(seed=5)
    plain = multiplicative_update(V, W, H, 300, update_bases=False, normalise_bases=False, kernel="numpy")
    sparse = multiplicative_update(V, W, H, 300, update_bases=False, normalise_bases=False, sparsity=0.5,
                                   kernel="numpy")
    np.testing.assert_allclose(sparse.activations * 1.5, plain.activations, rtol=2e-3)
    a = multiplicative_update(V, W, H, 300, beta=0.5, update_bases=False, normalise_bases=False, kernel="numpy")
    b = multiplicative_update(V, W, H, 300, beta=0.5, update_bases=False, normalise_bases=False, sparsity=0.5,
                              kernel="numpy")
    def shape_change(r1, r2):
        m1, m2 = r1.bases @ r1.activations, r2.bases @ r2.activations
        return float((np.abs(m1 / m1.sum() - m2 / m2.sum()) / (m1 / m1.sum())).max())

    assert shape_change(plain, sparse) < 0.01
    assert shape_change(a, b) > 0.1
    # it optimises the penalised cost: lower than the plain fit's under the penalty, less mass
    m = V.mean()

    def penalised(r):
        mass = (r.bases.sum(axis=0)[:, None] * r.activations).sum()
        return divergence(V, r.bases @ r.activations, 0.5) + 0.5 * m ** -0.5 * mass, mass

    (cost_a, mass_a), (cost_b, mass_b) = penalised(a), penalised(b)
    assert cost_b < cost_a and mass_b < mass_a


def test_penalties_and_anchoring_are_scale_free():
    V, W, H = _problem(seed=4)
    for kw in (dict(beta=0.5, sparsity=0.3), dict(beta=1.5, continuity=0.5), dict(adapt=1.0), dict(beta=0.5,
                                                                                                    continuity=1.0)):
        a = multiplicative_update(V, W, H, 20, kernel="numpy", **kw)
        b = multiplicative_update(V * 1000.0, W, H * 1000.0, 20, kernel="numpy", **kw)
        np.testing.assert_allclose(a.bases, b.bases, rtol=1e-8, err_msg=str(kw))
        np.testing.assert_allclose(a.activations * 1000.0, b.activations, rtol=1e-8, err_msg=str(kw))


def test_continuity_gradient_and_effect():
    rng = np.random.default_rng(7)
    H = rng.random((2, 12)) + 0.1

    def cost(H):
        return np.sum(H.shape[1] / np.sum(H * H, axis=1) * np.sum(np.diff(H, axis=1) ** 2, axis=1))

    pos, neg = continuity_gradients(H)
    num = np.zeros_like(H)
    for k in range(2):
        for t in range(1, 11):  # interior frames (the split's edge terms are Virtanen's approximation)
            d = np.zeros_like(H)
            d[k, t] = 1e-6
            num[k, t] = (cost(H + d) - cost(H - d)) / 2e-6
    np.testing.assert_allclose((pos - neg)[:, 1:11], num[:, 1:11], rtol=1e-5, atol=1e-8)
    V, W, H0 = _problem(seed=8)
    a = multiplicative_update(V, W, H0, 100, kernel="numpy")
    b = multiplicative_update(V, W, H0, 100, continuity=5.0, kernel="numpy")
    assert cost(b.activations) < 0.8 * cost(a.activations)


def test_semi_adaptive_bases_start_at_the_templates_and_move_toward_the_material():
    V, W, H = _problem(seed=9)
    W, H = prepare_start(W, H)
    free = multiplicative_update(V, W, H, 50, kernel="numpy")
    fixed = multiplicative_update(V, W, H, 50, update_bases=False, kernel="numpy")
    one = multiplicative_update(V, W, H, 1, adapt=1.0, kernel="numpy")
    np.testing.assert_allclose(one.bases, W, rtol=1e-12)  # a = 1 at the first iteration: still the templates
    semi = multiplicative_update(V, W, H, 50, adapt=1.0, kernel="numpy")
    gap = np.linalg.norm(semi.bases - W)
    assert 0 < gap < np.linalg.norm(free.bases - W)

    def div(r):
        return divergence(V, r.bases @ r.activations)

    assert div(free) < div(semi) < div(fixed)
    # anchored=False for a basis: it learns freely beside the anchored ones
    part = multiplicative_update(V, W, H, 50, adapt=1.0, anchored=np.array([True, True, True, False]),
                                 kernel="numpy")
    np.testing.assert_allclose(part.bases[:, :3], semi.bases[:, :3], atol=0.2)
    assert np.linalg.norm(part.bases[:, 3] - W[:, 3]) > np.linalg.norm(semi.bases[:, 3] - W[:, 3])


def test_semi_adaptive_numba_matches_numpy():
    from bufnmf.models import _kernels

    if not _kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    V, W, H = _problem(60, 200, 3, seed=10)
    W, H = prepare_start(W, H)
    a = multiplicative_update(V, W, H, 20, adapt=2.0, kernel="numpy")
    b = multiplicative_update(V, W, H, 20, adapt=2.0, kernel="numba")
    assert b.kernel == "numba"
    np.testing.assert_allclose(b.bases, a.bases, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(b.activations, a.activations, rtol=1e-9, atol=1e-13)


def test_options_are_checked():
    V, W, H = _problem()
    for kw, word in ((dict(sparsity=-1.0), "sparsity"), (dict(adapt=0.0), "adapt"), (dict(beta=np.nan), "beta")):
        with pytest.raises(ValueError, match=word):
            multiplicative_update(V, W, H, 2, **kw)


def test_masks_keep_fixed_templates():
    rng = np.random.default_rng(6)
    V = rng.random((30, 40))
    W = rng.random((30, 3, 2)) + 0.1
    nmfd.normalise_templates(W)
    H = rng.random((3, 40)) + 0.1
    r = nmfd.nmfd_update(V, W, H, 20, update_bases=np.array([True, False, True]))
    np.testing.assert_allclose(r.bases[:, 1], W[:, 1])
    assert not np.allclose(r.bases[:, 0], W[:, 0])
    np.testing.assert_allclose(np.sqrt((r.bases**2).sum(axis=(0, 2))), 1.0)


def _hits(T=4, bins=24, n=120, seed=11):
    """A mix of two fixed templates played at known frames, with their decays overlapping."""
    rng = np.random.default_rng(seed)
    W = rng.random((bins, 2, T)) ** 3 * np.exp(-np.arange(T) / 2.0)[None, None, :]
    H = np.zeros((2, n))
    H[0, [5, 30, 31, 70]] = [1.0, 0.5, 0.0, 2.0]
    H[1, [10, 30, 90]] = [0.3, 1.0, 0.7]
    return W, H, nmfd.conv_model(W, H) + 1e-6


def test_online_nmfd_does_not_depend_on_the_blocks_and_finds_the_hits():
    W, H, V = _hits()
    ref = nmfd.OnlineNMFD(W, iterations=30, lookahead=1)
    whole = np.concatenate([ref.push(V), ref.flush()], axis=1)
    assert whole.shape == H.shape and ref.committed == V.shape[1]
    rng = np.random.default_rng(0)
    on = nmfd.OnlineNMFD(W, iterations=30, lookahead=1)
    parts, a = [], 0
    while a < V.shape[1]:
        b = a + int(rng.integers(0, 7))
        parts.append(on.push(V[:, a:b]))
        a = b
    parts.append(on.flush())
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    mass = nmfd.template_mass(W)[:, None]
    found = whole / mass  # in the units of H (templates of unit mass inside)
    for k in range(2):
        peaks = {int(t) for t in np.flatnonzero(H[k] > 0)}
        strong = {int(t) for t in np.flatnonzero(found[k] > 0.1 * found[k].max())}
        assert strong == peaks, (k, sorted(strong), sorted(peaks))


def test_online_nmfd_with_one_frame_is_fixed_bases_nmf():
    rng = np.random.default_rng(12)
    W = rng.random((16, 3, 1)) + 0.01
    V = rng.random((16, 50))
    on = nmfd.OnlineNMFD(W, iterations=25)
    got = np.concatenate([on.push(V[:, :17]), on.push(V[:, 17:]), on.flush()], axis=1)
    Wn = W[:, :, 0] / W[:, :, 0].sum(axis=0)
    ref = multiplicative_update(V, Wn, np.repeat(V.sum(axis=0)[None] / 3, 3, axis=0), 25, update_bases=False,
                                normalise_bases=False, kernel="numpy").activations
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_numpy_updates_do_not_depend_on_blas_threads():
    """A BLAS product's rounding depends on how many threads it is split over: the NumPy updates
    run BLAS on one thread, so a single-file run (all cores) and a batch worker (one thread) agree
    to the bit, and the caller's BLAS setting is restored."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from bufnmf.models.mu import multiplicative_update
    from bufnmf.models.nmfd import nmfd_update

    rng = np.random.default_rng(3)
    V = rng.gamma(0.3, 1.0, size=(513, 1500)).astype(np.float32)  # products big enough to be threaded
    W = rng.random((513, 4)).astype(np.float32) + 0.1
    H = rng.random((4, 1500)).astype(np.float32) + 0.1
    Wt = rng.random((513, 3, 5)).astype(np.float32) + 0.1
    many = max(2, os.cpu_count() or 2)
    got = []
    for n in (1, many):
        with threadpool_limits(n, user_api="blas"):
            plain = multiplicative_update(V, W, H, 8, kernel="numpy", track_divergence=True)
            conv = nmfd_update(V, Wt, H[:3], 4, track_divergence=True)
            assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {n}
        got.append((plain, conv))
    (a, b), (c, d) = got
    for one, other in ((a, c), (b, d)):
        assert np.array_equal(one.bases, other.bases) and np.array_equal(one.activations, other.activations)
        assert one.divergences == other.divergences
