"""bufnmf: FluCoMa's BufNMF family in Python.

Split sounds into parts with KL-divergence non-negative matrix factorisation of
their magnitude spectrograms, FluCoMa-exact, with FluCoMa's buffer layouts.
The layers (docs/architecture.md): :mod:`.dsp` -> :mod:`.models` -> :mod:`.clients` ->
:mod:`.workflows` -> :mod:`.cli` (with :mod:`.io` for files).
"""

from __future__ import annotations

__version__ = "0.2.0"

from . import _startup  # noqa: F401, I001 - first: in the command, Ctrl-C while NumPy & co. load ends it quietly

from .clients.bufnmf import DecomposeResult, decompose
from .clients.bufstft import STFTResult, istft, stft
from .clients.common import SeededArray, mixdown
from .clients.nmfcross import cross
from .clients.nmfmatch import NMFFilter, NMFMatch, match, nmf_filter
from .clients.nmfmorph import NMFMorph, morph
from .clients.nmfseed import SeedResult, nmf_seed
from .clients.sines import Sines, SinesResult, sines
from .dsp.fft import FFTSettings, resolve_fft_settings
from .errors import BufNMFError, BufNMFWarning, Cancelled
from .io.events import Event
from .workflows.kits import Kit, learn_bases, load_kit, save_kit
from .workflows.tracking import Events, Separation, Tracker, TrackerOutput, separate, track

__all__ = [
    "BufNMFError",
    "BufNMFWarning",
    "Cancelled",
    "DecomposeResult",
    "Event",
    "Events",
    "FFTSettings",
    "Kit",
    "NMFFilter",
    "NMFMatch",
    "NMFMorph",
    "STFTResult",
    "SeedResult",
    "SeededArray",
    "Separation",
    "Sines",
    "SinesResult",
    "Tracker",
    "TrackerOutput",
    "__version__",
    "cross",
    "decompose",
    "istft",
    "learn_bases",
    "load_kit",
    "match",
    "mixdown",
    "morph",
    "nmf_filter",
    "nmf_seed",
    "resolve_fft_settings",
    "save_kit",
    "separate",
    "sines",
    "stft",
    "track",
]
