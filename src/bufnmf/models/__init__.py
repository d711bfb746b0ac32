"""Models: the multiplicative-update rule (β-divergences, masks, fixed sides, numba fast path),
NNDSVD starts and BufNMFCross's constraints. Pure numerics on arrays; imports :mod:`bufnmf.dsp`."""
