"""NMFMorph: morph NMF bases into other bases by optimal transport, and play them, FluCoMa-exact.

FluCoMa's NMFMorph is a real-time generator (NMFMorph.hpp, NMFMorphClient.hpp):

* **set-up**: with ``autoassign`` (the default) each source basis is paired with the target
  basis of least transport cost (:func:`bufnmf.dsp.transport.assign`); otherwise source k goes
  with target k. One :class:`bufnmf.dsp.transport.OptimalTransport` per pair: each basis is cut
  into spectral masses (a peak between two valleys) that move rigidly in frequency.
* **per hop**: the interpolated bases (bins x K) times the next activation frame (cycling through
  the frames from frame 0) give a magnitude frame; RTPGHI (:mod:`bufnmf.dsp.rtpghi`) gives it a
  phase and returns the *previous* frame, so the first hop is silent; the streaming engine's
  overlap-adder renders it (latency: one window).

:func:`morph` renders one pass over the activations offline, aligned as BufNMF's frames (frame n
centred on sample n * hop): the same frames and phases as the stream, overlap-added; with
``griffin_lim_iterations`` > 0 the phase is then refined by fast Griffin-Lim (momentum 0.9, as
FluCoMa's BufNMFCross), which makes the frames more consistent at the price of time.

Differences from FluCoMa (docs/flucoma-parity.md):

* autoassign pairs by each pair's own transport cost (FluCoMa's cost accumulates over the pairs,
  a bug: it can pair a sound's own bases wrongly);
* ``activation_scale`` (bufnmf): BufNMF writes activations divided by their maximum and bases of
  unit norm, so ``bases @ activations`` is the sound's model divided by that maximum (30-45 dB
  down). :func:`bufnmf.decompose` returns the factor (``result.activation_scale``, per channel);
  passing it back brings a morph of a sound's own bases to the sound's level. Default 1.0:
  FluCoMa's level;
* the seed also sets RTPGHI's starting phase (random per bin; FluCoMa starts at 0, so there the
  seed only reaches bins 120 dB down and every seed sounds the same); seed -1 draws one seed,
  reported as ``.seed``, where FluCoMa draws new random phases every frame;
* mismatched or unusable buffers raise :class:`bufnmf.BufNMFError` (FluCoMa falls silent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..checks import as_int, real_array, resolve_seed
from ..dsp.fft import FFTSettings, resolve_fft_settings
from ..dsp.phase import griffin_lim
from ..dsp.random import uniform_range
from ..dsp.rtpghi import RTPGHI
from ..dsp.stream import OverlapAdder
from ..dsp.transport import OptimalTransport, assign, segment_spectrum
from ..errors import BufNMFError, Cancelled
from .common import SeededArray

ProgressCallback = Callable[[int, int], "bool | None"]

#: fast Griffin-Lim's momentum when the offline morph refines its phase (FluCoMa's, in BufNMFCross).
GRIFFIN_LIM_MOMENTUM = 0.9


def _check(source_bases: object, target_bases: object, activations: object, settings: FFTSettings
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, arr in (("source_bases", source_bases), ("target_bases", target_bases), ("activations", activations)):
        a = real_array(name, arr)
        if a.ndim == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2 or a.size == 0:
            raise BufNMFError(f"{name} must be a non-empty 2-D buffer, got shape {a.shape}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise BufNMFError(f"{name} must be finite and non-negative")
        arrays.append(a)
    S, T, H = arrays
    if S.shape[0] != T.shape[0]:
        raise BufNMFError(f"source_bases have {S.shape[0]} rows but target_bases have {T.shape[0]}: both must come "
                          "from the same FFT size")
    if S.shape[1] != T.shape[1]:
        raise BufNMFError(f"source_bases have {S.shape[1]} components but target_bases have {T.shape[1]}: "
                          "morphing pairs them one to one, so the counts must match")
    if S.shape[0] != settings.bins:
        raise BufNMFError(f"the bases have {S.shape[0]} rows but fft_size {settings.fft_size} needs {settings.bins} "
                          f"(fft_size // 2 + 1): pass the FFT settings the bases were made with")
    if H.shape[1] != S.shape[1]:
        raise BufNMFError(f"activations have {H.shape[1]} components (columns) but the bases have {S.shape[1]}")
    for name, B in (("source_bases", S), ("target_bases", T)):
        for k in range(B.shape[1]):
            if not segment_spectrum(B[:, k]):
                raise BufNMFError(f"{name} column {k} has no peak between two valleys (it is flat, silent or "
                                  "monotone): there is nothing to move; give a basis with spectral peaks")
    return S, T, H


def _scale(activation_scale: object, components: int) -> np.ndarray:
    """``activation_scale`` as float64 (K,): one number for all components, one per component, or one per
    channel of a multichannel decomposition (C numbers, K a multiple of C: columns ``c * K/C .. + K/C``)."""
    try:
        scale = np.asarray(activation_scale, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise BufNMFError(f"activation_scale must be a number or one number per component or channel, got "
                          f"{activation_scale!r}") from None
    if scale.size == 0 or components % scale.size:
        raise BufNMFError(f"activation_scale must be a number, {components} numbers (one per component) or one per "
                          f"channel (a divisor of {components}), got {scale.size}")
    if not np.isfinite(scale).all() or (scale < 0).any():
        raise BufNMFError(f"activation_scale must be finite and >= 0, got {scale.tolist()}: give the factor "
                          "decompose reports (its result's and summary.json's activation scale), or 1")
    return np.repeat(scale, components // scale.size)


def _interpolation(value: object) -> float:
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BufNMFError(f"interpolation must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= t <= 1.0:
        raise BufNMFError(f"interpolation must lie in [0, 1], got {value!r}")
    return t


def _curve(interpolation: float | Sequence[float] | np.ndarray, frames: int) -> np.ndarray:
    """One interpolation value per frame: a number, or a curve over the output resampled to the frames."""
    arr = np.asarray(interpolation, dtype=np.float64)
    if arr.ndim > 1 or arr.size == 0:
        raise BufNMFError(f"interpolation must be a number or a 1-D curve, got shape {arr.shape}")
    bad = arr[~(np.isfinite(arr) & (arr >= 0) & (arr <= 1))]
    if bad.size:
        raise BufNMFError(f"interpolation must lie in [0, 1], got {bad[0]:g}")
    if arr.ndim == 0 or arr.size == 1:
        return np.full(frames, float(arr.reshape(-1)[0]))
    return np.interp(np.linspace(0, 1, frames), np.linspace(0, 1, arr.size), arr)


class NMFMorph:
    """FluCoMa's NMFMorph as a stream: ``process(n)`` returns the next ``n`` samples of morphing sound.

    Args:
        source_bases, target_bases: (fft_size // 2 + 1, K) each, FluCoMa buffer layout.
        activations: (frames, K), played one frame per hop, cycling.
        interpolation: 0 (the source bases) .. 1 (the target bases) (FluCoMa ``interpolation``, 0); an
            attribute that may change between calls.
        autoassign: pair source and target bases by least transport cost (FluCoMa ``autoassign``, on).
        seed: RTPGHI's random phases and starting phase: -1 draws one (reported as ``.seed``).
        window_size, hop_size, fft_size: FFT settings of the bases (FluCoMa's meanings).
        activation_scale: bufnmf option (keyword): multiplies the activations: a number, one per component,
            or one per channel of a multichannel decomposition; :attr:`bufnmf.DecomposeResult.activation_scale`
            (the factor BufNMF divided out) gives the sound's level back. Default 1.0, FluCoMa's level.

    Attributes:
        perm: int64 (K,), the target basis paired with each source basis.
        H: float64 (frames, K), the activations played (times ``activation_scale``).
        latency: ``window_size`` (as FluCoMa reports; the generator has no input).
    """

    def __init__(self, source_bases: np.ndarray, target_bases: np.ndarray, activations: np.ndarray,
                 interpolation: float = 0.0, autoassign: bool = True, seed: int = -1, window_size: int = 1024,
                 hop_size: int = -1, fft_size: int = -1, *, activation_scale: float | Sequence[float] = 1.0
                 ) -> None:
        self.settings = s = resolve_fft_settings(window_size, hop_size, fft_size)
        S, T, H = _check(source_bases, target_bases, activations, s)
        self.interpolation = interpolation
        self.seed = resolve_seed(seed)
        self.latency = s.window_size
        self.H = H * _scale(activation_scale, H.shape[1])
        self.perm = assign(S, T) if autoassign else np.arange(S.shape[1], dtype=np.int64)
        self._transports = [OptimalTransport(S[:, k], T[:, self.perm[k]]) for k in range(S.shape[1])]
        self._cache: tuple[float, np.ndarray] | None = None
        self._position = 0  # the next activation frame
        self._rtpghi = RTPGHI(s.window_size, s.hop_size, s.fft_size)
        self._rtpghi.reset(uniform_range(self.seed, s.bins, 0.0, 2.0 * np.pi))
        self._adder = OverlapAdder(s, 1)

    @property
    def interpolation(self) -> float:
        """0 (the source bases) .. 1 (the target bases), used from the next frame on."""
        return self._interpolation

    @interpolation.setter
    def interpolation(self, value: float) -> None:
        self._interpolation = _interpolation(value)

    def bases(self, interpolation: float | None = None) -> np.ndarray:
        """The interpolated bases, float64 (bins, K) (FluCoMa's ``OptimalTransport::interpolate`` per pair)."""
        t = self._interpolation if interpolation is None else _interpolation(interpolation)
        if self._cache is None or self._cache[0] != t:
            self._cache = (t, np.stack([ot.interpolate(t) for ot in self._transports], axis=1))
        return self._cache[1]

    def process_frame(self) -> np.ndarray:
        """One FluCoMa ``processFrame``: the next activation frame's magnitudes in, the previous frame with
        its phase out, complex128 (bins,)."""
        magnitude = self.bases() @ self.H[self._position]
        self._position = (self._position + 1) % self.H.shape[0]
        return self._rtpghi.process(magnitude, self.seed)

    def process(self, n_samples: int) -> np.ndarray:
        """The next ``n_samples`` samples, float64 (n_samples,)."""
        n = as_int("n_samples", n_samples)
        if n < 0:
            raise BufNMFError(f"n_samples must be >= 0, got {n}")
        while self._adder.available < n:
            self._adder.add(self.process_frame()[None, None, :])
        return self._adder.take(n)[:, 0]


def morph(
    source_bases: np.ndarray,
    target_bases: np.ndarray,
    activations: np.ndarray,
    interpolation: float | Sequence[float] | np.ndarray = 0.0,
    autoassign: bool = True,
    seed: int = -1,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    *,
    activation_scale: float | Sequence[float] = 1.0,
    griffin_lim_iterations: int = 0,
    num_samples: int | None = None,
    progress: ProgressCallback | None = None,
) -> SeededArray:
    """NMFMorph rendered offline over one pass of the activations.

    Args:
        source_bases, target_bases, activations, autoassign, seed, window_size, hop_size, fft_size,
            activation_scale: as :class:`NMFMorph`.
        interpolation: 0..1, a number or a curve over the output (resampled to one value per frame).
        griffin_lim_iterations: bufnmf option: refine the phase by this many iterations of fast
            Griffin-Lim (momentum 0.9) from RTPGHI's; 0 (default): RTPGHI's phase alone, the sound
            FluCoMa's NMFMorph streams.
        num_samples: the output length; default ``(frames - 1) * hop``.
        progress: ``progress(done, total)`` now and then, total = frames + Griffin-Lim iterations;
            returning False cancels with :class:`bufnmf.Cancelled`.

    Returns:
        float64 samples (num_samples,), activation frame n centred on sample ``n * hop`` as in BufNMF
        (a :class:`bufnmf.SeededArray`; ``.seed`` is the seed used).

    Example:
        >>> import numpy as np, bufnmf
        >>> rng = np.random.default_rng(0)
        >>> S, T, H = rng.random((513, 2)) ** 4, rng.random((513, 2)) ** 4, rng.random((20, 2))
        >>> bufnmf.morph(S, T, H, 0.5, seed=1).shape
        (9728,)
    """
    s = resolve_fft_settings(window_size, hop_size, fft_size)
    S, T, H = _check(source_bases, target_bases, activations, s)
    gl = as_int("griffin_lim_iterations", griffin_lim_iterations)
    if gl < 0:
        raise BufNMFError(f"griffin_lim_iterations must be >= 0, got {gl}")
    frames = H.shape[0]
    curve = _curve(interpolation, frames)
    n_out = max(1, (frames - 1) * s.hop_size) if num_samples is None else as_int("num_samples", num_samples)
    if n_out < 0:
        raise BufNMFError(f"num_samples must be >= 0, got {n_out}")
    m = NMFMorph(S, T, H, float(curve[0]), autoassign, seed, s.window_size, s.hop_size, s.fft_size,
                 activation_scale=activation_scale)
    total = frames + gl

    def report(done: int) -> bool | None:
        if progress is not None and progress(done, total) is False:
            raise Cancelled(f"cancelled by the progress callback after {done} of {total} steps")
        return None

    spectra = np.empty((s.bins, frames), dtype=np.complex128)
    m.process_frame()  # the first call returns RTPGHI's silent start; it computes frame 0
    for n in range(frames):
        m.interpolation = float(curve[min(n + 1, frames - 1)])  # for the frame this call computes (n + 1)
        spectra[:, n] = m.process_frame()  # frame n, RTPGHI's phase
        if (n + 1) % 64 == 0 or n + 1 == frames:
            report(n + 1)
    y = griffin_lim(np.abs(spectra), s, n_out, gl, GRIFFIN_LIM_MOMENTUM, np.angle(spectra),
                    progress=lambda it: report(frames + it))
    return SeededArray.wrap(y, m.seed)
