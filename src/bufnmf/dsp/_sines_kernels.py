"""Numba kernels of FluCoMa's sinusoidal model (``algorithm::SineExtraction`` and ``PartialTracking``).

One call of :func:`process_frames` runs ``SineExtraction::processFrame`` for a batch of consecutive
analysis frames. Everything the tracker remembers between frames lives in arrays owned by
:class:`bufnmf.dsp.sines.SinesProcessor` and passed in, so a stream can be cut into batches anywhere.

Per analysis frame ``k`` (complex spectrum ``X_k``, ``bins`` values):

1. Peaks: ``mag = |X_k| * (1 / (window / 4))``, ``dB = 20 log10(max(mag, DBL_EPSILON))``; every strict
   3-point local maximum of dB in bins ``1 .. bins-2``, parabolically interpolated, kept if its
   interpolated dB > ``detection_threshold``; ``freq = sr * (i + p) / fft``. ``maxAmp =
   20 log10(max mag)`` (``-inf`` on a silent frame: FluCoMa takes no epsilon here).
2. Tracking, greedy (method 0) or Hungarian (method 1), as ``PartialTracking`` does (see the
   functions below for the exact rules, quirks included).
3. Active peaks: the peak, at analysis frame ``k + 1 - L`` (sic: FluCoMa's one-frame offset; ``k - L``
   with ``mask_offset`` False), of every track that covers that frame and is either still running or
   ended with at least ``L`` peaks, in track-id order.
4. Mask: each active peak drawn as the Hann window's transform over ``bandwidth`` bins and summed;
   the spectrum queued ``L`` frames earlier, ``X_{k-L}``, is split by the ratio mask
   ``min(1, S / |X_{k-L}|)`` into sines and residual; zeros while ``k < L``.

All arithmetic follows FluCoMa's expression order (``pow(x, 2)`` as ``x * x``, as g++ folds it), so
results agree to the last bit where the inputs and the math library do; ``|X|`` is ``sqrt(re^2 + im^2)``
where FluCoMa calls ``hypot`` (within an ulp).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._munkres import munkres_fast
from ._stlsort import stl_sort

DBL_EPSILON = 2.220446049250313e-16

# indices into the int64 state vector
I_FRAME = 0  # analysis frames processed so far (FluCoMa's mCurrentFrame)
I_LAST_ID = 1  # FluCoMa's mLastTrackId
I_LIVE = 2  # tracks in the live table
# indices into the float64 state vector
F_PREV_MAX_AMP = 0  # Hungarian: maxAmp of the previous (fully processed) frame


@njit(cache=True)
def detect_peaks(
    x: np.ndarray,
    scale: float,
    threshold: float,
    sample_rate: float,
    fft_size: int,
    mag_out: np.ndarray,
    clamped: np.ndarray,
    out_freq: np.ndarray,
    out_mag: np.ndarray,
) -> tuple[int, float]:
    """Peaks of one spectrum (SineExtraction.hpp:86-103, PeakDetection.hpp).

    FluCoMa takes ``dB = 20 log10(max(|X| * scale, DBL_EPSILON))`` of every bin and looks for
    strict 3-point maxima of dB. ``|X|`` is ``sqrt(re^2 + im^2)`` here, ``hypot`` there: the two
    differ by at most an ulp, less than the two FFTs differ by. Since log10 is increasing, a
    maximum of dB is a maximum of the clamped magnitude, so dB is only computed around those (and
    the strict test redone on dB).

    Args:
        x: complex128 (bins,) spectrum.
        scale: ``1 / (window / 4)``.
        threshold: detection threshold, dB.
        sample_rate: Hz.
        fft_size: ``2 * (bins - 1)``.
        mag_out: float64 (bins,), receives ``|X|`` (unscaled; the mask needs it L frames later).
        clamped: float64 (bins,) scratch.
        out_freq, out_mag: float64 (>= bins // 2,) receive the peaks' Hz and dB, ascending in Hz.

    Returns:
        ``(count, maxAmp)``; maxAmp in dB, ``-inf`` when the frame is silent.
    """
    bins = x.shape[0]
    mx = -1.0
    for i in range(bins):
        re = x[i].real
        im = x[i].imag
        a = math.sqrt(re * re + im * im)  # FluCoMa: hypot; within an ulp, 6x faster (see notes)
        mag_out[i] = a
        a = a * scale
        if a > mx:
            mx = a
        clamped[i] = a if a > DBL_EPSILON else DBL_EPSILON
    n = 0
    for i in range(1, bins - 1):
        cm = clamped[i]
        if cm > clamped[i - 1] and cm > clamped[i + 1]:
            cur = 20.0 * math.log10(cm)
            prev = 20.0 * math.log10(clamped[i - 1])
            nxt = 20.0 * math.log10(clamped[i + 1])
            if cur > prev and cur > nxt:
                p = 0.5 * (prev - nxt) / (prev - 2.0 * cur + nxt)
                val = cur - 0.25 * (prev - nxt) * p
                if val > threshold:
                    out_freq[n] = sample_rate * (i + p) / fft_size
                    out_mag[n] = val
                    n += 1
    max_amp = 20.0 * math.log10(mx) if mx > 0.0 else -np.inf
    return n, max_amp


@njit(cache=True)
def _birth_threshold(freq: float, max_amp: float, low: float, rng: float) -> float:
    """PartialTracking.hpp:268-272: low - range*(1 - 0.0075^(f/20 kHz)) dB relative to maxAmp."""
    return max_amp + low - rng + rng * math.pow(0.0075, freq / 20000.0)


@njit(cache=True)
def _above_birth(mag: float, freq: float, max_amp: float, low: float, rng: float) -> bool:
    """``mag > _birth_threshold(...)``, skipping the ``pow`` when the answer cannot depend on it:
    the threshold lies between ``max_amp + low - range`` and ``max_amp + low`` (0.0075^x is in
    (0, 1] for f >= 0); 1e-9 dB of margin covers the roundings."""
    a = max_amp + low - rng
    b = max_amp + low
    if a > b:
        a, b = b, a
    if mag > b + 1e-9:
        return True
    if mag <= a - 1e-9:
        return False
    return mag > _birth_threshold(freq, max_amp, low, rng)


@njit(cache=True)
def _find_track(tr_id: np.ndarray, nlive: int, tid: int) -> int:
    """Index of track ``tid`` in the live table (ids ascend), -1 if absent."""
    lo = 0
    hi = nlive
    while lo < hi:
        mid = (lo + hi) // 2
        if tr_id[mid] < tid:
            lo = mid + 1
        else:
            hi = mid
    if lo < nlive and tr_id[lo] == tid:
        return lo
    return -1


@njit(cache=True)
def _add_track(ist, tr_id, tr_start, tr_end, tr_active, tr_assigned, tr_lf, tr_lm, tid, start, freq, mag) -> None:
    t = ist[I_LIVE]
    tr_id[t] = tid
    tr_start[t] = start
    tr_end[t] = -1
    tr_active[t] = 1
    tr_assigned[t] = 1
    tr_lf[t] = freq
    tr_lm[t] = mag
    ist[I_LIVE] = t + 1


@njit(cache=True)
def track_greedy(
    k,
    pf,
    pm,
    pt,
    n,
    max_amp,
    ist,
    tr_id,
    tr_start,
    tr_end,
    tr_active,
    tr_assigned,
    tr_lf,
    tr_lm,
    var_a,
    var_f,
    delta,
    freq_window,
    birth_low,
    birth_range,
) -> None:
    """PartialTracking::assignGreedy (PartialTracking.hpp:274-333) for frame ``k``.

    Every (active track, peak) pair gets ``dist = 1 - exp(-dF^2/varF - dA^2/varA)`` against the
    track's last peak; pairs are visited in ascending ``dist`` and taken when both are free and
    ``dist < 1 - (1 - delta) dist``. Free peaks above the birth threshold start tracks (ids from
    1, ``mLastTrackId++``); active tracks left unmatched end at ``k``.

    Only pairs within ``freq_window`` Hz can pass the test, so only those are scored; they are
    visited in ascending ``dist``. If two of them have exactly equal ``dist`` the order
    ``std::sort`` gives them is not ascending-by-anything, so the whole candidate list is then
    rebuilt in FluCoMa's order and sorted with the replayed libstdc++ ``std::sort``.

    ``pf``/``pm`` (n,) are the frame's peaks (Hz, dB, ascending Hz); ``pt`` (n,) receives each
    peak's track id (0 = none).
    """
    nlive = ist[I_LIVE]
    for t in range(nlive):
        tr_assigned[t] = 0
    peak_used = np.zeros(n, dtype=np.uint8)
    # active tracks in table order and the peak window each can reach
    act = np.empty(nlive, dtype=np.int64)
    lo = np.empty(nlive, dtype=np.int64)
    hi = np.empty(nlive, dtype=np.int64)
    na = 0
    total = 0
    for t in range(nlive):
        if tr_active[t]:
            act[na] = t
            f = tr_lf[t]
            a = np.searchsorted(pf[:n], f - freq_window, side="left")
            b = np.searchsorted(pf[:n], f + freq_window, side="right")
            lo[na] = a
            hi[na] = b
            total += b - a
            na += 1
    if na > 0 and n > 0:
        keys = np.empty(total, dtype=np.float64)
        vals = np.empty(total, dtype=np.int64)
        nc = 0
        one_minus_delta = 1.0 - delta
        for r in range(na):
            t = act[r]
            f0 = tr_lf[t]
            m0 = tr_lm[t]
            for p in range(lo[r], hi[r]):
                df = f0 - pf[p]
                dm = m0 - pm[p]
                dist = 1.0 - math.exp(-(df * df) / var_f - (dm * dm) / var_a)
                if dist < 1.0 - one_minus_delta * dist:
                    keys[nc] = dist
                    vals[nc] = r * n + p
                    nc += 1
        order = np.argsort(keys[:nc], kind="mergesort")
        tie = False
        for q in range(1, nc):
            if keys[order[q]] == keys[order[q - 1]]:
                tie = True
                break
        if tie:
            # replay std::sort over the full candidate list, built in FluCoMa's order
            keys = np.empty(na * n, dtype=np.float64)
            vals = np.empty(na * n, dtype=np.int64)
            for r in range(na):
                t = act[r]
                for p in range(n):
                    df = tr_lf[t] - pf[p]
                    dm = tr_lm[t] - pm[p]
                    keys[r * n + p] = 1.0 - math.exp(-(df * df) / var_f - (dm * dm) / var_a)
                    vals[r * n + p] = r * n + p
            nc = na * n
            stl_sort(keys, vals, nc)
            order = np.arange(nc)
        for q in range(nc):
            dist = keys[order[q]]
            g = vals[order[q]]
            t = act[g // n]
            p = g % n
            if tr_assigned[t] == 0 and peak_used[p] == 0 and dist < 1.0 - one_minus_delta * dist:
                tr_lf[t] = pf[p]
                tr_lm[t] = pm[p]
                tr_assigned[t] = 1
                peak_used[p] = 1
                pt[p] = tr_id[t]
    # births
    for p in range(n):
        if peak_used[p] == 0 and _above_birth(pm[p], pf[p], max_amp, birth_low, birth_range):
            tid = ist[I_LAST_ID]
            ist[I_LAST_ID] = tid + 1
            _add_track(ist, tr_id, tr_start, tr_end, tr_active, tr_assigned, tr_lf, tr_lm, tid, k, pf[p], pm[p])
            pt[p] = tid
    # deaths
    for t in range(ist[I_LIVE]):
        if tr_active[t] and not tr_assigned[t]:
            tr_active[t] = 0
            tr_end[t] = k


@njit(cache=True)
def _munkres_pair(fa, ma, fb, mb, var_a, var_f, one_minus_delta):
    """(cost, useful) of one (previous peak, peak) pair, PartialTracking.hpp:180-211."""
    df = fa - fb
    dm = ma - mb
    u = 1.0 - math.exp(-(df * df) / var_f - (dm * dm) / var_a)
    s = 1.0 - one_minus_delta * u
    if u < s:
        return abs(u), True
    return s, False


@njit(cache=True)
def track_hungarian(
    k,
    pf,
    pm,
    pt,
    n,
    qf,
    qm,
    qt,
    nq,
    max_amp,
    ist,
    fst,
    tr_id,
    tr_start,
    tr_end,
    tr_active,
    tr_assigned,
    tr_lf,
    tr_lm,
    var_a,
    var_f,
    delta,
    band_hz,
    birth_low,
    birth_range,
    stale_max_amp,
) -> None:
    """PartialTracking::assignMunkres (PartialTracking.hpp:145-266) for frame ``k``.

    ``pf, pm, pt`` (n,): this frame's peaks and their track ids (filled here); ``qf, qm, qt``
    (nq,): the previous frame's, whose ids may be filled here too (a new track starts at the
    previous frame with two peaks). Quirks kept: when the previous frame had no peaks (or ``k`` is
    0) nothing is tracked and ``prevMaxAmp`` is not updated, so the next frame's births are judged
    against a stale maxAmp (0 dB before the first update) unless ``stale_max_amp`` is False; ids
    start at 2 (``++mLastTrackId``).

    The cost of a pair more than ``band_hz`` apart is computed without ``exp``: there
    ``dF^2 / varF >= 38``, so ``exp(.) < 2^-54`` and ``1 - exp(.)`` rounds to exactly 1, giving the
    cost ``1 - (1 - delta)`` and "not useful", as FluCoMa's arithmetic does.
    """
    nlive = ist[I_LIVE]
    for t in range(nlive):
        tr_assigned[t] = 0
    if nq == 0:
        if not stale_max_amp:
            fst[F_PREV_MAX_AMP] = max_amp
        return
    if n > 0:
        one_minus_delta = 1.0 - delta
        far = 1.0 - one_minus_delta * 1.0
        cost_t = np.empty((n, nq))  # column-major cost: cost_t[j, i] = cost(prev i, peak j)
        cost_t[:, :] = far
        for i in range(nq):
            a = np.searchsorted(pf[:n], qf[i] - band_hz, side="left")
            b = np.searchsorted(pf[:n], qf[i] + band_hz, side="right")
            for j in range(a, b):
                cost_t[j, i] = _munkres_pair(qf[i], qm[i], pf[j], pm[j], var_a, var_f, one_minus_delta)[0]
        assignment = munkres_fast(cost_t.T)
        prev_max_amp = fst[F_PREV_MAX_AMP]
        for i in range(nq):
            p = assignment[i]
            if p >= n:
                continue
            useful = _munkres_pair(qf[i], qm[i], pf[p], pm[p], var_a, var_f, one_minus_delta)[1]
            if not useful:
                continue
            prev_tid = qt[i]
            if prev_tid > 0:
                t = _find_track(tr_id, ist[I_LIVE], prev_tid)
                if t >= 0:
                    pt[p] = prev_tid
                    tr_assigned[t] = 1
                    tr_lf[t] = pf[p]
                    tr_lm[t] = pm[p]
            elif _above_birth(qm[i], qf[i], prev_max_amp, birth_low, birth_range):
                tid = ist[I_LAST_ID] + 1
                ist[I_LAST_ID] = tid
                _add_track(ist, tr_id, tr_start, tr_end, tr_active, tr_assigned, tr_lf, tr_lm, tid, k - 1, pf[p], pm[p])
                qt[i] = tid
                pt[p] = tid
    for t in range(ist[I_LIVE]):
        if tr_active[t] and not tr_assigned[t]:
            tr_active[t] = 0
            tr_end[t] = k
    fst[F_PREV_MAX_AMP] = max_amp


@njit(cache=True)
def add_peak_shape(
    acc: np.ndarray,
    tab: np.ndarray,
    freq: float,
    logmag: float,
    sample_rate: float,
    half_bw: int,
    incr: float,
    inv_incr: float,
) -> None:
    """SineExtraction::synthesizePeak (lines 176-205) added into ``acc`` (float64 (bins,)).

    ``tab`` (T,) is the mirrored |transform| of the analysis window (``tab[T/2 +- i]``,
    ``tab[0] = 0``); ``incr`` = ``T // (bins - 1) // 2``. Upward from ``floor(fb) + 1`` while
    ``pos < T - 2`` and below ``min(floor(fb) + 1 + half_bw, bins - 1)``; downward from
    ``floor(fb)`` while ``pos > 1`` and above ``max(floor(fb) - half_bw, 0)``. Amplitude
    ``0.5 * 10^(dB/20)``, linear interpolation in the table.
    """
    bins = acc.shape[0]
    tsize = tab.shape[0]
    fb = freq * 2.0 * (bins - 1) / sample_rate
    if fb >= bins - 1:
        fb = float(bins - 1)
    if fb < 0:
        fb = 0.0
    fl = math.floor(fb)
    ce = fl + 1
    amp = 0.5 * math.pow(10.0, logmag / 20.0)
    half = tsize // 2
    pos = half + (ce - fb) * incr
    lim = min(ce + half_bw, bins - 1)
    i = ce
    while pos < tsize - 2 and i < lim:
        f = math.floor(pos)
        acc[i] += amp * (tab[f] + (pos - f) * inv_incr * (tab[f + 1] - tab[f]))
        i += 1
        pos += incr
    pos = half - (fb - fl) * incr
    lim = max(fl - half_bw, 0)
    i = fl
    while pos > 1 and i > lim:
        f = math.floor(pos)
        acc[i] += amp * (tab[f] + (pos - f) * inv_incr * (tab[f + 1] - tab[f]))
        i -= 1
        pos -= incr


@njit(cache=True)
def process_frames(
    spectra,
    out_sines,
    out_resid,
    want_resid,
    sample_rate,
    fft_size,
    scale,
    det_thr,
    min_len,
    birth_low,
    birth_high,
    method,
    var_a,
    var_f,
    delta,
    freq_window,
    band_hz,
    half_bw,
    tab,
    incr,
    inv_incr,
    record_peaks,
    mask_offset,
    stale_max_amp,
    ist,
    fst,
    tr_id,
    tr_start,
    tr_end,
    tr_active,
    tr_assigned,
    tr_lf,
    tr_lm,
    ring_n,
    ring_f,
    ring_m,
    ring_t,
    spec_ring,
    mag_ring,
    act_out,
    peaks_out,
    counts,
) -> int:
    """Run SineExtraction::processFrame on ``spectra`` (complex128 (m, bins)), in order.

    Parameters are FluCoMa's (``min_len`` = minTrackLen, ``delta`` = trackProb, variances from
    trackMagRange / trackFreqRange) plus the derived ``freq_window`` / ``band_hz`` (Hz) shortcuts and
    the window-transform table ``tab`` (see :class:`bufnmf.dsp.sines.SinesProcessor`); ``ist``,
    ``fst``, ``tr_*`` (live track table), ``ring_*`` (peaks of the last ``min_len + 1`` frames),
    ``spec_ring`` / ``mag_ring`` (their spectra and magnitudes) are the state, updated in place.

    Writes ``out_sines[j]`` (and ``out_resid[j]`` if ``want_resid``) for each frame, appends the
    active peaks of each frame to ``act_out`` rows ``[call, track id, Hz, dB]`` and, if
    ``record_peaks``, the detected peaks to ``peaks_out`` rows ``[frame, Hz, dB]``; ``counts``
    holds the numbers of rows written. Stops early, returning the number of frames done, when
    the live track table could overflow (the caller grows it and calls again); returns ``m``
    when all frames are done.
    """
    m, bins = spectra.shape
    ring = ring_n.shape[0]  # min_len + 1 frames
    max_peaks = ring_f.shape[1]
    cap = tr_id.shape[0]
    birth_range = birth_low - birth_high
    clamped = np.empty(bins)
    acc = np.empty(bins)
    sel_t = np.empty(max_peaks, dtype=np.int64)
    sel_f = np.empty(max_peaks)
    sel_m = np.empty(max_peaks)
    for j in range(m):
        if ist[I_LIVE] + 2 * max_peaks > cap:
            return j
        k = ist[I_FRAME]
        slot = k % ring
        x = spectra[j]
        spec_ring[slot, :] = x
        pf = ring_f[slot]
        pm = ring_m[slot]
        pt = ring_t[slot]
        n, max_amp = detect_peaks(x, scale, det_thr, sample_rate, fft_size, mag_ring[slot], clamped, pf, pm)
        ring_n[slot] = n
        pt[:n] = 0
        if record_peaks:
            c = counts[1]
            for p in range(n):
                peaks_out[c, 0] = k
                peaks_out[c, 1] = pf[p]
                peaks_out[c, 2] = pm[p]
                c += 1
            counts[1] = c
        if method == 0:
            track_greedy(
                k,
                pf,
                pm,
                pt,
                n,
                max_amp,
                ist,
                tr_id,
                tr_start,
                tr_end,
                tr_active,
                tr_assigned,
                tr_lf,
                tr_lm,
                var_a,
                var_f,
                delta,
                freq_window,
                birth_low,
                birth_range,
            )
        else:
            pslot = (k - 1) % ring
            nq = ring_n[pslot] if k > 0 else 0
            track_hungarian(
                k,
                pf,
                pm,
                pt,
                n,
                ring_f[pslot],
                ring_m[pslot],
                ring_t[pslot],
                nq,
                max_amp,
                ist,
                fst,
                tr_id,
                tr_start,
                tr_end,
                tr_active,
                tr_assigned,
                tr_lf,
                tr_lm,
                var_a,
                var_f,
                delta,
                band_hz,
                birth_low,
                birth_range,
                stale_max_amp,
            )
        # active peaks: frame k + 1 - L (FluCoMa) or k - L, tracks long enough, in id order
        acc[:] = 0.0
        lf = k + 1 - min_len if mask_offset else k - min_len
        nsel = 0
        if lf >= 0:
            ls = lf % ring
            nlive = ist[I_LIVE]
            for p in range(ring_n[ls]):
                tid = ring_t[ls, p]
                if tid <= 0:
                    continue
                t = _find_track(tr_id, nlive, tid)
                end = tr_end[t]
                if end >= 0 and (end <= lf or end - tr_start[t] < min_len):
                    continue
                # insertion by id
                q = nsel
                while q > 0 and sel_t[q - 1] > tid:
                    sel_t[q] = sel_t[q - 1]
                    sel_f[q] = sel_f[q - 1]
                    sel_m[q] = sel_m[q - 1]
                    q -= 1
                sel_t[q] = tid
                sel_f[q] = ring_f[ls, p]
                sel_m[q] = ring_m[ls, p]
                nsel += 1
            c = counts[0]
            for q in range(nsel):
                add_peak_shape(acc, tab, sel_f[q], sel_m[q], sample_rate, half_bw, incr, inv_incr)
                act_out[c, 0] = k
                act_out[c, 1] = sel_t[q]
                act_out[c, 2] = sel_f[q]
                act_out[c, 3] = sel_m[q]
                c += 1
            counts[0] = c
        # ratio mask on the spectrum queued L frames ago
        os_ = out_sines[j]
        if k >= min_len:
            fslot = (k - min_len) % ring
            front = spec_ring[fslot]
            fmag = mag_ring[fslot]
            for i in range(bins):
                v = front[i]
                mg = fmag[i]
                if acc[i] >= mg:
                    os_[i] = v
                    if want_resid:
                        out_resid[j, i] = 0.0
                else:
                    w = acc[i] / mg
                    os_[i] = complex(v.real * w, v.imag * w)
                    if want_resid:
                        w1 = 1.0 - w
                        out_resid[j, i] = complex(v.real * w1, v.imag * w1)
        else:
            os_[:] = 0.0
            if want_resid:
                out_resid[j, :] = 0.0
        # prune tracks that ended at least L frames ago (order kept)
        cur = k + 1
        nlive = ist[I_LIVE]
        w_ = 0
        for t in range(nlive):
            end = tr_end[t]
            if end >= 0 and end <= cur - min_len:
                continue
            if w_ != t:
                tr_id[w_] = tr_id[t]
                tr_start[w_] = tr_start[t]
                tr_end[w_] = end
                tr_active[w_] = tr_active[t]
                tr_assigned[w_] = tr_assigned[t]
                tr_lf[w_] = tr_lf[t]
                tr_lm[w_] = tr_lm[t]
            w_ += 1
        ist[I_LIVE] = w_
        ist[I_FRAME] = cur
    return m
