"""Files: reading audio and FluCoMa buffers (:mod:`.audio`), writing a run's outputs all together
(:mod:`.outputs`) and event files, CSV/JSON/MIDI (:mod:`.events`). No numerics; imports only
:mod:`bufnmf.errors`."""
