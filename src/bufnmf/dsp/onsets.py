r"""Onsets of the components of a decomposition: owned flux and scale-free picking rules (pure numerics).

Input, per component ("sound") ``g`` and frame ``t``: its model spectrogram ``M_g(:, t)`` (what the
decomposition says the sound contributes to the frame, in the mix's magnitude units: ``w_g h_g(t)``
for NMF, the template convolved with the activation for NMFD). Picking on the components'
*models* rather than on masked mixes matters: a masked stem gains energy whenever any other
instrument starts (its share of a louder mix), a model only when its own activation rises.

Onset detection function ("owned flux"), with ``lag`` frames:

    d_g(f, t) = max(0, M_g(f, t) - M_g(f, t - lag))         new energy of g in bin f
    o_g(t)    = sum_f d_g(f, t)^2 / sum_j d_j(f, t)          ... weighted by g's share of it

The share weighting leaves a component's new energy whole where it is its own (even when
something louder starts elsewhere in the spectrum at the same moment: simultaneous hits) and
shrinks it where the component only takes a slice of another's new energy (cross-talk of
templates that do not fit the material). ``level_g(t) = sum_f M_g(f, t)``.

Rules (:class:`OnsetPicker`), all ratios of the material's own quantities, so they do not depend
on its scale:

- peak: ``o_g(t)`` is the largest of ``o_g`` within ±``peak_window`` seconds;
- floor: ``o_g(t) >= 10^(floor_db / 20) * reference``, the reference being the largest ``o``
  of the file (offline) or of the stream so far (causal): a dynamic range below which nothing counts;
- masking: ``o_g(t) >= 10^(mask_db / 20) * max_j o_j`` over ±1 frame: an onset ``-mask_db`` dB
  weaker than the strongest one starting at the same moment is its cross-talk;
- mix rise (optional): the mix weighted by the sound's spectrum grew by ``mix_rise`` (0.5: +3.5 dB)
  over ``lag`` frames: a note is a rise of the sound itself where the note lives, not energy
  moving between components;
- re-trigger: ``o_g(t) >= retrigger * level_g(t - lag)``: new energy at least this fraction of
  the sound's own level just before, so a ringing (beating) sound is one event and a re-struck
  one two;
- ``min_gap``: at most one onset per sound within this many seconds.

Each onset's strength is the sound's level at its peak within ``strength_window`` seconds after
the onset; its velocity ``127 sqrt(strength / loudest)`` (General MIDI's 40 log10(v / 127) dB
curve), the loudest taken per sound ("component": drums, whose instruments differ in level) or
over all ("global": the notes of one instrument), of the file or of the stream so far. Its end
(note-off): the first frame where the level is ``release_db`` below the strength, or the sound's
next onset, whichever comes first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d

from .fft import EPS


@dataclass
class Onset:
    """One picked onset of one sound. Frames index the analysis frames; ``end`` is -1 until known.

    Attributes:
        sound: the sound's index. frame: the onset's frame. end: its note-off frame.
        strength: the sound's level at its peak after the onset (mix magnitude units).
        velocity: 1..127 (0 until known, offline: when the stream ends). novelty: ``o_g(frame)``.
    """

    sound: int
    frame: int
    end: int
    strength: float
    velocity: int
    novelty: float


def rise(A: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``max(0, A - before)``: the new energy of ``A`` over ``before`` (same shapes)."""
    return np.maximum(A - before, 0.0)


def owned_flux(models: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Owned flux (G, m) of sound models (G, bins, m) against the same models ``lag`` frames before."""
    d = rise(models, before)
    total = np.maximum(d.sum(axis=0), EPS)
    return np.einsum("gft,gft->gt", d, d / total[None])


def mix_growth(V: np.ndarray, V_before: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """Per sound, the mix's rise weighted by its spectrum over its level before: (G, m).

    ``V``, ``V_before`` (bins, m): the mix's magnitudes now and ``lag`` frames before; ``spectra``
    (bins, G) non-negative.
    """
    return (spectra.T @ rise(V, V_before)) / np.maximum(spectra.T @ V_before, EPS)


def frames_for(seconds: float, hop_seconds: float) -> int:
    """A duration in whole frames, at least 1."""
    return max(1, round(seconds / hop_seconds))


class OnsetPicker:
    """The picking rules of the module docstring, frame by frame: the same decisions whether the
    frames come all at once (offline) or block by block (streaming).

    A frame is decided once ``delay`` more frames have arrived (``max(peak window, strength
    window, 1)`` frames); an onset's end is known later (its level falls, or the sound starts
    again), or when the stream ends (:meth:`finish`: the frames after the last are silence).

    Args:
        sounds: G. hop_seconds: seconds per frame. lag: frames over which rises are measured.
        floor_db, mask_db, retrigger, mix_rise, min_gap, peak_window, strength_window,
            release_db: the rules (see the module docstring); ``mix_rise`` 0 turns the mix-rise
            rule off.
        reference: "file" (the floor's and the velocities' references are the whole file's:
            the floor's must be given to :meth:`push`, velocities are set by :meth:`finish`) or
            "stream" (the largest so far: causal, each onset complete when decided).
        velocity_scope: "component" or "global".
    """

    def __init__(self, sounds: int, hop_seconds: float, *, lag: int, floor_db: float = -30.0,
                 mask_db: float = -15.0, retrigger: float = 0.5, mix_rise: float = 0.5, min_gap: float = 0.05,
                 peak_window: float = 0.03, strength_window: float = 0.05, release_db: float = 30.0,
                 reference: str = "file", velocity_scope: str = "component") -> None:
        if reference not in ("file", "stream"):
            raise ValueError(f"reference must be 'file' or 'stream', got {reference!r}")
        if velocity_scope not in ("component", "global"):
            raise ValueError(f"velocity_scope must be 'component' or 'global', got {velocity_scope!r}")
        self.G = int(sounds)
        self.lag = int(lag)
        self.w = frames_for(peak_window, hop_seconds)
        self.gap = frames_for(min_gap, hop_seconds)
        self.sw = frames_for(strength_window, hop_seconds)
        self.delay = max(self.w, self.sw, 1)
        self.floor = 10 ** (floor_db / 20)
        self.masking = 10 ** (mask_db / 20)
        self.retrigger = float(retrigger)
        self.mix_rise = float(mix_rise)
        self.release = 10 ** (-release_db / 20)
        self.reference = reference
        self.scope = velocity_scope
        keep = max(self.w, self.lag, 1) + self.delay + 2
        self._keep = keep
        self._own = np.zeros((self.G, 0))
        self._level = np.zeros((self.G, 0))
        self._grow = np.zeros((self.G, 0))
        self._base = 0  # frame index of column 0 of the buffers
        self.received = 0  # frames pushed
        self.decided = 0  # frames decided
        self._last = [-(10**9)] * self.G  # last onset frame per sound
        self._open: list[Onset | None] = [None] * self.G  # the latest onset of each sound, end unknown
        self._scan = [0] * self.G  # next frame to test for the open onset's end
        self._running = 0.0  # largest owned flux so far (reference "stream")
        self._loud = np.zeros(self.G)  # loudest strength so far, per sound
        self.onsets: list[Onset] = []  # every onset picked, in the order decided

    def push(self, own: np.ndarray, level: np.ndarray, grow: np.ndarray | None = None,
             floor_reference: float | None = None) -> tuple[list[Onset], list[Onset]]:
        """Add frames: ``own``, ``level`` (and the mix-rise ratios ``grow``), each (G, m).

        ``floor_reference``: the file's largest owned flux, with reference "file".

        Returns ``(new, ended)``: onsets decided by these frames (their ``end`` -1 until known), and
        onsets whose end became known (ends are final; with reference "file" velocities come at
        :meth:`finish`).
        """
        if self.reference == "file":
            if floor_reference is None:
                raise ValueError("reference 'file' needs floor_reference")
            self._running = float(floor_reference)
        m = own.shape[1]
        if grow is None:
            grow = np.full((self.G, m), np.inf)
        self._own = np.concatenate([self._own, own], axis=1)
        self._level = np.concatenate([self._level, level], axis=1)
        self._grow = np.concatenate([self._grow, grow], axis=1)
        self.received += m
        return self._decide(self.received - self.delay)

    def finish(self) -> tuple[list[Onset], list[Onset]]:
        """End of the stream: decide the last frames (silence after them) and end every onset.

        Returns ``(new, ended)`` as :meth:`push`. With reference "file" the velocities of all onsets
        are set here.
        """
        n = self.received
        pad = np.zeros((self.G, self.delay + 1))
        self._own = np.concatenate([self._own, pad], axis=1)
        self._level = np.concatenate([self._level, pad], axis=1)
        self._grow = np.concatenate([self._grow, pad], axis=1)
        new, ended = self._decide(n, limit=n)
        for g in range(self.G):
            o = self._open[g]
            if o is not None:  # its level never fell far enough: it lasts to the end
                o.end = n
                self._open[g] = None
                ended.append(o)
        if self.reference == "file":
            self._file_velocities()
        return new, ended

    # -------------------------------------------------------------- the rules

    def _col(self, t: int) -> int:
        return t - self._base

    def _find_end(self, o: Onset, upto: int) -> int:
        """The first frame in [scan, upto) where o's level is below release * strength, or -1."""
        g = o.sound
        a = max(self._scan[g], self._base)
        if upto <= a:
            return -1
        seg = self._level[g, self._col(a) : self._col(upto)]
        below = np.flatnonzero(seg < self.release * o.strength)
        self._scan[g] = upto
        return a + int(below[0]) if below.size else -1

    def _decide(self, until: int, limit: int | None = None) -> tuple[list[Onset], list[Onset]]:
        """Decide frames [decided, until); frames at or beyond ``limit`` are silence (not decided)."""
        new: list[Onset] = []
        ended: list[Onset] = []
        end_frame = until if limit is None else min(until, limit)
        if end_frame > self.decided:
            a, b = self.decided, end_frame
            ca, cb = self._col(a), self._col(b)
            own, lev, grow = self._own, self._level, self._grow
            lo = max(0, ca - self.w)
            hi = min(own.shape[1], cb + self.w)
            seg = own[:, lo:hi]

            local = maximum_filter1d(seg, size=2 * self.w + 1, axis=1, mode="constant")[:, ca - lo : cb - lo]
            strongest = maximum_filter1d(seg.max(axis=0), size=3, mode="constant")[ca - lo : cb - lo]
            # frames before the buffers' start count as silence (zeros), as before the stream began
            o = own[:, ca:cb]
            if self.reference == "stream":
                tops = np.maximum.accumulate(np.maximum(o.max(axis=0), self._running))
                self._running = float(tops[-1])
            else:
                tops = np.full(b - a, self._running)
            cand = (o >= local) & (o >= self.floor * tops[None, :]) & (o >= self.masking * strongest[None, :]) & (o > 0)
            if self.mix_rise > 0:
                cand &= grow[:, ca:cb] >= self.mix_rise
            gs, ts = np.nonzero(cand)
            order = np.lexsort((gs, ts))
            for i in order:
                g, t = int(gs[i]), a + int(ts[i])
                # ends found before this frame close the open onset first
                self._close_before(g, t, ended)
                if t - self._last[g] < self.gap:
                    continue
                if self.retrigger > 0 and t >= self.lag and t - self.lag >= self._base:
                    if o[g, t - a] < self.retrigger * lev[g, self._col(t - self.lag)]:
                        continue
                prev = self._open[g]
                if prev is not None:
                    prev.end = t
                    self._open[g] = None
                    ended.append(prev)
                window = lev[g, self._col(t) : self._col(t) + self.sw + 1]
                pk = t + int(np.argmax(window))
                strength = float(lev[g, self._col(pk)])
                onset = Onset(g, t, -1, strength, 0, float(o[g, t - a]))
                if self.reference == "stream":
                    self._velocity(onset)
                self._last[g] = t
                self._open[g] = onset
                self._scan[g] = pk
                self.onsets.append(onset)
                new.append(onset)
            self.decided = b
        # ends that the decided frames reveal (a frame not yet decided may still hold the next onset)
        for g in range(self.G):
            self._close_before(g, self.decided, ended)
        self._trim()
        return new, ended

    def _close_before(self, g: int, t: int, ended: list[Onset]) -> None:
        o = self._open[g]
        if o is None:
            return
        f = self._find_end(o, t)
        if f >= 0:
            o.end = f
            self._open[g] = None
            ended.append(o)

    def _velocity(self, onset: Onset) -> None:
        g = onset.sound
        self._loud[g] = max(self._loud[g], onset.strength)
        loud = float(self._loud[g] if self.scope == "component" else self._loud.max())
        onset.velocity = _velocity(onset.strength, loud)

    def _file_velocities(self) -> None:
        if self.scope == "global":
            loud = max((o.strength for o in self.onsets), default=0.0)
            for o in self.onsets:
                o.velocity = _velocity(o.strength, loud)
            return
        for g in range(self.G):
            mine = [o for o in self.onsets if o.sound == g]
            loud = max((o.strength for o in mine), default=0.0)
            for o in mine:
                o.velocity = _velocity(o.strength, loud)

    def _trim(self) -> None:
        """Drop frames no rule will look at again (keeps memory in proportion to a few frames)."""
        need = self.decided - self._keep
        for g in range(self.G):
            if self._open[g] is not None:
                need = min(need, self._scan[g])
        cut = need - self._base
        if cut > 256:
            self._own = self._own[:, cut:]
            self._level = self._level[:, cut:]
            self._grow = self._grow[:, cut:]
            self._base += cut


def _velocity(strength: float, loudest: float) -> int:
    if loudest <= 0 or not math.isfinite(strength):
        return 1
    return int(np.clip(round(127 * math.sqrt(max(strength, 0.0) / loudest)), 1, 127))
