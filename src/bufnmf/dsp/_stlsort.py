"""libstdc++'s ``std::sort`` (GCC 12 introsort), reproduced element move for element move.

FluCoMa's greedy partial tracker sorts its (distance, track, peak) candidates with ``std::sort``,
comparing distances only. ``std::sort`` is not stable, so candidates with *equal* distances come out
in an order that depends on the exact algorithm. When such ties can change which pairs get matched,
bufnmf replays libstdc++'s algorithm here so the order is the one FluCoMa's binary produced.

The array sorted is ``keys`` (float64, compared with ``<``) with a payload ``vals`` (int64) moved
alongside, exactly as ``std::sort`` moves whole tuples. Structure (``bits/stl_algo.h`` and
``bits/stl_heap.h``): introsort loop with threshold 16 and depth limit ``2 * floor(log2(n))``,
median-of-three pivot moved to the front (candidates ``first + 1``, ``mid``, ``last - 1``),
unguarded Hoare partition, heap sort when the depth limit is hit, then a final insertion sort
(guarded over the first 16 elements, unguarded after).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_THRESHOLD = 16


@njit(cache=True)
def _swap(keys: np.ndarray, vals: np.ndarray, a: int, b: int) -> None:
    k = keys[a]
    keys[a] = keys[b]
    keys[b] = k
    v = vals[a]
    vals[a] = vals[b]
    vals[b] = v


@njit(cache=True)
def _push_heap(keys, vals, first, hole, top, vk, vv):
    parent = (hole - 1) // 2
    while hole > top and keys[first + parent] < vk:
        keys[first + hole] = keys[first + parent]
        vals[first + hole] = vals[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    keys[first + hole] = vk
    vals[first + hole] = vv


@njit(cache=True)
def _adjust_heap(keys, vals, first, hole, length, vk, vv):
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if keys[first + child] < keys[first + child - 1]:
            child -= 1
        keys[first + hole] = keys[first + child]
        vals[first + hole] = vals[first + child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        keys[first + hole] = keys[first + child - 1]
        vals[first + hole] = vals[first + child - 1]
        hole = child - 1
    _push_heap(keys, vals, first, hole, top, vk, vv)


@njit(cache=True)
def _heap_sort(keys, vals, first, last):
    """``std::__partial_sort(first, last, last)``: make_heap then sort_heap."""
    length = last - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _adjust_heap(keys, vals, first, parent, length, keys[first + parent], vals[first + parent])
            if parent == 0:
                break
            parent -= 1
    while last - first > 1:
        last -= 1
        vk = keys[last]
        vv = vals[last]
        keys[last] = keys[first]
        vals[last] = vals[first]
        _adjust_heap(keys, vals, first, 0, last - first, vk, vv)


@njit(cache=True)
def _move_median_to_first(keys, vals, result, a, b, c):
    if keys[a] < keys[b]:
        if keys[b] < keys[c]:
            _swap(keys, vals, result, b)
        elif keys[a] < keys[c]:
            _swap(keys, vals, result, c)
        else:
            _swap(keys, vals, result, a)
    elif keys[a] < keys[c]:
        _swap(keys, vals, result, a)
    elif keys[b] < keys[c]:
        _swap(keys, vals, result, c)
    else:
        _swap(keys, vals, result, b)


@njit(cache=True)
def _partition_pivot(keys, vals, first, last):
    mid = first + (last - first) // 2
    _move_median_to_first(keys, vals, first, first + 1, mid, last - 1)
    pivot = first
    lo = first + 1
    hi = last
    while True:
        while keys[lo] < keys[pivot]:
            lo += 1
        hi -= 1
        while keys[pivot] < keys[hi]:
            hi -= 1
        if not lo < hi:
            return lo
        _swap(keys, vals, lo, hi)
        lo += 1


@njit(cache=True)
def _introsort_loop(keys, vals, first, last, depth):
    """libstdc++'s ``__introsort_loop`` with its recursion on the right part replaced by an
    explicit stack (ranges are disjoint, so the order they are finished in changes nothing)."""
    stack = np.empty((2 * 64 + 8, 3), dtype=np.int64)
    top = 0
    stack[0, 0] = first
    stack[0, 1] = last
    stack[0, 2] = depth
    top = 1
    while top > 0:
        top -= 1
        first = stack[top, 0]
        last = stack[top, 1]
        depth = stack[top, 2]
        while last - first > _THRESHOLD:
            if depth == 0:
                _heap_sort(keys, vals, first, last)
                break
            depth -= 1
            cut = _partition_pivot(keys, vals, first, last)
            stack[top, 0] = cut
            stack[top, 1] = last
            stack[top, 2] = depth
            top += 1
            last = cut


@njit(cache=True)
def _linear_insert(keys, vals, last):
    vk = keys[last]
    vv = vals[last]
    nxt = last - 1
    while vk < keys[nxt]:
        keys[last] = keys[nxt]
        vals[last] = vals[nxt]
        last = nxt
        nxt -= 1
    keys[last] = vk
    vals[last] = vv


@njit(cache=True)
def _insertion_sort(keys, vals, first, last):
    if first == last:
        return
    for i in range(first + 1, last):
        if keys[i] < keys[first]:
            vk = keys[i]
            vv = vals[i]
            for j in range(i, first, -1):
                keys[j] = keys[j - 1]
                vals[j] = vals[j - 1]
            keys[first] = vk
            vals[first] = vv
        else:
            _linear_insert(keys, vals, i)


@njit(cache=True)
def stl_sort(keys: np.ndarray, vals: np.ndarray, n: int) -> None:
    """Sort ``keys[:n]`` (float64) ascending in place, moving ``vals[:n]`` (int64) along,
    in exactly the element order libstdc++'s ``std::sort`` (GCC 12) gives for ``<`` on keys."""
    if n < 2:
        return
    lg = 0
    m = n
    while m > 1:
        m >>= 1
        lg += 1
    _introsort_loop(keys, vals, 0, n, 2 * lg)
    if n > _THRESHOLD:
        _insertion_sort(keys, vals, 0, _THRESHOLD)
        for i in range(_THRESHOLD, n):
            _linear_insert(keys, vals, i)
    else:
        _insertion_sort(keys, vals, 0, n)
