"""``python -m bufnmf``: the same entry point as the ``bufnmf`` command."""

from .cli import entry

entry()
