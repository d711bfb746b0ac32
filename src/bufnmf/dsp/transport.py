"""1-D optimal transport between spectra by "spectral masses" (pure numerics): NMFMorph's interpolation.

Henderson and Solomon, "Audio transport: a generalized portamento via optimal transport" (DAFx
2019), as FluCoMa implements it (OptimalTransport.hpp), FluCoMa-exact.

**Segmentation** (:func:`segment_spectrum`). Peaks are the strict local maxima at bins
``1 .. n-2``, valleys the strict local minima. Each mass is a run of bins ``[start, end)``
around one peak, with ``mass = sum(mag[start:end]) / (sum(mag) + eps)``: the first from bin 0
to the first valley after the first peak; then one per further peak (but the last), from the
current valley to the next; a last one, from the current valley to bin ``n - 1`` (exclusive)
around the last peak, only if at least two valleys are left. So when a spectrum ends on a peak
region (the usual case, falling towards Nyquist) the last peak and the bins above the last valley
used are left out (FluCoMa's behaviour, kept: on NMF bases it loses well under 1 % of the mass).
Where peaks and valleys do not alternate (plateaus) FluCoMa reads past its valley list; the
segmentation stops there instead.

**Transport plan** (:func:`transport_plan`): the monotone (north-west corner) coupling of the two
mass lists, entries ``(i, j, amount)``; its cost ``sum amount * (i - j)**2`` counts in mass-index
steps, as FluCoMa's.

**Interpolation** (:meth:`OptimalTransport.interpolate`): for each entry both masses are moved
rigidly so that their peaks sit at ``rint((1 - t) c_i + t c_j)`` (round half to even, as
``std::lrint``), scaled by ``(1 - t) amount / mass_i`` and ``t amount / mass_j``; what falls
outside the spectrum is dropped; placements add up.

**Assignment** (:func:`assign`): each source spectrum is paired with a target spectrum so that
the total transport cost is least (the Hungarian method, scipy's ``linear_sum_assignment``).
Difference from FluCoMa (a fix): FluCoMa reuses one transport object for every pair and never
resets its cost, so it pairs by running sums of the costs in row-major order; here each pair's
cost is its own (:func:`assignment_costs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BufNMFError
from .fft import EPS


@dataclass(frozen=True)
class SpectralMass:
    """A run of bins ``[start_bin, end_bin)`` around the peak ``center_bin``; ``mass``: its share of the total."""

    start_bin: int
    center_bin: int
    end_bin: int
    mass: float


def _strict_peaks(a: np.ndarray) -> np.ndarray:
    if a.size < 3:
        return np.zeros(0, dtype=np.int64)
    c = a[1:-1]
    return (np.flatnonzero((c > a[:-2]) & (c > a[2:])) + 1).astype(np.int64)


def segment_spectrum(magnitude: np.ndarray) -> list[SpectralMass]:
    """Split a magnitude spectrum (n,) into spectral masses as FluCoMa does (see the module docstring).

    Returns an empty list when the spectrum has no peak or no valley (flat or monotone).
    """
    mag = np.asarray(magnitude, dtype=np.float64)
    n = mag.size
    total = float(mag.sum()) + EPS
    peaks = _strict_peaks(mag)
    valleys = _strict_peaks(-mag)
    masses: list[SpectralMass] = []
    if peaks.size == 0 or valleys.size == 0:
        return masses
    nv = 0 if valleys[0] > peaks[0] else 1
    if nv >= valleys.size:
        return masses
    end0 = int(valleys[nv])
    masses.append(SpectralMass(0, int(peaks[0]), end0, float(mag[:end0].sum()) / total))
    for i in range(1, peaks.size - 1):
        if nv + 1 >= valleys.size:
            break  # FluCoMa would read past its valleys here
        start, end = int(valleys[nv]), min(int(valleys[nv + 1]), n - 1)
        masses.append(SpectralMass(start, int(peaks[i]), end, float(mag[start:end].sum()) / total))
        nv += 1
    if nv < valleys.size - 1:
        start = int(valleys[nv])
        masses.append(SpectralMass(start, int(peaks[-1]), n - 1, float(mag[start : n - 1].sum()) / total))
    return masses


def transport_plan(m1: list[SpectralMass], m2: list[SpectralMass]) -> tuple[list[tuple[int, int, float]], float]:
    """The monotone transport between two (non-empty) mass lists, and its cost in mass-index steps.

    Returns:
        ``(plan, cost)``: entries ``(i, j, amount)`` and ``sum amount * (i - j)**2``. The plan ends when
        either list runs out (FluCoMa's: when the totals differ, part of the larger side is not moved).
    """
    plan: list[tuple[int, int, float]] = []
    cost = 0.0
    i = j = 0
    a, b = m1[0].mass, m2[0].mass
    while True:
        if a < b:
            plan.append((i, j, a))
            cost += a * float(i - j) ** 2
            b -= a
            i += 1
            if i >= len(m1):
                break
            a = m1[i].mass
        else:
            plan.append((i, j, b))
            cost += b * float(i - j) ** 2
            a -= b
            j += 1
            if j >= len(m2):
                break
            b = m2[j].mass
    return plan, cost


class OptimalTransport:
    """One source and one target spectrum, segmented and coupled (FluCoMa's ``OptimalTransport``).

    Args:
        source, target: non-negative magnitude spectra, float64 (n,) each.

    Attributes:
        masses_source, masses_target: the segmentations. plan, cost: see :func:`transport_plan`.

    Raises:
        BufNMFError: a spectrum without a peak or a valley (FluCoMa's morph falls silent).
    """

    def __init__(self, source: np.ndarray, target: np.ndarray) -> None:
        self.source = np.abs(np.asarray(source, dtype=np.float64))
        self.target = np.abs(np.asarray(target, dtype=np.float64))
        self.masses_source = segment_spectrum(self.source)
        self.masses_target = segment_spectrum(self.target)
        for name, masses in (("source", self.masses_source), ("target", self.masses_target)):
            if not masses:
                raise BufNMFError(f"the {name} spectrum has no peak between two valleys to move (it is flat, "
                                  "silent or monotone)")
        self.plan, self.cost = transport_plan(self.masses_source, self.masses_target)
        self._placements = self._index_placements()

    def _index_placements(self) -> tuple[np.ndarray, ...]:
        """Every bin every plan entry places, as flat arrays: the entry, the bin's offset from its mass's peak,
        its value per unit of the entry's scale, and which side (0 source, 1 target) it comes from."""
        entries, offsets, values, sides = [], [], [], []
        for e, (i, j, amount) in enumerate(self.plan):
            for side, spec, m in ((0, self.source, self.masses_source[i]), (1, self.target, self.masses_target[j])):
                # FluCoMa divides by the mass unconditionally (0 / 0 = NaN for an empty mass): skipped here
                if m.mass <= 0 or m.end_bin <= m.start_bin:
                    continue
                bins = np.arange(m.start_bin, m.end_bin)
                entries.append(np.full(bins.size, e))
                offsets.append(bins - m.center_bin)
                values.append(spec[bins] * (amount / m.mass))
                sides.append(np.full(bins.size, side))
        centres = np.array([(self.masses_source[i].center_bin, self.masses_target[j].center_bin)
                            for i, j, _ in self.plan], dtype=np.float64)
        return (centres, *(np.concatenate(a) if a else np.zeros(0, dtype=np.int64) for a in (entries, offsets)),
                *(np.concatenate(a) if a else np.zeros(0) for a in (values, sides)))

    def interpolate(self, interpolation: float) -> np.ndarray:
        """The spectrum ``interpolation`` of the way from the source (0) to the target (1), float64 (n,)."""
        t = float(interpolation)
        n = max(self.source.size, self.target.size)
        centres, entries, offsets, values, sides = self._placements
        peak = np.rint((1 - t) * centres[:, 0] + t * centres[:, 1]).astype(np.int64)  # std::lrint per entry
        dest = peak[entries] + offsets
        inside = (dest >= 0) & (dest < n)  # what falls outside the spectrum is dropped
        weight = np.where(sides == 0, 1 - t, t)
        return np.bincount(dest[inside], (values * weight)[inside], minlength=n)[:n]


def assignment_costs(source_bases: np.ndarray, target_bases: np.ndarray) -> np.ndarray:
    """The transport cost of every (source k, target j) pair of columns, float64 (K, J)."""
    S = np.asarray(source_bases, dtype=np.float64)
    T = np.asarray(target_bases, dtype=np.float64)
    return np.array([[OptimalTransport(S[:, i], T[:, j]).cost for j in range(T.shape[1])]
                     for i in range(S.shape[1])]).reshape(S.shape[1], T.shape[1])


def assign(source_bases: np.ndarray, target_bases: np.ndarray) -> np.ndarray:
    """For each source column (bins, K), the target column it morphs into: the pairing of least total cost.

    Returns:
        int64 (K,): the target index of each source component.
    """
    C = assignment_costs(source_bases, target_bases)
    from scipy.optimize import linear_sum_assignment  # here: importing scipy.optimize costs 0.12 s

    rows, cols = linear_sum_assignment(C)
    perm = np.empty(C.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm
