"""bufnmf: FluCoMa's BufNMF family in Python.

Split sounds into parts with KL-divergence non-negative matrix factorisation of
their magnitude spectrograms, FluCoMa-exact, with FluCoMa's buffer layouts.
"""

from __future__ import annotations

from .bufstft import istft, stft
from .client import DecomposeResult, decompose
from .cross import cross
from .errors import BufNMFError, BufNMFWarning, Cancelled
from .morph import NMFMorph, morph
from .realtime import NMFFilter, NMFMatch, match, nmf_filter
from .seeding import SeedResult, nmf_seed
from .spectral import FFTSettings, resolve_fft_settings
from .templates import Kit, learn_bases, load_kit, save_kit
from .tracking import Event, track

__version__ = "0.1.0"

__all__ = [
    "BufNMFError",
    "BufNMFWarning",
    "Cancelled",
    "DecomposeResult",
    "Event",
    "FFTSettings",
    "Kit",
    "NMFFilter",
    "NMFMatch",
    "NMFMorph",
    "SeedResult",
    "__version__",
    "cross",
    "decompose",
    "istft",
    "learn_bases",
    "load_kit",
    "match",
    "morph",
    "nmf_filter",
    "nmf_seed",
    "resolve_fft_settings",
    "save_kit",
    "stft",
    "track",
]
