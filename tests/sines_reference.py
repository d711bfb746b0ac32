"""A literal, slow, pure-Python transcription of FluCoMa's SineExtraction + PartialTracking.

No shortcuts: dB of every bin, the full (track, peak) distance list sorted with the replayed
``std::sort``, the full Munkres cost matrix (:func:`munkres_reference`), a track list of objects,
``getActivePeaks`` / ``prune`` as written. The kernels must give bit-identical results; the tests
use it to check every shortcut the fast code takes. (|X| is ``sqrt(re^2 + im^2)`` in both;
``pow(x, 2)`` is ``x * x``, as g++ folds it.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bufnmf.dsp._munkres import munkres_reference
from bufnmf.dsp._stlsort import stl_sort
from bufnmf.dsp.sines import SinesConfig, window_transform_table

EPS = 2.220446049250313e-16


@dataclass
class Peak:
    freq: float
    mag: float
    assigned: bool = False


@dataclass
class Track:
    peaks: list[Peak]
    start: int
    end: int
    active: bool
    assigned: bool
    tid: int


@dataclass
class RefModel:
    s: SinesConfig
    tracks: list[Track] = field(default_factory=list)
    queue: list[np.ndarray] = field(default_factory=list)
    current: int = 0
    last_id: int = 1
    prev_peaks: list[Peak] = field(default_factory=list)
    prev_tracks: list[int] = field(default_factory=list)
    prev_max_amp: float = 0.0

    def __post_init__(self) -> None:
        s = self.s
        d = s.track_prob
        with np.errstate(divide="ignore"):
            lg = float(np.log(np.float64(d - 1.0) / np.float64(d - 2.0)))
        self.var_a = -(s.track_mag_range * s.track_mag_range) * lg
        self.var_f = -(s.track_freq_range * s.track_freq_range) * lg
        tsize = s.table_size
        self.tab = window_transform_table(s.window_size, tsize)
        self.incr = float(tsize // (s.bins - 1) // 2)
        self.inv_incr = 1.0 / self.incr if s.table_interp else 1.0
        self.birth_range = s.birth_low_threshold - s.birth_high_threshold

    # ---------------------------------------------------------------- peaks
    def peaks(self, x: np.ndarray) -> tuple[list[Peak], float]:
        s = self.s
        scale = 1.0 / (s.window_size / 4.0)
        mag = [math.sqrt(v.real * v.real + v.imag * v.imag) * scale for v in x]
        db = [20.0 * math.log10(max(a, EPS)) for a in mag]
        out = []
        for i in range(1, len(db) - 1):
            cur, prev, nxt = db[i], db[i - 1], db[i + 1]
            if cur > prev and cur > nxt and cur > -math.inf:
                p = 0.5 * (prev - nxt) / (prev - 2 * cur + nxt)
                val = cur - 0.25 * (prev - nxt) * p
                if val > s.detection_threshold:
                    out.append(Peak(s.sample_rate * (i + p) / (2 * (len(x) - 1)), val))
        mx = max(mag)
        return out, (20.0 * math.log10(mx) if mx > 0 else -math.inf)

    def birth_threshold(self, p: Peak, max_amp: float) -> float:
        r = self.birth_range
        return max_amp + self.s.birth_low_threshold - r + r * math.pow(0.0075, p.freq / 20000.0)

    # -------------------------------------------------------------- tracking
    def greedy(self, peaks: list[Peak], max_amp: float) -> None:
        for t in self.tracks:
            t.assigned = False
        pairs = []
        for t in self.tracks:
            if t.active:
                for j, p in enumerate(peaks):
                    last = t.peaks[-1]
                    df, dm = last.freq - p.freq, last.mag - p.mag
                    dist = 1 - math.exp(-(df * df) / self.var_f - (dm * dm) / self.var_a)
                    pairs.append((dist, t, j))
        keys = np.array([q[0] for q in pairs], dtype=np.float64)
        vals = np.arange(len(pairs), dtype=np.int64)
        stl_sort(keys, vals, len(pairs))
        d = self.s.track_prob
        for v in vals:
            dist, t, j = pairs[v]
            if not t.assigned and not peaks[j].assigned and dist < (1 - (1 - d) * dist):
                t.peaks.append(Peak(peaks[j].freq, peaks[j].mag))
                t.assigned = True
                peaks[j].assigned = True
        for p in peaks:
            if not p.assigned and p.mag > self.birth_threshold(p, max_amp):
                self.tracks.append(Track([Peak(p.freq, p.mag)], self.current, -1, True, True, self.last_id))
                self.last_id += 1
        for t in self.tracks:
            if t.active and not t.assigned:
                t.active = False
                t.end = self.current

    def munkres(self, peaks: list[Peak], max_amp: float) -> None:
        for t in self.tracks:
            t.assigned = False
        if not self.prev_peaks:
            self.prev_peaks = [Peak(p.freq, p.mag, p.assigned) for p in peaks]
            self.prev_tracks = [0] * len(peaks)
            if not self.s.stale_max_amp:
                self.prev_max_amp = max_amp
            return
        n, m = len(self.prev_peaks), len(peaks)
        assignment_ids = [-1] * m
        d = self.s.track_prob
        if m > 0:
            cost = np.empty((n, m))
            useful = np.zeros((n, m), dtype=bool)
            for i, q in enumerate(self.prev_peaks):
                for j, p in enumerate(peaks):
                    df, dm = q.freq - p.freq, q.mag - p.mag
                    u = 1 - math.exp(-(df * df) / self.var_f - (dm * dm) / self.var_a)
                    sp = 1 - (1 - d) * u
                    if u < sp:
                        cost[i, j], useful[i, j] = abs(u), True
                    else:
                        cost[i, j] = sp
            assign = munkres_reference(cost)
            for i in range(n):
                p = int(assign[i])
                q = self.prev_peaks[i]
                above = q.mag > self.birth_threshold(q, self.prev_max_amp)
                if p >= m:
                    continue
                if useful[i, p] and self.prev_tracks[i] > 0 and q.assigned:
                    for t in self.tracks:
                        if t.tid == self.prev_tracks[i]:
                            assignment_ids[p] = t.tid
                            peaks[p].assigned = True
                            t.assigned = True
                            t.peaks.append(Peak(peaks[p].freq, peaks[p].mag))
                elif above and useful[i, p] and not q.assigned:
                    self.last_id += 1
                    self.tracks.append(
                        Track(
                            [Peak(q.freq, q.mag), Peak(peaks[p].freq, peaks[p].mag)],
                            self.current - 1,
                            -1,
                            True,
                            True,
                            self.last_id,
                        )
                    )
                    peaks[p].assigned = True
                    assignment_ids[p] = self.last_id
        for t in self.tracks:
            if t.active and not t.assigned:
                t.active = False
                t.end = self.current
        self.prev_tracks = assignment_ids
        self.prev_peaks = [Peak(p.freq, p.mag, p.assigned) for p in peaks]
        self.prev_max_amp = max_amp

    def active_peaks(self) -> list[tuple[int, Peak]]:
        lf = self.current - self.s.min_track_len - (0 if self.s.mask_offset else 1)
        if lf < 0:
            return []
        out = []
        for t in self.tracks:
            if t.start > lf:
                continue
            if t.end >= 0 and t.end <= lf:
                continue
            if t.end >= 0 and t.end - t.start < self.s.min_track_len:
                continue
            out.append((t.tid, t.peaks[lf - t.start]))
        return out

    # ----------------------------------------------------------------- frame
    def synth(self, p: Peak) -> np.ndarray:
        s = self.s
        bins = s.bins
        sine = np.zeros(bins)
        half_bw = s.bandwidth // 2
        tab, incr = self.tab, self.incr
        tsize = tab.shape[0]
        fb = p.freq * 2 * (bins - 1) / s.sample_rate
        if fb >= bins - 1:
            fb = float(bins - 1)
        if fb < 0:
            fb = 0.0
        fl = math.floor(fb)
        ce = fl + 1
        amp = 0.5 * math.pow(10, p.mag / 20)

        def interp(pos: float) -> float:
            f = math.floor(pos)
            return tab[f] + (pos - f) * self.inv_incr * (tab[f + 1] - tab[f])

        pos = tsize // 2 + (ce - fb) * incr
        i = ce
        while pos < tsize - 2 and i < min(ce + half_bw, bins - 1):
            sine[i] = amp * interp(pos)
            i += 1
            pos += incr
        pos = tsize // 2 - (fb - fl) * incr
        i = fl
        while pos > 1 and i > max(fl - half_bw, 0):
            sine[i] = amp * interp(pos)
            i -= 1
            pos -= incr
        return sine

    def process_frame(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, float, float]], list[Peak]]:
        s = self.s
        self.queue.append(x.copy())
        peaks, max_amp = self.peaks(x)
        detected = [Peak(p.freq, p.mag) for p in peaks]
        if s.track_method == 0:
            self.greedy(peaks, max_amp)
        else:
            self.munkres(peaks, max_amp)
        self.current += 1
        act = self.active_peaks()
        fs = np.zeros(s.bins)
        for _, p in act:
            fs += self.synth(p)
        sines = np.zeros(s.bins, dtype=np.complex128)
        res = np.zeros(s.bins, dtype=np.complex128)
        if len(self.queue) > s.min_track_len:
            front = self.queue.pop(0)
            for i in range(s.bins):
                mg = math.sqrt(front[i].real * front[i].real + front[i].imag * front[i].imag)
                if fs[i] >= mg:
                    sines[i] = front[i]
                else:
                    w = fs[i] / mg
                    sines[i] = complex(front[i].real * w, front[i].imag * w)
                    res[i] = complex(front[i].real * (1 - w), front[i].imag * (1 - w))
        cur = self.current
        self.tracks = [t for t in self.tracks if not (t.end >= 0 and t.end <= cur - s.min_track_len)]
        return sines, res, [(tid, p.freq, p.mag) for tid, p in act], detected
