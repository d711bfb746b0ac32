"""BufNMFCross: audio mosaicing, "Let it Bee" (Driedger, Pratzlich and Muller, ISMIR 2015).

The parameters, checks and sound of FluCoMa's BufNMFCross; the constrained activations are in
:mod:`bufnmf.models.cross`. FluCoMa's integer division makes its damping 1 until the last
iteration and 0 there, so its constraints act only once; bufnmf follows the paper. The sound
is the complex source frames weighted by ``H`` (their phases a starting point), whose magnitude
is kept while fast Griffin-Lim (``griffin_lim_iterations``, 50, and ``griffin_lim_momentum``,
0.9, FluCoMa's) makes the phase consistent. FluCoMa starts Griffin-Lim from random phases; bufnmf
from the weighted frames' phases (its documented choice).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..checks import as_float, as_int, resolve_seed
from ..dsp.fft import resolve_fft_settings
from ..dsp.phase import griffin_lim
from ..dsp.stft import stft_complex
from ..errors import BufNMFError, BufNMFWarning
from ..models.cross import cross_activations
from ..resources import available_memory, fmt_bytes, memory_limit
from .common import SeededArray, load_source, require_mono


def _odd(name: str, value: object) -> int:
    value = as_int(name, value)
    if value < 1:
        raise BufNMFError(f"{name} must be an odd integer >= 1, got {value}")
    if value % 2 == 0:
        warnings.warn(f"{name} {value} rounded up to {value + 1} (it must be odd)", BufNMFWarning, stacklevel=3)
        value += 1
    return value


def cross_memory(source_frames: int, target_frames: int, bins: int) -> int:
    """Peak bytes of :func:`cross`: H and three temporaries of its size, plus the spectra."""
    return 4 * source_frames * target_frames * 8 + 6 * bins * (source_frames + target_frames) * 16


def cross(
    source: object,
    target: object,
    time_sparsity: int = 7,
    polyphony: int = 10,
    continuity: int = 7,
    iterations: int = 50,
    seed: int = -1,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    griffin_lim_iterations: int = 50,
    max_memory: int | str | None = None,
    *,
    griffin_lim_momentum: float = 0.9,
) -> SeededArray:
    """Rebuild ``target`` from the spectral frames of ``source`` (BufNMFCross).

    Args:
        source, target: mono samples (samples,) or audio file paths (one channel each: pass
            ``x[:, c]`` or ``bufnmf.mixdown(x)`` for several).
        time_sparsity, continuity: odd integers >= 1 (window lengths with a centre; even values
            are rounded up with a warning, as FluCoMa does).
        polyphony: how many source frames may sound at once (>= 1). FluCoMa also rounds this
            count up to odd (its default 10 becomes 11); bufnmf keeps the count as given.
        iterations: KL updates of the activations.
        seed: >= 0 reproduces the start (activations and Griffin-Lim phase); -1 draws one,
            reported as ``result.seed``.
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings).
        griffin_lim_iterations: phase refinement iterations (0: the source frames' phases only).
        max_memory: refuse when the estimate exceeds this many bytes, or a size such as "4G"
            (default: available memory).
        griffin_lim_momentum: fast Griffin-Lim's momentum, 0 (plain Griffin-Lim) .. < 1; 0.9 is FluCoMa's
            (bufnmf 0.2 used 0.99).

    Returns:
        float64 samples of the target's length (a :class:`bufnmf.SeededArray`: ``.seed`` is the seed used).
    """
    src = require_mono(load_source(source, "source")[0], "cross", "source")
    tgt = require_mono(load_source(target, "target")[0], "cross", "target")
    iterations = as_int("iterations", iterations)
    if iterations < 1:
        raise BufNMFError(f"iterations must be at least 1, got {iterations}")
    griffin_lim_iterations = as_int("griffin_lim_iterations", griffin_lim_iterations)
    if griffin_lim_iterations < 0:
        raise BufNMFError(f"griffin_lim_iterations must be >= 0, got {griffin_lim_iterations}")
    momentum = as_float("griffin_lim_momentum", griffin_lim_momentum, low=0.0, high=1.0, high_open=True)
    settings = resolve_fft_settings(window_size, hop_size, fft_size)
    Ns, Nt = settings.num_frames(src.size), settings.num_frames(tgt.size)
    time_sparsity = _odd("time_sparsity", time_sparsity)
    continuity = _odd("continuity", continuity)
    polyphony = as_int("polyphony", polyphony)
    if polyphony < 1:
        raise BufNMFError(f"polyphony must be at least 1, got {polyphony}")
    for name, value in (("time_sparsity", time_sparsity), ("continuity", continuity)):
        if value > Nt:
            raise BufNMFError(f"{name} {value} is larger than the target's {Nt} frames: use at most {Nt} "
                              "(or a longer target / smaller hop)")
    need = cross_memory(Ns, Nt, settings.bins)
    given = memory_limit(max_memory)
    limit = available_memory() if given is None else given
    if need > limit:
        raise BufNMFError(
            f"cross needs about {fmt_bytes(need)}: its activations are source frames x target frames = {Ns} x {Nt}, "
            f"but {fmt_bytes(limit)} is available: use shorter sounds or a larger hop (memory grows with the "
            "product of the two lengths)"
        )
    S = stft_complex(src, settings)
    W = np.abs(S)
    V = np.abs(stft_complex(tgt, settings))
    seed = resolve_seed(seed)
    H = cross_activations(W, V, iterations, time_sparsity, polyphony, continuity, seed)
    Y = S @ H
    y = griffin_lim(np.abs(Y), settings, tgt.size, griffin_lim_iterations, momentum, np.angle(Y), seed)
    return SeededArray.wrap(y, seed)
