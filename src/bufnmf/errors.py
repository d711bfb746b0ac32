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


class BufNMFWarning(UserWarning):
    """Something was adjusted or is pointless, as FluCoMa would warn (e.g. FFT size rounded)."""


class Cancelled(RuntimeError):  # noqa: N818 - reads as what happened
    """Raised when a ``progress`` callback returns ``False``."""


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) arrived while a run's outputs were being put in place: they were all
    put in place first (a commit is never cut in half), then the interrupt went on.

    Attributes:
        written: the files the run wrote.
    """

    def __init__(self, written: object = ()) -> None:
        super().__init__("interrupted after the outputs were written")
        self.written = list(written)  # type: ignore[call-overload]
