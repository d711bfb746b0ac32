"""FluCoMa's Munkres (Hungarian) assignment, reproduced step for step, in two speeds.

FluCoMa's ``algorithm::Munkres`` (``util/Munkres.hpp``) is Bob Pilgrim's textbook formulation:
the cost matrix is padded to square with ``10 * max(cost)``; step 1 subtracts each row's minimum
(the column minima it computes are never used); step 2 stars zeros greedily in row-major order;
step 3 covers the starred columns; step 4 repeatedly primes the first uncovered zero in row-major
order (``findZero`` restarts from row 0 every time), covering its row and uncovering its star's
column if the row has a star; step 6, when no uncovered zero is left, adds the smallest uncovered
value to the covered rows and subtracts it from the uncovered columns (in that order, so an
element of a covered row and an uncovered column becomes ``(c + m) - m``, with two roundings);
step 5 augments along the alternating prime/star path.

With ties (and this cost matrix has many: every pair of peaks far apart costs exactly 0.5) the
assignment returned depends on every one of those choices, so both functions here make exactly
the same choices and the same floating-point operations as FluCoMa:

- :func:`munkres_reference`: a plain transcription of the steps above (mask matrix, full scans).
- :func:`munkres_fast`: the same sequence of states, with bookkeeping that avoids the full scans
  (star and prime positions per row and column, a zero search that resumes instead of restarting
  when only columns were uncovered since the last search). ``tests/test_sines.py`` checks the two
  agree on random, tie-heavy and real tracker matrices.

Both take ``cost`` float64 (N, M) with N, M >= 1 and return int64 (N,): the column assigned to each
row, ``>= M`` when the row was given a padding column.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _padded(cost: np.ndarray) -> np.ndarray:
    rows, cols = cost.shape
    n = max(rows, cols)
    big = 10.0 * cost.max()
    c = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            c[i, j] = cost[i, j] if (i < rows and j < cols) else big
    # step 1: subtract each row's minimum
    for i in range(n):
        mn = c[i, 0]
        for j in range(1, n):
            if c[i, j] < mn:
                mn = c[i, j]
        for j in range(n):
            c[i, j] -= mn
    return c


@njit(cache=True)
def munkres_reference(cost: np.ndarray) -> np.ndarray:
    """FluCoMa's Munkres, transcribed literally (mask matrix with 1 = star, 2 = prime).

    Args:
        cost: float64 (N, M), N, M >= 1.

    Returns:
        int64 (N,): assigned column per row (``>= M`` for a padding column).
    """
    rows = cost.shape[0]
    c = _padded(cost)
    n = c.shape[0]
    mask = np.zeros((n, n), dtype=np.int64)
    rc = np.zeros(n, dtype=np.int64)
    cc = np.zeros(n, dtype=np.int64)
    # step 2
    for i in range(n):
        for j in range(n):
            if c[i, j] == 0 and rc[i] == 0 and cc[j] == 0:
                mask[i, j] = 1
                rc[i] = 1
                cc[j] = 1
    rc[:] = 0
    cc[:] = 0
    path = np.zeros((2 * n + 1, 2), dtype=np.int64)
    while True:
        # step 3
        for i in range(n):
            for j in range(n):
                if mask[i, j] == 1:
                    cc[j] = 1
        if cc.sum() >= n:
            break
        # step 4 (with step 6 whenever no uncovered zero is left)
        while True:
            zr = -1
            zc = -1
            for i in range(n):
                for j in range(n):
                    if c[i, j] == 0 and rc[i] == 0 and cc[j] == 0:
                        zr = i
                        zc = j
                        break
                if zr >= 0:
                    break
            if zr < 0:
                m = 1.7976931348623157e308  # DBL_MAX, as FluCoMa
                for i in range(n):
                    for j in range(n):
                        if rc[i] == 0 and cc[j] == 0:
                            v = c[i, j]
                            m = v if m > v else m
                for i in range(n):
                    for j in range(n):
                        if rc[i] == 1:
                            c[i, j] += m
                        if cc[j] == 0:
                            c[i, j] -= m
                continue
            mask[zr, zc] = 2
            star = -1
            for j in range(n):
                if mask[zr, j] == 1:
                    star = j
                    break
            if star >= 0:
                rc[zr] = 1
                cc[star] = 0
            else:
                break
        # step 5
        count = 0
        path[0, 0] = zr
        path[0, 1] = zc
        while True:
            col = path[count, 1]
            r = -1
            for i in range(n):
                if mask[i, col] == 1:
                    r = i
                    break
            if r == -1:
                break
            count += 1
            path[count, 0] = r
            path[count, 1] = col
            p = -1
            for j in range(n):
                if mask[r, j] == 2:
                    p = j
                    break
            count += 1
            path[count, 0] = r
            path[count, 1] = p
        for k in range(count + 1):
            a = path[k, 0]
            b = path[k, 1]
            mask[a, b] = 0 if mask[a, b] == 1 else 1
        rc[:] = 0
        cc[:] = 0
        for i in range(n):
            for j in range(n):
                if mask[i, j] == 2:
                    mask[i, j] = 0
    out = np.empty(rows, dtype=np.int64)
    for i in range(rows):
        best = 0
        for j in range(1, n):
            if mask[i, j] > mask[i, best]:
                best = j
        out[i] = best
    return out


@njit(cache=True)
def _padded_t(cost: np.ndarray) -> np.ndarray:
    """Steps 0-1 of :func:`munkres_reference`, stored transposed: ``ct[j, i]`` is element (i, j)
    of the padded, row-reduced matrix (same values, column-major for fast column scans)."""
    rows, cols = cost.shape
    n = max(rows, cols)
    big = 10.0 * cost.max()
    rmin = np.empty(n)
    for i in range(rows):
        rmin[i] = big if cols < n else cost[i, 0]
    for j in range(cols):
        for i in range(rows):
            v = cost[i, j]
            if v < rmin[i]:
                rmin[i] = v
    for i in range(rows, n):
        rmin[i] = big
    ct = np.empty((n, n))
    for j in range(n):
        out = ct[j]
        if j < cols:
            for i in range(rows):
                out[i] = cost[i, j] - rmin[i]
        else:
            for i in range(rows):
                out[i] = big - rmin[i]
        for i in range(rows, n):
            out[i] = big - big
    return ct


@njit(cache=True)
def munkres_fast(cost: np.ndarray) -> np.ndarray:
    """FluCoMa's Munkres with the same states and arithmetic as :func:`munkres_reference`, faster.

    Between two changes of the costs (step 6) or of the stars (step 5), columns are only ever
    uncovered and rows only ever covered. So the first uncovered zero in row-major order is found
    from ``fz[r]``, the smallest uncovered column holding a zero in row ``r`` (``n`` if none, -1 once
    the row is covered): computed over the uncovered columns when a phase starts or after step 6,
    and lowered to ``s`` whenever column ``s`` is uncovered. The matrix is kept column-major so that
    column scan is contiguous, and step 6 visits only the elements it changes. Nothing about
    the order of choices or the floating-point operations differs from FluCoMa's.

    Args:
        cost: float64 (N, M), N, M >= 1; column-major input (``a.T`` of a C array) is read fastest.

    Returns:
        int64 (N,): assigned column per row (``>= M`` for a padding column).
    """
    rows = cost.shape[0]
    ct = _padded_t(cost)
    n = ct.shape[0]
    star_r = np.full(n, -1, dtype=np.int64)  # column of the star in each row
    star_c = np.full(n, -1, dtype=np.int64)  # row of the star in each column
    prime_r = np.full(n, -1, dtype=np.int64)  # column of the prime in each row
    rc = np.zeros(n, dtype=np.int64)  # row covered
    cc = np.zeros(n, dtype=np.int64)  # column covered
    ucols = np.empty(n, dtype=np.int64)  # the uncovered columns (any order)
    fz = np.empty(n, dtype=np.int64)  # first uncovered zero column per row; n: none; -1: row covered
    path_r = np.empty(2 * n + 1, dtype=np.int64)
    path_c = np.empty(2 * n + 1, dtype=np.int64)
    nstar = 0
    # step 2: first zero of each row in a column without a star
    for i in range(n):
        for j in range(n):
            if ct[j, i] == 0 and star_c[j] < 0:
                star_r[i] = j
                star_c[j] = i
                nstar += 1
                break
    while True:
        # step 3
        nu = 0
        for j in range(n):
            if star_c[j] >= 0:
                cc[j] = 1
            else:
                cc[j] = 0
                ucols[nu] = j
                nu += 1
        if nstar >= n:
            break
        # step 4
        _first_zeros(ct, rc, ucols, nu, fz)
        first = 0
        while True:
            while first < n and (fz[first] < 0 or fz[first] == n):
                first += 1
            if first == n:
                _step6(ct, rc, cc, ucols, nu)
                _first_zeros(ct, rc, ucols, nu, fz)
                first = 0
                continue
            zr = first
            zc = fz[zr]
            prime_r[zr] = zc
            s = star_r[zr]
            if s < 0:
                break
            rc[zr] = 1
            fz[zr] = -1
            cc[s] = 0
            ucols[nu] = s
            nu += 1
            col = ct[s]
            for i in range(n):  # covered rows have fz = -1: never lowered
                if col[i] == 0.0 and s < fz[i]:
                    fz[i] = s
                    if i < first:
                        first = i
        # step 5: alternating path prime -> star in its column -> prime in that star's row ...
        count = 0
        path_r[0] = zr
        path_c[0] = zc
        while True:
            r = star_c[path_c[count]]
            if r < 0:
                break
            count += 1
            path_r[count] = r
            path_c[count] = path_c[count - 1]
            count += 1
            path_r[count] = r
            path_c[count] = prime_r[r]
        for k in range(1, count + 1, 2):  # unstar the stars on the path
            star_r[path_r[k]] = -1
            star_c[path_c[k]] = -1
        for k in range(0, count + 1, 2):  # star the primes on the path
            star_r[path_r[k]] = path_c[k]
            star_c[path_c[k]] = path_r[k]
        nstar += 1
        rc[:] = 0
        prime_r[:] = -1
    return star_r[:rows].copy()


@njit(cache=True)
def _first_zeros(ct: np.ndarray, rc: np.ndarray, ucols: np.ndarray, nu: int, fz: np.ndarray) -> None:
    """``fz[i]`` = smallest column among ``ucols[:nu]`` with a zero in row ``i``, n if none, -1 if
    row ``i`` is covered."""
    n = ct.shape[0]
    for i in range(n):
        fz[i] = n
    for t in range(nu):
        j = ucols[t]
        col = ct[j]
        for i in range(n):
            if col[i] == 0.0 and j < fz[i]:
                fz[i] = j
    for i in range(n):
        if rc[i] == 1:
            fz[i] = -1


@njit(cache=True)
def _step6(ct: np.ndarray, rc: np.ndarray, cc: np.ndarray, ucols: np.ndarray, nu: int) -> None:
    """Smallest uncovered value m; covered rows += m, then uncovered columns -= m (FluCoMa's
    order and roundings: a covered row's uncovered column becomes ``(c + m) - m``)."""
    n = ct.shape[0]
    m = 1.7976931348623157e308  # DBL_MAX, as FluCoMa
    for t in range(nu):
        col = ct[ucols[t]]
        for i in range(n):
            if rc[i] == 0:
                v = col[i]
                m = v if m > v else m
    for j in range(n):
        col = ct[j]
        if cc[j] == 0:
            for i in range(n):
                if rc[i] == 1:
                    col[i] = (col[i] + m) - m
                else:
                    col[i] = col[i] - m
        else:
            for i in range(n):
                if rc[i] == 1:
                    col[i] = col[i] + m
