"""BufNMFSeed: SVD-based starting bases and activations for BufNMF, and the rank they need, FluCoMa-exact.

The BufNMF magnitude spectrogram of the source (``window_size // 2`` zeros in front,
``num_samples // hop + 1`` frames) is factorised by :func:`bufnmf.models.nndsvd.nndsvd`: the rank
covers ``coverage`` of the *sum of the singular values*, clamped to ``[min_components,
max_components]``; method 0 NMF-SVD (FluCoMa's default), 1 NNDSVDar, 2 NNDSVDa, 3 NNDSVD.
Outputs as FluCoMa writes them: the bases as they come (unit L2 norm per column), the
activations divided by the largest value of the whole ``max_components x frames`` activation
matrix FluCoMa fills (so their peak is 1 unless a fill value is larger).

Differences from FluCoMa (docs/flucoma-parity.md): NNDSVD's norm slip is fixed (methods 1-3
no longer depend on the SVD's sign convention); a silent source gives zero activations where
FluCoMa divides by 0; ``seed`` -1 draws a seed that is reported (``result.seed``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import as_float, as_int, resolve_seed
from ..dsp.fft import resolve_fft_settings
from ..dsp.stft import stft_complex
from ..errors import BufNMFError
from ..models.nndsvd import METHOD_NAMES, nndsvd
from .common import load_source, require_mono

_METHOD_KEYS = {name.lower(): i for i, name in enumerate(METHOD_NAMES)}


def parse_method(method: int | str) -> int:
    """0-3, or a name ("NMF-SVD", "NNDSVDar", "NNDSVDa", "NNDSVD", any case) -> 0-3; else :class:`BufNMFError`."""
    if isinstance(method, str):
        key = method.strip().lower().replace("_", "-")
        if key in _METHOD_KEYS:
            return _METHOD_KEYS[key]
        if key.isdigit():
            method = int(key)
    if isinstance(method, (bool, np.bool_)) or not isinstance(method, (int, np.integer)) or not 0 <= method <= 3:
        raise BufNMFError(f"method {method!r} is not one of 0 'NMF-SVD', 1 'NNDSVDar', 2 'NNDSVDa', 3 'NNDSVD'")
    return int(method)


@dataclass
class SeedResult:
    """What :func:`nmf_seed` returns: FluCoMa's two buffers and what was chosen.

    Attributes:
        bases: float32 (fft_size // 2 + 1, components), FluCoMa's ``bases`` buffer (unit L2 norm columns).
        activations: float32 (num_samples // hop_size + 1, components), FluCoMa's ``activations`` buffer.
        components: the rank chosen.
        coverage: the fraction of the sum of the singular values the components cover.
        method: 0-3 (``method_name`` gives FluCoMa's name).
        window_size, hop_size, fft_size: the resolved FFT settings (use the same for decompose).
        seed: the seed of method 1's random fill (drawn when -1 was asked).
        singular_values: float64 (min(bins, frames),), all of them, largest first.
    """

    bases: np.ndarray
    activations: np.ndarray
    components: int
    coverage: float
    method: int
    window_size: int
    hop_size: int
    fft_size: int
    seed: int
    singular_values: np.ndarray

    @property
    def method_name(self) -> str:
        """FluCoMa's name of the method: "NMF-SVD", "NNDSVDar", "NNDSVDa" or "NNDSVD"."""
        return METHOD_NAMES[self.method]


def nmf_seed(
    source: object,
    min_components: int = 1,
    max_components: int = 200,
    coverage: float = 0.5,
    method: int | str = 0,
    seed: int = -1,
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    *,
    components: int | None = None,
) -> SeedResult:
    """BufNMFSeed: starting bases and activations for a mono sound, ready for
    ``decompose(..., components=r.components, bases=r.bases, bases_mode=1, activations=r.activations, act_mode=1)``.

    Args:
        source: mono samples (samples,) or (samples, 1), or an audio file path.
        min_components: the smallest rank (FluCoMa ``minComponents``, >= 1).
        max_components: the largest rank (FluCoMa ``maxComponents``, >= min_components). It also
            sizes the matrices method 1 fills, so it changes method 1's activations (as FluCoMa's).
        coverage: 0..1 (FluCoMa ``coverage``): the fraction of the sum of the singular values the
            components must cover; 0 means ``min_components``.
        method: 0 "NMF-SVD" (default), 1 "NNDSVDar", 2 "NNDSVDa", 3 "NNDSVD" (a number or a name).
        seed: method 1's random fill: -1 draws a seed (reported as ``result.seed``), >= 0 reproduces
            FluCoMa's fill for that seed.
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings).
        components: bufnmf option: a fixed rank (the same as ``min_components = max_components =
            components`` with coverage 0).

    Returns:
        :class:`SeedResult`.

    Raises:
        BufNMFError: several channels, a bad range or method, bad FFT settings.

    Example:
        >>> import numpy as np, bufnmf
        >>> x = np.random.default_rng(0).standard_normal(44100)
        >>> r = bufnmf.nmf_seed(x, coverage=0.5)
        >>> r.method_name, r.bases.shape[0], r.activations.shape[0]
        ('NMF-SVD', 513, 87)
    """
    x = require_mono(load_source(source)[0], "nmf_seed")
    if components is not None:
        k = as_int("components", components)
        if k < 1:
            raise BufNMFError(f"components must be at least 1 (or None to choose from coverage), got {k}")
        lo, hi, cov = k, k, 0.0
    else:
        lo, hi = as_int("min_components", min_components), as_int("max_components", max_components)
        if lo < 1:
            raise BufNMFError(f"min_components must be at least 1, got {lo}")
        if hi < lo:
            raise BufNMFError(f"max_components ({hi}) must be at least min_components ({lo})")
        cov = as_float("coverage", coverage, low=0.0, high=1.0)
    m = parse_method(method)
    seed = resolve_seed(seed)
    s = resolve_fft_settings(window_size, hop_size, fft_size)
    V = np.abs(stft_complex(x, s))
    U, sv, Vt = np.linalg.svd(V, full_matrices=False)
    W, H, k, peak = nndsvd(V, lo, hi, cov, m, seed, svd=(U, sv, Vt))
    scale = 1.0 / peak if peak > 0 else 1.0  # FluCoMa divides by 0 on silence
    total = float(sv.sum())
    return SeedResult(
        bases=W.astype(np.float32), activations=(H * scale).T.astype(np.float32), components=k,
        coverage=float(sv[:k].sum() / total) if total > 0 else 1.0, method=m, window_size=s.window_size,
        hop_size=s.hop_size, fft_size=s.fft_size, seed=seed, singular_values=sv,
    )
