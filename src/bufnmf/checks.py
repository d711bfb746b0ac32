"""Parameter checks shared by every layer: whole numbers, finite numbers, seeds.

Each raises :class:`bufnmf.BufNMFError` naming the parameter, what was given and what is
expected. Nothing here allocates memory in proportion to a value it checks.
"""

from __future__ import annotations

import math
import secrets

import numpy as np

from .errors import BufNMFError

SEED_MAX = 2**63 - 1


def as_int(name: str, value: object) -> int:
    """``value`` as a Python int: ints, NumPy ints and integral floats; else :class:`BufNMFError`."""
    if isinstance(value, (bool, np.bool_)):
        raise BufNMFError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(float(value)) and float(value).is_integer():
        return int(value)
    raise BufNMFError(f"{name} must be an integer, got {value!r}")


def as_float(name: str, value: object, *, low: float | None = None, high: float | None = None,
             low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds given; else :class:`BufNMFError` naming the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BufNMFError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise BufNMFError(f"{name} must be a finite number, got {value!r}")
    lo_bad = low is not None and (v <= low if low_open else v < low)
    hi_bad = high is not None and (v >= high if high_open else v > high)
    if lo_bad or hi_bad:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        if low is not None and high is not None:
            want = f"in {lo}, {hi}"
        elif low is not None:
            want = f"{'>' if low_open else '>='} {low:g}"
        else:
            want = f"{'<' if high_open else '<='} {high:g}"
        raise BufNMFError(f"{name} must be {want}, got {v:g}")
    return v


def check_seed(seed: object, name: str = "seed") -> int:
    """A seed as given: -1 (draw one) or 0 .. 2**63 - 1 (reproduce)."""
    s = as_int(name, seed)
    if s < -1 or s > SEED_MAX:
        raise BufNMFError(f"{name} must be -1 (draw a random seed) or 0..{SEED_MAX} (reproduce a run), got {s}")
    return s


def resolve_seed(seed: object, name: str = "seed") -> int:
    """The seed a run uses: ``seed`` itself when >= 0, a freshly drawn one for -1 (to be reported)."""
    s = check_seed(seed, name)
    return secrets.randbits(63) if s == -1 else s
