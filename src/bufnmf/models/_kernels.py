"""Fused, blocked KL multiplicative-update kernels (numba), two passes over V per iteration.

Neither ``W H`` nor ``V / (W H)`` is ever held at full size: each pass walks ``V`` in
row-chunk x frame-block tiles, recomputing the tile of ``W H`` (K FMAs per element),
forming the ratio in a small buffer and reducing it straight into the update.

* W pass (parallel over chunks of bins): ``num[f, k] = sum_t V[f,t] / max(WH[f,t], eps) * H[k,t]``,
  then ``W[f, k] *= num[f, k] / max(sum_t H[k, t], eps)`` for the bases being learnt.
* H pass (parallel over blocks of frames): ``num[k, t] = sum_f W[f,k] * V[f,t] / max(WH[f,t], eps)``,
  then ``H[k, t] *= num[k, t] / max(sum_f W[f, k], eps)``.

Partial sums over a frame block are taken in the working dtype and accumulated in
float64. ``fastmath`` is limited to reassociation and contraction (so reductions
vectorise); divisions stay exact.
"""

from __future__ import annotations

import os

import numpy as np

try:  # numba is a dependency, but a pure NumPy path remains for platforms without it
    import numba
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    AVAILABLE = False

W_TASKS = 8  # frame spans in the W pass (each with a partial numerator)
FRAME_BLOCK = 512  # frames per W-pass tile
H_BLOCK = 256  # frames per H-pass task: its K x H_BLOCK accumulator stays in L1

if AVAILABLE:
    _FM = {"reassoc", "contract", "nsz"}

    @njit(inline="always", fastmath=_FM)
    def _model_ratio(Vrow, W, f, H, t0, n, buf, eps):  # pragma: no cover - compiled
        """buf[:n] = Vrow[t0:t0+n] / max((W H)[f, t0:t0+n], eps)."""
        K = W.shape[1]
        h = H[0, t0 : t0 + n]
        w = W[f, 0]
        for t in range(n):
            buf[t] = w * h[t]
        for k in range(1, K):
            h = H[k, t0 : t0 + n]
            w = W[f, k]
            for t in range(n):
                buf[t] += w * h[t]
        v = Vrow[t0 : t0 + n]
        for t in range(n):
            buf[t] = v[t] / max(buf[t], eps)

    @njit(parallel=True, fastmath=_FM, cache=True, nogil=True)
    def w_pass(V, W, H, mask, eps, tasks, block, want_div):  # pragma: no cover - compiled
        """W <- W * ((V / max(WH, eps)) H^T) / max(H 1, eps) for the columns in ``mask``.

        With ``want_div``, also returns sum(V * log(V / max(WH, eps))) of the state it started
        from (the rest of the KL divergence is cheap: see :func:`bufnmf.nmf`), else 0.
        """
        bins, frames = V.shape
        K = W.shape[1]
        epsd = V.dtype.type(eps)
        hsum = np.zeros(K, dtype=np.float64)
        for k in range(K):
            hsum[k] = max(H[k].astype(np.float64).sum(), eps)
        # frames split into `tasks` contiguous spans, each with its own partial numerator
        span = (frames + tasks - 1) // tasks
        partial = np.zeros((tasks, bins, K), dtype=np.float64)
        vlogs = np.zeros(tasks, dtype=np.float64)
        for c in prange(tasks):
            a0 = c * span
            a1 = min(frames, a0 + span)
            num = partial[c]
            B = np.empty((4, block), dtype=V.dtype)
            r64 = np.empty(block, dtype=np.float64)
            r64i = r64.view(np.int64)
            vlog = 0.0
            for t0 in range(a0, a1, block):
                n = min(block, a1 - t0)
                f = 0
                while f < bins:
                    rows = min(4, bins - f)
                    if rows == 4:
                        _model_ratio4(V, W, f, H, t0, n, B, epsd)
                    else:
                        for r in range(rows):
                            _model_ratio(V[f + r], W, f + r, H, t0, n, B[r], epsd)
                    if want_div:
                        for r in range(rows):
                            br = B[r]
                            for t in range(n):
                                r64[t] = max(np.float64(br[t]), 1e-300)
                            _log_inplace(r64[:n], r64i[:n])
                            v = V[f + r, t0 : t0 + n]
                            for t in range(n):
                                vlog += np.float64(v[t]) * r64[t]
                    if rows == 4:
                        b0, b1, b2, b3 = B[0, :n], B[1, :n], B[2, :n], B[3, :n]
                        k = 0
                        while k + 1 < K:  # 4 rows x 2 components: 8 sums per 6 loads
                            ha = H[k, t0 : t0 + n]
                            hb = H[k + 1, t0 : t0 + n]
                            s0a = s1a = s2a = s3a = s0b = s1b = s2b = s3b = V.dtype.type(0.0)
                            for t in range(n):
                                xa, xb = ha[t], hb[t]
                                s0a += b0[t] * xa
                                s1a += b1[t] * xa
                                s2a += b2[t] * xa
                                s3a += b3[t] * xa
                                s0b += b0[t] * xb
                                s1b += b1[t] * xb
                                s2b += b2[t] * xb
                                s3b += b3[t] * xb
                            num[f, k] += s0a
                            num[f + 1, k] += s1a
                            num[f + 2, k] += s2a
                            num[f + 3, k] += s3a
                            num[f, k + 1] += s0b
                            num[f + 1, k + 1] += s1b
                            num[f + 2, k + 1] += s2b
                            num[f + 3, k + 1] += s3b
                            k += 2
                        k0 = k
                    else:
                        k0 = 0
                    for k in range(k0, K):
                        h = H[k, t0 : t0 + n]
                        for r in range(rows):  # separate reductions vectorise; h stays in L1
                            br = B[r]
                            acc = br[0] * h[0]
                            for t in range(1, n):
                                acc += br[t] * h[t]
                            num[f + r, k] += acc
                    f += rows
            vlogs[c] = vlog
        for f in prange(bins):
            for k in range(K):
                if mask[k]:
                    s = 0.0
                    for c in range(tasks):
                        s += partial[c, f, k]
                    W[f, k] *= s / hsum[k]
        return vlogs.sum()

    @njit(inline="always", fastmath=_FM)
    def _model_ratio4(V, W, f, H, t0, n, B, eps):  # pragma: no cover - compiled
        """Four rows at once (each H load serves four): B[r] = V[f+r] / max(WH[f+r], eps), r < 4."""
        K = W.shape[1]
        b0, b1, b2, b3 = B[0], B[1], B[2], B[3]
        for t in range(n):
            b0[t] = 0
            b1[t] = 0
            b2[t] = 0
            b3[t] = 0
        k = 0
        while k + 3 < K:  # 4 rows x 4 components per pass: 16 FMAs per 4 loads and 4 stores
            ha, hb, hc, hd = H[k, t0 : t0 + n], H[k + 1, t0 : t0 + n], H[k + 2, t0 : t0 + n], H[k + 3, t0 : t0 + n]
            w0a, w0b, w0c, w0d = W[f, k], W[f, k + 1], W[f, k + 2], W[f, k + 3]
            w1a, w1b, w1c, w1d = W[f + 1, k], W[f + 1, k + 1], W[f + 1, k + 2], W[f + 1, k + 3]
            w2a, w2b, w2c, w2d = W[f + 2, k], W[f + 2, k + 1], W[f + 2, k + 2], W[f + 2, k + 3]
            w3a, w3b, w3c, w3d = W[f + 3, k], W[f + 3, k + 1], W[f + 3, k + 2], W[f + 3, k + 3]
            for t in range(n):
                xa, xb, xc, xd = ha[t], hb[t], hc[t], hd[t]
                b0[t] += w0a * xa + w0b * xb + w0c * xc + w0d * xd
                b1[t] += w1a * xa + w1b * xb + w1c * xc + w1d * xd
                b2[t] += w2a * xa + w2b * xb + w2c * xc + w2d * xd
                b3[t] += w3a * xa + w3b * xb + w3c * xc + w3d * xd
            k += 4
        if k + 1 < K:  # a pair left over
            ha, hb = H[k, t0 : t0 + n], H[k + 1, t0 : t0 + n]
            w0a, w0b, w1a, w1b = W[f, k], W[f, k + 1], W[f + 1, k], W[f + 1, k + 1]
            w2a, w2b, w3a, w3b = W[f + 2, k], W[f + 2, k + 1], W[f + 3, k], W[f + 3, k + 1]
            for t in range(n):
                xa, xb = ha[t], hb[t]
                b0[t] += w0a * xa + w0b * xb
                b1[t] += w1a * xa + w1b * xb
                b2[t] += w2a * xa + w2b * xb
                b3[t] += w3a * xa + w3b * xb
            k += 2
        while k < K:
            h = H[k, t0 : t0 + n]
            w0, w1, w2, w3 = W[f, k], W[f + 1, k], W[f + 2, k], W[f + 3, k]
            for t in range(n):
                b0[t] += w0 * h[t]
                b1[t] += w1 * h[t]
                b2[t] += w2 * h[t]
                b3[t] += w3 * h[t]
            k += 1
        v0, v1, v2, v3 = V[f, t0 : t0 + n], V[f + 1, t0 : t0 + n], V[f + 2, t0 : t0 + n], V[f + 3, t0 : t0 + n]
        for t in range(n):
            b0[t] = v0[t] / max(b0[t], eps)
            b1[t] = v1[t] / max(b1[t], eps)
            b2[t] = v2[t] / max(b2[t], eps)
            b3[t] = v3[t] / max(b3[t], eps)

    @njit(parallel=True, fastmath=_FM, cache=True, nogil=True)
    def h_pass(V, W, H, eps, block):  # pragma: no cover - compiled
        bins, frames = V.shape
        K = W.shape[1]
        epsd = V.dtype.type(eps)
        wsum = np.zeros(K, dtype=np.float64)
        for f in range(bins):
            for k in range(K):
                wsum[k] += W[f, k]
        nblocks = (frames + block - 1) // block
        for b in prange(nblocks):
            t0 = b * block
            n = min(block, frames - t0)
            acc = np.zeros((K, n), dtype=V.dtype)
            B = np.empty((4, n), dtype=V.dtype)
            b0, b1, b2, b3 = B[0], B[1], B[2], B[3]
            f = 0
            while f + 3 < bins:  # rows in fours: a quarter of the passes over acc
                _model_ratio4(V, W, f, H, t0, n, B, epsd)
                k = 0
                while k + 1 < K:  # two components per pass: the four ratio rows are loaded once
                    w0, w1, w2, w3 = W[f, k], W[f + 1, k], W[f + 2, k], W[f + 3, k]
                    u0, u1, u2, u3 = W[f, k + 1], W[f + 1, k + 1], W[f + 2, k + 1], W[f + 3, k + 1]
                    a = acc[k]
                    c = acc[k + 1]
                    for t in range(n):
                        x0, x1, x2, x3 = b0[t], b1[t], b2[t], b3[t]
                        a[t] += w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
                        c[t] += u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
                    k += 2
                if k < K:
                    w0, w1, w2, w3 = W[f, k], W[f + 1, k], W[f + 2, k], W[f + 3, k]
                    a = acc[k]
                    for t in range(n):
                        a[t] += w0 * b0[t] + w1 * b1[t] + w2 * b2[t] + w3 * b3[t]
                f += 4
            while f < bins:
                _model_ratio(V[f], W, f, H, t0, n, b0, epsd)
                for k in range(K):
                    w0 = W[f, k]
                    a = acc[k]
                    for t in range(n):
                        a[t] += w0 * b0[t]
                f += 1
            for k in range(K):
                scale = V.dtype.type(1.0 / max(wsum[k], eps))
                h = H[k, t0 : t0 + n]
                a = acc[k]
                for t in range(n):
                    h[t] *= a[t] * scale

    @njit(inline="always", fastmath=_FM)
    def _log_inplace(r, ri):  # pragma: no cover - compiled
        """r[:] = log(r) for positive normal float64 ``r`` (``ri`` its int64 view), vectorisable.

        Splits r = m * 2**e with m in [sqrt(1/2), sqrt(2)) by bit manipulation, then
        log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, by its series to s**13
        (absolute error < 2e-11); libm's log would be called element by element.
        """
        for t in range(r.size):
            bits = ri[t]
            e = ((bits >> 52) & 0x7FF) - 1023
            mbits = (bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000
            big = mbits > 0x3FF6A09E667F3BCD  # m > sqrt(2): use m / 2
            ri[t] = mbits - (0x0010000000000000 if big else 0)
            m = r[t]
            s = (m - 1.0) / (m + 1.0)
            s2 = s * s
            poly = 1.0 + s2 * (1 / 3 + s2 * (1 / 5 + s2 * (1 / 7 + s2 * (1 / 9 + s2 * (1 / 11 + s2 / 13)))))
            r[t] = 2.0 * s * poly + (e + (1 if big else 0)) * 0.6931471805599453

    @njit(parallel=True, fastmath=_FM, cache=True, nogil=True)
    def divergence(V, W, H, eps, block):  # pragma: no cover - compiled
        """Generalised KL divergence D(V | W H) in float64 (terms with V == 0 contribute W H)."""
        bins, frames = V.shape
        K = W.shape[1]
        nblocks = (frames + block - 1) // block
        parts = np.zeros(nblocks, dtype=np.float64)
        for b in prange(nblocks):
            t0 = b * block
            n = min(block, frames - t0)
            buf = np.empty(n, dtype=np.float64)
            r = np.empty(n, dtype=np.float64)
            ri = r.view(np.int64)
            d = 0.0
            for f in range(bins):
                for t in range(n):
                    buf[t] = 0.0
                for k in range(K):
                    w = np.float64(W[f, k])
                    h = H[k, t0 : t0 + n]
                    for t in range(n):
                        buf[t] += w * h[t]
                v = V[f, t0 : t0 + n]
                for t in range(n):
                    x = max(buf[t], eps)
                    buf[t] = x
                    vt = np.float64(v[t])
                    r[t] = max(vt / x, 1e-300)  # v == 0 gives a finite dummy, weighted by 0 below
                _log_inplace(r, ri)
                for t in range(n):
                    vt = np.float64(v[t])
                    d += vt * r[t] - vt + buf[t]
            parts[b] = d
        return parts.sum()


def compiled() -> bool:
    """Whether the kernels are ready without compiling: compiled in this process, or cached on disk."""
    if not AVAILABLE:
        return False
    funcs: tuple = (w_pass, h_pass)
    if all(f.signatures for f in funcs):
        return True
    try:
        return all(os.path.exists(f._cache._cache_file._index_path) for f in funcs)
    except AttributeError:  # numba internals moved: assume a cache, as numba itself will look
        return True


def threads() -> int:
    """Threads the compiled kernels use (numba's setting)."""
    return int(numba.get_num_threads()) if AVAILABLE else 1
