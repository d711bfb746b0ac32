"""Shared test helpers: where ../shared lives, and whether it must be there; running bufnmf in a
child process (with this checkout's sources, on a pseudo-terminal)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "flucoma"
FAMILY = SHARED / "fixtures" / "flucoma-family"  # FluCoMa's own outputs for the rest of the family
DATA = SHARED / "data"
SRC = ROOT / "src"


def src_env() -> dict[str, str]:
    """This environment with this checkout's sources first on PYTHONPATH, for child processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_on_terminal(args: list[str], timeout: float = 120, columns: int | None = None) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal; its exit code and what it printed.

    ``columns``: the terminal's width (24 rows); None leaves the pseudo-terminal's own size (0 x 0,
    in which tqdm draws no bar).
    """
    import pty
    import select

    leader, follower = pty.openpty()
    if columns is not None:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(args, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL, env=src_env())
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


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
