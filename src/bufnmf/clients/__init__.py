"""One module per FluCoMa object: its parameters (FluCoMa's names in snake_case), validation and
buffer layouts, over :mod:`bufnmf.models` and :mod:`bufnmf.dsp`. The channel and seed policies
are in :mod:`.common` (see docs/api.md)."""
