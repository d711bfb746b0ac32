"""bufnmf: FluCoMa's BufNMF family in Python.

Split sounds into parts with KL-divergence non-negative matrix factorisation of
their magnitude spectrograms, FluCoMa-exact, with FluCoMa's buffer layouts.
"""

from __future__ import annotations

from .client import DecomposeResult, decompose
from .errors import BufNMFError, BufNMFWarning, Cancelled
from .stft import FFTSettings, resolve_fft_settings
from .templates import Kit, learn_bases, load_kit, save_kit

__version__ = "0.1.0"

__all__ = [
    "BufNMFError",
    "BufNMFWarning",
    "Cancelled",
    "DecomposeResult",
    "FFTSettings",
    "Kit",
    "__version__",
    "decompose",
    "learn_bases",
    "load_kit",
    "resolve_fft_settings",
    "save_kit",
]
