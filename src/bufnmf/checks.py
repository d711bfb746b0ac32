"""Parameter checks shared by every layer: whole numbers, finite numbers, seeds, ranges, real arrays.

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


def span(start_name: str, num_name: str, start: object, num: object, size: int, unit: str,
         where: str = "the source") -> tuple[int, int]:
    """Check a FluCoMa-style range (start, count or -1 for the rest) inside ``size`` items.

    Returns ``(start, count)`` with ``count`` resolved; :class:`BufNMFError` names both parameters,
    ``where`` (what holds the items, e.g. "the source" or "source loop.wav") and the valid range.
    """
    s = as_int(start_name, start)
    n = as_int(num_name, num)
    if not 0 <= s < size:
        raise BufNMFError(f"{start_name} {s} is outside {where}: it has {size} {unit} (0..{size - 1})")
    if n == -1:
        n = size - s
    if n < 1 or s + n > size:
        raise BufNMFError(f"{num_name} {n} from {start_name} {s} is not in {where}'s {size} {unit}: "
                          f"use 1..{size - s}, or -1 for the rest")
    return s, n


def real_array(name: str, value: object) -> np.ndarray:
    """``value`` as a float64 array, refusing what would be silently changed by the conversion.

    Complex values (whose imaginary part NumPy would drop), booleans, strings, objects and ragged
    nests raise :class:`BufNMFError` naming ``name``; the caller checks shape and range.
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise BufNMFError(f"{name} must be a numeric array: {exc}") from None
    if raw.dtype.kind == "c":
        raise BufNMFError(f"{name} holds complex values (dtype {raw.dtype}): pass magnitudes, e.g. np.abs(...)")
    if raw.dtype.kind not in "fiu" or raw.dtype == np.bool_:
        raise BufNMFError(f"{name} must hold real numbers, got dtype {raw.dtype}")
    return raw.astype(np.float64, copy=False)


def as_labels(name: str, value: object, count: int | None = None) -> list[str]:
    """Labels given as any iterable of strings (a list, a tuple, a generator): a list, one per item.

    ``count``: how many are expected (else any). Non-string items are refused, so that a label is
    never the text of some other object.
    """
    if isinstance(value, (str, bytes)):
        raise BufNMFError(f"{name} must be a sequence of strings, one per item, got a single string {value!r}")
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise BufNMFError(f"{name} must be a sequence of strings, got {type(value).__name__}") from None
    bad = [x for x in items if not isinstance(x, (str, np.str_))]
    if bad:
        raise BufNMFError(f"{name} must be strings, got {bad[0]!r} ({type(bad[0]).__name__})")
    if count is not None and len(items) != count:
        raise BufNMFError(f"{len(items)} {name} given for {count}: give one per item")
    return [str(x) for x in items]
