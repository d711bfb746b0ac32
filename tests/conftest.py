"""Shared test helpers: where ../shared lives, and whether it must be there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "flucoma"
FAMILY = SHARED / "fixtures" / "flucoma-family"  # FluCoMa's own outputs for the rest of the family
DATA = SHARED / "data"


def need_shared(path: Path) -> Path:
    """Return ``path`` if present. Absent: fail under BUFNMF_REQUIRE_SHARED=1 (CI), else skip, saying why."""
    if path.exists():
        return path
    msg = (f"{path} is missing: these tests need the project's shared data (../shared beside the checkout, "
           "or BUFNMF_SHARED=/path/to/shared)")
    if os.environ.get("BUFNMF_REQUIRE_SHARED") == "1":
        pytest.fail(msg)
    pytest.skip(msg)
    return path  # unreachable


@pytest.fixture
def fixtures_dir() -> Path:
    return need_shared(FIXTURES)


@pytest.fixture
def data_dir() -> Path:
    return need_shared(DATA)


@pytest.fixture
def family_dir() -> Path:
    return need_shared(FAMILY)
