"""BufNMFSeed: NNDSVD starting points for NMF (Boutsidis and Gallopoulos, 2008).

The magnitude spectrogram ``V`` (bins x frames) is approximated by its truncated SVD;
each singular triplet is split into its positive and negative parts and the dominant
part becomes one non-negative basis/activation pair. The rank is given, or chosen as
the smallest that covers a fraction ``coverage`` of the singular values' energy
(sum of squared singular values).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import resolve_seed
from ..dsp.fft import resolve_fft_settings
from ..dsp.stft import stft_complex
from ..errors import BufNMFError
from ..models.nndsvd import nndsvd, rank_for_coverage
from .common import load_source, require_mono


@dataclass
class SeedResult:
    """NNDSVD seeds in the layouts :func:`bufnmf.decompose` takes.

    Attributes:
        bases: float32 (fft_size // 2 + 1, K).
        activations: float32 (num_frames // hop + 1, K).
        components: K. coverage: fraction of the singular-value energy the K components cover.
        window_size, hop_size, fft_size: resolved FFT settings.
        seed: the seed of the random fill (drawn when -1 was asked).
    """

    bases: np.ndarray
    activations: np.ndarray
    components: int
    coverage: float
    method: str
    window_size: int
    hop_size: int
    fft_size: int
    seed: int = 0


def nmf_seed(
    source: object,
    components: int = -1,
    coverage: float = 0.5,
    method: str = "nndsvd",
    window_size: int = 1024,
    hop_size: int = -1,
    fft_size: int = -1,
    seed: int = -1,
) -> SeedResult:
    """NNDSVD seeds for a mono sound, ready for ``decompose(..., bases_mode=1, act_mode=1)``.

    Args:
        source: mono samples (samples,) or (samples, 1), or an audio file path.
        components: K, or -1 to choose it from ``coverage``.
        coverage: fraction (0, 1] of the singular values' energy to cover when components is -1.
        method: "nndsvd", "nndsvda" or "nndsvdar".
        window_size, hop_size, fft_size: FFT settings (FluCoMa's meanings; use the same for decompose).
        seed: the random fill of "nndsvdar": -1 draws one (reported as ``result.seed``), >= 0 reproduces.
    """
    x = require_mono(load_source(source)[0], "nmf_seed")
    seed = resolve_seed(seed)
    if components != -1 and components < 1:
        raise BufNMFError(f"components must be -1 (from coverage) or at least 1, got {components}")
    if not 0 < coverage <= 1:
        raise BufNMFError(f"coverage must be in (0, 1], got {coverage}")
    s = resolve_fft_settings(window_size, hop_size, fft_size)
    V = np.abs(stft_complex(x, s))
    S = np.linalg.svd(V, compute_uv=False)
    K = rank_for_coverage(S, coverage) if components == -1 else min(components, S.size)
    W, H = nndsvd(V, K, method, seed)
    energy = S**2
    covered = float(energy[:K].sum() / energy.sum()) if energy.sum() > 0 else 1.0
    return SeedResult(W.astype(np.float32), H.T.astype(np.float32), K, covered, method, s.window_size, s.hop_size,
                      s.fft_size, seed)
