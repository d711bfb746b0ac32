"""The BufNMF client: FluCoMa's parameters, validation and buffer layouts over the numerics.

Buffers follow FluCoMa: frames x channels, output channel ``chan * components + k``.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._random import flucoma_init
from .errors import BufNMFError, BufNMFWarning, Cancelled
from .masks import resynthesise
from .nmf import EPS, kl_divergence, nmf_kl, prepare_start, resolve_kernel
from .resources import MAX_ITERATIONS, check_fits, estimate, page_releaser
from .spectral import FFTSettings, _as_int, resolve_fft_settings, stft_complex

ProgressCallback = Callable[[int, int], "bool | None"]

_MODES = {"none": 0, "seed": 1, "fixed": 2}
_LOUD = 2.0**32  # peaks above this are scaled down (exactly, by a power of two) before the STFT
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PRECISIONS = {"float32": np.float32, "float64": np.float64}


@dataclass
class DecomposeResult:
    """What :func:`decompose` returns.

    Attributes:
        bases: float32, shape (fft_size // 2 + 1, channels * components); unit L2 norm per column.
        activations: float32, shape (num_frames // hop_size + 1, channels * components);
            each channel's block scaled so its largest value is 1.
        resynth: float32, shape (num_frames, channels * components), or None.
        components, iterations, window_size, hop_size, fft_size: resolved parameters.
        num_samples: samples analysed per channel (``num_frames`` resolved).
        num_channels: channels analysed. start_frame, start_chan: where the selection starts.
        seed: the seed actually used (a drawn one when -1 was asked), to reproduce the run.
        divergences: per channel, the KL divergence after each iteration (when tracked).
        precision: "float32" or "float64", the arithmetic of the factorisation.
        extra_components: how many of each channel's components (the last ones) were learnt
            freely beside supplied bases.
        kernel: the NMF kernel that ran ("numba" or "numpy").
    """

    bases: np.ndarray
    activations: np.ndarray
    resynth: np.ndarray | None
    components: int
    iterations: int
    window_size: int
    hop_size: int
    fft_size: int
    num_samples: int
    num_channels: int
    start_frame: int
    start_chan: int
    seed: int
    bases_mode: int
    act_mode: int
    precision: str
    divergences: list[list[float]] = field(default_factory=list)
    extra_components: int = 0
    kernel: str = ""

    @property
    def num_bins(self) -> int:
        """Frequency bins, ``fft_size // 2 + 1``."""
        return self.fft_size // 2 + 1

    @property
    def num_hops(self) -> int:
        """Activation frames, ``num_samples // hop_size + 1``."""
        return self.num_samples // self.hop_size + 1

    def channel_block(self, array: np.ndarray, chan: int) -> np.ndarray:
        """Columns ``chan * components .. + components`` of a buffer-layout array."""
        k = self.components
        return array[:, chan * k : (chan + 1) * k]


def parse_mode(name: str, mode: int | str) -> int:
    """Map 0/1/2 or "none"/"seed"/"fixed" to 0/1/2, or raise :class:`BufNMFError`."""
    if isinstance(mode, str):
        key = mode.strip().lower()
        if key in _MODES:
            return _MODES[key]
        if key.isdigit():
            mode = int(key)
        else:
            raise BufNMFError(f"{name} {mode!r} is not a mode: use 0/'none', 1/'seed' or 2/'fixed'")
    if isinstance(mode, (bool, np.bool_)) or not isinstance(mode, (int, np.integer)) or int(mode) not in (0, 1, 2):
        raise BufNMFError(f"{name} {mode!r} is not a mode: use 0/'none', 1/'seed' or 2/'fixed'")
    return int(mode)


def validate_source(source: object) -> np.ndarray:
    """Check a source; return it as a float array (samples, channels), never modified.

    float32 and float64 arrays are returned as views (no copy); other real dtypes as float64.
    """
    try:
        arr = np.asarray(source)
    except Exception as exc:  # ragged lists and the like
        raise BufNMFError(f"source must be an array of samples: {exc}") from None
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise BufNMFError(
            f"source must hold real numbers (float or int samples), got dtype {arr.dtype}"
        )
    if arr.ndim == 0 or arr.ndim > 2:
        raise BufNMFError(
            f"source must be 1-D (samples,) or 2-D (samples, channels), got {arr.ndim} dimensions "
            f"with shape {arr.shape}"
        )
    if arr.size == 0:
        raise BufNMFError(f"source is empty (shape {arr.shape}): give at least one sample")
    # float32/float64 sources are used in place (read-only); other dtypes become float64
    data = arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)
    if data.ndim == 1:
        data = data.reshape(-1, 1)
    bad = ~np.isfinite(data)
    if bad.any():
        s, c = np.argwhere(bad)[0]
        raise BufNMFError(
            f"source has {int(bad.sum())} NaN or infinite sample(s), first at sample {s}, channel {c}: "
            "clean the signal before decomposing"
        )
    big = float(np.max(np.abs(data)))
    if big > _FLOAT32_MAX:
        raise BufNMFError(f"source has samples up to {big:.3g}, beyond what float32 outputs can hold "
                          f"({_FLOAT32_MAX:.3g}): scale the signal down")
    return data


def _select(data: np.ndarray, start_frame: int, num_frames: int, start_chan: int, num_chans: int) -> np.ndarray:
    n, c = data.shape
    start_frame, num_frames = _span("start_frame", "num_frames", start_frame, num_frames, n, "samples")
    start_chan, num_chans = _span("start_chan", "num_chans", start_chan, num_chans, c, "channel(s)")
    return data[start_frame : start_frame + num_frames, start_chan : start_chan + num_chans]


def mixdown(data: np.ndarray) -> np.ndarray:
    """Mono samples (samples,) from (samples, channels): the channel mean, or the one channel."""
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def _span(start_name: str, num_name: str, start: int, num: int, size: int, unit: str) -> tuple[int, int]:
    """Check a FluCoMa-style range (start, count or -1 for the rest) inside ``size`` items."""
    start = _as_int(start_name, start)
    num = _as_int(num_name, num)
    if not 0 <= start < size:
        raise BufNMFError(f"{start_name} {start} is outside the source: it has {size} {unit} (0..{size - 1})")
    if num == -1:
        num = size - start
    if num < 1 or start + num > size:
        raise BufNMFError(f"{num_name} {num} from {start_name} {start} is not in the source's {size} {unit}: "
                          f"use 1..{size - start}, or -1 for the rest")
    return start, num


def _seed_buffer(
    name: str, mode_name: str, array: object, rows: int, components: int, channels: int, rows_desc: str
) -> np.ndarray:
    """Validate a seed/fixed buffer; returns float64 (rows, channels * components)."""
    try:
        arr = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BufNMFError(f"{name} must be a numeric array: {exc}") from None
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise BufNMFError(f"{name} must be 2-D (frames, channels) in FluCoMa layout, got shape {arr.shape}")
    wanted = channels * components
    if arr.shape[0] != rows or arr.shape[1] not in (wanted, components):
        cols = f"{wanted}" if channels == 1 else f"{wanted} (channels * components) or {components}"
        raise BufNMFError(
            f"{name} has shape {arr.shape}, expected ({rows}, {cols}): {rows} rows ({rows_desc}) and "
            f"one column per component per channel; supply a matching buffer or set {mode_name}=0"
        )
    if not np.isfinite(arr).all():
        raise BufNMFError(f"{name} contains NaN or infinite values: supply finite, non-negative values")
    if (arr < 0).any():
        raise BufNMFError(
            f"{name} contains negative values (min {arr.min():.6g}): NMF needs non-negative values; "
            "pass magnitudes, e.g. np.abs(...)"
        )
    if arr.shape[1] == components and channels > 1:
        arr = np.tile(arr, (1, channels))
    return arr


def _progress_adapter(
    progress: ProgressCallback | None, offset: int, total: int
) -> Callable[[int], bool | None] | None:
    if progress is None:
        return None

    def step(done: int) -> bool | None:
        return progress(offset + done, total)

    return step


def decompose(
    source: np.ndarray,
    components: int = 1,
    iterations: int = 100,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    seed: int = -1,
    bases: np.ndarray | None = None,
    bases_mode: int | str = 0,
    activations: np.ndarray | None = None,
    act_mode: int | str = 0,
    resynth: bool = True,
    start_frame: int = 0,
    num_frames: int = -1,
    start_chan: int = 0,
    num_chans: int = -1,
    progress: ProgressCallback | None = None,
    *,
    precision: str = "float32",
    track_divergence: bool = False,
    kernel: str = "auto",
    resynth_out: np.ndarray | None = None,
    extra_components: int = 0,
    smooth_frames: int = 0,
    smooth_method: str = "median",
    max_memory: int | None = None,
) -> DecomposeResult:
    """Decompose a sound into ``components`` parts, as FluCoMa's BufNMF.

    Each selected channel is STFT'd (periodic Hann, ``window_size // 2`` zero samples in front),
    its magnitude ``V`` (bins x hops) factorised as ``W H`` by KL multiplicative updates, and
    each component resynthesised by ratio-masking the complex STFT.

    Args:
        source: samples, shape (samples,) or (samples, channels); any real dtype; not modified.
        components: number of components K (>= 1).
        iterations: multiplicative-update iterations (>= 1).
        window_size, hop_size, fft_size: FFT settings in samples (hop -1: window // 2;
            fft -1: next power of two >= window).
        seed: >= 0 reproduces FluCoMa's seeded start exactly; -1 draws a fresh seed
            (returned as ``result.seed``).
        bases: (fft_size // 2 + 1, channels * K) or (fft_size // 2 + 1, K), FluCoMa layout.
        bases_mode: 0/"none", 1/"seed" (start from ``bases``), 2/"fixed" (keep them).
        activations: (num_frames // hop + 1, channels * K) or (..., K).
        act_mode: as ``bases_mode``, for ``activations``.
        resynth: compute the components' audio.
        start_frame, num_frames: sample range (num_frames -1: to the end).
        start_chan, num_chans: channel range (num_chans -1: all remaining).
        progress: ``progress(done, total)`` after each iteration (total = iterations * channels);
            returning False cancels with :class:`bufnmf.Cancelled`.
        precision: "float32" (default: fast, half the memory; matches FluCoMa to ~1e-5)
            or "float64" (FluCoMa's own arithmetic, bit-for-bit to float32 output).
        track_divergence: record the KL divergence after every iteration per channel.
        kernel: "numba", "numpy" or "auto": numba when it is installed and its compiled
            kernels are ready (or the job is big enough to repay compiling them, ~20 s once),
            else NumPy; same results to float rounding (see :func:`bufnmf.nmf.resolve_kernel`).
        resynth_out: optional float array of shape (num_frames, channels * components) that
            receives the resynthesis instead of a new array, e.g. an ``np.memmap`` for files
            whose components would not fit in memory; returned as ``result.resynth``.
        extra_components: beyond FluCoMa: learn this many free components next to the
            ``components`` supplied ``bases`` (bases_mode "seed" or "fixed"; with "fixed" only
            the extra bases update). The result has ``components + extra_components`` per channel.
        smooth_frames: smooth each learnt activation over this many frames (a median or
            moving-average filter, ``smooth_method`` "median" or "mean") before resynthesis;
            the returned activations are the smoothed ones. 0 or 1: no smoothing.
        max_memory: refuse (before allocating) a run whose estimated peak memory exceeds this
            many bytes; default the memory available now (see :mod:`bufnmf.resources`).

    Returns:
        :class:`DecomposeResult`; bases/activations/resynth are float32 in FluCoMa layout.

    Raises:
        BufNMFError: any bad parameter or array, with what was given and what is expected.

    Example:
        >>> import numpy as np, bufnmf
        >>> x = np.random.default_rng(0).standard_normal(44100)
        >>> res = bufnmf.decompose(x, components=2, iterations=10, seed=1)
        >>> res.bases.shape, res.activations.shape, res.resynth.shape
        ((513, 2), (87, 2), (44100, 2))
    """
    data = validate_source(source)
    components = _as_int("components", components)
    iterations = _as_int("iterations", iterations)
    if components < 1:
        raise BufNMFError(f"components must be at least 1, got {components}")
    if iterations < 1:
        raise BufNMFError(f"iterations must be at least 1, got {iterations}")
    if iterations > MAX_ITERATIONS:
        raise BufNMFError(f"iterations {iterations} is more than {MAX_ITERATIONS}: KL updates have long converged "
                          "by then; use fewer")
    seed = _as_int("seed", seed)
    if seed < -1:
        raise BufNMFError(f"seed must be -1 (random) or >= 0, got {seed}")
    if seed == -1:
        seed = secrets.randbits(63)  # drawn once, reported in the result, so the run can be repeated
    try:
        resolve_kernel(kernel)  # checks the name; the choice for "auto" depends on the job's size
    except ValueError as exc:
        raise BufNMFError(str(exc)) from None
    if precision not in _PRECISIONS:
        raise BufNMFError(f"precision must be 'float32' or 'float64', got {precision!r}")
    dtype = _PRECISIONS[precision]
    bases_mode = parse_mode("bases_mode", bases_mode)
    act_mode = parse_mode("act_mode", act_mode)
    settings = resolve_fft_settings(window_size, hop_size, fft_size)
    data = _select(data, start_frame, num_frames, start_chan, num_chans)
    n, channels = data.shape
    bins, hops = settings.bins, settings.num_frames(n)

    W_in = _checked_side("bases", "bases_mode", bases, bases_mode, bins, components, channels,
                         f"fft_size // 2 + 1 for fft_size {settings.fft_size}")
    H_in = _checked_side("activations", "act_mode", activations, act_mode, hops, components, channels,
                         f"num_frames // hop_size + 1 = {n} // {settings.hop_size} + 1")
    extra_components = _as_int("extra_components", extra_components)
    smooth_frames = _as_int("smooth_frames", smooth_frames)
    if smooth_frames < 0:
        raise BufNMFError(f"smooth_frames must be >= 0, got {smooth_frames}")
    if smooth_method not in ("median", "mean"):
        raise BufNMFError(f"smooth_method must be 'median' or 'mean', got {smooth_method!r}")
    update_mask: np.ndarray | bool = bases_mode != 2
    requested_bases_mode = bases_mode
    if extra_components < 0:
        raise BufNMFError(f"extra_components must be >= 0, got {extra_components}")
    if extra_components:
        if W_in is None:
            raise BufNMFError("extra_components needs bases to go beside: pass bases=<array> with "
                              "bases_mode='fixed' or 'seed'")
        if act_mode != 0:
            raise BufNMFError("extra_components cannot be combined with supplied activations: set act_mode=0")
        total_k = components + extra_components
        free = flucoma_init(seed, bins, total_k)[:, components:]
        W_in = np.concatenate([np.concatenate([W_in[:, c * components:(c + 1) * components], free], axis=1)
                               for c in range(channels)], axis=1)
        update_mask = np.array([bases_mode != 2] * components + [True] * extra_components)
        components = total_k
        if bases_mode == 2:
            bases_mode = 1  # partly free: the mask keeps the supplied ones fixed
    if bases_mode == 2 and act_mode == 2 and not resynth:
        warnings.warn("bases and activations both fixed and resynth off: no work to do",
                      BufNMFWarning, stacklevel=2)
    if resynth and settings.hop_size > settings.window_size // 2:
        warnings.warn(
            f"hop_size {settings.hop_size} is more than half of window_size {settings.window_size}: the Hann "
            "windows leave parts of the sound (its end especially) uncovered, so the components may not sum "
            "to the input; use hop_size <= window_size // 2", BufNMFWarning, stacklevel=2)
    kernel = resolve_kernel(kernel, (bins, hops, components, iterations))
    check_fits(estimate(n, channels, components, settings, precision, resynth, resynth_out is not None, kernel,
                        not (isinstance(source, np.ndarray) and source.dtype in (np.float32, np.float64))),
               max_memory)

    out_W = np.empty((bins, channels * components), dtype=np.float32)
    out_H = np.empty((hops, channels * components), dtype=np.float32)
    out_R = _resynth_buffer(resynth_out, n, channels * components) if resynth else None
    release = page_releaser(out_R) if out_R is not None and resynth_out is not None else None
    learn_iters = 0 if (bases_mode == 2 and act_mode == 2) else iterations
    total = learn_iters * channels
    divergences: list[list[float]] = []
    W_rand = flucoma_init(seed, bins, components) if W_in is None else None
    H_rand = flucoma_init(seed, components, hops) if H_in is None else None
    for c in range(channels):
        cols = slice(c * components, (c + 1) * components)
        chan = data[:, c]
        # Very loud (but finite) input would overflow the spectra: scale by a power of two,
        # which is exact, and undo it on the resynthesis. Everything else is scale-free.
        loudest = float(np.max(np.abs(chan)))
        gain = 2.0 ** -np.ceil(np.log2(loudest / _LOUD)) if loudest > _LOUD else 1.0
        X = stft_complex(chan * gain if gain != 1.0 else chan, settings,
                         dtype=np.complex64 if dtype == np.float32 else np.complex128)
        V = np.abs(X)
        if not resynth:
            del X
        W0 = W_rand if W_in is None else W_in[:, cols]
        H0 = H_rand if H_in is None else H_in[:, cols].T
        W, H = prepare_start(W0, H0, dtype)
        res = nmf_kl(V, W, H, learn_iters, update_bases=update_mask, update_activations=act_mode != 2,
                     progress=_progress_adapter(progress, c * learn_iters, total),
                     track_divergence=track_divergence, kernel=kernel)
        if res.iterations < learn_iters:
            raise Cancelled(f"cancelled by the progress callback after {c * learn_iters + res.iterations} "
                            f"of {total} iterations")
        W, H = res.bases, res.activations
        if smooth_frames > 1:
            H = smooth_rows(H, smooth_frames, smooth_method)
        divergences.append(res.divergences if track_divergence else [])
        if track_divergence and learn_iters == 0:
            divergences[-1] = [kl_divergence(V, W, H)]
        out_W[:, cols] = W
        peak = float(H.max())
        out_H[:, cols] = (H / peak).T if peak > 0 else H.T
        if out_R is not None:
            block = resynthesise(X, W, H, settings, n, out=out_R[:, cols], release=release)
            if gain != 1.0:
                block /= gain
            del X
    return DecomposeResult(
        bases=out_W, activations=out_H, resynth=out_R, components=components, iterations=learn_iters,
        window_size=settings.window_size, hop_size=settings.hop_size, fft_size=settings.fft_size,
        num_samples=n, num_channels=channels,
        start_frame=_as_int("start_frame", start_frame), start_chan=_as_int("start_chan", start_chan),
        seed=seed, bases_mode=requested_bases_mode, act_mode=act_mode, precision=precision, divergences=divergences,
        extra_components=extra_components, kernel=kernel,
    )


def smooth_rows(H: np.ndarray, frames: int, method: str = "median") -> np.ndarray:
    """Smooth each row of ``H`` (K x frames) over ``frames`` frames (median or moving average, centred)."""
    from scipy.ndimage import median_filter, uniform_filter1d

    if method == "median":
        return median_filter(H, size=(1, frames), mode="nearest")
    return uniform_filter1d(H, size=frames, axis=1, mode="nearest")


def _resynth_buffer(given: np.ndarray | None, rows: int, cols: int) -> np.ndarray:
    if given is None:
        return np.empty((rows, cols), dtype=np.float32)
    if not isinstance(given, np.ndarray) or given.shape != (rows, cols) or given.dtype.kind != "f":
        shape = getattr(given, "shape", None)
        dtype = getattr(given, "dtype", type(given).__name__)
        raise BufNMFError(f"resynth_out has shape {shape} and dtype {dtype}, expected a float array of shape "
                          f"({rows}, {cols}): num_frames x channels * components")
    if not given.flags.writeable:
        raise BufNMFError("resynth_out is read-only: pass a writable array")
    return given


def _checked_side(
    name: str, mode_name: str, array: object, mode: int, rows: int, components: int, channels: int, rows_desc: str
) -> np.ndarray | None:
    if mode == 0:
        if array is not None:
            warnings.warn(f"{name} given but {mode_name} is 0 ('none'): ignored; "
                          f"set {mode_name}='seed' or 'fixed' to use it", BufNMFWarning, stacklevel=3)
        return None
    if array is None:
        label = "seed" if mode == 1 else "fixed"
        raise BufNMFError(f"{mode_name} is {mode} ('{label}') but no {name} were given: "
                          f"pass {name}=<array>, or set {mode_name}=0")
    return _seed_buffer(name, mode_name, array, rows, components, channels, rows_desc)


__all__ = ["EPS", "DecomposeResult", "FFTSettings", "decompose", "parse_mode", "validate_source"]
