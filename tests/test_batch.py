"""Batches over a corpus on real local Dask clusters (worker processes on 127.0.0.1 only).

Failures recorded, not fatal; outputs equal to the single-file commands'; resume after a killed
worker, a killed batch and Ctrl-C; an explicit scheduler with separately started workers;
batch track and learn on the shared recordings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import bufnmf.batch as batch
from bufnmf.batch import corpus, records
from bufnmf.batch.tasks import limit_threads
from bufnmf.cli import main
from bufnmf.errors import BufNMFError

from .conftest import DATA, need_shared, src_env

SR = 44100
PARAMS = {"components": 2, "iterations": 20}
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


# ----------------------------------------------------------------------------------------------
# helpers


def _clip(path: Path, start: float, seconds: float) -> np.ndarray:
    data, sr = sf.read(path, dtype="float32", start=int(start * SR), frames=int(seconds * SR))
    assert sr == SR
    return data


def make_corpus(root: Path) -> dict[str, Path]:
    """10 short readable files (mono and stereo; WAV, FLAC, AIFF), one unreadable, one 6-minute file."""
    drums, drums_c = need_shared(DATA / "drums" / "mix.wav"), need_shared(DATA / "drums_c" / "mix.wav")
    piano = need_shared(DATA / "piano" / "mix.wav")
    files: dict[str, tuple[np.ndarray, str]] = {
        "drums/a.wav": (_clip(drums, 0.0, 1.0), "FLOAT"),
        "drums/b.wav": (_clip(drums, 1.5, 1.0), "FLOAT"),
        "drums_c/a.wav": (_clip(drums_c, 0.0, 1.0), "PCM_16"),
        "drums_c/b.wav": (_clip(drums_c, 4.0, 0.8), "PCM_24"),
        "piano/a.wav": (_clip(piano, 0.0, 1.0), "FLOAT"),
        "piano/deeper/b.wav": (_clip(piano, 3.0, 1.2), "FLOAT"),
        "stereo/s1.wav": (np.stack([_clip(drums, 0.5, 1.0), _clip(piano, 0.5, 1.0)], axis=1), "FLOAT"),
        "stereo/s2.wav": (np.stack([_clip(piano, 2.0, 0.7), _clip(drums_c, 2.0, 0.7)], axis=1), "PCM_16"),
        "formats/c.flac": (_clip(drums_c, 6.0, 0.9), "PCM_16"),
        "formats/d.aiff": (_clip(piano, 5.0, 0.9), "PCM_16"),
    }
    out = {}
    for rel, (data, subtype) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, data, SR, subtype=subtype)
        out[rel] = p
    bad = root / "bad" / "broken.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt this is not audio at all")
    out["bad/broken.wav"] = bad
    long = root / "long" / "six_minutes.wav"
    long.parent.mkdir()
    noise = (np.random.default_rng(0).standard_normal(6 * 60 * SR) * 3000).astype(np.int16)
    sf.write(long, noise, SR, subtype="PCM_16")
    out["long/six_minutes.wav"] = long
    return out


def outputs(folder: Path) -> dict[str, bytes]:
    """:func:`visible_files` less the batch's index."""
    return {k: v for k, v in visible_files(folder).items() if not k.startswith("index.")}


def visible_files(folder: Path) -> dict[str, bytes]:
    """Every non-hidden file under ``folder``: relative path -> its contents (a WAV's format and samples,
    as libsndfile stamps the time in float WAVs' PEAK chunk; summary.json without its timings)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            data = p.read_bytes()
            if p.name == "summary.json":
                s = json.loads(data)
                s.pop("timings")
                data = json.dumps(s, sort_keys=True).encode()
            elif p.suffix == ".wav":
                info = sf.info(p)
                samples = sf.read(p, dtype="float32", always_2d=True)[0]
                data = f"{info.samplerate} {info.channels} {info.subtype}".encode() + samples.tobytes()
            out[str(rel)] = data
    return out


def local_cluster(memory_limit: str = "500MiB"):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", memory_limit=memory_limit, silence_logs=logging.CRITICAL)
    return cluster, Client(cluster, set_as_default=False)


@pytest.fixture(scope="module")
def client():
    cluster, c = local_cluster()
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def corpus12(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus12")
    make_corpus(root)
    return root


@pytest.fixture(scope="module")
def done12(client, corpus12, tmp_path_factory):
    """The 12-file corpus decomposed once (seed 5) on the module's cluster."""
    out = tmp_path_factory.mktemp("out12") / "parts"
    index = batch.run("decompose", corpus12, out, client=client, seed=5, **PARAMS)
    return out, index


# ----------------------------------------------------------------------------------------------
# the corpus (no cluster)


def test_corpus_folder_glob_list_and_output_folders(tmp_path):
    root = tmp_path / "c"
    for rel in ["kick/1.wav", "kick/soft/2.WAV", "snare/1.flac", "top.aiff", "notes.txt", ".hidden/x.wav",
                "kick/.y.wav", "dup/z.wav", "dup/z.flac"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "out" / "old").mkdir(parents=True)
    (root / "out" / "old" / "component_1.wav").write_bytes(b"x")
    found = corpus.find(root, exclude=root / "out")
    assert [(s.rel, s.label) for s in found] == [
        ("dup/z.flac", "dup"), ("dup/z.wav", "dup"),  # same stem twice: the extension is kept
        ("kick/1", "kick"), ("kick/soft/2", "kick"), ("snare/1", "snare"), ("top", "top")]
    assert all(Path(s.path).is_absolute() and Path(s.path).is_file() for s in found)
    globbed = corpus.find(str(root / "kick" / "**" / "*.[wW][aA][vV]"))
    assert [s.rel for s in globbed] == ["1", "soft/2"]  # relative to the glob's fixed part, kick/
    listing = tmp_path / "list.txt"
    listing.write_text("# my list\nc/kick/1.wav\n\nc/snare/1.flac\n")
    assert [(s.rel, s.label) for s in corpus.find(listing)] == [("c/kick/1", "c"), ("c/snare/1", "c")]
    both = corpus.find([root / "kick" / "1.wav", root / "snare" / "1.flac"])  # e.g. a shell-expanded glob
    assert [s.rel for s in both] == ["kick/1", "snare/1"]
    with pytest.raises(BufNMFError, match="does not exist"):
        corpus.find(tmp_path / "nothing")
    with pytest.raises(BufNMFError, match="no audio files match"):
        corpus.find(str(tmp_path / "*.mp3"))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(BufNMFError, match="no audio files in"):
        corpus.find(tmp_path / "empty")
    with pytest.raises(BufNMFError, match=r"the output folder .*out is the corpus folder .* or holds it: a batch "
                                          r"never reads its own output folder; choose an output folder outside"):
        corpus.find(root / "out" / "old" / "..", exclude=root / "out")  # -o the corpus itself
    with pytest.raises(BufNMFError, match="is the corpus folder"):
        corpus.find(root / "out" / "old", exclude=root / "out")  # a corpus inside the output folder


def test_batch_commands_take_the_single_commands_options():
    from bufnmf.cli import cli

    group = cli.commands["batch"]
    for job, single_name, own in [("decompose", "decompose", {"source", "outdir", "quiet", "force", "debug"}),
                                  ("track", "track", {"source", "output", "midi_path", "quiet", "force", "debug"}),
                                  ("learn", "learn", {"examples", "output", "labels", "quiet", "force", "debug"})]:
        single = {p.name: p for p in cli.commands[single_name].params}
        many = {p.name: p for p in group.commands[job].params}
        for name, p in single.items():
            if name in own:
                continue
            q = many[name]
            if (job, name) == ("track", "events_format"):  # the same option; its help speaks of the batch
                assert (q.opts, q.default, type(q.type)) == (p.opts, p.default, type(p.type)) and "csv" in q.help
                continue
            assert (q.opts, q.default, type(q.type), q.help if hasattr(q, "help") else None) == (
                p.opts, p.default, type(p.type), p.help if hasattr(p, "help") else None), (job, name)
        for extra in ("workers", "scheduler", "no_resume", "force", "quiet", "corpus", "outdir"):
            assert extra in many, (job, extra)
    assert "max_memory" in batch.parameters("decompose") and "progress" not in batch.parameters("decompose")
    with pytest.raises(BufNMFError, match="takes no parameter compnents"):
        batch.run("decompose", "x", "y", compnents=3)
    with pytest.raises(BufNMFError, match="batch track needs a kit"):
        batch.run("track", "x", "y")


def test_thread_limits_in_this_thread():
    import numba

    from bufnmf.dsp.fft import fft_threads

    before = numba.get_num_threads(), fft_threads()
    with batch.limit_threads(1):
        from threadpoolctl import threadpool_info

        assert numba.get_num_threads() == 1 and fft_threads() == 1
        assert all(info["num_threads"] == 1 for info in threadpool_info())
    assert (numba.get_num_threads(), fft_threads()) == before


# ----------------------------------------------------------------------------------------------
# a real local cluster


def test_twelve_files_ten_ok_two_failed_with_their_messages(done12, corpus12):
    out, index = done12
    assert index.counts == {"ok": 10, "failed": 2, "skipped": 0, "cancelled": 0}
    by_out = {r.output: r for r in index}
    assert [r.output for r in index] == sorted(by_out)  # corpus order
    broken = by_out["bad/broken"]
    assert broken.status == "failed" and "is not a readable audio file" in broken.error
    assert str(corpus12 / "bad" / "broken.wav") in broken.error
    long = by_out["long/six_minutes"]
    assert long.status == "failed"
    assert long.error.startswith("too big for a worker: it needs about ") and "memory limit 500.0 MiB" in long.error
    needed = float(long.error.split("needs about ")[1].split(" MiB")[0])
    assert 400 < needed < 1000  # the estimate of 6 minutes, K=2, with resynthesis
    assert not (out / "long").exists() and not (out / "bad").exists()  # nothing left of a failed file
    for r in index:
        if r.status == "ok":
            stereo = r.output.startswith("stereo")
            assert (r.channels, r.components, r.sample_rate, r.seed) == (2 if stereo else 1, 2, SR, 5)
            assert r.duration is not None and 0.6 < r.duration < 1.3 and r.divergence is not None and r.divergence > 0
            summary = json.loads((out / r.output / "summary.json").read_text())
            assert summary["parameters"]["seed"] == 5 and summary["parameters"]["iterations"] == 20
            assert r.divergence == pytest.approx(sum(ch[-1] for ch in summary["divergence"]))
            names = {p.name for p in (out / r.output).iterdir() if not p.name.startswith(".")}
            assert names == {*summary["outputs"]}
    rows = batch.read_index_csv(out / "index.csv")
    assert [row["output"] for row in rows] == [r.output for r in index]
    assert list(rows[0]) == batch.COLUMNS
    assert rows[[r["output"] for r in rows].index("long/six_minutes")]["error"] == long.error
    pq = pytest.importorskip("pyarrow.parquet")  # a test dependency: installed in CI
    table = pq.read_table(out / "index.parquet").to_pylist()
    assert [t["status"] for t in table] == [r.status for r in index]
    assert table[0]["seed"] in (5, None) and isinstance(table[0]["path"], str)


def test_outputs_identical_to_the_single_file_command(done12, corpus12, tmp_path, capsys):
    out, index = done12
    for rel in ("drums_c/b", "stereo/s1", "formats/c"):
        source = next(Path(r.path) for r in index if r.output == rel)
        assert main(["decompose", str(source), "-o", str(tmp_path / rel), "-k", "2", "--iterations", "20",
                     "--seed", "5"]) == 0, capsys.readouterr().err
        assert visible_files(out / rel) == visible_files(tmp_path / rel), rel


def test_more_files_than_the_submission_window(done12, corpus12, client, tmp_path, monkeypatch):
    """Tasks go to the scheduler a chunk at a time: a batch larger than the window is topped up as
    files finish, and ends exactly as one sent at once."""
    from bufnmf.batch import engine

    monkeypatch.setattr(engine, "WINDOW", 1)  # 4 per worker thread: 8 here, topped up at 4
    out, index = done12
    seen: list[tuple[str, int]] = []
    again = batch.run("decompose", corpus12, tmp_path / "parts", client=client, seed=5,
                      progress=lambda row, done, total: seen.append((row.output, done)) and None, **PARAMS)
    assert len(again) == 12 and [d for _, d in seen] == list(range(1, 13))
    assert sorted(o for o, _ in seen) == [r.output for r in again]  # each file once
    def outcome(r: batch.Row) -> tuple[str, str, str]:  # (what the worker can give depends on what it holds now)
        return r.output, r.status, r.error.split(" but the worker can give")[0]

    assert [outcome(r) for r in again] == [outcome(r) for r in index]
    for r in again:
        if r.status == "ok":
            assert visible_files(tmp_path / "parts" / r.output) == visible_files(out / r.output), r.output


def test_largest_files_are_sent_first():
    from bufnmf.batch.engine import submission_order
    from bufnmf.batch.tasks import Task

    def task(name: str, size: int | None) -> Task:
        return Task("decompose", name, name, "/out", {}, "k", {"source": None if size is None else [size, 0]})

    todo = [(0, task("a", 10)), (1, task("b", 300)), (2, task("c", None)), (3, task("d", 300)), (4, task("e", 20))]
    assert [i for i, _ in submission_order(todo)] == [1, 3, 4, 0, 2]  # ties keep corpus order; unreadable last


def test_short_files_go_several_to_a_task_and_the_last_alone():
    from collections import deque

    from bufnmf.batch.engine import GROUP_SECONDS, MAX_GROUP, Pace, next_group
    from bufnmf.batch.index import Row
    from bufnmf.batch.tasks import Task

    def task(i: int, size: int | None) -> tuple[int, Task]:
        return i, Task("decompose", f"f{i}", f"f{i}", "/out", {}, "k", {"source": None if size is None else [size, 0]})

    queue = deque(task(i, 1000) for i in range(200))
    assert [i for i, _ in next_group(queue, None, 2)] == [0]  # no pace yet: one file
    # 0.1 s a file: five to a task (GROUP_SECONDS 0.5 s)
    assert GROUP_SECONDS == 0.5 and [i for i, _ in next_group(queue, 1e-4, 2)] == [1, 2, 3, 4, 5]
    assert len(next_group(queue, 1e-7, 2)) == MAX_GROUP  # very short files: at most MAX_GROUP
    assert len(next_group(queue, 1.0, 2)) == 1  # a file longer than a group's time: alone
    sizes = []
    while queue:  # guided: at most the files left / (4 x 2 worker threads), so the last 15 go alone
        sizes.append(len(next_group(queue, 1e-4, 2)))
    assert sizes[:3] == [5, 5, 5] and sizes == sorted(sizes, reverse=True) and sum(sizes) == 200 - 1 - 5 - 16 - 1
    assert sizes[-16:] == [2] + [1] * 15
    mixed = deque([task(0, 1000), task(1, 3000), task(2, None), task(3, 1000), task(4, 2000)] +
                  [task(i, 1000) for i in range(5, 25)])
    # 0.1 + 0.3 + 0 (unreadable: fails at once) + 0.1 s = 0.5 s; the next, 0.2 s more, would not fit
    assert [i for i, _ in next_group(mixed, 1e-4, 1)] == [0, 1, 2, 3]
    pace = Pace()

    def named(name: str, size: int) -> Task:
        return Task("decompose", name, name, "/out", {}, "k", {"source": [size, 0]})

    wav = named("a.wav", 1)
    assert pace.per_byte(wav) is None and not pace.known()
    pace.add(named("f0.wav", 1000), Row("f0", "failed", "x", seconds=9.0))  # failures and unknown sizes do not count
    pace.add(task(1, None)[1], Row("f1", "ok", seconds=9.0))
    assert pace.per_byte(wav) is None and not pace.known()
    pace.add(named("f2.wav", 1000), Row("f2", "ok", seconds=20.0))  # a worker's first file (compiling): an outlier
    for i in range(3, 6):
        pace.add(named(f"f{i}.WAV", 2000), Row(f"f{i}", "ok", seconds=0.2))
    assert pace.known() and pace.per_byte(wav) == pytest.approx(1e-4)  # the median of the recent files' pace
    ogg = named("x.ogg", 100)
    assert pace.per_byte(ogg) is None  # each kind of file its own pace (a compressed one: more work per byte)
    pace.add(named("y.ogg", 1000), Row("y", "ok", seconds=1.5))
    assert pace.per_byte(ogg) == pytest.approx(1.5e-3) and pace.per_byte(wav) == pytest.approx(1e-4)
    kinds = deque([(0, named("a.wav", 1000)), (1, named("b.wav", 1000)), (2, named("c.ogg", 100)),
                   (3, named("d.mp3", 10))] + [(i, named(f"{i}.wav", 1000)) for i in range(4, 40)])
    # 0.1 + 0.1 + 0.15 s; then an mp3, of unknown pace: it ends the group, and goes alone
    assert [i for i, _ in next_group(kinds, pace.per_byte, 1)] == [0, 1, 2]
    assert [i for i, _ in next_group(kinds, pace.per_byte, 1)] == [3]


def test_cancel_check_asks_the_scheduler_at_most_once_a_poll(monkeypatch):
    from bufnmf.batch import tasks

    class Event:
        def __init__(self) -> None:
            self.asked = 0
            self.value: bool | Exception = False

        def is_set(self) -> bool:
            self.asked += 1
            if isinstance(self.value, Exception):
                raise self.value
            return self.value

    monkeypatch.setattr(tasks, "CANCEL_POLL_SECONDS", 0.2)
    monkeypatch.setattr(tasks, "_cancel_seen", {})

    def check(event: Event, name: str = "batch-1") -> tasks._CancelCheck:
        c = tasks._CancelCheck(None)
        c.event, c.name = event, name
        return c

    ev = Event()
    first, second = check(ev), check(ev)  # two tasks of one batch in one worker process
    assert [first(i, 100) for i in range(50)] == [None] * 50 and not second.is_set()
    assert ev.asked == 1  # one round trip for all of them within the poll
    time.sleep(0.25)
    ev.value = True
    assert second(50, 100) is False and ev.asked == 2
    time.sleep(0.25)
    assert first.is_set() and check(ev).is_set() and ev.asked == 2  # once set, remembered
    other = Event()
    assert not check(other, "batch-2").is_set() and other.asked == 1  # each batch its own answer
    gone = Event()
    gone.value = OSError("scheduler gone")
    assert check(gone, "batch-3").is_set()  # no scheduler: the batch ended, stop
    assert not tasks._CancelCheck(None).is_set()  # no event (run outside a batch): never cancelled


def test_a_closed_worker_leaves_at_once_with_its_output_flushed(tmp_path):
    """A local worker, once closed, skips the interpreter's clean-up at exit: its output is
    flushed, its status is 0, and exit handlers registered before it do not run."""
    code = ("import atexit, sys\n"
            "from bufnmf.batch import worker\n"
            "atexit.register(lambda: print('clean-up ran'))\n"
            "worker.dask_teardown(None)\n"
            "sys.stdout.write('done, unflushed')\n"
            "sys.exit(0)\n")
    env = {k: v for k, v in src_env().items() if k != "PYTHONUNBUFFERED"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert (res.returncode, res.stdout) == (0, "done, unflushed"), res.stderr
    plain = code.replace("worker.dask_teardown(None)\n", "")  # a worker not closed: the usual exit
    res = subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True, env=env, timeout=120)
    assert (res.returncode, res.stdout) == (0, "done, unflushedclean-up ran\n"), res.stderr


def test_seed_minus_one_draws_per_file_and_redoes_alone(client, corpus12, tmp_path, capsys):
    files = [corpus12 / "drums" / "a.wav", corpus12 / "piano" / "a.wav"]
    index = batch.run("decompose", files, tmp_path / "out", client=client, **PARAMS)
    seeds = [r.seed for r in index]
    assert all(s is not None and s >= 0 for s in seeds) and seeds[0] != seeds[1]
    for r in index:
        assert json.loads((tmp_path / "out" / r.output / "summary.json").read_text())["parameters"]["seed"] == r.seed
    r = index[1]
    assert main(["decompose", r.path, "-o", str(tmp_path / "again"), "-k", "2", "--iterations", "20",
                 "--seed", str(r.seed)]) == 0
    assert visible_files(tmp_path / "out" / r.output) == visible_files(tmp_path / "again")


def test_rerun_skips_finished_files_and_redoes_changed_ones(done12, corpus12, client, tmp_path):
    out, _ = done12
    work = tmp_path / "parts"
    shutil.copytree(out, work)
    before = outputs(work)
    index = batch.run("decompose", corpus12, work, client=client, seed=5, **PARAMS)
    assert index.counts == {"ok": 0, "failed": 2, "skipped": 10, "cancelled": 0}  # failures are tried again
    assert outputs(work) == before
    # a source that changed is redone, the rest skipped
    src = corpus12 / "drums" / "a.wav"
    data, _ = sf.read(src, dtype="float32")
    sf.write(src, data[: SR // 2], SR, subtype="FLOAT")
    try:
        index = batch.run("decompose", corpus12, work, client=client, seed=5, **PARAMS)
    finally:
        sf.write(src, data, SR, subtype="FLOAT")
    assert index.counts == {"ok": 1, "failed": 2, "skipped": 9, "cancelled": 0}
    assert [r.duration for r in index if r.status == "ok"] == [0.5]
    index = batch.run("decompose", corpus12, work, client=client, seed=5, **PARAMS)  # changed back: redone
    assert index.counts["ok"] == 1 and outputs(work) == before
    # other parameters: refused, naming the difference; force redoes
    with pytest.raises(BufNMFError, match=r"other parameters \(components 2 -> 3\)"):
        batch.run("decompose", corpus12, work, client=client, seed=5, components=3, iterations=20)
    assert visible_files(work)["drums/a/summary.json"] == before["drums/a/summary.json"]
    index = batch.run("decompose", [corpus12 / "piano"], tmp_path / "p", client=client, seed=5, **PARAMS)
    forced = batch.run("decompose", [corpus12 / "piano"], tmp_path / "p", client=client, seed=5, components=3,
                       iterations=20, force=True)
    assert forced.counts["ok"] == 2 and all(r.components == 3 for r in forced)
    # files a batch did not write are not replaced without force
    foreign = tmp_path / "foreign"
    (foreign / "a").mkdir(parents=True)
    (foreign / "a" / "bases.npy").write_bytes(b"mine")
    index = batch.run("decompose", [corpus12 / "drums" / "a.wav"], foreign, client=client, seed=5, **PARAMS)
    assert index[0].status == "failed" and "already exist" in index[0].error
    assert (foreign / "a" / "bases.npy").read_bytes() == b"mine"


def test_local_cluster_threads_fit_the_cores():
    def probe(n: int) -> tuple[str | None, int, set[int]]:
        import numba
        from threadpoolctl import threadpool_info

        from bufnmf.batch.tasks import limit_threads

        # what a task runs with: numba's threads and BLAS's (spawned workers start so; forked ones,
        # which have numba and BLAS loaded already, are set by the task)
        with limit_threads(n):
            return (os.environ.get("OMP_NUM_THREADS"), numba.get_num_threads(),
                    {lib["num_threads"] for lib in threadpool_info()})

    with batch.connect(workers=2) as (c, threads):
        assert len(threads) == 2 and set(threads.values()) == {1}  # one numerical thread each: files in parallel
        assert set(c.nthreads().values()) == {1}  # one task at a time per worker
        from bufnmf.batch.tasks import tune_malloc

        # the nanny's MALLOC_TRIM_THRESHOLD_ is undone once per worker process
        assert c.submit(tune_malloc, pure=False, workers=[next(iter(threads))]).result() is True
        assert c.submit(tune_malloc, pure=False, workers=[next(iter(threads))]).result() is False
        for addr in threads:
            env, numba_threads, blas_threads = c.submit(probe, threads[addr], workers=[addr], pure=False).result()
            assert env == str(threads[addr]) and numba_threads == threads[addr] and blas_threads == {threads[addr]}
        assert all(a.startswith("tcp://127.0.0.1:") for a in threads)
        import dask

        # the workers' statistical profiler is off, their health ticks slower (see engine.LOCAL_CONFIG)
        assert set(c.run(dask.config.get, "distributed.worker.profile.enabled").values()) == {False}
        assert set(c.run(dask.config.get, "distributed.admin.tick.interval").values()) == {"200ms"}
        import psutil

        me = psutil.Process()
        listening = [conn.laddr.ip for proc in [me, *me.children(recursive=True)]
                     for conn in proc.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN]
        assert listening and set(listening) == {"127.0.0.1"}  # scheduler, workers, nannies, HTTP: loopback only


def test_start_method_auto_forks_only_where_it_is_safe(monkeypatch):
    from bufnmf.batch import engine

    monkeypatch.setattr(engine, "openmp_in_use", lambda: False)
    gib = 1 << 30
    assert engine.choose_start_method("auto", rss=gib, worker_limit=8 * gib, threads=1) == "fork"
    # a thread of this process's own could hold a lock at the fork
    assert engine.choose_start_method("auto", rss=gib, worker_limit=8 * gib, threads=2) == "spawn"
    monkeypatch.setattr(engine.threading, "active_count", lambda: 1)
    # a process larger than an eighth of a worker's limit: forked workers would start near it
    assert engine.choose_start_method("auto", rss=gib + 1, worker_limit=8 * gib) == "spawn"
    assert engine.choose_start_method("spawn", rss=1, worker_limit=8 * gib) == "spawn"
    assert engine.choose_start_method("forkserver") == "forkserver"
    monkeypatch.setattr(sys, "platform", "darwin")  # system libraries break in a forked child there
    assert engine.choose_start_method("auto", rss=1, worker_limit=8 * gib) == "spawn"
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(engine, "openmp_in_use", lambda: True)  # GNU OpenMP ends a forked child using it
    assert engine.choose_start_method("auto", rss=1, worker_limit=8 * gib) == "spawn"
    with pytest.raises(BufNMFError, match="start_method='fork' cannot be used in this process: it has used OpenMP"):
        engine.choose_start_method("fork")
    with pytest.raises(BufNMFError, match="start_method must be one of auto, fork, spawn, forkserver, got 'thread'"):
        engine.choose_start_method("thread")


def test_openmp_in_use_once_numba_has_run_threads():
    script = """if True:
        import json, numpy as np
        from bufnmf.batch.engine import openmp_in_use
        before = openmp_in_use()
        from bufnmf.workflows.jobs import decompose_job
        import bufnmf, numba
        bufnmf.decompose(np.random.default_rng(0).standard_normal(22050).astype("float32"), components=2,
                         iterations=3)
        print(json.dumps([before, openmp_in_use(), numba.threading_layer()]))
    """
    out = subprocess.run([sys.executable, "-c", script], env={**src_env(), "BUFNMF_KERNEL": "numba"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, after, layer = json.loads(out.stdout)
    assert before is False and after is (layer == "omp")


_FORK_PROBE = """if True:
    import json, signal, sys, types
    from pathlib import Path
    import numpy as np
    import bufnmf.batch as batch
    from bufnmf.batch.engine import choose_start_method

    sys.modules["_only_in_the_parent"] = types.ModuleType("_only_in_the_parent")
    signal.signal(signal.SIGTERM, lambda *a: None)  # as the command line's own handler

    def probe():
        import numba, os, signal, sys
        from bufnmf.batch.tasks import limit_threads
        with limit_threads(1):  # numba's threads start here; then a compilation (numba rereads its variables)
            compiles = numba.njit(lambda x: x + 1)(1) == 2
            return {"compiles": compiles, "forked": "_only_in_the_parent" in sys.modules, "sigterm_default":
                    signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "sigint_ignored":
                    signal.getsignal(signal.SIGINT) == signal.SIG_IGN, "numba_threads": numba.get_num_threads()}

    import os, psutil

    killed = []

    def kill_a_worker(row, done, total):  # once: Dask redoes its file on a worker it starts again
        if not killed:
            me = psutil.Process()
            worker = next(p for p in me.children() if p.cmdline() == me.cmdline())  # forked: this command line
            os.kill(worker.pid, signal.SIGKILL)
            killed.append(worker.pid)

    report = {"auto": choose_start_method("auto", workers=2)}
    for method in sys.argv[2:]:
        with batch.connect(workers=2, start_method=method) as (c, threads):
            report[method] = list(c.run(probe).values())
        out = sys.argv[1] + "/" + method
        index = batch.run("decompose", sys.argv[1] + "/corpus", out, workers=2, start_method=method, seed=5,
                          components=2, iterations=20, progress=kill_a_worker if method == "fork" else None)
        report[method + "_counts"] = index.counts
        report[method + "_errors"] = [r.error for r in index if r.error]
    report["killed"] = len(killed)
    # the single-file job on each file, after the batches (it starts numba's threads here), with the
    # same kernels as the workers (compiled kernels differ in their last bits from one cache to another)
    from bufnmf.workflows.jobs import decompose_job
    for src in sorted(Path(sys.argv[1], "corpus").rglob("*.*")):
        rel = src.relative_to(Path(sys.argv[1], "corpus")).with_suffix("")
        decompose_job(src, Path(sys.argv[1], "single", rel), seed=5, components=2, iterations=20)
    print(json.dumps(report))
"""


def test_forked_and_spawned_workers_do_the_same_work(corpus12, tmp_path):
    (tmp_path / "corpus").mkdir()
    for rel in ("drums/a.wav", "piano/deeper/b.wav", "stereo/s2.wav", "formats/c.flac"):
        (tmp_path / "corpus" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus12 / rel, tmp_path / "corpus" / rel)
    out = subprocess.run([sys.executable, "-c", _FORK_PROBE, str(tmp_path), "fork", "spawn"], env=src_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["auto"] == "fork"  # a small process that has run no numerics (as the command line's)
    worker = {"compiles": True, "sigterm_default": True, "sigint_ignored": True, "numba_threads": 1}
    assert report["fork"] == [{"forked": True, **worker}] * 2  # the parent's modules, not its handlers
    assert report["spawn"] == [{"forked": False, **worker}] * 2
    assert report["killed"] == 1  # a forked worker killed during the batch: its file done again, nothing lost
    single = outputs(tmp_path / "single")
    assert sorted({k.rsplit("/", 1)[0] for k in single}) == ["drums/a", "formats/c", "piano/deeper/b", "stereo/s2"]
    for method in ("fork", "spawn"):
        counts = report[method + "_counts"]
        assert counts == {"ok": 4, "failed": 0, "skipped": 0, "cancelled": 0}, report[method + "_errors"]
        assert outputs(tmp_path / method) == single, method  # byte for byte, the single-file job's outputs


_SCRIPT_AFTER_A_JOB = """import json, sys

import numpy as np

import bufnmf  # at the top: a spawned worker imports it (and numba) again before its environment is set
import bufnmf.batch as batch


def probe():
    import numba

    from bufnmf.batch.tasks import limit_threads

    with limit_threads(1):  # numba's threads start; then a compilation rereads numba's variables
        return numba.njit(lambda x: x + 1)(1) == 2, numba.get_num_threads()


if __name__ == "__main__":
    bufnmf.decompose(np.random.default_rng(0).standard_normal(22050).astype("float32"), components=2,
                     iterations=3, kernel="numba")  # numba's threads ran here: the batch must spawn
    with batch.connect(workers=1) as (c, threads):
        report = {"workers": list(c.run(probe).values())}
    index = batch.run("decompose", sys.argv[1], sys.argv[2], workers=1, seed=5, components=2, iterations=20)
    report["counts"] = index.counts
    report["errors"] = [r.error for r in index if r.error]
    print(json.dumps(report))
"""


def test_a_script_that_ran_a_job_first_gets_working_spawned_workers(corpus12, tmp_path):
    script = tmp_path / "after_a_job.py"
    script.write_text(_SCRIPT_AFTER_A_JOB)
    out = subprocess.run([sys.executable, str(script), str(corpus12 / "drums"), str(tmp_path / "out")],
                         env=src_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["workers"] == [[True, 1]]  # compiles after its threads started; one thread per task
    assert report["counts"] == {"ok": 2, "failed": 0, "skipped": 0, "cancelled": 0}, report["errors"]


def test_ctrl_c_while_the_cluster_starts_leaves_nothing_to_refuse(corpus12, tmp_path, capsys):
    import threading

    import psutil

    def workers() -> set[int]:
        return {c.pid for c in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(c.cmdline())}

    out = tmp_path / "parts"
    before = workers()  # other tests' clusters
    # the pytest process runs threads of its own, so its workers are spawned: over a second to start
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            batch.run("decompose", corpus12 / "drums", out, workers=1, start_method="spawn", seed=5, **PARAMS)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 30
    index = info.value.index  # held until the cluster had started, then the batch stopped as usual
    assert [r.status for r in index] == ["cancelled", "cancelled"]
    assert not out.exists()  # no index nor record in a folder no file began in: nothing a rerun refuses
    assert workers() <= before  # the batch's own cluster is gone
    # the command line says so in one line
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = main(["batch", "decompose", str(corpus12 / "drums"), "-o", str(out), "-k", "2", "--iterations", "20",
                     "--seed", "5", "--workers", "1", "--start-method", "spawn"])
    finally:
        timer.cancel()
    err = capsys.readouterr().err
    assert code == 130 and err == "bufnmf: interrupted before any file was started; nothing was written\n"
    assert not out.exists()
    done = batch.run("decompose", corpus12 / "drums", out, client=None, workers=1, seed=5, **PARAMS)
    assert done.counts["ok"] == 2


def test_a_second_interrupt_is_delivered_at_once_when_asked():
    from bufnmf.io.outputs import signals_deferred

    with signals_deferred(repeat_delivers=True) as held:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # held: no KeyboardInterrupt yet
        assert held.pending == [signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    with signals_deferred() as held:  # without: every one is held
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert held.pending == [signal.SIGINT, signal.SIGINT]
    # a handler that returns gets the repeated signal once, at once, and not again at the block's end
    calls: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with signals_deferred(repeat_delivers=True) as held:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert calls == [signal.SIGTERM]
        held.redeliver()
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_a_script_without_the_main_guard_is_told_so(corpus12, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text("import bufnmf.batch as batch\n"
                      f"batch.run('decompose', {str(corpus12 / 'drums')!r}, {str(tmp_path / 'out')!r}, workers=1, "
                      "start_method='spawn', components=2, iterations=5)\n")
    out = subprocess.run([sys.executable, str(script)], env=src_env(), capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 1
    # the worker's error, then the batch's: both name the fix; no page of Dask's tracebacks
    assert "a spawned worker runs the script's top level again; put the script's work under" in out.stderr
    assert "the local cluster's worker processes did not start (Dask: Nanny failed to start;" in out.stderr
    assert out.stderr.count("Traceback") == 2 and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_killed_worker_does_not_lose_files(done12, corpus12, tmp_path):
    out, _ = done12
    cluster, c = local_cluster("1GiB")
    killed = []

    def kill_one(row, done, total):
        if not killed:
            pids = c.run(os.getpid)
            pid = next(iter(pids.values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        index = batch.run("decompose", [corpus12 / "drums", corpus12 / "piano", corpus12 / "stereo",
                                        corpus12 / "formats"], tmp_path / "parts", client=c, seed=5,
                          progress=kill_one, **PARAMS)
    finally:
        c.close()
        cluster.close()
    assert killed and index.counts["ok"] == 8
    # the corpus's root differs (four folders given): compare folder by folder
    for r in index:
        assert visible_files(tmp_path / "parts" / r.output) == visible_files(out / r.output), r.output


def test_a_group_whose_worker_dies_is_split_to_find_the_file(done12, corpus12, tmp_path, monkeypatch):
    """Files go several to a task; when a task's worker dies, its files are sent again one per task,
    so only the file that kills its workers fails, and its groupmates end as when done alone."""
    from bufnmf.batch import engine

    poison = str(corpus12 / "piano" / "a.wav")

    def dying_group(tasks, budgets=None, cancel=None):  # (pickled by value: it runs on the workers)
        import os
        import signal

        from bufnmf.batch.tasks import execute_group

        if any(t.source == poison for t in tasks):
            os.kill(os.getpid(), signal.SIGKILL)
        return execute_group(tasks, budgets, cancel)

    groups: list[list[str]] = []
    real_next_group = engine.next_group

    def spy(queue, per_byte, threads):
        group = real_next_group(queue, per_byte, threads)
        groups.append([t.source for _, t in group])
        return group

    monkeypatch.setattr(engine, "execute_group", dying_group)
    monkeypatch.setattr(engine, "next_group", spy)
    monkeypatch.setattr(engine.Pace, "per_byte", lambda self, task: 1e-9)  # short files: grouped from the start
    monkeypatch.setattr(engine.Pace, "known", lambda self: True)
    monkeypatch.setattr(engine, "GUIDED", 1)  # (12 files would go one per task, 4 per worker thread left)
    # a local cluster as the batch makes it (a task fails once 4 workers died running it: Dask's
    # allowed-failures 3; a worker holds one task at a time, so no other task dies with the poison)
    folders = [corpus12 / f for f in ("drums", "drums_c", "piano", "stereo", "formats", "bad")]
    index = batch.run("decompose", folders, tmp_path / "parts", workers=2, seed=5, **PARAMS)
    assert [len(g) for g in groups] == [5, 3, 1, 1, 1] and poison in groups[0]  # 11 files, 2 worker threads
    out, ref = done12  # the poison's groupmates, sent again alone, end as in one batch without it
    want = {r.output: r for r in ref}
    assert len(index) == 11
    for r in index:
        if r.path == poison:
            assert r.status == "failed" and r.error.startswith("the worker doing it died"), r.error
        else:
            assert (r.status, r.error) == (want[r.output].status, want[r.output].error), r.output
            if r.status == "ok":
                assert visible_files(tmp_path / "parts" / r.output) == visible_files(out / r.output), r.output


def test_files_finished_whose_results_were_lost_are_ok_in_the_index(done12, corpus12, tmp_path, monkeypatch):
    """A batch stopped while a task has written its file but not returned (its worker ended with
    the batch, as a SIGTERM to the process group does) reads the file's record: "ok", not "cancelled"."""
    from bufnmf.batch import engine
    from bufnmf.errors import Cancelled

    lost = str(corpus12 / "piano" / "a.wav")

    def slow_group(tasks, budgets=None, cancel=None):  # (pickled by value: it runs on the workers)
        import time

        from bufnmf.batch.tasks import execute_group

        if not any(t.source == lost for t in tasks):
            time.sleep(0.3)  # the other files finish after the lost one is written
        rows = execute_group(tasks, budgets, cancel)
        if any(t.source == lost for t in tasks):
            time.sleep(8)  # written, but its result does not come back before the batch stops
        return rows

    out = tmp_path / "parts"

    def stop_once_written(row, done, total):
        return False if (records.read(out / "piano" / "a") or {}).get("status") == "ok" else None

    monkeypatch.setattr(engine, "execute_group", slow_group)
    monkeypatch.setattr(engine, "GRACE_SECONDS", 0.5)
    folders = [corpus12 / f for f in ("drums", "drums_c", "piano", "stereo", "formats")]
    with pytest.raises(Cancelled) as info:
        batch.run("decompose", folders, out, workers=2, seed=5, progress=stop_once_written, **PARAMS)
    rows = {r.output: r for r in info.value.index}  # type: ignore[attr-defined]
    assert rows["piano/a"].status == "ok" and rows["piano/a"].seed == 5
    ref_out, _ = done12
    assert visible_files(out / "piano" / "a") == visible_files(ref_out / "piano" / "a")
    for rel, r in rows.items():
        assert r.status in ("ok", "cancelled"), rel
        if r.status == "cancelled":
            assert not (out / rel).exists() or visible_files(out / rel) == {}, rel


def _cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bufnmf", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True, **kw)


def _ok_records(folder: Path) -> int:
    return sum(1 for p in folder.rglob(records.RECORD) if p.parent != folder
               and (records.read(p.parent) or {}).get("status") == "ok")


def _wait_for(cond, timeout: float = 120.0) -> None:
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def corpus_long(tmp_path_factory) -> Path:
    """12 files of 6 s (a few tenths of a second each to decompose): time to interrupt a batch."""
    root = tmp_path_factory.mktemp("corpus_long")
    drums = need_shared(DATA / "drums_c" / "mix.wav")
    base = np.tile(sf.read(drums, dtype="float32")[0], 2)
    for i in range(12):
        sf.write(root / f"f{i:02d}.wav", np.roll(base, i * 5000)[: 6 * SR], SR, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def reference_long(client, corpus_long, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref_long") / "parts"
    index = batch.run("decompose", corpus_long, out, client=client, seed=9, components=3, iterations=100)
    assert index.counts["ok"] == 12
    return out


@pytest.mark.slow
def test_kill_9_of_the_batch_then_rerun_ends_identical(corpus_long, reference_long, tmp_path):
    out = tmp_path / "parts"
    args = ["batch", "decompose", corpus_long, "-o", out, "-k", "3", "--seed", "9", "--workers", "2"]
    proc = _cli(args)
    try:
        _wait_for(lambda: _ok_records(out) >= 3 or proc.poll() is not None)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch, its scheduler and its workers, at once
        proc.communicate()
    finished = _ok_records(out)
    assert 3 <= finished < 12, "the batch should have been killed part-way"
    assert not (out / "index.csv").exists()
    done = subprocess.run([sys.executable, "-m", "bufnmf", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = batch.read_index_csv(out / "index.csv")
    assert sum(r["status"] == "skipped" for r in rows) >= finished and all(
        r["status"] in ("ok", "skipped") for r in rows)
    assert outputs(out) == outputs(reference_long)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_files_and_half_writes_none(corpus_long, reference_long, tmp_path):
    out = tmp_path / "parts"
    args = ["batch", "decompose", corpus_long, "-o", out, "-k", "3", "--seed", "9", "--workers", "2"]
    proc = _cli(args)
    _wait_for(lambda: _ok_records(out) >= 2 or proc.poll() is not None)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: to the batch and its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err and "Traceback" not in err
    rows = batch.read_index_csv(out / "index.csv")
    statuses = {r["status"] for r in rows}
    assert "cancelled" in statuses and "ok" in statuses and statuses <= {"ok", "cancelled"}
    ref = visible_files(reference_long)
    for r in rows:
        folder = out / r["output"]
        files = visible_files(folder) if folder.exists() else {}
        leftovers = [p.name for p in folder.glob(".*.part")] if folder.exists() else []
        assert leftovers == [], (r["output"], leftovers)
        if r["status"] == "ok":
            assert files == {k.split("/", 1)[1]: v for k, v in ref.items() if k.startswith(r["output"] + "/")}
        else:
            assert files == {}, r["output"]  # nothing half-written
    done = subprocess.run([sys.executable, "-m", "bufnmf", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert outputs(out) == outputs(reference_long)


def test_a_cancelled_batch_stops_the_groups_being_done(corpus_long, reference_long, client, tmp_path, monkeypatch):
    """Files sent several to a task: once the batch is cancelled, the file being done stops without
    writing, its groupmates are not started, the finished ones stay; a rerun ends identical."""
    from bufnmf.batch import engine
    from bufnmf.errors import Cancelled

    groups: list[int] = []
    real_next_group = engine.next_group

    def spy(queue, per_byte, threads):
        group = real_next_group(queue, per_byte, threads)
        groups.append(len(group))
        return group

    monkeypatch.setattr(engine, "next_group", spy)
    monkeypatch.setattr(engine, "GROUP_SECONDS", 100.0)  # these 12 files of ~0.3 s: as many to a task as allowed
    monkeypatch.setattr(engine, "GUIDED", 1)
    out = tmp_path / "parts"
    with pytest.raises(Cancelled) as info:
        batch.run("decompose", corpus_long, out, client=client, seed=9, components=3, iterations=100,
                  progress=lambda row, done, total: False if done >= 3 else None)
    assert groups[:5] == [1, 1, 1, 1, 4]  # two single files per worker thread, then the pace is known
    rows = info.value.index  # type: ignore[attr-defined]
    statuses = [r.status for r in rows]
    assert statuses.count("ok") >= 3 and statuses.count("cancelled") >= 4 and set(statuses) == {"ok", "cancelled"}
    ref = visible_files(reference_long)
    for r in rows:
        folder = out / r.output
        assert not (folder.exists() and list(folder.glob(".*.part"))), r.output
        if r.status == "ok":
            assert visible_files(folder) == {k.split("/", 1)[1]: v for k, v in ref.items()
                                             if k.startswith(r.output + "/")}
        else:
            assert not folder.exists() or visible_files(folder) == {}, r.output  # nothing half-written
    again = batch.run("decompose", corpus_long, out, client=client, seed=9, components=3, iterations=100)
    assert again.counts["skipped"] == statuses.count("ok") and again.counts["ok"] == statuses.count("cancelled")
    assert outputs(out) == outputs(reference_long)


@pytest.mark.slow
def test_an_explicit_scheduler_with_separately_started_workers(corpus12, done12, tmp_path):
    out12, _ = done12
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                               str(sched_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        _wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, 60)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nthreads",
                 "1", "--no-dashboard", "--memory-limit", "1GiB"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        out = tmp_path / "parts"
        code = main(["batch", "decompose", str(corpus12 / "drums"), str(corpus12 / "stereo"), "-o", str(out),
                     "--scheduler", address, "-k", "2", "--iterations", "20", "--seed", "5"])
        assert code == 0
        rows = batch.read_index_csv(out / "index.csv")
        assert [r["status"] for r in rows] == ["ok"] * 4
        for r in rows:
            assert visible_files(out / r["output"]) == visible_files(out12 / r["output"])
        from distributed import Client

        with Client(address, set_as_default=False) as c:
            assert len(c.nthreads()) == 2  # both workers served it
            assert set(batch.engine.budgets(c).values()) == {max(1, batch.engine.cores() // 2)}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


# ----------------------------------------------------------------------------------------------
# learn and track


@pytest.fixture(scope="module")
def drum_corpus(tmp_path_factory) -> Path:
    """hits/<drum>/<kit>.wav from two real kits, and loops/ from both kits' loops."""
    root = tmp_path_factory.mktemp("drum_corpus")
    for kit in ("drums", "drums_c"):
        for drum in ("kick", "snare", "hihat"):
            src = need_shared(DATA / kit / "hits" / f"{drum}.wav")
            (root / "hits" / drum).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / "hits" / drum / f"{kit}.wav")
        (root / "loops").mkdir(exist_ok=True)
        shutil.copy(need_shared(DATA / kit / "mix.wav"), root / "loops" / f"{kit}.wav")
    return root


def test_batch_learn_equals_learn_on_all_files(client, drum_corpus, tmp_path, capsys):
    index = batch.run("learn", drum_corpus / "hits", tmp_path / "kit", client=client, seed=4, merge_labels=True)
    assert index.counts["ok"] == 6 and [r.label for r in index] == ["hihat"] * 2 + ["kick"] * 2 + ["snare"] * 2
    assert (tmp_path / "kit" / "kit.wav") in index.files and all(r.seed == 4 for r in index)
    files = [r.path for r in index]
    args = ["learn", *files, "-o", str(tmp_path / "single.wav"), "--seed", "4", "--merge-labels"]
    for r in index:
        args += ["--label", r.label or ""]
    assert main(args) == 0, capsys.readouterr().err
    assert visible_files(tmp_path / "kit")["kit.wav"] == visible_files(tmp_path)["single.wav"]
    mine = json.loads((tmp_path / "kit" / "kit.json").read_text())
    theirs = json.loads((tmp_path / "single.json").read_text())
    assert mine == theirs and mine["labels"] == ["hihat", "kick", "snare"] and mine["sources"] == files
    # each file's own kit is what 'bufnmf learn FILE --label L --seed 4' writes
    assert main(["learn", files[2], "--label", "kick", "--seed", "4", "-o", str(tmp_path / "one.wav")]) == 0
    assert visible_files(tmp_path / "kit" / index[2].output)["kit.wav"] == visible_files(tmp_path)["one.wav"]
    # seed -1: one seed drawn for the whole kit, and kept by a rerun
    drawn = batch.run("learn", drum_corpus / "hits", tmp_path / "kit2", client=client)
    assert len({r.seed for r in drawn}) == 1 and drawn[0].seed is not None
    again = batch.run("learn", drum_corpus / "hits", tmp_path / "kit2", client=client)
    assert again.counts["skipped"] == 6 and json.loads((tmp_path / "kit2" / "kit.json").read_text())["seed"] == \
        drawn[0].seed


def test_batch_track_writes_each_files_events_and_one_table(client, drum_corpus, tmp_path, capsys):
    kit = tmp_path / "kit" / "kit.wav"
    batch.run("learn", drum_corpus / "hits", tmp_path / "kit", client=client, seed=4, merge_labels=True)
    out = tmp_path / "events"
    code = main(["batch", "track", str(drum_corpus / "loops"), "--bases", str(kit), "-o", str(out), "--seed", "2",
                 "--midi"])
    assert code == 0, capsys.readouterr().err
    rows = batch.read_index_csv(out / "index.csv")
    assert [r["output"] for r in rows] == ["drums", "drums_c"] and list(rows[0])[-1] == "events"
    table = batch.read_index_csv(out / "events.csv")
    for r in rows:
        single = tmp_path / f"{r['output']}.csv"
        with limit_threads(1):  # as a batch worker runs it: BLAS's sums in the fit round alike
            assert main(["track", r["path"], "--bases", str(kit), "-o", str(single), "--seed", "2", "--midi",
                         str(tmp_path / f"{r['output']}.mid")]) == 0
        assert (out / r["output"] / "events.csv").read_bytes() == single.read_bytes()
        assert (out / r["output"] / "events.mid").read_bytes() == (tmp_path / f"{r['output']}.mid").read_bytes()
        mine = [e for e in table if e["path"] == r["path"]]
        assert len(mine) == int(r["events"]) > 10
        assert {e["label"] for e in mine} == {"kick", "snare", "hihat"}
    assert list(table[0]) == ["path", "time", "label", "strength", "end"]


def test_command_line_errors_and_exit_status(corpus12, tmp_path, capsys):
    assert main(["batch", "decompose", str(corpus12 / "piano"), "-o", str(tmp_path / "o"), "--workers", "2",
                 "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "--workers sets the size of a local cluster" in capsys.readouterr().err
    assert main(["batch", "decompose", str(corpus12 / "piano"), "-o", str(tmp_path / "o"), "--start-method", "spawn",
                 "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "--start-method sets how a local cluster starts its workers" in capsys.readouterr().err
    assert main(["batch", "decompose", str(corpus12 / "piano"), "-o", str(tmp_path / "o"), "--start-method",
                 "thread"]) == 2
    assert "'thread' is not one of 'auto', 'fork', 'spawn', 'forkserver'" in capsys.readouterr().err
    assert main(["batch", "decompose", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "corpus" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["batch", "track", str(corpus12 / "piano"), "-o", str(tmp_path / "o")]) == 2
    assert "Missing option '--bases'" in capsys.readouterr().err
    assert main(["batch", "learn", str(corpus12 / "piano"), "-o", str(tmp_path / "kit.wav")]) == 2
    assert "-o " + str(tmp_path / "kit.wav") + " looks like a file name" in capsys.readouterr().err
    assert main(["batch", "decompose", str(corpus12 / "piano"), "-o", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    assert main(["batch", "track", str(corpus12 / "piano"), "-o", str(tmp_path / "o"), "--bases", "no.wav"]) == 2
    assert "--bases no.wav does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "kit.wav").exists()  # refused: nothing left
    # some files failed: the rest are done, exit status 3, one line naming a failure
    code = main(["batch", "decompose", str(corpus12 / "drums"), str(corpus12 / "bad"), "-o", str(tmp_path / "x"),
                 "-k", "2", "--iterations", "5", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 3 and "1 of 3 file(s) failed" in err and "broken.wav" in err and "not a readable audio" in err
    assert (tmp_path / "x" / "drums" / "a" / "summary.json").exists()
    # every file failed the same way: a bad option, said once, exit status 2
    code = main(["batch", "decompose", str(corpus12 / "drums"), "-o", str(tmp_path / "y"), "-k", "0",
                 "--workers", "1"])
    assert code == 2 and "every file failed: components must be at least 1, got 0" in capsys.readouterr().err


def test_events_files_read_back_and_kits_stack_only_when_compatible(tmp_path):
    from bufnmf.io.events import Event, events_to_text, read_events
    from bufnmf.workflows.kits import Kit, stack_kits

    events = [Event(0.5, "kick", 0.75, 0.6), Event(1.25, "snare, loud", 1.0, 1.5)]  # a label needing quotes
    for fmt in ("csv", "json"):
        p = tmp_path / f"e.{fmt}"
        p.write_text(events_to_text(events, fmt))
        assert read_events(p) == events
    (tmp_path / "bad.csv").write_text("time,label\n0.5,kick\n")
    with pytest.raises(BufNMFError, match="is not valid"):
        read_events(tmp_path / "bad.csv")
    rng = np.random.default_rng(0)
    a = Kit(rng.random((513, 2)).astype(np.float32), ["a", "b"], 1024, 512, 1024, SR, ["x.wav"], seed=1)
    b = Kit(rng.random((513, 1)).astype(np.float32), ["a"], 1024, 512, 1024, SR, ["y.wav"], seed=1)
    merged = stack_kits([a, b], merge_labels=True)
    assert merged.labels == ["a", "b"] and merged.sources == ["x.wav", "y.wav"]
    mean = (a.bases[:, 0].astype(np.float64) + b.bases[:, 0]) / 2
    np.testing.assert_allclose(merged.bases[:, 0], mean / np.linalg.norm(mean), rtol=1e-6)
    with pytest.raises(BufNMFError, match="window/hop/fft 1024/512/1024"):
        stack_kits([a, Kit(b.bases, ["a"], 1024, 256, 1024, SR, seed=1)])
    with pytest.raises(BufNMFError, match="44100 Hz"):
        stack_kits([a, Kit(b.bases, ["a"], 1024, 512, 1024, 48000, seed=1)])
    with pytest.raises(BufNMFError, match="different seeds"):
        stack_kits([a, Kit(b.bases, ["a"], 1024, 512, 1024, SR, seed=2)])


def test_the_progress_bar_counts_this_runs_files_per_second(capsys):
    """A resumed batch reports its files done before first, all at once: the bar starts from them
    (tqdm's `initial`), so its rate counts this run's files only."""
    from bufnmf.cli.batch import FileBar

    bar = FileBar(quiet=False)
    bar.enabled = True  # (as on a terminal)
    for done in range(1, 4):
        bar(batch.Row(f"s{done}", "skipped"), done, 10)
    assert bar.bar is None and bar.counts["skipped"] == 3  # no bar yet: nothing done by this run
    bar(batch.Row("a", "ok"), 4, 10)
    bar(batch.Row("b", "failed", "x"), 5, 10)
    assert (bar.bar.initial, bar.bar.n, bar.bar.total) == (3, 5, 10)
    meter = bar.bar.format_meter(**{**bar.bar.format_dict, "elapsed": 2.0, "rate": None})
    assert "1.00file/s" in meter and "5/10" in meter  # (5 - 3 files) / 2 s, not 5 / 2 s
    bar.close()
    assert bar.bar is None
