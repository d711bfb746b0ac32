"""Exceptions and warnings raised by bufnmf."""

from __future__ import annotations


class BufNMFError(ValueError):
    """Bad input to bufnmf: the message names the parameter, what was given and the fix.

    Args:
        message: in the library's terms (parameter names as in Python).
        cli: the same message in the command line's terms, where it reads differently there
            (otherwise the command line turns ``snake_case`` names of its options into ``--flags``).
    """

    def __init__(self, message: str, *, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli = cli


class MemoryLimitError(BufNMFError):
    """A run refused before it started because its memory estimate exceeds the limit.

    Attributes:
        needed: the estimated peak in bytes. limit: the limit it was checked against, in bytes.
    """

    def __init__(self, message: str, *, needed: int, limit: int, cli: str | None = None) -> None:
        super().__init__(message, cli=cli)
        self.needed = int(needed)
        self.limit = int(limit)


class BufNMFWarning(UserWarning):
    """Something was adjusted or is pointless, as FluCoMa would warn (e.g. FFT size rounded)."""


class Cancelled(RuntimeError):  # noqa: N818 - reads as what happened
    """Raised when a ``progress`` callback returns ``False``."""
