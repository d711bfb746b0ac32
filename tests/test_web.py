"""``bufnmf serve`` without a browser: its HTTP API, sessions, queue, limits, errors and command.

The page's own behaviour in a real browser is in test_web_browser.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from bufnmf.cli import main
from bufnmf.errors import BufNMFError
from bufnmf.web import WebConfig, create_app, is_loopback
from bufnmf.web.app import safe_name
from bufnmf.workflows.jobs import learn_job, track_job

pytestmark = pytest.mark.slow  # each module starts worker processes

DEADLINE = 120.0


def wait_job(client: TestClient, sid: str, jid: str, states: tuple[str, ...] = ("done", "error", "cancelled"),
             timeout: float = DEADLINE, stage: str | None = None) -> dict:
    """Poll a job until it reaches one of ``states`` (and ``stage``): an explicit wait with a deadline."""
    end = time.monotonic() + timeout
    while True:
        info = client.get(f"/api/sessions/{sid}/jobs/{jid}").json()
        if info["state"] in states and (stage is None or info["stage"] == stage):
            return info
        assert time.monotonic() < end, f"job still {info['state']} after {timeout} s: {info}"
        time.sleep(0.05)


def upload(client: TestClient, sid: str, path: Path, role: str = "source", into: str | None = None,
           name: str | None = None) -> dict:
    params = {"name": name or path.name, "role": role}
    if into:
        params["into"] = into
    res = client.post(f"/api/sessions/{sid}/uploads", params=params, content=path.read_bytes())
    assert res.status_code == 200, res.text
    return res.json()


def cli_error(args: list[str], cwd: Path, capsys) -> str:
    """The message the command line prints after 'bufnmf: error: ', run from ``cwd``."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main([str(a) for a in args])
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("bufnmf: error: ")
    return err.strip().removeprefix("bufnmf: error: ")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve") / "root"
    app = create_app(WebConfig(max_jobs=1, tmp_root=root, max_upload=5 * 2**20))
    with TestClient(app) as client:
        yield client, app.state.server
    assert not root.exists()  # the server's folder goes when it stops


@pytest.fixture
def sid(server) -> str:
    client, _ = server
    return client.post("/api/sessions").json()["id"]


def test_safe_names_never_leave_the_upload_folder():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_name("/abs/path/loop one.wav") == "loop one.wav"
    assert safe_name("..") == "upload" and safe_name("") == "upload" and safe_name(".hidden") == "hidden"
    assert safe_name("a;rm -rf *|.wav") == "a_rm -rf _.wav"
    long = safe_name("x" * 300 + ".wav")
    assert len(long) == 100 and long.endswith(".wav")


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.org")


def test_page_and_static_files_are_served(server):
    client, _ = server
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for hook in ("source-input", "demo-button", "components", "run-button", "progress", "bases-plot",
                 "activations-plot", "download-zip"):
        assert f'data-testid="{hook}"' in page.text, hook
    assert 'data-testid="component-audio"' in client.get("/static/app.js").text  # one per part, made by the page
    assert client.get("/static/app.css").status_code == 200
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert links and all(u.startswith(("/static/", "data:", "#")) for u in links), links  # nothing from elsewhere


def test_a_decomposition_is_the_command_lines(server, sid, tmp_path, capsys, data_dir):
    client, srv = server
    src = data_dir / "drums" / "mix.wav"
    up = upload(client, sid, src)
    res = client.post(f"/api/sessions/{sid}/jobs", json={
        "kind": "decompose", "source": up["id"], "params": {"components": 3, "iterations": 20, "seed": 7}})
    assert res.status_code == 200, res.text
    job = res.json()
    assert job["memory"].endswith("iB")  # the planner's estimate, shown before the run
    info = wait_job(client, sid, job["id"])
    assert info["state"] == "done", info
    r = info["result"]
    assert r["kind"] == "nmf" and r["components"] == 3 and r["seed"] == "7" and r["sample_rate"] == 44100
    assert [p["file"] for p in r["parts"]] == ["component_1.wav", "component_2.wav", "component_3.wav"]
    assert r["commands"] == ["bufnmf decompose mix.wav -o mix-parts -k 3 --iterations 20 --seed 7"]
    # the same command on the command line writes the same numbers
    assert main(["decompose", str(src), "-o", str(tmp_path / "cli"), "-k", "3", "--iterations", "20",
                 "--seed", "7"]) == 0
    for name in ("bases.npy", "activations.npy"):
        web = np.load(io.BytesIO(client.get(f"/api/sessions/{sid}/jobs/{job['id']}/files/{name}").content))
        np.testing.assert_array_equal(web, np.load(tmp_path / "cli" / name))
    summary = client.get(f"/api/sessions/{sid}/jobs/{job['id']}/files/summary.json").json()
    assert summary["source"] == "mix.wav"  # the user's name, never the server's folder
    assert str(srv.root) not in json.dumps(summary)
    # the zip holds every output, and its parts sum to the source
    z = client.get(f"/api/sessions/{sid}/jobs/{job['id']}/zip")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(f"mix-parts/{n}" for n in summary["outputs"])
        parts = [sf.read(io.BytesIO(zf.read(f"mix-parts/component_{k}.wav")), dtype="float32")[0] for k in (1, 2, 3)]
    mix = sf.read(src, dtype="float32")[0]
    np.testing.assert_allclose(np.sum(parts, axis=0), mix, atol=1e-5)
    # the source plays from the job; audio answers range requests (seeking in the page's players)
    part = client.get(f"/api/sessions/{sid}/jobs/{job['id']}/files/component_1.wav", headers={"range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    assert client.get(f"/api/sessions/{sid}/jobs/{job['id']}/source").content == src.read_bytes()


@pytest.mark.parametrize(("params", "cli_args"), [
    ({"components": 0}, ["-k", "0"]),
    ({"components": 2, "window_size": 1000, "hop_size": 2000}, ["-k", "2", "--window-size", "1000", "--hop-size",
                                                                 "2000"]),
    ({"components": 2, "iterations": 0}, ["-k", "2", "--iterations", "0"]),
])
def test_bad_settings_are_refused_in_the_command_lines_words(server, sid, tmp_path, capsys, data_dir, params,
                                                             cli_args):
    client, _ = server
    src = data_dir / "drums" / "mix.wav"
    up = upload(client, sid, src)
    res = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "decompose", "source": up["id"], "params": params})
    assert res.status_code == 400
    (tmp_path / "mix.wav").write_bytes(src.read_bytes())
    assert res.json()["error"] == cli_error(["decompose", "mix.wav", "-o", "out", *cli_args], tmp_path, capsys)


def test_a_bad_file_is_refused_in_the_command_lines_words(server, sid, tmp_path, capsys):
    client, srv = server
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not a sound\n")
    up = upload(client, sid, bad)
    res = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "decompose", "source": up["id"],
                                                         "params": {"components": 3}})
    assert res.status_code == 400
    message = res.json()["error"]
    assert message == cli_error(["decompose", "bad.wav", "-o", "out", "-k", "3"], tmp_path, capsys)
    assert message.startswith("source bad.wav is not a readable audio file") and str(srv.root) not in message


def test_sessions_are_kept_apart(server, sid, data_dir):
    client, srv = server
    up = upload(client, sid, data_dir / "drums" / "mix.wav")
    job = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "decompose", "source": up["id"],
                                                         "params": {"components": 2, "iterations": 5}}).json()
    wait_job(client, sid, job["id"])
    other = client.post("/api/sessions").json()["id"]
    base = f"/api/sessions/{other}"
    assert client.get(f"{base}/jobs/{job['id']}").status_code == 404
    assert client.get(f"{base}/jobs/{job['id']}/files/summary.json").status_code == 404
    assert client.get(f"{base}/uploads/{up['id']}/mix.wav").status_code == 404
    res = client.post(f"{base}/jobs", json={"kind": "decompose", "source": up["id"], "params": {}})
    assert res.status_code == 400 and res.json()["error"].startswith("choose a sound first")
    # only the job's own outputs by name: no paths, no inputs, no temporaries
    mine = f"/api/sessions/{sid}/jobs/{job['id']}/files/"
    for name in ("..%2Fin%2Fmix.wav", "../in/mix.wav", "%2E%2E", ".bufnmf.lock", "mix.wav"):
        assert client.get(mine + name).status_code == 404, name
    assert client.get("/api/sessions/not-a-session/jobs/x").status_code == 410
    # an upload's name is made safe: it lands inside the session's folder
    res = client.post(f"/api/sessions/{sid}/uploads", params={"name": "../../escape.wav"}, content=b"RIFF")
    assert res.json()["files"] == ["escape.wav"]
    assert not (srv.root / "escape.wav").exists() and not (srv.root.parent / "escape.wav").exists()
    # nothing uploaded is ever served as a page
    up = client.post(f"/api/sessions/{sid}/uploads", params={"name": "page.html"}, content=b"<script>1</script>").json()
    res = client.get(f"/api/sessions/{sid}/uploads/{up['id']}/page.html")
    assert res.headers["content-type"] == "application/octet-stream"
    assert res.headers["x-content-type-options"] == "nosniff"


def test_upload_limit(server, sid):
    client, _ = server
    res = client.post(f"/api/sessions/{sid}/uploads", params={"name": "big.wav"}, content=b"\0" * (5 * 2**20 + 1))
    assert res.status_code == 413
    assert res.json()["error"] == ("big.wav is 5.0 MiB, more than 5.0 MiB, the most this server takes (--max-upload): "
                                   "use a shorter or compressed sound, or restart 'bufnmf serve' with a larger "
                                   "--max-upload")

    def chunks():  # no length given: counted as it arrives, stopped at the limit
        for _ in range(6):
            yield b"\0" * 2**20

    res = client.post(f"/api/sessions/{sid}/uploads", params={"name": "streamed.wav"}, content=chunks())
    assert res.status_code == 413 and "more than 5.0 MiB" in res.json()["error"]


def test_queue_cancel_and_the_end_of_a_session(server, data_dir):
    client, srv = server
    a = client.post("/api/sessions").json()["id"]
    b = client.post("/api/sessions").json()["id"]
    src = data_dir / "drums" / "mix.wav"
    long = {"components": 3, "iterations": 100000}  # runs until cancelled
    ja = client.post(f"/api/sessions/{a}/jobs", json={"kind": "decompose", "source": upload(client, a, src)["id"],
                                                      "params": long}).json()
    wait_job(client, a, ja["id"], ("running",))
    jb = client.post(f"/api/sessions/{b}/jobs", json={"kind": "decompose", "source": upload(client, b, src)["id"],
                                                      "params": {"components": 2, "iterations": 10}}).json()
    assert jb["state"] == "queued" and jb["position"] == 1  # max_jobs=1: behind a's
    running = wait_job(client, a, ja["id"], ("running",), stage="running")
    assert running["total"] == 100000 and 0 < running["done"] < 100000
    assert client.post(f"/api/sessions/{a}/jobs/{ja['id']}/cancel").status_code == 200
    assert wait_job(client, a, ja["id"])["state"] == "cancelled"
    assert wait_job(client, b, jb["id"])["state"] == "done"
    out_a = srv.sessions[a].folder / "jobs" / ja["id"] / "out"
    assert not out_a.exists() or not [p for p in out_a.iterdir() if not p.name.startswith(".")]  # nothing written
    folder = srv.sessions[b].folder
    assert folder.is_dir()
    assert client.post(f"/api/sessions/{b}/end").status_code == 200
    assert not folder.exists() and b not in srv.sessions
    assert client.get(f"/api/sessions/{b}/jobs/{jb['id']}").status_code == 410


def test_demo_then_its_loop_as_the_source(server, sid):
    client, _ = server
    job = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "demo"}).json()
    info = wait_job(client, sid, job["id"])
    assert info["state"] == "done", info
    r = info["result"]
    assert len(r["parts"]) == 3 and r["commands"] == ["bufnmf demo -o bufnmf-demo"]
    assert sorted(m["drum"] for m in r["matches"]) == ["hihat", "kick", "snare"]
    loop = r["source_upload"]
    assert loop["name"] == "demo_loop.wav"
    res = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "decompose", "source": loop["id"],
                                                         "params": {"components": 2, "iterations": 10}})
    assert wait_job(client, sid, res.json()["id"])["state"] == "done"


def test_a_kit_fixes_the_bases_and_finds_the_hits_as_track_does(server, sid, tmp_path, data_dir):
    client, _ = server
    hits = data_dir / "drums" / "hits"
    kit = tmp_path / "kit.wav"
    # the page decomposes with the kit's bases fixed: FluCoMa-layout bases (percussive kits hold NMFD templates)
    learn_job([hits / "kick.wav", hits / "snare.wav", hits / "hihat.wav"], kit, seed=1, method="flucoma")
    src = data_dir / "drums" / "mix.wav"
    up = upload(client, sid, src)
    k = upload(client, sid, kit, role="kit")
    k = upload(client, sid, tmp_path / "kit.json", role="kit", into=k["id"])
    assert k["files"] == ["kit.wav", "kit.json"]
    res = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "decompose", "source": up["id"], "kit": k["id"],
                                                         "params": {"bases_mode": "fixed", "seed": 3,
                                                                    "iterations": 50}})
    info = wait_job(client, sid, res.json()["id"])
    assert info["state"] == "done", info
    r = info["result"]
    assert [p["file"] for p in r["parts"]] == ["component_kick.wav", "component_snare.wav", "component_hihat.wav"]
    assert r["labels"] == ["kick", "snare", "hihat"]
    events = client.get(r["events"]).json()
    expected = track_job(src, kit, tmp_path / "events.json", iterations=50, seed=3).result
    assert [(e["time"], e["label"]) for e in events] == [(e.time, e.label) for e in expected]
    assert {e["label"] for e in events} == {"kick", "snare", "hihat"}
    assert r["tracking"]["events"] == len(expected)
    assert {d["name"] for d in r["downloads"] if d["group"] == "events"} == {"events.json", "events.mid"}
    assert r["commands"][1] == "bufnmf track mix.wav --bases kit.wav -o events.json --midi events.mid --seed 3 " \
                               "--iterations 50"
    bases = np.load(io.BytesIO(client.get(next(d["url"] for d in r["downloads"] if d["name"] == "bases.npy")).content))
    np.testing.assert_allclose(bases, sf.read(kit, always_2d=True)[0] / np.linalg.norm(sf.read(kit, always_2d=True)[0],
                               axis=0), rtol=1e-5, atol=1e-7)  # fixed: the kit's bases (unit norm) as they were


def test_other_sites_are_refused(tmp_path):
    app = create_app(WebConfig(tmp_root=tmp_path / "root", local_only=True))
    client = TestClient(app, base_url="http://127.0.0.1:8000")  # no lifespan: no workers needed here
    assert client.get("/").status_code == 200
    assert client.post("/api/sessions", headers={"origin": "http://127.0.0.1:8000"}).status_code == 200
    res = client.post("/api/sessions", headers={"origin": "http://evil.example"})
    assert res.status_code == 403 and res.json()["error"] == "requests from another site (http://evil.example) are " \
                                                             "refused"
    res = client.get("/api/config", headers={"host": "evil.example:8000"})  # a name made to point here
    assert res.status_code == 403 and "not 'evil.example:8000'" in res.json()["error"]
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/", headers={"host": "[::1]:8000"}).status_code == 200


def test_a_session_whose_page_is_gone_is_ended(tmp_path):
    app = create_app(WebConfig(max_jobs=1, tmp_root=tmp_path / "root", session_idle_s=0.2))
    with TestClient(app) as client:
        srv = app.state.server
        sid = client.post("/api/sessions").json()["id"]
        folder = srv.sessions[sid].folder
        assert folder.is_dir()
        end = time.monotonic() + 30
        while folder.exists():  # no page listens: ended after session_idle_s
            assert time.monotonic() < end
            time.sleep(0.05)
        assert client.get(f"/api/sessions/{sid}").status_code == 410


def test_a_job_waits_for_memory_beside_a_running_one(tmp_path, data_dir, monkeypatch):
    app = create_app(WebConfig(max_jobs=2, tmp_root=tmp_path / "root"))
    with TestClient(app) as client:
        srv = app.state.server
        sid = client.post("/api/sessions").json()["id"]
        up = upload(client, sid, data_dir / "drums" / "mix.wav")
        first = client.post(f"/api/sessions/{sid}/jobs", json={
            "kind": "decompose", "source": up["id"], "params": {"components": 3, "iterations": 100000}}).json()
        wait_job(client, sid, first["id"], ("running",), stage="running")
        need = srv.runner.jobs[first["id"]].memory_bytes
        monkeypatch.setattr("bufnmf.web.runner.available_memory", lambda: int(need * 1.5))  # room for one run
        end = time.monotonic() + DEADLINE
        while not all(w.ready for w in srv.runner.workers):  # a free worker: only memory can hold the next job
            assert time.monotonic() < end
            time.sleep(0.05)
        second = client.post(f"/api/sessions/{sid}/jobs", json={
            "kind": "decompose", "source": up["id"], "params": {"components": 3, "iterations": 10}}).json()
        info = client.get(f"/api/sessions/{sid}/jobs/{second['id']}").json()
        assert info["state"] == "queued" and info["waiting_for_memory"] and info["position"] == 1
        client.post(f"/api/sessions/{sid}/jobs/{first['id']}/cancel")
        done = wait_job(client, sid, second["id"])
        assert done["state"] == "done" and not done["waiting_for_memory"]


def test_sines_and_residual_are_the_command_lines(server, sid, tmp_path, data_dir, capsys):
    client, _ = server
    src = data_dir / "drums" / "mix.wav"
    up = upload(client, sid, src)
    res = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "sines", "source": up["id"],
                                                         "params": {"detection_threshold": -80, "min_track_len": 10}})
    info = wait_job(client, sid, res.json()["id"])
    assert info["state"] == "done", info
    r = info["result"]
    assert r["kind"] == "sines" and [p["file"] for p in r["parts"]] == ["sines.wav", "residual.wav"]
    assert r["commands"] == ["bufnmf sines mix.wav -o mix-sines --detection-threshold -80 --min-track-len 10"]
    assert main(["sines", str(src), "-o", str(tmp_path / "cli"), "--detection-threshold", "-80", "--min-track-len",
                 "10"]) == 0
    assert client.get(r["tracks"]).text == (tmp_path / "cli" / "tracks.csv").read_text()
    parts = [sf.read(io.BytesIO(client.get(p["url"]).content), dtype="float32")[0] for p in r["parts"]]
    np.testing.assert_array_equal(parts[0], sf.read(tmp_path / "cli" / "sines.wav", dtype="float32")[0])
    np.testing.assert_allclose(parts[0] + parts[1], sf.read(src, dtype="float32")[0], atol=1e-5)
    assert r["per_channel"][0]["tracks"] > 0
    # its errors too are the command line's
    res = client.post(f"/api/sessions/{sid}/jobs", json={"kind": "sines", "source": up["id"],
                                                         "params": {"min_track_len": -3}})
    failed = wait_job(client, sid, res.json()["id"])
    assert failed["state"] == "error"
    (tmp_path / "mix.wav").write_bytes(src.read_bytes())
    assert failed["message"] == cli_error(["sines", "mix.wav", "-o", "out", "--min-track-len", "-3"], tmp_path, capsys)


# ----------------------------------------------------------------------------------------------
# the command


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bufnmf", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_serve_prints_its_address_and_removes_its_files_when_stopped():
    proc = _start(["--port", "0", "--max-jobs", "1"])
    try:
        line = proc.stdout.readline()
        m = re.match(r"bufnmf serve: (http://127\.0\.0\.1:(\d+)/) .* files in (\S+), removed", line)
        assert m, line
        root = Path(m.group(3))
        assert root.is_dir()
        with socket.create_connection(("127.0.0.1", int(m.group(2))), timeout=10) as s:
            s.sendall(f"GET /api/config HTTP/1.0\r\nHost: 127.0.0.1:{m.group(2)}\r\n\r\n".encode())
            reply = s.makefile("rb").read().decode()
        assert reply.startswith("HTTP/1.1 200") and '"max_jobs":1' in reply
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out and not root.exists()


def test_serve_warns_for_other_hosts_and_refuses_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = _start(["--port", str(port)])
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and out == ""
        assert err == f"bufnmf: error: port {port} on 127.0.0.1 is in use: choose another with --port (--port 0 " \
                      "takes any free port)\n"
    proc = _start(["--host", "0.0.0.0", "--port", "0", "--max-jobs", "1"])
    try:
        warning = proc.stderr.readline()
        assert warning.startswith("bufnmf serve: warning: listening on 0.0.0.0: anyone who can reach this machine")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_serve_options_are_checked(capsys):
    assert main(["serve", "--max-jobs", "0", "--port", "0"]) == 2
    assert capsys.readouterr().err == "bufnmf: error: --max-jobs must be at least 1, got 0\n"
    assert main(["serve", "--max-upload", "lots"]) == 2
    assert capsys.readouterr().err == ("bufnmf: error: --max-upload 'lots' is not understood: use e.g. 500M, 2G or a "
                                       "number of bytes\n")
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--host", "--port", "--open", "--max-upload", "--max-jobs"):
        assert opt in out


def test_workers_that_cannot_start_are_reported_not_restarted_forever():
    # A server started from a script read on stdin: spawned workers cannot import it and exit at once.
    script = """
import time
from starlette.testclient import TestClient
from bufnmf.web import WebConfig, create_app
app = create_app(WebConfig(max_jobs=1))
with TestClient(app) as c:
    end = time.monotonic() + 60
    while not c.get("/api/config").json()["broken"] and time.monotonic() < end:
        time.sleep(0.05)
    print(c.get("/api/config").json()["broken"])
    sid = c.post("/api/sessions").json()["id"]
    res = c.post(f"/api/sessions/{sid}/jobs", json={"kind": "demo"})
    print(res.status_code, res.json()["error"])
"""
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    broken = "a worker process could not start (exit code 1): see the messages where the server runs"
    assert lines == [broken, f"503 {broken}"], proc.stdout + proc.stderr
    assert proc.stderr.count("Traceback") == 1  # one failed start, no restart loop


def test_plan_only_checks_and_plans_and_writes_nothing(tmp_path, data_dir):
    from bufnmf.clients.bufnmf import prepare
    from bufnmf.io.audio import read_audio
    from bufnmf.workflows.jobs import decompose_job

    src = data_dir / "drums" / "mix.wav"
    job = decompose_job(src, tmp_path / "out", components=3, seed=5, plan_only=True)
    assert job.outputs == [] and not (tmp_path / "out").exists()  # nothing written, not even the folder
    data, _ = read_audio(src)
    expected = prepare(data, components=3, seed=5, held_source=data.size * 4).plan  # the job counts the read
    assert job.result == expected
    assert job.summary["memory_bytes"] == expected.memory.total
    assert (job.summary["bins"], job.summary["frames"], job.summary["samples"]) == (513, 388, 198450)
    assert job.summary["outputs"][:3] == ["component_1.wav", "component_2.wav", "component_3.wav"]
    with pytest.raises(BufNMFError, match=r"needs about .* but the max_memory limit is 1\.0 KiB"):
        decompose_job(src, tmp_path / "out", components=3, max_memory=1024, plan_only=True)
