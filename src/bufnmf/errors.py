"""Exceptions and warnings raised by bufnmf."""

from __future__ import annotations

import re
from collections.abc import Iterable


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


def command_line_terms(message: str, options: Iterable[str]) -> str:
    """``message`` with a command's options as ``--flags`` (``bases_mode`` -> ``--bases-mode``).

    ``options``: the command's long options (``--bases-mode``, ``--components``, ...). ``snake_case``
    names (with an underscore) are changed anywhere; a one-word name only where it starts the
    message as its subject (``smooth must be ...`` -> ``--smooth must be ...``), so plain words stay
    words (``output folder X ...`` stays). The command line and the web page both word their
    errors with this.
    """
    for opt in options:
        if not opt.startswith("--"):
            continue
        if "-" in opt[2:]:
            ident = opt[2:].replace("-", "_")
            message = re.sub(rf"(?<![\w-]){ident}(?!\w)", opt, message)
        elif re.match(rf"{re.escape(opt[2:])} (must|given|is|has|-?\d|')", message):
            message = opt + message[len(opt) - 2 :]
    return message


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


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) arrived while a run's outputs were being put in place: they were all
    put in place first (a commit is never cut in half), then the interrupt went on.

    Attributes:
        written: the files the run wrote.
    """

    def __init__(self, written: object = ()) -> None:
        super().__init__("interrupted after the outputs were written")
        self.written = list(written)  # type: ignore[call-overload]
