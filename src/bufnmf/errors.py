"""Exceptions and warnings raised by bufnmf."""

from __future__ import annotations


class BufNMFError(ValueError):
    """Bad input to bufnmf: the message names the parameter, what was given and the fix."""


class BufNMFWarning(UserWarning):
    """Something was adjusted or is pointless, as FluCoMa would warn (e.g. FFT size rounded)."""


class Cancelled(RuntimeError):  # noqa: N818 - reads as what happened
    """Raised when a ``progress`` callback returns ``False``."""
