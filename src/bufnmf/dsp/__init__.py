"""Signal processing: FFT settings, STFT and its inverse, the streaming engine, ratio masks,
phase reconstruction, FluCoMa's random start and 1-D optimal transport. Pure numerics on
arrays; imports nothing from the rest of bufnmf but :mod:`bufnmf.errors` and :mod:`bufnmf.checks`."""
