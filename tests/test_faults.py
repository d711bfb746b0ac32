"""The faults of issue 14, each with real files, real disks and real signals: a full disk, a commit cut
short, a forced run over an earlier one, an output that is an input, two runs racing for a folder, a
killed run's leftovers, truncated files, reading beyond --max-memory; and Ctrl-C while starting."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bufnmf import BufNMFError
from bufnmf.cli import main
from bufnmf.demo import drum_loop
from bufnmf.io import outputs as o
from bufnmf.io.audio import read_audio

from .conftest import src_env

SR = 22050


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (hidden ones too) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("src") / "loop.wav"
    sf.write(p, drum_loop(seconds=2.0, sr=SR)[0], SR, subtype="FLOAT")
    return p


def _noise(path: Path, seconds: float, channels: int = 1, sr: int = 44100) -> Path:
    x = (np.random.default_rng(7).standard_normal((int(seconds * sr), channels)) * 0.1).astype(np.float32)
    sf.write(path, x, sr, subtype="FLOAT")
    return path


# ----------------------------------------------------------------------------------------------
# 1. a full disk


@contextlib.contextmanager
def small_disk(tmp_path: Path, mib: int = 20):
    """A folder where writing more than ``mib`` MiB fails, and how it fails.

    A tmpfs of that size where mounting is allowed (root on a machine or a privileged container:
    ENOSPC, "no space left on device"); elsewhere a file-size limit (RLIMIT_FSIZE, ``ulimit -f``)
    on the subprocess that writes there (EFBIG, "file too large"). Both are the kernel refusing a
    write half-way, which is what the test is about.
    """
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = False
    may_mount = os.environ.get("BUFNMF_TEST_NO_MOUNT") != "1"  # =1: try the other way here too
    if may_mount and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(mnt)], capture_output=True)
        mounted = res.returncode == 0
    limit = mib << 20
    try:
        if mounted:
            yield mnt, None, "no space left on device"
        else:
            yield mnt, (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))), "file too large"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


RUN_WITH_SCRATCH = ("import sys, bufnmf.workflows.jobs as j; j.SCRATCH_ABOVE_BYTES = int(sys.argv[1]); "
                    "from bufnmf.cli import main; sys.exit(main(sys.argv[2:]))")


def _cli(args, scratch_above: int | None = None, preexec=None, timeout: float = 300):
    head = [sys.executable, "-c", RUN_WITH_SCRATCH, str(scratch_above)] if scratch_above is not None else \
        [sys.executable, "-m", "bufnmf"]
    return subprocess.run([*head, *map(str, args)], capture_output=True, text=True, env=src_env(), preexec_fn=preexec,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["scratch map", "component files"])
def test_full_disk_is_one_line_and_leaves_the_folder_as_it_was(where, tmp_path):
    # a 40 s source at K=4 needs a 28 MB scratch map; a 150 s one writes 26 MB component files
    src = _noise(tmp_path / "long.wav", 40 if where == "scratch map" else 150)
    with small_disk(tmp_path) as (disk, preexec, message):
        out = disk / "parts"
        first = _cli(["decompose", src, "-o", out, "-k", "2", "--iterations", "2", "--seed", "1", "--num-frames",
                      "44100"], preexec=preexec)
        assert first.returncode == 0, first.stderr
        before = snapshot(out)
        big = ["decompose", src, "-o", out, "--iterations", "2", "--seed", "2", "--force"]
        if where == "scratch map":
            res = _cli([*big, "-k", "4"], scratch_above=1, preexec=preexec)
        else:
            res = _cli([*big, "-k", "2"], preexec=preexec)
        assert res.returncode == 2, (res.returncode, res.stderr)  # not 135 (bus error) nor 1 (internal error)
        assert res.stderr.startswith(f"bufnmf: error: {message}") and res.stderr.count("\n") == 1, res.stderr
        assert ("scratch file" in res.stderr) == (where == "scratch map"), res.stderr
        assert snapshot(out) == before  # earlier outputs intact; no temporary, scratch map or lock left
        assert hidden(out) == [".bufnmf-run.json"]
        again = _cli(["decompose", src, "-o", out, "-k", "1", "--iterations", "2", "--num-frames", "22050",
                      "--force"], scratch_above=1, preexec=preexec)
        assert again.returncode == 0, again.stderr  # the next run is not blocked by anything left behind


@pytest.mark.slow
def test_file_size_limit_is_one_line(tmp_path):
    """EFBIG (ulimit -f) on the scratch map, wherever a tmpfs can be mounted or not."""
    src = _noise(tmp_path / "long.wav", 30)
    out = tmp_path / "parts"
    limit = 8 << 20

    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = _cli(["decompose", src, "-o", out, "-k", "3", "--iterations", "2"], scratch_above=1, preexec=preexec)
    assert res.returncode == 2 and res.stderr.startswith("bufnmf: error: file too large"), res.stderr
    assert not out.exists()  # the folder the run made is gone with it


def test_scratch_space_is_reserved_before_mapping(tmp_path, monkeypatch):
    """posix_fallocate's ENOSPC becomes the error before anything is mapped (no SIGBUS later)."""
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("this platform has no posix_fallocate; the zeros are written instead")
    calls = []

    def full(fd, offset, length):
        calls.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(BufNMFError, match="no space left on device writing a 4 MiB scratch file"), \
            o.OutputSet(tmp_path / "f", ["x.npy"], run_folder=True) as out:
        out.scratch((1 << 20,))
    assert calls == [4 << 20]
    assert not (tmp_path / "f").exists()


# ----------------------------------------------------------------------------------------------
# 2. the commit: all or nothing


@pytest.fixture
def earlier_run(tmp_path, loop, capsys) -> Path:
    out = tmp_path / "parts"
    code, _, err = run(["decompose", loop, "-o", out, "-k", "4", "--iterations", "3", "--seed", "1", "--plot"], capsys)
    assert code == 0, err
    return out


def _failing_replace(monkeypatch, at: int, fault):
    real = os.replace
    count = {"n": 0}

    def replace(a, b):
        count["n"] += 1
        if count["n"] == at:
            fault()
        return real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    return count


def _raise_eio():
    raise OSError(errno.EIO, "Input/output error")


def _raise_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("at", [1, 2, 7, 13, 16, 19])
@pytest.mark.parametrize(("fault", "code", "message"), [(_raise_eio, 2, "could not put the outputs in place"),
                                                         (_raise_interrupt, 130, "no outputs were written")],
                         ids=["I/O error", "KeyboardInterrupt"])
def test_a_commit_cut_short_puts_everything_back(at, fault, code, message, earlier_run, loop, capsys, monkeypatch):
    before = snapshot(earlier_run)
    count = _failing_replace(monkeypatch, at, fault)
    got, _, err = run(["decompose", loop, "-o", earlier_run, "-k", "2", "--iterations", "3", "--seed", "2",
                       "--force"], capsys)
    assert count["n"] >= at  # the fault came during the renames
    assert got == code and message in err, err
    assert snapshot(earlier_run) == before  # every earlier file back, no new one beside them, no temporary


def test_ctrl_c_during_the_commit_waits_for_it(earlier_run, loop, capsys, monkeypatch):
    """A real SIGINT between two renames: the commit finishes, then the interrupt goes on (exit 130)."""
    _failing_replace(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGINT))
    code, _, err = run(["decompose", loop, "-o", earlier_run, "-k", "2", "--iterations", "3", "--seed", "2",
                        "--force"], capsys)
    assert code == 130 and "interrupted after the outputs were complete" in err, err
    names = sorted(p.name for p in earlier_run.iterdir())
    assert names == sorted([".bufnmf-run.json", "component_1.wav", "component_2.wav", "bases.wav",
                            "activations.wav", "bases.npy", "activations.npy", "summary.json"])
    assert json.loads((earlier_run / "summary.json").read_text())["parameters"]["seed"] == 2


KILL_IN_COMMIT = """
import os, signal, sys
n = {"c": 0}
real = os.replace
def replace(a, b):
    real(a, b)
    n["c"] += 1
    if n["c"] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from bufnmf.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("at", [1, 3, 8, 14, 17])
def test_a_commit_killed_half_way_is_rolled_back_by_the_next_run(at, earlier_run, loop, capsys):
    before = snapshot(earlier_run)
    args = ["decompose", loop, "-o", earlier_run, "-k", "2", "--iterations", "3", "--seed", "2", "--force"]
    res = subprocess.run([sys.executable, "-c", KILL_IN_COMMIT, str(at), *map(str, args)], env=src_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert snapshot(earlier_run) != before  # the kill left the folder half-way
    code, _, err = run(["decompose", loop, "-o", earlier_run, "-k", "2", "--iterations", "3"], capsys)
    assert code == 2 and "holds the outputs of an earlier run" in err, err  # refused: without --force
    assert snapshot(earlier_run) == before  # ... but the killed commit was rolled back first
    assert run(args, capsys)[0] == 0
    assert sorted(p.name for p in earlier_run.iterdir() if not p.name.startswith(".")) == sorted(
        ["component_1.wav", "component_2.wav", "bases.wav", "activations.wav", "bases.npy", "activations.npy",
         "summary.json"])


@pytest.fixture(scope="module")
def kit(tmp_path_factory, loop) -> Path:
    d = tmp_path_factory.mktemp("kit")
    _mix, stems, _ = drum_loop(seconds=2.0, sr=SR)
    for name, x in stems.items():
        sf.write(d / f"{name}.wav", x, SR, subtype="FLOAT")
    assert main(["learn", *(str(d / f"{n}.wav") for n in stems), "-o", str(d / "kit.wav"), "--iterations", "30",
                 "--seed", "0"]) == 0
    return d / "kit.wav"


def test_track_writes_events_and_midi_together_or_not_at_all(tmp_path, loop, kit, capsys, monkeypatch):
    ev, mid = tmp_path / "a" / "ev.csv", tmp_path / "b" / "ev.mid"
    code, _, err = run(["track", loop, "--bases", kit, "-o", tmp_path / "same.csv", "--midi", tmp_path / "same.csv"],
                       capsys)
    assert code == 2 and "is given for two outputs" in err and not (tmp_path / "same.csv").exists(), err
    _failing_replace(monkeypatch, 4, _raise_eio)  # the second file's rename (after journal, journal, first file)
    code, _, err = run(["track", loop, "--bases", kit, "-o", ev, "--midi", mid, "--iterations", "10"], capsys)
    assert code == 2 and "could not put the outputs in place" in err, err
    assert not ev.exists() and not mid.exists()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nor the folders it made
    monkeypatch.undo()
    assert run(["track", loop, "--bases", kit, "-o", ev, "--midi", mid, "--iterations", "10"], capsys)[0] == 0
    assert ev.exists() and mid.read_bytes()[:4] == b"MThd"


def test_one_folder_named_two_ways_is_locked_once(tmp_path, loop, kit, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    code, _, err = run(["track", loop, "--bases", kit, "-o", "ev.csv", "--midi", tmp_path / "ev.mid", "--iterations",
                        "10"], capsys)
    assert code == 0, err
    assert time.monotonic() - t0 < o.LOCK_WAIT_SECONDS  # it did not wait for itself
    assert (tmp_path / "ev.csv").exists() and (tmp_path / "ev.mid").exists()


# ----------------------------------------------------------------------------------------------
# 3. --force replaces the earlier run


def test_force_replaces_the_earlier_runs_files(earlier_run, loop, capsys):
    assert (earlier_run / "component_4.wav").exists() and (earlier_run / "bases.png").exists()
    code, _, err = run(["decompose", loop, "-o", earlier_run, "-k", "2", "--iterations", "3"], capsys)
    assert code == 2 and "holds the outputs of an earlier run" in err and "--force" in err, err
    code, _, err = run(["decompose", loop, "-o", earlier_run, "-k", "2", "--iterations", "3", "--force"], capsys)
    assert code == 0, err
    names = sorted(p.name for p in earlier_run.iterdir())
    assert names == sorted([".bufnmf-run.json", "component_1.wav", "component_2.wav", "bases.wav",
                            "activations.wav", "bases.npy", "activations.npy", "summary.json"])
    src, _ = sf.read(loop)
    parts = sum(sf.read(earlier_run / f"component_{k}.wav")[0] for k in (1, 2))
    np.testing.assert_allclose(parts, src, atol=1e-5)  # the folder's parts sum to the source again
    manifest = json.loads((earlier_run / ".bufnmf-run.json").read_text())
    assert manifest["job"] == "decompose" and sorted(manifest["files"]) == [n for n in names if n[0] != "."]
    # another command into the folder replaces it too
    code, _, err = run(["stft", loop, "-o", earlier_run, "--force"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in earlier_run.iterdir()) == sorted(
        [".bufnmf-run.json", "magnitude.wav", "phase.wav", "magnitude.npy", "phase.npy", "stft.json"])


# ----------------------------------------------------------------------------------------------
# 4. an output that is an input


def test_the_readme_piano_example_cannot_overwrite_its_kit(tmp_path, kit, loop, capsys):
    notes = tmp_path / "notes.wav"
    shutil.copy(kit, notes)
    shutil.copy(kit.with_suffix(".json"), notes.with_suffix(".json"))
    sidecar = notes.with_suffix(".json").read_bytes()
    for force in ([], ["--force"]):
        code, _, err = run(["track", loop, "--bases", notes, "-o", tmp_path / "notes.json", *force], capsys)
        assert code == 2 and "notes.json is an input of this run" in err, err
    assert notes.with_suffix(".json").read_bytes() == sidecar
    code, _, err = run(["track", loop, "--bases", notes, "-o", tmp_path / "events.json", "--iterations", "10"],
                       capsys)
    assert code == 0, err  # the kit still works


@pytest.mark.parametrize("case", ["source as -o", "example as kit", "kit as decompose buffer", "stft.json",
                                  "source in the earlier run"])
def test_no_output_may_replace_an_input(case, tmp_path, loop, kit, capsys):
    src = tmp_path / "src.wav"
    shutil.copy(loop, src)
    if case == "source as -o":
        args = ["cross", src, loop, "-o", src, "--force", "--iterations", "2"]
    elif case == "example as kit":
        args = ["learn", src, "-o", src, "--force"]
    elif case == "kit as decompose buffer":  # the kit's sidecar inside the output folder
        folder = tmp_path / "k"
        folder.mkdir()
        shutil.copy(kit, folder / "summary.wav")
        shutil.copy(kit.with_suffix(".json"), folder / "summary.json")
        args = ["decompose", src, "-o", folder, "--bases", folder / "summary.wav", "--force", "--iterations", "2"]
    elif case == "stft.json":
        assert run(["stft", src, "-o", tmp_path / "st"], capsys)[0] == 0
        args = ["stft", "--inverse", tmp_path / "st", "-o", tmp_path / "st" / "phase.wav", "--force"]
    else:  # a file of the earlier run, which --force would remove, is this run's source
        assert run(["decompose", src, "-o", tmp_path / "p", "-k", "2", "--iterations", "2"], capsys)[0] == 0
        args = ["decompose", tmp_path / "p" / "component_1.wav", "-o", tmp_path / "p", "--force", "--iterations", "2"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = run(args, capsys)
    assert code == 2 and "is an input of this run" in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# ----------------------------------------------------------------------------------------------
# 5. one writer per folder; what killed runs leave is cleaned


def test_the_lock_holds_when_a_waiter_opened_the_old_lock_file(tmp_path, monkeypatch):
    """The interleaving of issue 14: B opens the lock file, A finishes (removes and closes it), C
    locks a new file at the path, B's flock succeeds on the removed one. B must not think it holds
    the folder."""
    folder = tmp_path / "f"
    a = o.OutputSet(folder, ["a.txt"], run_folder=True).__enter__()
    opened, go = threading.Event(), threading.Event()
    real = o._flock

    def slow(fh, blocking):
        if threading.current_thread().name == "B" and Path(fh.name).name == o.LOCK_NAME:
            opened.set()
            go.wait(10)
        return real(fh, blocking)

    monkeypatch.setattr(o, "_flock", slow)
    b = o.OutputSet(folder, ["b.txt"], run_folder=True, force=True)
    outcome: list[object] = []

    def lock_b():
        try:
            b._lock(b._folders[folder], wait=0.0)
            outcome.append("locked")
        except BufNMFError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=lock_b, name="B")
    thread.start()
    assert opened.wait(10)
    a.write_bytes("a.txt", b"a")
    a.__exit__(None, None, None)  # A commits and lets go of the lock file B opened
    c = o.OutputSet(folder, ["c.txt"], run_folder=True, force=True).__enter__()  # C locks a new one
    go.set()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], BufNMFError), outcome
    assert "another bufnmf run is writing" in str(outcome[0])
    with pytest.raises(BufNMFError, match="another bufnmf run is writing"):
        o.OutputSet(folder, ["d.txt"], run_folder=True, force=True).__enter__()
    c.write_bytes("c.txt", b"c")
    c.__exit__(None, None, None)
    assert sorted(p.name for p in folder.iterdir()) == [".bufnmf-run.json", "c.txt"]


@pytest.mark.slow
def test_many_runs_racing_for_one_folder_leave_one_whole_run(tmp_path, loop):
    out = tmp_path / "race"
    procs = [subprocess.Popen([sys.executable, "-m", "bufnmf", "decompose", str(loop), "-o", str(out), "-k",
                               str(k), "--iterations", "20", "--seed", str(k), "--force"], env=src_env(),
                              stderr=subprocess.PIPE, text=True) for k in (1, 2, 3, 4, 5, 6)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code == 0 or (code == 2 and "another bufnmf run is writing" in err) for code, err in results), results
    summary = json.loads((out / "summary.json").read_text())
    k = summary["parameters"]["components"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([".bufnmf-run.json", *(f"component_{i + 1}.wav" for i in range(k)), "bases.wav",
                            "activations.wav", "bases.npy", "activations.npy", "summary.json"])
    assert np.load(out / "bases.npy").shape == (513, k)


def test_a_dead_runs_leftovers_are_cleaned_and_a_live_runs_are_not(tmp_path, loop, capsys):
    out = tmp_path / "parts"
    assert run(["decompose", loop, "-o", out, "-k", "2", "--iterations", "2"], capsys)[0] == 0
    dead, live = "0123456789ab", "ba9876543210"
    for token in (dead, live):
        (out / f".bufnmf-{token}.owner").write_text("")
        (out / f".bufnmf-{token}-1.part").write_bytes(b"x" * 1000)
        (out / f".bufnmf-{token}-scratch2.part").write_bytes(b"x" * 1000)
        (out / f".bufnmf-{token}.old").mkdir()
    (out / ".scratch.a1b2c3d4.part").write_bytes(b"x" * 1000)  # an earlier bufnmf's scratch map
    (out / ".component_1.wav.zz99yy88.part").write_bytes(b"x")
    (out / ".bufnmf.lock").write_text("")  # a lock file nobody holds
    with open(out / f".bufnmf-{live}.owner") as held:  # the live run holds its mark
        assert o._flock(held, blocking=False)
        code, _, err = run(["decompose", loop, "-o", out, "-k", "3", "--iterations", "2", "--force"], capsys)
        assert code == 0, err
        assert hidden(out) == sorted([".bufnmf-run.json", f".bufnmf-{live}.owner", f".bufnmf-{live}-1.part",
                                      f".bufnmf-{live}-scratch2.part", f".bufnmf-{live}.old"])


@pytest.mark.slow
def test_a_killed_runs_scratch_map_and_lock_are_cleaned_by_the_next_run(tmp_path):
    src = _noise(tmp_path / "long.wav", 20)
    out = tmp_path / "parts"
    proc = subprocess.Popen([sys.executable, "-c", RUN_WITH_SCRATCH, "1", "decompose", str(src), "-o", str(out), "-k",
                             "4", "--iterations", "100000"], env=src_env(), stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and any("scratch" in p.name for p in out.iterdir())):
        time.sleep(0.05)
    assert any("scratch" in p.name for p in out.iterdir())
    proc.kill()
    proc.wait(timeout=30)
    left = hidden(out)
    assert ".bufnmf.lock" in left and any("scratch" in n for n in left)
    res = _cli(["decompose", src, "-o", out, "-k", "1", "--iterations", "2", "--num-frames", "44100"])
    assert res.returncode == 0, res.stderr
    assert hidden(out) == [".bufnmf-run.json"]


# ----------------------------------------------------------------------------------------------
# 6. truncated files, whatever the container

FORMATS = [("WAV", "PCM_16", ".wav"), ("WAVEX", "FLOAT", ".wav"), ("RF64", "FLOAT", ".rf64"), ("W64", "FLOAT", ".w64"),
           ("AIFF", "PCM_24", ".aiff"), ("AIFF", "FLOAT", ".aifc"), ("CAF", "FLOAT", ".caf"), ("AU", "PCM_16", ".au"),
           ("FLAC", "PCM_16", ".flac"), ("OGG", "VORBIS", ".ogg")]


@pytest.mark.parametrize(("fmt", "subtype", "ext"), FORMATS, ids=[f"{f} {s}" for f, s, _ in FORMATS])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_files_are_refused_in_every_container(fmt, subtype, ext, keep, tmp_path, capsys):
    x = (np.random.default_rng(1).standard_normal((SR, 2)) * 0.1).astype(np.float32)
    whole = tmp_path / f"whole{ext}"
    sf.write(whole, x, SR, subtype=subtype, format=fmt)
    data, _ = read_audio(whole)
    assert data.shape == (SR, 2)  # the whole file reads
    raw = whole.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(BufNMFError, match=r"truncated|cannot be decoded"):
        read_audio(cut)
    code, _out, err = run(["decompose", cut, "-o", tmp_path / "out"], capsys)
    assert code == 2 and err.startswith("bufnmf: error: source ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# 7. --max-memory bounds reading

MEASURE = """
import json, sys
import numpy as np
from bufnmf.cli import main
from bufnmf.resources import peak_memory, reset_peak_memory, resident_memory
main(["decompose", sys.argv[1], "-o", sys.argv[2] + "/warm", "--num-frames", "4096", "--iterations", "2"])
reset_peak_memory()
before = resident_memory()
code = main(["decompose", sys.argv[1], "-o", sys.argv[2] + "/run", *sys.argv[3:]])
print(json.dumps({"code": code, "rise": peak_memory() - before}))
"""


@pytest.mark.slow
def test_reading_a_selection_reads_only_it(tmp_path):
    big = _noise(tmp_path / "big.wav", 400, channels=1)  # 70 MB of float32
    size = big.stat().st_size

    def measure(*args):
        res = subprocess.run([sys.executable, "-c", MEASURE, str(big), str(tmp_path), *args], env=src_env(),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])

    sel = measure("--num-frames", "44100", "--start-frame", "8000000", "--max-memory", "48M", "--iterations", "3")
    assert sel["code"] == 0 and sel["rise"] < 24 * 2**20, sel  # the file is 70 MB; the selection 0.2 MB
    whole = measure("--max-memory", "48M", "--no-resynth", "--iterations", "2")
    assert whole["code"] == 2  # the whole file would not fit the limit: refused before reading it
    assert whole["rise"] < size / 2, whole
    src = np.asarray(sf.read(big, start=8000000, frames=44100, dtype="float32")[0])
    parts = sum(sf.read(tmp_path / "run" / f"component_{k}.wav")[0] for k in (1,))
    np.testing.assert_allclose(parts, src, atol=1e-5)


def test_the_estimate_counts_the_source_read(tmp_path, capsys):
    src = _noise(tmp_path / "x.wav", 30)
    code, _, err = run(["decompose", src, "-o", tmp_path / "o", "--max-memory", "20M", "--no-resynth"], capsys)
    assert code == 2 and "source 5.0 MiB" in err and "--max-memory limit is 20.0 MiB" in err, err
    assert not (tmp_path / "o").exists()


def test_only_the_selected_channel_is_read(tmp_path):
    x = np.random.default_rng(3).standard_normal((5000, 4)).astype(np.float32)
    p = tmp_path / "four.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    data, sr = read_audio(p, start_frame=100, num_frames=3000, channels=slice(1, 3))
    np.testing.assert_array_equal(data, x[100:3100, 1:3])
    mix, _ = read_audio(p, channels="mix")
    np.testing.assert_allclose(mix[:, 0], x.mean(axis=1, dtype=np.float64))
    assert mix.dtype == np.float64 and data.dtype == np.float32 and sr == SR
    x[4000, 3] = np.nan
    sf.write(p, x, SR, subtype="FLOAT")
    assert read_audio(p, num_frames=3000)[0].shape == (3000, 4)  # the NaN is outside the selection
    with pytest.raises(BufNMFError, match=r"1 NaN or infinite sample\(s\), first at sample 4000, channel 3"):
        read_audio(p)


# ----------------------------------------------------------------------------------------------
# interrupts: no traceback, no folder left


def _interrupt_after_start(args: list[str], delay: float) -> tuple[int, str]:
    """Start ``python -X importtime -m bufnmf ARGS``; once bufnmf's first module has run (importtime
    reports it; Python's own start-up, before any line of bufnmf, is all that comes earlier), wait
    ``delay`` seconds and send SIGINT. Returns the exit status and stderr without importtime's lines."""
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "bufnmf", *map(str, args)], env=src_env(),
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    started = threading.Event()

    def drain():
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "bufnmf._startup" in line:
                started.set()

    reader = threading.Thread(target=drain)
    reader.start()
    assert started.wait(60)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    reader.join(10)
    return code, "".join(line for line in lines if not line.startswith("import time:"))


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6, 1.0, 2.0, 3.5])
def test_ctrl_c_while_the_command_starts_or_runs_prints_no_traceback(delay, tmp_path):
    """SIGINT while NumPy & co. load (the first delays) or while the command runs (the last): one line
    or none, never a traceback, and no folder left behind."""
    src = _noise(tmp_path / "x.wav", 10)
    out = tmp_path / "o"
    code, err = _interrupt_after_start(["decompose", src, "-o", out, "-k", "3", "--iterations", "100000"], delay)
    assert code in (-signal.SIGINT, 130), (code, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err in ("", "bufnmf: interrupted; no outputs were written\n"), err
    assert not out.exists()


def test_a_refused_run_leaves_no_folder(tmp_path, loop, capsys):
    deep = tmp_path / "a" / "b" / "c"
    code, _, err = run(["decompose", loop, "-o", deep, "-k", "1000000"], capsys)
    assert code == 2 and "this run needs about" in err
    code, _, err = run(["seed", loop, "-o", deep, "-k", "0"], capsys)
    assert code == 2
    assert not (tmp_path / "a").exists()


def test_main_in_process_restores_warning_filters_and_signal_handlers(tmp_path, loop, capsys):
    filters = list(__import__("warnings").filters)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    hook = sys.unraisablehook

    def mine(signum, frame):  # a caller's own handler
        pass

    signal.signal(signal.SIGTERM, mine)
    try:
        for extra in ([], ["--quiet"]):
            code, _, err = run(["decompose", loop, "-o", tmp_path / f"o{len(extra)}", "--iterations", "2",
                                "--fft-size", "1000", *extra], capsys)
            assert code == 0, err
            assert __import__("warnings").filters == filters
            assert signal.getsignal(signal.SIGINT) is handlers[signal.SIGINT]
            assert signal.getsignal(signal.SIGTERM) is mine
            assert sys.unraisablehook is hook
    finally:
        signal.signal(signal.SIGTERM, handlers[signal.SIGTERM])
