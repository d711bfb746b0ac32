"""The BufNMF client: FluCoMa's parameters, validation and buffer layouts over the numerics.

Buffers follow FluCoMa: frames x channels, output channel ``chan * components + k``.

:func:`decompose` runs in three steps, so that a run that cannot work is refused before any
work or allocation in proportion to the components or the sound's length:

1. :func:`prepare` checks every parameter and array and makes a :class:`DecomposePlan`
   (shapes, seed, kernel, memory estimate), refusing a plan that would not fit;
2. :func:`run` factorises and resynthesises each channel in turn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..checks import as_int, check_seed, resolve_seed
from ..dsp.fft import EPS, FFTSettings, resolve_fft_settings
from ..dsp.masks import resynthesise
from ..dsp.random import flucoma_init
from ..dsp.stft import stft_complex
from ..errors import BufNMFError, BufNMFWarning, Cancelled
from ..models.mu import (
    NMFResult,
    kl_divergence,
    multiplicative_update,
    normalise_columns,
    prepare_start,
    resolve_kernel,
)
from ..models.nmfd import nmfd_update, normalise_templates
from ..resources import MAX_ITERATIONS, MemoryEstimate, check_fits, estimate, memory_limit, page_releaser
from .common import load_source, parse_mode, select

ProgressCallback = Callable[[int, int], "bool | None"]

_LOUD = 2.0**32  # peaks above this are scaled down (exactly, by a power of two) before the STFT
PRECISIONS = {"float32": np.float32, "float64": np.float64}
SMOOTH_METHODS = ("median", "mean")
#: ``model=`` names: FluCoMa's KL-NMF (the default, exact), or bufnmf's β-divergence NMFD.
MODELS = ("flucoma", "nmfd")
#: model "nmfd"'s defaults: the best mean SDR on the shared drum loop (benchmarks/separation.py).
NMFD_BETA = 0.5
NMFD_TEMPLATE_FRAMES = 4
NMFD_WARM_FRACTION = 0.3


@dataclass(frozen=True)
class ModelOptions:
    """The factorisation model of a decomposition (``decompose(model=...)`` and its options, resolved).

    Attributes:
        name: "flucoma" (FluCoMa's KL-NMF, exactly) or "nmfd" (β-divergence NMF deconvolution,
            Smaragdis 2004: each component a ``template_frames``-frame spectrogram template).
        beta: the β-divergence of the iterations after the warm start: 0 Itakura-Saito, 1 KL, 2 Euclidean.
        template_frames: frames T of each template (1: plain NMF).
        warm_iterations: the first iterations, run at β = 1 (KL) from the random start; the rest at
            ``beta``. β < 1 from a random start falls into poor minima on some seeds; a KL start avoids them.
        sparsity: L1 weight on the activations (dimensionless; it acts for β ≠ 1 only, see
            :mod:`bufnmf.models.mu`). continuity: Virtanen's temporal-continuity weight (dimensionless).
    """

    name: str = "flucoma"
    beta: float = 1.0
    template_frames: int = 1
    warm_iterations: int = 0
    sparsity: float = 0.0
    continuity: float = 0.0

    def describe(self) -> dict[str, object]:
        """The model for ``summary.json``: its name, and for "nmfd" its options."""
        if self.name == "flucoma":
            return {"name": "flucoma"}
        return {"name": self.name, "beta": self.beta, "template_frames": self.template_frames,
                "warm_iterations": self.warm_iterations, "sparsity": self.sparsity, "continuity": self.continuity}


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BufNMFError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise BufNMFError(f"{name} must be a finite number, got {v}")
    return v


def resolve_model(model: str, iterations: int, hops: int, *, beta: float | None = None,
                  template_frames: int | None = None, warm_iterations: int | None = None,
                  sparsity: float | None = None, continuity: float | None = None) -> ModelOptions:
    """Check ``decompose``'s model options and fill in the defaults of the model asked for.

    ``iterations``: the run's; ``hops``: the selection's activation frames (templates may not be longer).

    Raises:
        BufNMFError: an unknown model, an option the model does not take, or a value out of range.
    """
    if model not in MODELS:
        raise BufNMFError(f"model must be 'flucoma' (FluCoMa's KL-NMF) or 'nmfd' (bufnmf's β-NMFD), got {model!r}")
    given = {"beta": beta, "template_frames": template_frames, "warm_iterations": warm_iterations,
             "sparsity": sparsity, "continuity": continuity}
    if model == "flucoma":
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            flag = "--" + extra[0].replace("_", "-")
            raise BufNMFError(f"{extra[0]} is an option of model 'nmfd'; model 'flucoma' is FluCoMa's KL-NMF "
                              f"exactly: pass model='nmfd' to use {extra[0]}",
                              cli=f"{flag} is an option of --model nmfd; --model flucoma (the default) is FluCoMa's "
                                  f"KL-NMF exactly: add --model nmfd to use {flag}")
        return ModelOptions()
    b = NMFD_BETA if beta is None else _finite("beta", beta)
    if not 0.0 <= b <= 2.0:
        raise BufNMFError(f"beta must be between 0 (Itakura-Saito) and 2 (Euclidean), 1 being KL; got {b:g}")
    # the default shrinks to a selection shorter than it; a number asked for is checked
    T = min(NMFD_TEMPLATE_FRAMES, hops) if template_frames is None else as_int("template_frames", template_frames)
    if T < 1:
        raise BufNMFError(f"template_frames must be at least 1 (1: plain NMF), got {T}")
    if T > hops:
        raise BufNMFError(f"template_frames {T} is more than the {hops} STFT frames of the selection: "
                          "use fewer template frames (or a longer selection, a smaller hop_size)")
    if warm_iterations is None:
        warm = round(NMFD_WARM_FRACTION * iterations)
    else:
        warm = as_int("warm_iterations", warm_iterations)
        if not 0 <= warm <= iterations:
            raise BufNMFError(f"warm_iterations must be between 0 and iterations ({iterations}), got {warm}",
                              cli=f"--warm-iterations must be between 0 and --iterations ({iterations}), got {warm}")
    values = {}
    for name in ("sparsity", "continuity"):
        v = given[name]
        values[name] = 0.0 if v is None else _finite(name, v)
        if values[name] < 0:
            raise BufNMFError(f"{name} must be >= 0 (0: none), got {values[name]:g}")
    return ModelOptions("nmfd", b, T, warm, values["sparsity"], values["continuity"])


@dataclass
class DecomposeResult:
    """What :func:`decompose` returns.

    Attributes:
        bases: float32, shape (fft_size // 2 + 1, channels * components); unit L2 norm per column.
        activations: float32, shape (num_frames // hop_size + 1, channels * components);
            each channel's block scaled so its largest value is 1 (FluCoMa's), that is divided by
            ``activation_scale``.
        resynth: float32, shape (num_frames, channels * components), or None.
        components, iterations, window_size, hop_size, fft_size: resolved parameters.
        num_samples: samples analysed per channel (``num_frames`` resolved).
        num_channels: channels analysed. start_frame, start_chan: where the selection starts.
        seed: the seed actually used (a drawn one when -1 was asked), to reproduce the run.
        divergences: per channel, the KL divergence after each iteration (when tracked; model
            "nmfd": the KL divergence during its warm start, then the β-divergence).
        precision: "float32" or "float64", the arithmetic of the factorisation.
        extra_components: how many of each channel's components (the last ones) were learnt
            freely beside supplied bases.
        kernel: the NMF kernel that ran ("numba" or "numpy").
        sample_rate: the source file's rate in Hz when a path was given, else None.
        activation_scale: float64 (channels,): per channel, the largest value of the learnt
            activations, which the written activations are divided by (1.0 for a silent channel).
            ``bases @ (activations * activation_scale[c]).T`` is channel c's model of its magnitude
            spectrogram (model "nmfd": up to the templates' spread over their frames);
            :func:`bufnmf.morph` takes it to play the sound at its own level.
        model: the factorisation model and its options (:class:`ModelOptions`).
        templates: model "nmfd" only (else None): float32, shape (fft_size // 2 + 1,
            channels * components, template_frames), component k's spectrogram template over its
            frames. Each sums over its frames to its column of ``bases`` (the bases are the templates'
            spectra, unit L2 norm); channel c's model is ``sum_τ templates[:, :, τ]`` times the
            activations (times ``activation_scale[c]``) delayed by τ frames.
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
    sample_rate: int | None = None
    activation_scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    model: ModelOptions = field(default_factory=ModelOptions)
    templates: np.ndarray | None = None

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


@dataclass(frozen=True)
class DecomposePlan:
    """A checked decomposition: every resolved parameter and the memory it needs; nothing allocated.

    Attributes:
        settings: resolved FFT settings.
        num_samples, num_channels: the selection's size.
        components: components per channel, extra components included.
        extra_components: free components learnt beside supplied bases.
        iterations: iterations that learn something (0 when both sides are fixed).
        seed: the seed the run uses (drawn when -1 was asked).
        bases_mode, act_mode: 0 none, 1 seed, 2 fixed (as asked).
        precision: "float32" or "float64". kernel: "numba" or "numpy".
        resynth: whether the components' audio is made. memory: the estimate that passed.
        smooth_frames, smooth_method: activation smoothing before resynthesis.
        start_frame, start_chan: where the selection starts.
        model: the factorisation model (:class:`ModelOptions`; FluCoMa's by default).
    """

    settings: FFTSettings
    num_samples: int
    num_channels: int
    components: int
    extra_components: int
    iterations: int
    seed: int
    bases_mode: int
    act_mode: int
    precision: str
    kernel: str
    resynth: bool
    memory: MemoryEstimate
    smooth_frames: int
    smooth_method: str
    start_frame: int
    start_chan: int
    model: ModelOptions = field(default_factory=ModelOptions)

    @property
    def bins(self) -> int:
        return self.settings.bins

    @property
    def hops(self) -> int:
        return self.settings.num_frames(self.num_samples)

    @property
    def learn_bases_mask(self) -> np.ndarray | bool:
        """Which bases learn: all/none, or the extras only beside fixed supplied bases."""
        if not self.extra_components:
            return self.bases_mode != 2
        supplied = self.components - self.extra_components
        return np.array([self.bases_mode != 2] * supplied + [True] * self.extra_components)


@dataclass
class Prepared:
    """A plan with the checked inputs it runs on (views of the caller's arrays)."""

    plan: DecomposePlan
    data: np.ndarray  # the selection, (num_samples, num_channels), the caller's dtype
    bases: np.ndarray | None  # float64 (bins, channels * supplied components), or None
    activations: np.ndarray | None  # float64 (hops, channels * components), or None
    sample_rate: int | None
    source_copy: bool


def _seed_buffer(name: str, mode_name: str, array: object, rows: int, components: int, channels: int,
                 rows_desc: str) -> np.ndarray:
    """Validate a seed/fixed buffer; returns float64 (rows, channels * components)."""
    try:
        raw = np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise BufNMFError(f"{name} must be a numeric array: {exc}") from None
    if raw.dtype.kind not in "fiu" or raw.dtype == np.bool_:
        raise BufNMFError(f"{name} must hold real numbers, got dtype {raw.dtype}: pass magnitudes, e.g. np.abs(...)")
    if raw.ndim == 1:
        raw = raw.reshape(-1, 1)
    if raw.ndim != 2:
        raise BufNMFError(f"{name} must be 2-D (frames, channels) in FluCoMa layout, got shape {raw.shape}")
    wanted = channels * components
    if raw.shape[0] != rows or raw.shape[1] not in (wanted, components):
        cols = f"{wanted}" if channels == 1 else f"{wanted} (channels * components) or {components}"
        raise BufNMFError(
            f"{name} has shape {raw.shape}, expected ({rows}, {cols}): {rows} rows ({rows_desc}) and "
            f"one column per component per channel; supply a matching buffer or set {mode_name} to 'none'"
        )
    arr = raw.astype(np.float64)
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


def _checked_side(name: str, mode_name: str, array: object, mode: int, rows: int, components: int, channels: int,
                  rows_desc: str) -> np.ndarray | None:
    if mode == 0:
        if array is not None:
            warnings.warn(f"{name} given but {mode_name} is 0 ('none'): ignored; "
                          f"set {mode_name} to 'seed' or 'fixed' to use it", BufNMFWarning, stacklevel=4)
        return None
    if array is None:
        label = "seed" if mode == 1 else "fixed"
        raise BufNMFError(f"{mode_name} is {mode} ('{label}') but no {name} were given: "
                          f"pass {name}=<array>, or set {mode_name}=0")
    return _seed_buffer(name, mode_name, array, rows, components, channels, rows_desc)


def prepare(
    source: object,
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
    *,
    precision: str = "float32",
    kernel: str = "auto",
    resynth_streamed: bool = False,
    extra_components: int = 0,
    smooth_frames: int = 0,
    smooth_method: str = "median",
    max_memory: int | str | None = None,
    held_source: int = 0,
    model: str = "flucoma",
    beta: float | None = None,
    template_frames: int | None = None,
    warm_iterations: int | None = None,
    sparsity: float | None = None,
    continuity: float | None = None,
) -> Prepared:
    """Check everything :func:`decompose` takes and plan the run; allocate nothing in proportion to it.

    Takes :func:`decompose`'s parameters (``resynth_streamed``: the resynthesis goes to a caller's
    buffer, e.g. a memory map, and is not counted as memory; ``held_source``: bytes the caller
    will hold for the source, e.g. a file it is about to read, counted in the estimate).

    Raises:
        BufNMFError: any bad parameter or array, or a plan whose memory estimate exceeds
            ``max_memory`` (default: the memory available now), with the estimate.
    """
    data, sample_rate = load_source(source)
    memory_limit(max_memory)  # a bad limit is refused before anything else
    components = as_int("components", components)
    iterations = as_int("iterations", iterations)
    if components < 1:
        raise BufNMFError(f"components must be at least 1, got {components}")
    if iterations < 1:
        raise BufNMFError(f"iterations must be at least 1, got {iterations}")
    if iterations > MAX_ITERATIONS:
        raise BufNMFError(f"iterations {iterations} is more than {MAX_ITERATIONS}: KL updates have long converged "
                          "by then; use fewer")
    check_seed(seed)
    try:
        resolve_kernel(kernel)  # checks the name; the choice for "auto" depends on the job's size
    except ValueError as exc:
        raise BufNMFError(str(exc)) from None
    if precision not in PRECISIONS:
        raise BufNMFError(f"precision must be 'float32' or 'float64', got {precision!r}")
    b_mode = parse_mode("bases_mode", bases_mode)
    a_mode = parse_mode("act_mode", act_mode)
    extra = as_int("extra_components", extra_components)
    if extra < 0:
        raise BufNMFError(f"extra_components must be >= 0, got {extra}")
    smooth = as_int("smooth_frames", smooth_frames)
    if smooth < 0:
        raise BufNMFError(f"smooth_frames must be >= 0, got {smooth}")
    if smooth_method not in SMOOTH_METHODS:
        raise BufNMFError(f"smooth_method must be 'median' or 'mean', got {smooth_method!r}")
    settings = resolve_fft_settings(window_size, hop_size, fft_size)
    sel = select(data, start_frame, num_frames, start_chan, num_chans)
    n, channels = sel.shape
    if smooth > settings.num_frames(n):
        raise BufNMFError(f"smooth_frames {smooth} is longer than the {settings.num_frames(n)} activation frames: "
                          "use fewer frames (or 0 for no smoothing)")
    bins, hops = settings.bins, settings.num_frames(n)
    options = resolve_model(model, iterations, hops, beta=beta, template_frames=template_frames,
                            warm_iterations=warm_iterations, sparsity=sparsity, continuity=continuity)
    if options.name != "flucoma":
        if b_mode != 0 or a_mode != 0:
            raise BufNMFError(f"model {options.name!r} learns its templates and activations from the sound: "
                              "supplied bases or activations are not supported with it; use model='flucoma' "
                              "with bases/activations, or set bases_mode and act_mode to 'none'",
                              cli=f"--model {options.name} learns its templates and activations from the sound: "
                                  "--bases and --activations are not supported with it; use --model flucoma "
                                  "(the default) with them")
        if kernel == "numba":
            raise BufNMFError(f"kernel 'numba' runs model 'flucoma' only; model {options.name!r} runs in NumPy: "
                              "use kernel='auto' or 'numpy'")
    W_in = _checked_side("bases", "bases_mode", bases, b_mode, bins, components, channels,
                         f"fft_size // 2 + 1 for fft_size {settings.fft_size}")
    H_in = _checked_side("activations", "act_mode", activations, a_mode, hops, components, channels,
                         f"num_frames // hop_size + 1 = {n} // {settings.hop_size} + 1")
    if extra:
        if W_in is None:
            raise BufNMFError("extra_components needs bases to go beside: pass bases=<array> with "
                              "bases_mode='fixed' or 'seed'")
        if a_mode != 0:
            raise BufNMFError("extra_components cannot be combined with supplied activations: set act_mode=0")
    total_k = components + extra
    if b_mode == 2 and a_mode == 2 and not resynth:
        warnings.warn("bases and activations both fixed and resynth off: no work to do", BufNMFWarning, stacklevel=3)
    if resynth and settings.hop_size > settings.window_size // 2:
        warnings.warn(
            f"hop_size {settings.hop_size} is more than half of window_size {settings.window_size}: the Hann "
            "windows leave parts of the sound (its end especially) uncovered, so the components may not sum "
            "to the input; use hop_size <= window_size // 2", BufNMFWarning, stacklevel=3)
    learn_iters = 0 if (b_mode == 2 and a_mode == 2) else iterations
    if options.name == "flucoma":
        chosen = resolve_kernel(kernel, (bins, hops, total_k, learn_iters))
    else:
        chosen = "numpy"
    source_copy = sel.dtype not in (np.float32, np.float64)
    memory = estimate(n, channels, total_k, settings, precision, resynth, resynth_streamed, chosen, source_copy)
    if options.template_frames > 1:  # NMFD's factors are those of T K components (the templates' frames side
        more = estimate(n, channels, total_k * options.template_frames, settings, precision, False)  # by side)
        memory = replace(memory, factors=max(memory.factors, more.factors))
    if held_source:
        memory = replace(memory, source=memory.source + as_int("held_source", held_source))
    check_fits(memory, max_memory)
    plan = DecomposePlan(
        settings=settings, num_samples=n, num_channels=channels, components=total_k, extra_components=extra,
        iterations=learn_iters, seed=resolve_seed(seed), bases_mode=b_mode, act_mode=a_mode, precision=precision,
        kernel=chosen, resynth=bool(resynth), memory=memory, smooth_frames=smooth, smooth_method=smooth_method,
        start_frame=as_int("start_frame", start_frame), start_chan=as_int("start_chan", start_chan),
        model=options,
    )
    return Prepared(plan, sel, W_in, H_in, sample_rate, source_copy)


def _start(prep: Prepared) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The start of every channel: supplied buffers (with the free extras beside) or FluCoMa's random start.

    Returns ``(W, H)``: W (bins, channels * K) or None, H (hops, channels * K) or None; None means
    "the seeded random start", the same for every channel, made per channel in :func:`run`.
    """
    p = prep.plan
    if prep.bases is None or not p.extra_components:
        return prep.bases, prep.activations
    supplied = p.components - p.extra_components
    free = flucoma_init(p.seed, p.bins, p.components)[:, supplied:]
    W = np.concatenate([np.concatenate([prep.bases[:, c * supplied:(c + 1) * supplied], free], axis=1)
                        for c in range(p.num_channels)], axis=1)
    return W, prep.activations


def run(prep: Prepared, progress: ProgressCallback | None = None, *, track_divergence: bool = False,
        resynth_out: np.ndarray | None = None) -> DecomposeResult:
    """Run a prepared decomposition: each channel's STFT, factorisation and resynthesis in turn."""
    p = prep.plan
    K, C, bins, hops, n = p.components, p.num_channels, p.bins, p.hops, p.num_samples
    dtype = PRECISIONS[p.precision]
    W_in, H_in = _start(prep)
    out_W = np.empty((bins, C * K), dtype=np.float32)
    out_H = np.empty((hops, C * K), dtype=np.float32)
    out_R = _resynth_buffer(resynth_out, n, C * K) if p.resynth else None
    release = page_releaser(out_R) if out_R is not None and resynth_out is not None else None
    total = p.iterations * C
    T = p.model.template_frames
    nmfd = p.model.name == "nmfd"
    out_T = np.empty((bins, C * K, T), dtype=np.float32) if nmfd else None
    W_rand = (nmfd_start(p.seed, bins, K, T) if nmfd else flucoma_init(p.seed, bins, K)) if W_in is None else None
    H_rand = flucoma_init(p.seed, K, hops) if H_in is None else None
    divergences: list[list[float]] = []
    scales = np.ones(C)
    for c in range(C):
        cols = slice(c * K, (c + 1) * K)
        chan = prep.data[:, c]
        # Very loud (but finite) input would overflow the spectra: scale by a power of two,
        # which is exact, and undo it on the resynthesis. Everything else is scale-free.
        loudest = float(np.max(np.abs(chan.astype(np.float64) if chan.dtype.kind != "f" else chan)))
        gain = 2.0 ** -np.ceil(np.log2(loudest / _LOUD)) if loudest > _LOUD else 1.0
        X = stft_complex(chan * gain if gain != 1.0 else chan, p.settings,
                         dtype=np.complex64 if dtype == np.float32 else np.complex128)
        V = np.abs(X)
        if out_R is None:
            del X
        W0 = W_in[:, cols] if W_in is not None else W_rand
        H0 = H_in[:, cols].T if H_in is not None else H_rand
        assert W0 is not None and H0 is not None
        if nmfd:
            res = _run_nmfd(V, W0, H0, p, progress, c * p.iterations, total, track_divergence)
        else:
            W, H = prepare_start(W0, H0, dtype)
            step = None if progress is None else _offset_progress(progress, c * p.iterations, total)
            res = multiplicative_update(V, W, H, p.iterations, update_bases=p.learn_bases_mask,
                                        update_activations=p.act_mode != 2, progress=step,
                                        track_divergence=track_divergence, kernel=p.kernel)
        if res.iterations < p.iterations:
            raise Cancelled(f"cancelled by the progress callback after {c * p.iterations + res.iterations} "
                            f"of {total} iterations")
        W, H = res.bases, res.activations
        templates = None
        if nmfd:  # the bases buffer holds each template's spectrum (summed over its frames), unit L2
            spectra = W.sum(axis=2)
            norms = np.sqrt(np.einsum("fk,fk->k", spectra, spectra))
            norms = np.where(norms > 0, norms, 1.0).astype(W.dtype)
            templates = W / norms[None, :, None]
            W = spectra / norms
            H = H * norms[:, None]
        if p.smooth_frames > 1:
            H = smooth_rows(H, p.smooth_frames, p.smooth_method)
        divs = res.divergences if track_divergence else []
        if track_divergence and p.iterations == 0:
            divs = [kl_divergence(V, W, H)]
        divergences.append(divs)
        out_W[:, cols] = W
        peak = float(H.max())
        out_H[:, cols] = (H / peak).T if peak > 0 else H.T
        scales[c] = peak if peak > 0 else 1.0
        if out_T is not None and templates is not None:
            out_T[:, cols] = templates
        if out_R is not None:  # NMFD's masks come from its component models (the templates convolved)
            block = resynthesise(X, W if templates is None else templates, H, p.settings, n, out=out_R[:, cols],
                                 release=release)
            if gain != 1.0:
                with np.errstate(over="ignore"):
                    block /= gain
                _check_scaled_back(block, c, loudest)
            del X
    return DecomposeResult(
        bases=out_W, activations=out_H, resynth=out_R, components=K, iterations=p.iterations,
        window_size=p.settings.window_size, hop_size=p.settings.hop_size, fft_size=p.settings.fft_size,
        num_samples=n, num_channels=C, start_frame=p.start_frame, start_chan=p.start_chan, seed=p.seed,
        bases_mode=p.bases_mode, act_mode=p.act_mode, precision=p.precision, divergences=divergences,
        extra_components=p.extra_components, kernel=p.kernel, sample_rate=prep.sample_rate, activation_scale=scales,
        model=p.model, templates=out_T,
    )


def nmfd_start(seed: int, bins: int, components: int, frames: int) -> np.ndarray:
    """Model "nmfd"'s seeded start, (bins, components, frames): FluCoMa's random start of
    ``components * frames`` bases, lag τ of component k being column ``τ * components + k``
    (with one frame, FluCoMa's start of the bases exactly)."""
    return flucoma_init(seed, bins, components * frames).reshape(bins, frames, components).transpose(0, 2, 1)


def _run_nmfd(V: np.ndarray, W0: np.ndarray, H0: np.ndarray, p: DecomposePlan, progress: ProgressCallback | None,
              offset: int, total: int, track_divergence: bool) -> NMFResult:
    """Model "nmfd" on one channel: ``warm_iterations`` at β = 1 from the start, then the rest at β."""
    m = p.model
    dtype = V.dtype
    # FluCoMa's start: unit-L2 templates and unit-L2 activations, each normalised on its own
    W = np.ascontiguousarray(normalise_templates(np.maximum(np.asarray(W0, dtype=np.float64), EPS)), dtype=dtype)
    H = np.maximum(np.asarray(H0, dtype=np.float64), EPS)
    normalise_columns(H.T)
    H = np.ascontiguousarray(H, dtype=dtype)
    divs: list[float] = []
    done = 0
    for beta, count in ((1.0, m.warm_iterations), (m.beta, p.iterations - m.warm_iterations)):
        if count == 0:
            continue
        step = None if progress is None else _offset_progress(progress, offset + done, total)
        res = nmfd_update(V, W, H, count, beta=beta, progress=step, track_divergence=track_divergence,
                          sparsity=m.sparsity, continuity=m.continuity)
        W, H = res.bases, res.activations
        divs += res.divergences
        done += res.iterations
        if res.iterations < count:
            break
    return NMFResult(W, H, divs, done, "numpy")


def _check_scaled_back(block: np.ndarray, chan: int, loudest: float) -> None:
    """A very loud channel's components, scaled back, must fit float32 (a component can be louder
    than the sum of them all, so a source near float32's limit can overflow)."""
    for r in range(0, block.shape[0], 1 << 16):
        if not np.isfinite(block[r : r + (1 << 16)]).all():
            raise BufNMFError(
                f"the components of channel {chan} (which peaks at {loudest:.3g}) are louder than float32 can hold "
                f"({float(np.finfo(np.float32).max):.3g}) once scaled back: scale the source down (e.g. by 1/16) "
                "and the components up by the same factor afterwards")


def _offset_progress(progress: ProgressCallback, offset: int, total: int) -> Callable[[int], bool | None]:
    def step(done: int) -> bool | None:
        return progress(offset + done, total)

    return step


def decompose(
    source: object,
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
    max_memory: int | str | None = None,
    model: str = "flucoma",
    beta: float | None = None,
    template_frames: int | None = None,
    warm_iterations: int | None = None,
    sparsity: float | None = None,
    continuity: float | None = None,
) -> DecomposeResult:
    """Decompose a sound into ``components`` parts, as FluCoMa's BufNMF.

    Each selected channel is STFT'd (periodic Hann, ``window_size // 2`` zero samples in front),
    its magnitude ``V`` (bins x hops) factorised as ``W H`` by KL multiplicative updates, and
    each component resynthesised by ratio-masking the complex STFT.

    Args:
        source: samples, shape (samples,) or (samples, channels), any real dtype (not modified),
            or an audio file path (its rate is returned as ``result.sample_rate``).
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
            else NumPy; same results to float rounding (see :func:`bufnmf.models.mu.resolve_kernel`).
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
            many bytes, or a size such as "4G"; default the memory available now (see
            :mod:`bufnmf.resources`).
        model: "flucoma" (default): FluCoMa's KL-NMF, exactly. "nmfd": beyond FluCoMa, NMF
            deconvolution with β-divergences: each component is a spectrogram template of
            ``template_frames`` frames (a drum hit with its decay) and the components are the
            sound masked by each one's own model; better separation of drums (see README,
            "Unsupervised separation beyond FluCoMa"). Learns everything from the sound: no
            supplied bases or activations; runs in NumPy. The options below are model "nmfd"'s
            (giving one with model "flucoma" is an error); None takes the default.
        beta: the β-divergence, 0 (Itakura-Saito) .. 1 (KL) .. 2 (Euclidean); default 0.5.
        template_frames: frames per template (>= 1, at most the selection's frames; 1: plain
            β-NMF); default 4 (at the default hop of 512 samples, 46 ms at 44.1 kHz), or the
            selection's frames if fewer.
        warm_iterations: how many of ``iterations`` run first at β = 1 (KL), from the seeded
            random start, before the rest at ``beta``; default 30 % of ``iterations``.
        sparsity: L1 penalty weight on the activations (dimensionless, >= 0; acts for β ≠ 1
            only: under KL it only rescales them); default 0.
        continuity: temporal-continuity penalty weight (Virtanen 2007; dimensionless, >= 0);
            default 0.

    Returns:
        :class:`DecomposeResult`; bases/activations/resynth are float32 in FluCoMa layout
        (model "nmfd": ``bases`` are the templates' spectra, ``templates`` the templates).

    Raises:
        BufNMFError: any bad parameter or array, with what was given and what is expected.

    Example:
        >>> import numpy as np, bufnmf
        >>> x = np.random.default_rng(0).standard_normal(44100)
        >>> res = bufnmf.decompose(x, components=2, iterations=10, seed=1)
        >>> res.bases.shape, res.activations.shape, res.resynth.shape
        ((513, 2), (87, 2), (44100, 2))
    """
    prep = prepare(source, components, iterations, window_size, hop_size, fft_size, seed, bases, bases_mode,
                   activations, act_mode, resynth, start_frame, num_frames, start_chan, num_chans,
                   precision=precision, kernel=kernel, resynth_streamed=resynth_out is not None,
                   extra_components=extra_components, smooth_frames=smooth_frames, smooth_method=smooth_method,
                   max_memory=max_memory, model=model, beta=beta, template_frames=template_frames,
                   warm_iterations=warm_iterations, sparsity=sparsity, continuity=continuity)
    return run(prep, progress, track_divergence=track_divergence, resynth_out=resynth_out)


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
