"""The command line: files, layouts, summary, refusals, errors, atomicity, plots, demo."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bufnmf.cli import main
from bufnmf.demo import drum_loop
from bufnmf.io.outputs import OutputSet

from .conftest import run_on_terminal, src_env


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory) -> Path:
    mix = drum_loop(seconds=1.5, sr=22050)[0]
    data = np.stack([mix, 0.5 * np.roll(mix, 300)], axis=1)
    p = tmp_path_factory.mktemp("src") / "loop.wav"
    sf.write(p, data, 22050, subtype="FLOAT")
    return p


def test_decompose_real_recording(tmp_path, capsys, data_dir):
    src = data_dir / "drums" / "mix.wav"
    code, out, err = run(["decompose", src, "-o", tmp_path, "-k", "3", "--iterations", "20", "--seed", "1"], capsys)
    assert code == 0, err
    assert out == "" and err == ""  # not a terminal: quiet
    mix, sr = sf.read(src, dtype="float32")
    parts = []
    for k in (1, 2, 3):
        data, rate = sf.read(tmp_path / f"component_{k}.wav", dtype="float32", always_2d=True)
        assert rate == sr and data.shape == (mix.shape[0], 1)
        assert sf.info(tmp_path / f"component_{k}.wav").subtype == "FLOAT"
        parts.append(data[:, 0])
    np.testing.assert_allclose(np.sum(parts, axis=0), mix, atol=1e-5)
    bases, bsr = sf.read(tmp_path / "bases.wav", always_2d=True)
    acts, asr = sf.read(tmp_path / "activations.wav", always_2d=True)
    assert bases.shape == (513, 3) and acts.shape == (mix.shape[0] // 512 + 1, 3)
    assert (bsr, asr) == (round(sr / 1024), round(sr / 512))
    np.testing.assert_array_equal(np.load(tmp_path / "bases.npy"), bases.astype(np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "activations.npy"), acts.astype(np.float32))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parameters"]["components"] == 3 and summary["parameters"]["seed"] == 1
    assert summary["parameters"]["hop_size"] == 512 and summary["parameters"]["fft_size"] == 1024
    assert summary["sample_rate"] == sr
    assert summary["shapes"] == {"bases": [513, 3], "activations": [acts.shape[0], 3], "resynth": [mix.shape[0], 3]}
    div = summary["divergence"][0]
    assert len(div) == 20 and div[-1] < div[0]
    assert summary["bufnmf_version"] and summary["timings"]["decompose_seconds"] > 0
    assert [p.name for p in tmp_path.glob(".*")] == [".bufnmf-run.json"]  # the manifest, no temporaries


def test_stereo_components_keep_channels_and_rate(tmp_path, capsys, stereo_wav):
    code, _, err = run(["decompose", stereo_wav, "-o", tmp_path, "-k", "2", "--iterations", "10", "--seed", "0",
                        "--window-size", "1000", "--hop-size", "250", "--fft-size", "2048"], capsys)
    assert code == 0, err
    src, _ = sf.read(stereo_wav, always_2d=True)
    total = np.zeros_like(src)
    for k in (1, 2):
        data, rate = sf.read(tmp_path / f"component_{k}.wav", always_2d=True)
        assert rate == 22050 and data.shape == src.shape
        total += data
    np.testing.assert_allclose(total, src, atol=1e-5)
    assert np.load(tmp_path / "bases.npy").shape == (1025, 4)


def test_selection_options(tmp_path, capsys, stereo_wav):
    code, _, err = run(["decompose", stereo_wav, "-o", tmp_path, "--iterations", "3", "--start-frame", "100",
                        "--num-frames", "5000", "--start-chan", "1", "--num-chans", "1", "--no-resynth"], capsys)
    assert code == 0, err
    assert not list(tmp_path.glob("component_*"))
    assert np.load(tmp_path / "activations.npy").shape == (5000 // 512 + 1, 1)


def test_fixed_bases_from_a_wav_buffer(tmp_path, capsys, stereo_wav):
    first = tmp_path / "first"
    assert run(["decompose", stereo_wav, "-o", first, "-k", "2", "--iterations", "10", "--seed", "3"], capsys)[0] == 0
    second = tmp_path / "second"
    code, _, err = run(["decompose", stereo_wav, "-o", second, "--bases", first / "bases.wav", "--bases-mode", "fixed",
                        "--iterations", "5"], capsys)
    assert code == 0, err
    np.testing.assert_allclose(np.load(second / "bases.npy"), np.load(first / "bases.npy"), atol=1e-6)
    summary = json.loads((second / "summary.json").read_text())
    assert summary["parameters"]["components"] == 2 and summary["parameters"]["bases_mode"] == 2


def test_refuses_to_overwrite_without_force(tmp_path, capsys, stereo_wav):
    args = ["decompose", stereo_wav, "-o", tmp_path, "--iterations", "2", "--seed", "0"]
    assert run(args, capsys)[0] == 0
    before = (tmp_path / "bases.npy").stat().st_mtime_ns
    code, out, err = run([*args[:-1], "5"], capsys)
    assert code == 2
    assert out == "" and err.startswith("bufnmf: error: ") and "already exist" in err and "--force" in err
    assert err.count("\n") == 1
    assert (tmp_path / "bases.npy").stat().st_mtime_ns == before
    assert run([*args, "--force"], capsys)[0] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["missing.wav"], "source missing.wav does not exist"),
    (["{notaudio}"], "is not a readable audio file"),
    (["{dir}"], "is a directory"),
    (["{wav}", "-k", "0"], "components must be at least 1, got 0"),
    (["{wav}", "--iterations", "ten"], "'ten' is not a valid integer"),
    (["{wav}", "--window-size", "2"], "--window-size must be at least 4"),
    (["{wav}", "--bases-mode", "fixed"], "--bases-mode fixed needs --bases FILE"),
    (["{wav}", "--bases", "{notaudio}"], "bases {notaudio} is not a readable audio file"),
    (["{wav}", "--bases", "{wav}", "--bases-mode", "fixed", "-k", "2"], "bases has shape"),
    (["{wav}", "--bases-mode", "sideways"], "'sideways' is not one of"),
    (["{wav}", "--start-chan", "5"], "--start-chan 5 is outside the source"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, stereo_wav, args, message):
    notaudio = tmp_path / "notes.txt"
    notaudio.write_text("not audio at all")
    subs = {"{wav}": str(stereo_wav), "{notaudio}": str(notaudio), "{dir}": str(tmp_path)}
    args = [subs.get(a, a) for a in args]
    message = message.replace("{notaudio}", str(notaudio))
    code, out, err = run(["decompose", *args, "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert out == "" and err.startswith("bufnmf: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_failure_while_writing_leaves_nothing(tmp_path, capsys, stereo_wav, monkeypatch):
    def broken(path, data):  # the last file's write fails as on a full disk (a real one: test_faults.py)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(OutputSet, "_write_file", staticmethod(broken))
    out = tmp_path / "out"
    code, _, err = run(["decompose", stereo_wav, "-o", out, "--iterations", "2", "--plot"], capsys)
    assert code == 2
    assert err.startswith("bufnmf: error: no space left on device")
    assert not out.exists()  # neither outputs nor temporaries, nor the folder the run made


def test_failure_with_force_keeps_old_outputs(tmp_path, capsys, stereo_wav, monkeypatch):
    out = tmp_path / "out"
    assert run(["decompose", stereo_wav, "-o", out, "--iterations", "2", "--seed", "1"], capsys)[0] == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(self, name, obj):
        raise KeyboardInterrupt

    monkeypatch.setattr(OutputSet, "write_json", broken)
    code, _, err = run(["decompose", stereo_wav, "-o", out, "--iterations", "3", "--seed", "2", "--force"], capsys)
    assert code == 130 and "interrupted" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old


def test_plot_writes_pngs(tmp_path, capsys, stereo_wav):
    code, _, err = run(["decompose", stereo_wav, "-o", tmp_path, "-k", "3", "--iterations", "5", "--plot"], capsys)
    assert code == 0, err
    import matplotlib.image as mpimg

    for name in ("bases.png", "activations.png"):
        raw = (tmp_path / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(tmp_path / name)
        assert img.shape[0] >= 300 and img.shape[1] >= 600
        assert img[..., :3].std() > 0.05  # not a blank canvas


def test_version_and_help_show_examples(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("bufnmf, version ")
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "bufnmf demo" in out and "decompose" in out
    code, out, _ = run(["decompose", "--help"], capsys)
    assert code == 0 and "Examples:" in out and "--bases-mode" in out


def test_debug_shows_traceback(tmp_path, capsys):
    code, _, err = run(["--debug", "decompose", tmp_path / "nope.wav", "-o", tmp_path], capsys)
    assert code == 2 and "Traceback" in err and "bufnmf: error:" in err


@pytest.mark.slow
def test_demo_runs_as_module(tmp_path):
    code, printed = run_on_terminal([sys.executable, "-m", "bufnmf", "demo", "-o", str(tmp_path / "d")])
    assert code == 0, printed
    assert "kick" in printed and "snare" in printed and "hihat" in printed
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert names == sorted([".bufnmf-run.json", "demo_loop.wav", "component_1.wav", "component_2.wav",
                            "component_3.wav", "bases.wav", "activations.wav", "bases.npy", "activations.npy",
                            "summary.json", "bases.png", "activations.png"])
    matched = {line.split("~")[1].split()[0] for line in printed.splitlines() if "~" in line}
    assert matched == {"kick", "snare", "hihat"}
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert {m["drum"] for m in summary["matches"]} == {"kick", "snare", "hihat"}
    # piped, as the README says, it prints nothing (the files are the same)
    proc = subprocess.run([sys.executable, "-m", "bufnmf", "demo", "-o", str(tmp_path / "e")], capture_output=True,
                          text=True, env=src_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_run_leaves_no_outputs(tmp_path, sig):
    long = tmp_path / "long.wav"
    sf.write(long, np.random.default_rng(0).standard_normal((44100 * 30, 1)) * 0.1, 44100, subtype="FLOAT")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bufnmf", "decompose", str(long), "-o", str(out), "-k", "8",
                             "--iterations", "100000"], env=src_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not out.exists() and time.time() < deadline:  # the folder appears just before the work
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()  # no outputs, no temporaries, and not the folder the run made


def test_long_files_resynthesise_through_a_scratch_map(tmp_path, capsys, stereo_wav, monkeypatch):
    import bufnmf.workflows.jobs as cli_mod

    args = ["decompose", stereo_wav, "--iterations", "4", "--seed", "3", "-k", "2"]
    assert run([*args, "-o", tmp_path / "mem"], capsys)[0] == 0
    monkeypatch.setattr(cli_mod, "SCRATCH_ABOVE_BYTES", 1)
    code, _, err = run([*args, "-o", tmp_path / "map"], capsys)
    assert code == 0, err
    for k in (1, 2):
        a, _ = sf.read(tmp_path / "mem" / f"component_{k}.wav")
        b, _ = sf.read(tmp_path / "map" / f"component_{k}.wav")
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in (tmp_path / "map").iterdir()) == sorted(p.name for p in (tmp_path / "mem").iterdir())


def test_buffers_wider_than_wav_allows_are_written_as_npy_only(tmp_path, capsys, stereo_wav):
    code, _, err = run(["decompose", stereo_wav, "-o", tmp_path, "-k", "600", "--iterations", "2", "--no-resynth"],
                       capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bufnmf-run.json", "activations.npy", "bases.npy",
                                                           "summary.json"]
    assert np.load(tmp_path / "bases.npy").shape == (513, 1200)
    assert json.loads((tmp_path / "summary.json").read_text())["outputs"] == ["bases.npy", "activations.npy",
                                                                                "summary.json"]
