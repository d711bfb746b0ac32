"""FluCoMa-compatible random initialisation.

FluCoMa seeds ``std::mt19937_64`` with the user's seed and draws from
``std::uniform_real_distribution<double>(0, 1)``.  This module reproduces the
exact stream that libstdc++ produces, vectorised with numpy ``uint64``
arithmetic, so that ``seed >= 0`` gives the same starting matrices as FluCoMa.
"""

from __future__ import annotations

import numpy as np

_N = 312
_M = 156
_MATRIX_A = np.uint64(0xB5026F5AA96619E9)
_UPPER = np.uint64(0xFFFFFFFF80000000)
_LOWER = np.uint64(0x7FFFFFFF)
_U, _D = np.uint64(29), np.uint64(0x5555555555555555)
_S, _B = np.uint64(17), np.uint64(0x71D67FFFEDA60000)
_T, _C = np.uint64(37), np.uint64(0xFFF7EEE000000000)
_L = np.uint64(43)
_INIT_MULT = 6364136223846793005
_MASK64 = (1 << 64) - 1


def _seed_state(seed: int) -> np.ndarray:
    state = np.empty(_N, dtype=np.uint64)
    x = seed & _MASK64
    state[0] = x
    for i in range(1, _N):
        x = (_INIT_MULT * (x ^ (x >> 62)) + i) & _MASK64
        state[i] = x
    return state


def _mix(upper_from: np.ndarray, lower_from: np.ndarray, far: np.ndarray) -> np.ndarray:
    y = (upper_from & _UPPER) | (lower_from & _LOWER)
    mag = np.where((y & np.uint64(1)) != 0, _MATRIX_A, np.uint64(0))
    return far ^ (y >> np.uint64(1)) ^ mag


def _twist(state: np.ndarray) -> np.ndarray:
    """One full regeneration of the 312-word state (vectorised in three runs)."""
    new = np.empty_like(state)
    k = _N - _M  # 156
    # i in [0, N-M): far element mt[i+M] is still old
    new[:k] = _mix(state[:k], state[1 : k + 1], state[_M:_N])
    # i in [N-M, N-1): far element mt[i+M-N] was already renewed
    new[k : _N - 1] = _mix(state[k : _N - 1], state[k + 1 : _N], new[: _N - 1 - k])
    # i = N-1: wraps to the renewed mt[0]
    new[_N - 1 :] = _mix(state[_N - 1 :], new[:1], new[_M - 1 : _M])
    return new


def _temper(y: np.ndarray) -> np.ndarray:
    y = y ^ ((y >> _U) & _D)
    y = y ^ ((y << _S) & _B)
    y = y ^ ((y << _T) & _C)
    return y ^ (y >> _L)


def mt19937_64(seed: int, count: int) -> np.ndarray:
    """First ``count`` outputs of ``std::mt19937_64(seed)`` as ``uint64``, shape ``(count,)``."""
    state = _seed_state(int(seed))
    blocks = []
    produced = 0
    while produced < count:
        state = _twist(state)
        blocks.append(_temper(state))
        produced += _N
    if not blocks:
        return np.empty(0, dtype=np.uint64)
    return np.concatenate(blocks)[:count]


def uniform01(seed: int, count: int) -> np.ndarray:
    """``std::uniform_real_distribution<double>(0, 1)`` draws over ``mt19937_64(seed)``.

    libstdc++'s ``generate_canonical<double, 53>`` with a 64-bit engine takes one
    draw, converts it to double (round to nearest) and divides by 2**64; a result
    that rounds to 1.0 becomes the largest double below 1.

    Returns float64, shape ``(count,)``, values in [0, 1).
    """
    draws = mt19937_64(seed, count).astype(np.float64) / 18446744073709551616.0
    return np.minimum(draws, np.nextafter(1.0, 0.0))


def flucoma_init(seed: int, rows: int, cols: int) -> np.ndarray:
    """A ``rows x cols`` float64 matrix filled column-major from a fresh generator."""
    return uniform01(seed, rows * cols).reshape(cols, rows).T.copy()


def uniform_range(seed: int, count: int, low: float, high: float) -> np.ndarray:
    """``std::uniform_real_distribution<double>(low, high)`` draws over a fresh ``mt19937_64(seed)``.

    libstdc++ computes ``canonical * (high - low) + low``, in that order; so does this (it matters
    to the last bit). ``seed`` must be >= 0 (the clients resolve -1 to a drawn seed first).

    Returns float64, shape ``(count,)``.
    """
    return uniform01(seed, count) * (high - low) + low
