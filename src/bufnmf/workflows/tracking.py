"""From a kit to events: where each of its sounds starts, how loud, and when it stops.

``track`` fits a kit's templates to a sound (FluCoMa's "NMF piano tracker" workflow, and beyond)
and picks onset events. Methods (``method=``):

- ``"percussive"`` (a kit of drums: NMFD templates, see :mod:`bufnmf.workflows.kits`): the
  templates are fitted as NMFD (:mod:`bufnmf.models.nmfd`, KL, 100 iterations), semi-adaptive
  (Dittmar and Gärtner: they start at the kit's and are released toward the material, p = 1);
  events by the rules of :mod:`bufnmf.dsp.onsets` on the fitted sounds' models (owned flux, a
  floor 30 dB below the loudest onset, masking 15 dB below a simultaneous stronger one, the
  mix's own rise, re-trigger, 50 ms gap); velocity per instrument; note-off 30 dB down.
- ``"pitched"`` (a kit of notes, labels C4, Bb2, ...): one basis per note, fixed, fitted on the
  kit's long window (8192) in 48 log-frequency bands per octave (:mod:`bufnmf.dsp.bands`); the
  same rules for events, with rises over half the window; each onset is then re-timed on a short
  window (1024/128: the pitch from the long window, the time from the short one) and kept only if
  the mix, weighted by the note's spectrum, rose there by half; velocity over all notes.
- ``"flucoma"``: FluCoMa's tracker exactly as bufnmf did before (BufNMF with fixed bases, then
  peak picking on each activation relative to its own peak: :func:`pick_onsets`).
- ``"auto"`` (default): the method the kit was learnt for; kits that do not say (written by
  earlier versions, bare buffers, arrays of bases) track with "flucoma", as they did.

``causal=True`` runs the configuration of the streaming :class:`Tracker` (and is exactly what it
gives, offline): every decision from the past and a bounded look-ahead. It gives up, against the
offline default: semi-adaptive templates (fixed ones instead: they would need the whole file),
NMFD over the whole file (each frame's activations are fitted with one frame of look-ahead,
the decays of earlier hits fixed: :class:`bufnmf.models.nmfd.OnlineNMFD`), and the file-wide
references of the floor and of the velocities (the largest so far instead).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from scipy.sparse import csr_matrix

from ..checks import as_float, as_int, as_labels, real_array, resolve_seed
from ..clients.bufnmf import decompose
from ..clients.common import load_source, require_mono
from ..dsp.bands import log_bands
from ..dsp.fft import EPS, FFTSettings, resolve_fft_settings
from ..dsp.onsets import Onset, OnsetPicker, mix_growth, owned_flux
from ..dsp.random import flucoma_init
from ..dsp.stft import istft, stft_complex
from ..dsp.stream import Framer, _as_block
from ..errors import BufNMFError
from ..io.events import Event, note_number
from ..models.mu import multiplicative_update
from ..models.nmfd import OnlineNMFD, conv_model, nmfd_update
from .kits import Kit, check_method, load_kit, method_for

#: Tracking methods (see the module docstring).
TRACK_METHODS = ("auto", "percussive", "pitched", "flucoma")


@dataclass(frozen=True)
class Preset:
    """How a kit's templates are fitted and turned into events (see the module docstring).

    Attributes:
        name: "percussive" or "pitched".
        iterations: updates of the fit.
        adapt: semi-adaptive templates' exponent offline (None: fixed templates).
        log_bands: fit in this many log-frequency bands per octave (0: the STFT's bins).
        refine_window, refine_hop: the short window onsets are re-timed on (0: none).
        floor_db, mask_db, retrigger, mix_rise, min_gap, release_db, velocity_scope: the rules of
            :class:`bufnmf.dsp.onsets.OnsetPicker`.
        lookahead: causal NMFD: frames of future each frame's activations are fitted with.
        online_iterations: causal: updates per frame.
    """

    name: str
    iterations: int = 100
    adapt: float | None = None
    log_bands: int = 0
    refine_window: int = 0
    refine_hop: int = 128
    floor_db: float = -30.0
    mask_db: float = -15.0
    retrigger: float = 0.5
    mix_rise: float = 0.5
    min_gap: float = 0.05
    release_db: float = 30.0
    velocity_scope: str = "component"
    lookahead: int = 1
    online_iterations: int = 30


#: The defaults of ``learn`` and ``track`` (chosen on the public cases of benchmarks/tracking.py).
PRESETS = {
    "percussive": Preset("percussive", adapt=1.0),
    "pitched": Preset("pitched", log_bands=48, refine_window=1024, refine_hop=128, velocity_scope="global"),
}


def default_lag(settings: FFTSettings, sample_rate: float) -> int:
    """Frames over which rises are measured: half the analysis window, and at least 20 ms.

    A sound entering the window takes half a window to reach its centre; a short window (1024 at
    44.1 kHz: 23 ms) gets 20 ms, so a rise is not split over two lags.
    """
    seconds = max(0.02, settings.window_size / 2 / sample_rate)
    return max(1, round(seconds * sample_rate / settings.hop_size))


# ----------------------------------------------------------------------------------------------
# the FluCoMa method


def pick_onsets(
    activation: np.ndarray, hop_seconds: float, threshold: float = 0.3, min_gap: float = 0.05,
    smooth: float = 0.0, release: float = 0.1, delta: float = 0.02,
) -> list[tuple[float, float, float]]:
    """Onsets in one activation (the "flucoma" method): ``[(time_s, peak, end_s), ...]``.

    Adaptive peak picking on the rise of the activation (its half-wave rectified
    difference): a frame is an onset where the rise is the largest within +-30 ms, at
    least ``threshold`` times the activation's own peak, above the local mean rise by
    ``delta`` (relative), and at least ``min_gap`` seconds after the previous onset.

    Args:
        activation: (frames,) non-negative.
        hop_seconds: seconds per frame.
        threshold: minimum rise, relative to the activation's peak (0..1).
        min_gap: seconds between onsets of this activation.
        smooth: moving-average length in seconds applied first (0: none).
        release: the event ends when the activation falls below this fraction of its peak,
            or when the next onset of this activation comes first.
        delta: the rise must exceed the local mean rise (+-100 ms) by this fraction of the peak.

    Returns:
        Onset time (s), the activation's peak after the onset (its own scale), end time (s).
    """
    a = np.asarray(activation, dtype=np.float64)
    peak = float(a.max(initial=0.0))
    if a.size == 0 or peak <= 0:
        return []
    x = a / peak
    if smooth > 0:
        size = min(x.size, max(1, round(smooth / hop_seconds)))
        if size > 1:
            x = np.convolve(x, np.ones(size) / size, mode="same")
    rise = np.maximum(np.diff(x, prepend=0.0), 0.0)
    w_max = max(1, round(0.03 / hop_seconds))
    w_avg = max(1, round(0.1 / hop_seconds))
    gap = max(1, math.ceil(min_gap / hop_seconds - 1e-9))  # onsets at least min_gap apart, never less
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    local_max = maximum_filter1d(rise, size=2 * w_max + 1, mode="constant")
    local_avg = uniform_filter1d(rise, size=2 * w_avg + 1, mode="constant")
    cand = np.flatnonzero((rise >= local_max) & (rise >= threshold) & (rise >= local_avg + delta))
    events: list[tuple[float, float, float]] = []
    last = -gap
    n = x.size
    for t in map(int, cand):
        if t - last < gap:
            continue
        last = t
        top = t + int(np.argmax(x[t : min(n, t + w_max + 2)]))
        level = x[top]
        below = np.flatnonzero(x[top:] < release * level)
        end = top + (int(below[0]) if below.size else n - top)
        events.append((t * hop_seconds, float(level * peak), end * hop_seconds))
    # a note ends at the latest when the same component starts again (no overlapping MIDI notes)
    return [(t, lv, min(e, events[i + 1][0]) if i + 1 < len(events) else e) for i, (t, lv, e) in enumerate(events)]


class Events(list[Event]):
    """The events :func:`track` finds, in time order (a list), with the seed the run used (``.seed``)
    and the method that found them (``.method``)."""

    def __init__(self, events: Sequence[Event] = (), seed: int = -1, method: str = "flucoma") -> None:
        super().__init__(events)
        self.seed = seed
        self.method = method


def _track_flucoma(mono: np.ndarray, bases: np.ndarray, names: list[str], settings: FFTSettings, rate: float,
                   threshold: float, min_gap: float, smooth: float, release: float, iterations: int, seed: int,
                   extra_components: int, max_memory: int | None = None) -> Events:
    if smooth > mono.shape[0] / rate:
        raise BufNMFError(f"smooth {smooth:g} s is longer than the source ({mono.shape[0] / rate:.3g} s): use less, "
                          "or 0 for none",
                          cli=f"--smooth {smooth:g} s is longer than the source ({mono.shape[0] / rate:.3g} s): use "
                              "less, or 0 for none")
    K = bases.shape[1]
    res = decompose(mono, components=K, iterations=iterations, window_size=settings.window_size,
                    hop_size=settings.hop_size, fft_size=settings.fft_size, seed=seed, bases=bases,
                    bases_mode="fixed", resynth=False, extra_components=extra_components, max_memory=max_memory)
    hop_seconds = res.hop_size / rate
    sounds = list(dict.fromkeys(names))
    acts = np.stack([res.activations[:, [i for i, n in enumerate(names) if n == sound]].sum(axis=1, dtype=np.float64)
                     for sound in sounds], axis=1)
    top = float(acts.max(initial=0.0))
    if top > 1:
        acts /= top  # a sound's summed columns can pass 1: strengths stay 0..1
    events = []
    for k, name in enumerate(sounds):
        for t, level, end in pick_onsets(acts[:, k], hop_seconds, threshold, min_gap, smooth, release):
            events.append(Event(round(t, 6), name, round(level, 6), round(end, 6)))
    events.sort(key=lambda e: (e.time, e.label))
    return Events(events, res.seed, "flucoma")


# ----------------------------------------------------------------------------------------------
# the templates of a kit, in the space they are fitted in


@dataclass
class _Templates:
    """A kit's templates prepared for fitting.

    W: (bins, C, T) float64, unit L1 mass per template (linear bins). groups: (C,) the sound of each.
    sounds: the sounds' names. fit: the templates in the fit's space ((bands, C, T) with log bands).
    bands: the pooling (bands x bins) or None. spectra: per sound, its templates summed over frames,
    (bins of the fit, G). spectra_lin: the same in linear bins.
    """

    W: np.ndarray
    groups: np.ndarray
    sounds: list[str]
    fit: np.ndarray
    bands: csr_matrix | None
    spectra: np.ndarray
    spectra_lin: np.ndarray

    @property
    def G(self) -> int:  # noqa: N802 - the count of sounds, G throughout
        return len(self.sounds)


def _templates(W3: np.ndarray, column_sounds: Sequence[str], settings: FFTSettings, rate: float,
               preset: Preset) -> _Templates:
    W = np.maximum(np.asarray(W3, dtype=np.float64), 0.0)
    mass = W.sum(axis=(0, 2))
    W = W / np.where(mass > 0, mass, 1.0)[None, :, None]
    sounds = list(dict.fromkeys(column_sounds))
    groups = np.array([sounds.index(s) for s in column_sounds])
    onehot = np.zeros((W.shape[1], len(sounds)))
    onehot[np.arange(W.shape[1]), groups] = 1.0
    spectra_lin = W.sum(axis=2) @ onehot
    bands = None
    fit = W
    if preset.log_bands > 0:
        bands = log_bands(settings, rate, preset.log_bands)
        fit = np.asarray(bands @ W.reshape(W.shape[0], -1)).reshape((bands.shape[0], *W.shape[1:]))
    return _Templates(W, groups, sounds, fit, bands, fit.sum(axis=2) @ onehot, spectra_lin)


def _to_fit(V: np.ndarray, tpl: _Templates) -> np.ndarray:
    return np.asarray(tpl.bands @ V) if tpl.bands is not None else V


class _Features:
    """Owned flux, levels and mix growth of the sounds, from committed activations and the mix, frame by frame.

    Keeps the last ``T - 1 + lag`` frames of activations and ``lag`` of the mix, so that pushing
    the frames of a file at once or block by block gives the same values.
    """

    CHUNK = 128

    def __init__(self, W: np.ndarray, groups: np.ndarray, G: int, spectra: np.ndarray, lag: int) -> None:
        self.W = W  # (bins, C, T)
        self.groups = groups
        self.G = G
        self.single = len(set(groups.tolist())) == W.shape[1]  # one template per sound
        self.spectra = spectra
        self.lag = lag
        bins, C, T = W.shape
        self.T = T
        self._H = np.zeros((C, T - 1 + lag))
        self._V = np.zeros((bins, lag))

    def _models(self, H: np.ndarray, a: int, b: int) -> np.ndarray:
        """Sound models (G, bins, b - a) for activation columns a..b-1 of ``H`` (which hold T - 1 columns before a)."""
        T = self.T
        # shifts: S[τ, c, j] = H[c, a + j - τ]
        S = np.stack([H[:, a - tau : b - tau] for tau in range(T)])
        M = np.einsum("fct,tcn->cfn", self.W, S)
        if self.single:
            out = np.zeros((self.G, *M.shape[1:]))
            out[self.groups] = M
            return out
        out = np.zeros((self.G, *M.shape[1:]))
        for c, g in enumerate(self.groups):
            out[g] += M[c]
        return out

    def push(self, H: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames' activations H (C, m) and fit-space mix V (bins, m) -> own, level, grow, each (G, m)."""
        m = H.shape[1]
        T, lag = self.T, self.lag
        He = np.concatenate([self._H, H.astype(np.float64)], axis=1)  # column T - 1 + lag + t is frame t
        Ve = np.concatenate([self._V, V.astype(np.float64)], axis=1)  # column lag + t is frame t
        own = np.empty((self.G, m))
        level = np.empty((self.G, m))
        grow = np.empty((self.G, m))
        for a in range(0, m, self.CHUNK):
            b = min(m, a + self.CHUNK)
            M = self._models(He, T - 1 + a, T - 1 + lag + b)  # model frames a - lag .. b - 1
            own[:, a:b] = owned_flux(M[:, :, lag:], M[:, :, :-lag])
            level[:, a:b] = M[:, :, lag:].sum(axis=1)
            grow[:, a:b] = mix_growth(Ve[:, lag + a : lag + b], Ve[:, a:b], self.spectra)
        self._H = He[:, He.shape[1] - (T - 1 + lag) :]
        self._V = Ve[:, Ve.shape[1] - lag :]
        return own, level, grow


class _Retimer:
    """Re-times onsets found on a long window on a short one: the pitch from the long, the time from the short.

    For an onset at ``t`` of sound ``g``: the mix's rise over one short window, weighted by the sound's
    spectrum pooled to the short window's bins, is searched from half a long window before ``t`` to a
    quarter after; the onset moves to the steepest rise, and is dropped unless the weighted mix
    grew there by ``mix_rise`` (0: keep all). Short frames may arrive all at once or block by block.
    """

    def __init__(self, spectra_lin: np.ndarray, long: FFTSettings, short: FFTSettings, rate: float,
                 mix_rise: float) -> None:
        factor = max(1, long.fft_size // short.fft_size)
        pooled = np.add.reduceat(spectra_lin, np.arange(0, spectra_lin.shape[0], factor), axis=0)[: short.bins]
        self.P = pooled  # (short bins, G)
        self.lag = max(1, round(short.window_size / short.hop_size))
        self.hop_s = short.hop_size / rate
        self.half = long.window_size / 2 / rate
        self.mix_rise = mix_rise
        self._S = np.zeros((short.bins, 0))  # the last `lag` frames
        self.frames = 0  # short frames received
        self._rise = np.zeros((pooled.shape[1], 0))  # column j: the rise at frame j + lag
        self._prev = np.zeros((pooled.shape[1], 0))
        self._first = 0  # index j of column 0

    def push(self, S: np.ndarray) -> None:
        """Short frames' magnitudes (short bins, m)."""
        Se = np.concatenate([self._S, S], axis=1)
        if Se.shape[1] > self.lag:
            rise = np.maximum(Se[:, self.lag :] - Se[:, : -self.lag], 0.0)
            self._rise = np.concatenate([self._rise, np.einsum("fg,fn->gn", self.P, rise)], axis=1)
            self._prev = np.concatenate([self._prev, np.einsum("fg,fn->gn", self.P, Se[:, : -self.lag])], axis=1)
        self._S = Se[:, -self.lag :]
        self.frames += S.shape[1]

    def time_of(self, j: int) -> float:
        return (j + self.lag / 2.0) * self.hop_s

    def ready(self, t: float) -> bool:
        """Whether the frames to re-time an onset at ``t`` seconds have all arrived."""
        return self.time_of(self._first + self._rise.shape[1] - 1) >= t + self.half / 2

    def retime(self, t: float, g: int) -> float | None:
        """The onset's new time (seconds), or None to drop it."""
        n = self._rise.shape[1]
        j = self._first + np.arange(n)
        times = (j + self.lag / 2.0) * self.hop_s
        sel = np.flatnonzero((times >= t - self.half) & (times <= t + self.half / 2))
        if not sel.size:
            return t
        w = self._rise[g, sel]
        i = int(np.argmax(w))
        c = int(sel[i])
        if self.mix_rise > 0 and w[i] < self.mix_rise * self._prev[g, c]:
            return None
        return float(times[c])

    def trim(self, before: float) -> None:
        """Forget the columns no onset at or after ``before`` seconds will search."""
        keep_from = math.floor((before - self.half) / self.hop_s - self.lag / 2.0) - 1
        cut = keep_from - self._first
        if cut > 512:
            self._rise = self._rise[:, cut:]
            self._prev = self._prev[:, cut:]
            self._first += cut


# ----------------------------------------------------------------------------------------------
# the offline tracker


def _resolve(kit: Kit | None, method: str) -> str:
    check_method(method, TRACK_METHODS)
    if method != "auto":
        return method
    if kit is not None and kit.method in PRESETS:
        return kit.method
    return "flucoma"


def _preset(name: str, overrides: dict[str, float | None]) -> Preset:
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **given)


def _picker(sounds: int, preset: Preset, settings: FFTSettings, rate: float, lag: int, reference: str,
            refine: bool) -> OnsetPicker:
    return OnsetPicker(sounds, settings.hop_size / rate, lag=lag, floor_db=preset.floor_db, mask_db=preset.mask_db,
                       retrigger=preset.retrigger, mix_rise=0.0 if refine else preset.mix_rise,
                       min_gap=preset.min_gap, release_db=preset.release_db, reference=reference,
                       velocity_scope=preset.velocity_scope)


def _event(o: Onset, tpl: _Templates, hop_s: float, lag: int, loudest: float) -> Event:
    shift = lag / 2.0
    label = tpl.sounds[o.sound]
    return Event(round(max(0.0, (o.frame - shift) * hop_s), 6), label,
                 round(o.strength / loudest, 6) if loudest > 0 else 0.0,
                 round(max(0.0, (o.end - shift) * hop_s), 6) if o.end >= 0 else math.inf,
                 o.velocity, note_number(label))


def _retimed(e: Event, retimer: _Retimer | None, g: int) -> Event | None:
    if retimer is None:
        return e
    t = retimer.retime(e.time, g)
    if t is None:
        return None
    t = round(max(0.0, t), 6)
    return replace(e, time=t, end=max(e.end, t))


def _fit(V: np.ndarray, tpl: _Templates, preset: Preset, extra: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The offline fit: (templates in the fit space (bins, C + extra, T), activations (C + extra, frames))."""
    W = tpl.fit
    C, T = W.shape[1], W.shape[2]
    if extra:
        free = flucoma_init(seed, W.shape[0], extra * T).reshape(W.shape[0], extra, T)
        free /= free.sum(axis=(0, 2))[None, :, None]
        W = np.concatenate([W, free], axis=1)
    K = W.shape[1]
    learn = np.zeros(K, dtype=bool)
    learn[C:] = True
    if preset.adapt is not None:
        learn[:C] = True
    Vf = V.astype(np.float32)
    H0 = np.maximum(np.repeat(Vf.sum(axis=0, dtype=np.float64)[None, :] / K, K, axis=0), EPS).astype(np.float32)
    anchored = np.arange(K) < C
    if T == 1:
        res = multiplicative_update(Vf, W[:, :, 0], H0, preset.iterations, update_bases=learn, adapt=preset.adapt,
                                    anchored=anchored, normalise_bases=True)
        Wo = res.bases[:, :, None]
    else:
        res = nmfd_update(Vf, W, H0, preset.iterations, update_bases=learn, adapt=preset.adapt, anchored=anchored)
        Wo = res.bases
    Wo = Wo.astype(np.float64)
    H = res.activations.astype(np.float64)
    mass = Wo.sum(axis=(0, 2))  # back to unit-mass templates (H in the mix's magnitude units)
    return Wo / np.where(mass > 0, mass, 1.0)[None, :, None], H * mass[:, None]


def _inputs(source: object, kit: Kit | np.ndarray | str | os.PathLike[str], labels: Sequence[str] | None,
            sample_rate: float | None, window_size: int | None, hop_size: int | None,
            fft_size: int | None, who: str = "track",
            ) -> tuple[np.ndarray, float, Kit | None, np.ndarray, list[str], FFTSettings]:
    data, sr = load_source(source)
    mono = require_mono(data, who)
    given = sample_rate if sample_rate is not None else sr
    if given is None:
        raise BufNMFError("sample_rate is needed to give event times in seconds: pass sample_rate=<Hz>")
    rate = as_float("sample_rate", given, low=0.0, low_open=True)
    if isinstance(kit, (str, os.PathLike)):
        kit = load_kit(kit)
    if isinstance(kit, Kit):
        bases, names = kit.bases, kit.sounds
        settings = kit.settings_for(window_size, hop_size, fft_size, rate)
        if kit.frames > 1 and len(names) * kit.frames == bases.shape[1]:
            names = [n for n in names for _ in range(kit.frames)]  # per column, for the FluCoMa method
        return mono, rate, kit, bases, names, settings
    bases = real_array("bases", kit)
    if bases.ndim != 2:
        raise BufNMFError(f"bases must be 2-D (bins, components), got shape {bases.shape}")
    if not np.isfinite(bases).all() or (bases < 0).any():
        raise BufNMFError("bases must be finite and non-negative")
    names = as_labels("labels", labels) if labels is not None else [str(i + 1) for i in range(bases.shape[1])]
    settings = resolve_fft_settings(1024 if window_size is None else window_size,
                                    -1 if hop_size is None else hop_size, -1 if fft_size is None else fft_size)
    if len(names) != bases.shape[1]:
        raise BufNMFError(f"{len(names)} labels for {bases.shape[1]} bases: give one label per basis")
    if bases.shape[0] != settings.bins:
        raise BufNMFError(f"bases have {bases.shape[0]} rows but fft_size {settings.fft_size} needs {settings.bins} "
                          "(fft_size // 2 + 1): give the bases' FFT settings")
    return mono, rate, None, bases, names, settings


def _kit_templates(kit: Kit | None, bases: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    if kit is not None and kit.frames > 1:
        return kit.templates.astype(np.float64), kit.sounds
    return bases.astype(np.float64)[:, :, None], list(names)


def track(
    source: object,
    kit: Kit | np.ndarray,
    labels: Sequence[str] | None = None,
    sample_rate: int | None = None,
    threshold: float | None = None,
    min_gap: float | None = None,
    smooth: float | None = None,
    release: float | None = None,
    iterations: int | None = None,
    seed: int = -1,
    window_size: int | None = None,
    hop_size: int | None = None,
    fft_size: int | None = None,
    extra_components: int = 0,
    *,
    method: str = "auto",
    causal: bool = False,
    floor_db: float | None = None,
    mask_db: float | None = None,
    retrigger: float | None = None,
    mix_rise: float | None = None,
    release_db: float | None = None,
    max_memory: int | None = None,
) -> Events:
    """Fit a kit to ``source`` and return the onsets of each of its sounds, in time order.

    Each sound of the kit gives one event per onset: the columns a sound was learnt as
    (``components_per_file`` > 1, see :attr:`Kit.sounds`), or the columns of a bases array that
    share a label, are tracked together.

    Args:
        source: mono samples (samples,) or an audio file path (one channel: pass ``x[:, c]`` or
            ``bufnmf.mixdown(x)`` for several).
        kit: a :class:`Kit` (labels, FFT settings, rate and method come with it) or a bases array
            (bins x K) in FluCoMa layout.
        labels: labels for a bases array, any iterable of strings (default ``1..K``).
        sample_rate: the source's rate in Hz (files carry their own); needed for times.
        threshold, smooth, release: the "flucoma" method's picking (see :func:`pick_onsets`;
            defaults 0.3, 0, 0.1); given with another method they are an error.
        min_gap: seconds between two onsets of one sound (default 0.05).
        iterations: updates of the fit (default 100).
        seed: the "flucoma" method's random start and the extra components' (-1 draws one,
            reported as ``events.seed``; >= 0 reproduces).
        window_size, hop_size, fft_size: FFT settings; the kit's when none is given
            (see :meth:`Kit.settings_for`; 1024/-1/-1 for a bases array).
        extra_components: free components learnt beside the kit to absorb other sounds.
        method: "auto", "percussive", "pitched" or "flucoma" (see the module docstring).
        causal: run the streaming :class:`Tracker`'s configuration (its events, offline).
        floor_db, mask_db, retrigger, mix_rise, release_db: the picking rules of the methods
            other than "flucoma" (see :mod:`bufnmf.dsp.onsets`); None: the method's preset.
        max_memory: the "flucoma" method's decomposition is refused (before allocating) when
            estimated to need more bytes than this (default: the memory available now), as
            :func:`bufnmf.decompose`.

    Returns:
        :class:`Events` (a list of :class:`Event`, with ``.seed`` and ``.method``), sorted by time.
        The methods other than "flucoma" give each event a ``velocity`` and, for note names, a ``pitch``.
    """
    mono, rate, k, bases, names, settings = _inputs(source, kit, labels, sample_rate, window_size, hop_size,
                                                    fft_size)
    name = _resolve(k, method)
    seed = resolve_seed(seed)
    gap = as_float("min_gap", 0.05 if min_gap is None else min_gap, low=0.0)
    its = None if iterations is None else as_int("iterations", iterations)
    if its is not None and its < 1:
        raise BufNMFError(f"iterations must be at least 1, got {its}")
    extra = as_int("extra_components", extra_components)
    if extra < 0:
        raise BufNMFError(f"extra_components must be >= 0, got {extra}")
    if name == "flucoma":
        if causal:
            raise BufNMFError("the streaming tracker (causal=True) runs the 'percussive' or 'pitched' method: "
                              "give method='percussive' or 'pitched'",
                              cli="--causal runs the 'percussive' or 'pitched' method: add --method percussive or "
                                  "--method pitched")
        given = {k_: v for k_, v in (("floor_db", floor_db), ("mask_db", mask_db), ("retrigger", retrigger),
                                     ("mix_rise", mix_rise), ("release_db", release_db)) if v is not None}
        if given:
            opt = next(iter(given))
            raise BufNMFError(f"{opt} is a rule of the 'percussive' and 'pitched' methods, not of 'flucoma': give "
                              f"method='percussive' or 'pitched', or leave {opt} out",
                              cli=f"--{opt.replace('_', '-')} is a rule of the percussive and pitched methods: add "
                                  "--method percussive or pitched, or leave it out")
        th = as_float("threshold", 0.3 if threshold is None else threshold, low=0.0, high=1.0, low_open=True)
        sm = as_float("smooth", 0.0 if smooth is None else smooth, low=0.0)
        rel = as_float("release", 0.1 if release is None else release, low=0.0, high=1.0, high_open=True)
        return _track_flucoma(mono, bases, names, settings, rate, th, gap, sm, rel, 100 if its is None else its, seed,
                              extra, max_memory)
    for opt, value in (("threshold", threshold), ("smooth", smooth), ("release", release)):
        if value is not None:
            alt = {"threshold": "floor_db", "release": "release_db", "smooth": "iterations"}[opt]
            raise BufNMFError(f"{opt} belongs to the 'flucoma' method; the {name!r} method has its own rules "
                              f"(e.g. {alt}): give method='flucoma' to use {opt}",
                              cli=f"--{opt} belongs to --method flucoma; the {name} method has its own rules (e.g. "
                                  f"--{alt.replace('_', '-')})")
    overrides: dict[str, float | None] = {
        "floor_db": None if floor_db is None else as_float("floor_db", floor_db, high=0.0),
        "mask_db": None if mask_db is None else as_float("mask_db", mask_db, high=0.0),
        "retrigger": None if retrigger is None else as_float("retrigger", retrigger, low=0.0),
        "mix_rise": None if mix_rise is None else as_float("mix_rise", mix_rise, low=0.0),
        "release_db": None if release_db is None else as_float("release_db", release_db, low=0.0, low_open=True),
        "min_gap": gap, "iterations": its,
    }
    preset = _preset(name, overrides)
    W3, cols = _kit_templates(k, bases, names)
    if causal:
        if extra:
            raise BufNMFError("the streaming tracker (causal=True) fits the kit's templates only: extra_components "
                              "must be 0", cli="--causal fits the kit's templates only: leave --extra-components out")
        tracker = Tracker._from_parts(W3, cols, settings, rate, preset)
        tracker.process(mono)
        tracker.flush()
        events = sorted(tracker.events, key=lambda e: (e.time, e.label))
        return Events(events, seed, name)
    tpl = _templates(W3, cols, settings, rate, preset)
    lag = default_lag(settings, rate)
    V = np.abs(stft_complex(np.asarray(mono, dtype=np.float64), settings, dtype=np.complex128))
    Vfit = _to_fit(V, tpl)
    Wf, H = _fit(Vfit, tpl, preset, extra, seed)
    C = tpl.W.shape[1]
    # the extras are sounds of their own (their new energy counts in the owned flux's shares), not reported
    groups = np.concatenate([tpl.groups, tpl.G + np.arange(extra)])
    spectra = np.concatenate([tpl.spectra, Wf[:, C:].sum(axis=2)], axis=1)
    own, level, grow = _Features(Wf, groups, tpl.G + extra, spectra, lag).push(H, Vfit)
    refine = preset.refine_window > 0 and settings.window_size >= 2 * preset.refine_window
    picker = _picker(tpl.G + extra, preset, settings, rate, lag, "file", refine)
    picker.push(own, level, grow, floor_reference=float(own[: tpl.G].max(initial=0.0)))
    picker.finish()
    onsets = [o for o in picker.onsets if o.sound < tpl.G]
    retimer = None
    if refine:
        short = resolve_fft_settings(preset.refine_window, preset.refine_hop)
        retimer = _Retimer(tpl.spectra_lin, settings, short, rate, preset.mix_rise)
        retimer.push(np.abs(stft_complex(np.asarray(mono, dtype=np.float64), short, dtype=np.complex128)))
    loudest = max((o.strength for o in onsets), default=0.0)
    hop_s = settings.hop_size / rate
    out = []
    for o in onsets:
        e = _retimed(_event(o, tpl, hop_s, lag, loudest), retimer, o.sound)
        if e is not None:
            out.append(e)
    out.sort(key=lambda e: (e.time, e.label))
    return Events(out, seed, name)


@dataclass
class Separation:
    """What :func:`separate` returns.

    Attributes:
        stems: float32 (samples, G): one mono signal per sound of the kit, in the kit's order of
            sounds; together they sum to the source (to float rounding).
        labels: the sounds, (G,). method: the method that fitted the kit.
        seed: the seed of the "flucoma" method's start (-1 draws one; the others do not draw).
    """

    stems: np.ndarray
    labels: list[str]
    method: str
    seed: int


def separate(
    source: object,
    kit: Kit | np.ndarray | str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    sample_rate: int | None = None,
    method: str = "auto",
    iterations: int | None = None,
    seed: int = -1,
    window_size: int | None = None,
    hop_size: int | None = None,
    fft_size: int | None = None,
) -> Separation:
    """One stem per sound of a kit: the kit fitted to ``source`` as :func:`track` fits it, then
    soft masks (each sound's model over the sum of all, FluCoMa's masks) on the source's STFT.

    The "flucoma" method is :func:`bufnmf.decompose` with the kit's bases fixed (a sound's
    columns summed); "percussive" and "pitched" mask with the fitted templates' models (NMFD:
    each template convolved with its activation), in the STFT's own bins.

    Args:
        source, kit, labels, sample_rate, method, iterations, seed, window_size, hop_size,
            fft_size: as :func:`track`.

    Returns:
        :class:`Separation`: ``stems`` (samples, G) float32.
    """
    mono, rate, k, bases, names, settings = _inputs(source, kit, labels, sample_rate, window_size, hop_size,
                                                    fft_size, "separate")
    name = _resolve(k, method)
    seed = resolve_seed(seed)
    its = None if iterations is None else as_int("iterations", iterations)
    if its is not None and its < 1:
        raise BufNMFError(f"iterations must be at least 1, got {its}")
    sounds = list(dict.fromkeys(names))
    if name == "flucoma":
        res = decompose(mono, components=bases.shape[1], iterations=100 if its is None else its,
                        window_size=settings.window_size, hop_size=settings.hop_size, fft_size=settings.fft_size,
                        seed=seed, bases=bases, bases_mode="fixed")
        assert res.resynth is not None
        stems = np.stack([res.resynth[:, [i for i, n in enumerate(names) if n == sound]].sum(axis=1)
                          for sound in sounds], axis=1)
        return Separation(stems.astype(np.float32), sounds, name, res.seed)
    preset = _preset(name, {"iterations": its})
    W3, cols = _kit_templates(k, bases, names)
    tpl = _templates(W3, cols, settings, rate, preset)
    X = stft_complex(np.asarray(mono, dtype=np.float64), settings, dtype=np.complex128)
    Vfit = _to_fit(np.abs(X), tpl)
    Wf, H = _fit(Vfit, tpl, preset, 0, seed)
    # the models in the STFT's bins: fitted in log bands only with fixed templates (the linear ones then)
    W = Wf if tpl.bands is None else tpl.W
    total = conv_model(W, H)
    G = tpl.G
    share = np.float64(EPS) / G  # silent bins are shared equally: the stems sum to the source
    den = total + EPS
    out = np.empty((mono.shape[0], G), dtype=np.float32)
    for g in range(G):
        cols_g = np.flatnonzero(tpl.groups == g)
        model = conv_model(W[:, cols_g], H[cols_g])
        out[:, g] = istft(X * ((model + share) / den), settings, mono.shape[0])
    return Separation(out, tpl.sounds, name, seed)


# ----------------------------------------------------------------------------------------------
# the streaming tracker


class TrackerOutput(NamedTuple):
    """What :meth:`Tracker.process` returns.

    Attributes:
        onsets: events that started, decided during this block (note-ons; ``end`` is ``math.inf``:
            not known yet).
        offsets: events that ended during this block, complete (note-offs; ``end`` known).
    """

    onsets: list[Event]
    offsets: list[Event]


class Tracker:
    """A kit's sounds tracked in real time, block by block, on the streaming engine's framing.

    ``process(block)`` takes mono samples (any block size) and returns the events decided by them
    (:class:`TrackerOutput`: note-ons now, note-offs when each sound ends); ``flush()`` ends the
    stream. Every onset is returned by the call during which the stream passes its time by at most
    :attr:`latency` samples; all events together (:attr:`events`) equal ``track(..., causal=True)``
    on the whole sound, whatever the block sizes.

    The causal configuration: the kit's templates fixed, each frame's activations fitted as it
    arrives (NMFD kits with ``lookahead`` frames of future and the decays of earlier frames fixed:
    :class:`bufnmf.models.nmfd.OnlineNMFD`; NMF kits frame by frame), the picking rules of
    :mod:`bufnmf.dsp.onsets` with the floor's and the velocities' references the largest so far,
    and for pitched kits the re-timing on a short window (its frames arrive before the long
    window's decision needs them).

    Args:
        kit: a :class:`Kit` or the path of one.
        sample_rate: Hz (default: the kit's).
        method: "auto" (the kit's; kits without one: "pitched" for note names, else "percussive"),
            "percussive" or "pitched".
        iterations: updates per frame (default 30).
        lookahead: frames of future for NMFD kits (default 1).
        floor_db, mask_db, retrigger, mix_rise, min_gap, release_db: as :func:`track`.

    Attributes:
        latency: samples: the most an onset is returned after its time.
        events: every completed event so far, in the order they ended.
        settings, sample_rate, method.
    """

    def __init__(self, kit: Kit | str | os.PathLike[str], *, sample_rate: float | None = None,
                 method: str = "auto", iterations: int | None = None, lookahead: int | None = None,
                 floor_db: float | None = None, mask_db: float | None = None, retrigger: float | None = None,
                 mix_rise: float | None = None, min_gap: float | None = None,
                 release_db: float | None = None) -> None:
        if isinstance(kit, (str, os.PathLike)):
            kit = load_kit(kit)
        if not isinstance(kit, Kit):
            raise BufNMFError("Tracker needs a kit (bufnmf.learn_bases or bufnmf.load_kit), or the path of one")
        check_method(method, ("auto", "percussive", "pitched"))
        name = method if method != "auto" else (kit.method if kit.method in PRESETS else
                                                method_for(list(dict.fromkeys(kit.sounds))))
        if name == "flucoma":
            name = "percussive"
        rate = sample_rate if sample_rate is not None else kit.sample_rate
        if rate is None:
            raise BufNMFError("the kit does not say its sample rate: pass sample_rate=<Hz>")
        rate = as_float("sample_rate", rate, low=0.0, low_open=True)
        settings = kit.settings_for(None, None, None, rate)
        overrides: dict[str, float | None] = {
            "online_iterations": None if iterations is None else as_int("iterations", iterations),
            "lookahead": None if lookahead is None else as_int("lookahead", lookahead),
            "floor_db": floor_db, "mask_db": mask_db, "retrigger": retrigger, "mix_rise": mix_rise,
            "min_gap": min_gap, "release_db": release_db,
        }
        for key in ("floor_db", "mask_db"):
            if overrides[key] is not None:
                overrides[key] = as_float(key, overrides[key], high=0.0)
        for key in ("retrigger", "mix_rise", "min_gap"):
            if overrides[key] is not None:
                overrides[key] = as_float(key, overrides[key], low=0.0)
        if overrides["release_db"] is not None:
            overrides["release_db"] = as_float("release_db", overrides["release_db"], low=0.0, low_open=True)
        if (overrides["online_iterations"] or 1) < 1 or (overrides["lookahead"] or 0) < 0:
            raise BufNMFError("iterations must be at least 1 and lookahead at least 0")
        W3, cols = _kit_templates(kit, kit.bases, kit.sounds)
        self._setup(W3, cols, settings, rate, _preset(name, overrides))

    @classmethod
    def _from_parts(cls, W3: np.ndarray, cols: list[str], settings: FFTSettings, rate: float,
                    preset: Preset) -> Tracker:
        self = cls.__new__(cls)
        self._setup(W3, cols, settings, rate, preset)
        return self

    def _setup(self, W3: np.ndarray, cols: list[str], settings: FFTSettings, rate: float, preset: Preset) -> None:
        self.settings = settings
        self.sample_rate = rate
        self.method = preset.name
        self.preset = preset
        tpl = _templates(W3, cols, settings, rate, preset)
        self._tpl = tpl
        self.lag = default_lag(settings, rate)
        self._online = OnlineNMFD(tpl.fit, iterations=preset.online_iterations, lookahead=preset.lookahead)
        self._features = _Features(self._online.W.astype(np.float64), tpl.groups, tpl.G, tpl.spectra, self.lag)
        self._refine = preset.refine_window > 0 and settings.window_size >= 2 * preset.refine_window
        self._picker = _picker(tpl.G, preset, settings, rate, self.lag, "stream", self._refine)
        self._framer, self._skip = self._aligned_framer(settings)
        self._retimer: _Retimer | None = None
        if self._refine:
            short = resolve_fft_settings(preset.refine_window, preset.refine_hop)
            self._short, self._short_skip = self._aligned_framer(short)
            self._retimer = _Retimer(tpl.spectra_lin, settings, short, rate, preset.mix_rise)
        self._frames_out = 0  # long frames (offline numbering) analysed
        self._received = 0  # input samples
        self._limit: int | None = None  # frames in all, once the stream has ended
        self._short_limit: int | None = None
        self._vqueue = np.zeros((tpl.fit.shape[0], 0))  # mix frames waiting for their activations
        self._pending: list[tuple[Onset, Event]] = []  # decided, waiting for the short window (re-timing)
        self._ended: list[Onset] = []  # ended while still waiting for the re-timing
        self._live: dict[int, Event | None] = {}  # id(onset) -> its note-on (None: dropped by the re-timing)
        self._loudest = 0.0
        self.events: list[Event] = []
        self._done = False
        h = settings.hop_size
        delay = self._picker.delay + self._online.lookahead
        front = settings.window_size - settings.window_size // 2  # a frame is complete this long after its centre
        self.latency = int((delay + self.lag / 2.0) * h + front + (
            settings.window_size / 2 if self._refine else 0))

    @staticmethod
    def _aligned_framer(settings: FFTSettings) -> tuple[Framer, int]:
        """A Framer whose frame ``k + skip`` is the offline STFT's frame ``k`` (centred at ``k * hop``)."""
        w, h = settings.window_size, settings.hop_size
        late = w - w // 2  # offline frame k ends at k * hop + late
        skip = -(-late // h)
        framer = Framer(settings)
        framer.push(np.zeros(skip * h - late))  # pre-roll: the offline STFT's zeros before the sound
        return framer, skip

    @staticmethod
    def _frames(framer: Framer, skip: int, block: np.ndarray) -> np.ndarray:
        """Magnitudes (bins, m) of the offline-numbered frames (k >= 0) the block completes."""
        spectra, first = framer.push(block)
        return np.abs(spectra[max(0, skip - first) :]).T

    def process(self, block: object) -> TrackerOutput:
        """Add a mono block (n,) of any length (0 included); returns the events it decided."""
        if self._done:
            raise BufNMFError("the stream has ended (flush() was called): make a new Tracker")
        x = _as_block(block)
        self._received += x.size
        return self._advance(x, final=False)

    def flush(self) -> TrackerOutput:
        """End the stream: the frames still open are completed with silence and every event ends.

        The frames are the offline STFT's (``samples // hop + 1`` of them), so :func:`track` with
        ``causal=True`` on the whole sound gives these events.
        """
        if self._done:
            return TrackerOutput([], [])
        n = self._received
        self._limit = n // self.settings.hop_size + 1
        need = (self._limit + self._skip) * self.settings.hop_size - self._framer.received
        if self._retimer is not None:
            sh = self._short.settings
            self._short_limit = n // sh.hop_size + 1
            need = max(need, (self._short_limit + self._short_skip) * sh.hop_size - self._short.received)
        out = self._advance(np.zeros(max(0, need)), final=True)
        self._done = True
        return out

    def _advance(self, x: np.ndarray, final: bool) -> TrackerOutput:
        V = self._frames(self._framer, self._skip, x)
        if self._limit is not None:
            V = V[:, : max(0, self._limit - self._frames_out)]
        self._frames_out += V.shape[1]
        if self._retimer is not None:
            S = self._frames(self._short, self._short_skip, x)
            if self._short_limit is not None:
                S = S[:, : max(0, self._short_limit - self._retimer.frames)]
            self._retimer.push(S)
        Vfit = _to_fit(V, self._tpl)
        H = self._online.push(Vfit)
        if final:
            H = np.concatenate([H, self._online.flush()], axis=1)
        # the mix frames wait for their activations (committed lookahead frames later)
        queue = np.concatenate([self._vqueue, Vfit], axis=1)
        own, level, grow = self._features.push(H, queue[:, : H.shape[1]])
        self._vqueue = queue[:, H.shape[1] :]
        new, ended = self._picker.push(own, level, grow)
        if final:
            n2, e2 = self._picker.finish()
            new, ended = new + n2, ended + e2
        return self._emit(new, ended, final)

    def _emit(self, new: list[Onset], ended: list[Onset], final: bool) -> TrackerOutput:
        hop_s = self.settings.hop_size / self.sample_rate
        for o in new:
            self._loudest = max(self._loudest, o.strength)
            self._pending.append((o, _event(o, self._tpl, hop_s, self.lag, self._loudest)))
        onsets: list[Event] = []
        keep: list[tuple[Onset, Event]] = []
        for o, e in self._pending:  # re-timed once the short window's frames have arrived (at the end: all)
            if self._retimer is not None and not final and not self._retimer.ready(e.time):
                keep.append((o, e))
                continue
            r = _retimed(e, self._retimer, o.sound)
            self._live[id(o)] = r
            if r is not None:
                onsets.append(r)
        self._pending = keep
        waiting = {id(o) for o, _ in self._pending}
        offsets: list[Event] = []
        for o in [*self._ended, *ended]:
            if id(o) in waiting:
                if o not in self._ended:
                    self._ended.append(o)
                continue
            if o in self._ended:
                self._ended.remove(o)
            on = self._live.pop(id(o), None)
            if on is not None:  # (None: dropped by the re-timing)
                end = round(max(0.0, (o.end - self.lag / 2.0) * hop_s), 6)
                done = replace(on, end=max(end, on.time))
                self.events.append(done)
                offsets.append(done)
        if self._retimer is not None:
            future = (self._picker.decided - self.lag / 2.0) * hop_s
            self._retimer.trim(min([future, *(e.time for _, e in self._pending)]))
        return TrackerOutput(onsets, offsets)
