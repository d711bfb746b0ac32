"""The index of a batch: one row per file, written as ``index.csv`` (and ``index.parquet`` with pyarrow)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.outputs import OutputSet

#: Row statuses: done now, failed (with its error), skipped (done by an earlier run with the same
#: parameters), cancelled (not done: the batch was interrupted).
STATUSES = ("ok", "failed", "skipped", "cancelled")

COLUMNS = ["path", "status", "error", "duration", "channels", "sample_rate", "components", "divergence", "seed",
           "seconds", "output"]
JOB_COLUMNS = {"decompose": [], "track": ["events"], "learn": ["label"]}

_TYPES = {"path": "string", "status": "string", "error": "string", "duration": "float64", "channels": "int64",
          "sample_rate": "int64", "components": "int64", "divergence": "float64", "seed": "int64",
          "seconds": "float64", "output": "string", "events": "int64", "label": "string"}


@dataclass
class Row:
    """One file of a batch.

    Attributes:
        path: the source file (absolute).
        status: "ok", "failed", "skipped" or "cancelled".
        error: why it failed (one line), else "".
        duration: seconds of audio analysed. channels: channels of the source (decompose: analysed).
        sample_rate: Hz. components: K per channel (with any extra components).
        divergence: decompose: the final KL divergence, summed over the channels.
        seed: the seed the file was done with (a drawn one for seed -1), to redo it alone.
        seconds: wall time the file took on its worker (for a skipped file: when it was done).
        output: the file's output folder, relative to the batch's output folder.
        events: track: events found. label: learn: the file's label.
    """

    path: str
    status: str
    error: str = ""
    duration: float | None = None
    channels: int | None = None
    sample_rate: int | None = None
    components: int | None = None
    divergence: float | None = None
    seed: int | None = None
    seconds: float | None = None
    output: str = ""
    events: int | None = None
    label: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Index(list[Row]):
    """The rows of a batch, in corpus order, and where they were written.

    Attributes:
        job: "decompose", "track" or "learn". out_dir: the batch's output folder.
        files: what the batch wrote at the top of ``out_dir`` (``index.csv``, ``index.parquet``,
            ``kit.wav``/``kit.json`` for learn, ``events.csv`` for track).
        seconds: wall time of the whole batch.
    """

    def __init__(self, rows: Iterable[Row] = (), *, job: str = "", out_dir: Path | None = None) -> None:
        super().__init__(rows)
        self.job = job
        self.out_dir = out_dir
        self.files: list[Path] = []
        self.seconds = 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Rows per status, every status present (0 when none)."""
        c = Counter(r.status for r in self)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def failed(self) -> list[Row]:
        return [r for r in self if r.status == "failed"]

    def columns(self) -> list[str]:
        return COLUMNS + JOB_COLUMNS.get(self.job, [])


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def index_csv(rows: Sequence[Row], columns: Sequence[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        d = row.as_dict()
        writer.writerow([_cell(d[c]) for c in columns])
    return buf.getvalue().encode()


def have_parquet() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _parquet_writer(records: list[dict[str, Any]], columns: Sequence[str], types: dict[str, str]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64()}
    schema = pa.schema([(c, kinds[types[c]]) for c in columns])
    table = pa.Table.from_pylist([{c: r[c] for c in columns} for r in records], schema=schema)

    def write(path: Path) -> None:
        pq.write_table(table, str(path))

    return write


def write_table(out_dir: Path, stem: str, records: list[dict[str, Any]], columns: Sequence[str],
                types: dict[str, str]) -> list[Path]:
    """``<stem>.csv`` (and ``<stem>.parquet`` with pyarrow) in ``out_dir``, both replaced together."""
    names = [f"{stem}.csv"] + ([f"{stem}.parquet"] if have_parquet() else [])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        writer.writerow([_cell(r[c]) for c in columns])
    with OutputSet(out_dir, names, force=True) as out:
        out.write_bytes(names[0], buf.getvalue().encode())
        if len(names) > 1:
            out.write_with(names[1], _parquet_writer(records, columns, types))
    return list(out.written)


def write_index(index: Index) -> list[Path]:
    """Write ``index.csv`` (and ``index.parquet``) into the index's folder; returns the paths."""
    assert index.out_dir is not None
    columns = index.columns()
    return write_table(index.out_dir, "index", [r.as_dict() for r in index], columns, _TYPES)


def read_index_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of an ``index.csv`` as dicts of strings (for scripts and tests)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
