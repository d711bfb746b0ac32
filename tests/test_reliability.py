"""Bad input, faults and large files: every entry point fails with one clear line, and nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bufnmf
from bufnmf import BufNMFError, BufNMFWarning
from bufnmf.cli import main
from bufnmf.resources import estimate

from .conftest import src_env

SR = 22050


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(SR) * 0.1).astype(np.float32)
    f = {}
    f["good"] = d / "good.wav"
    sf.write(f["good"], x, SR, subtype="FLOAT")
    raw = f["good"].read_bytes()
    f["truncated"] = d / "truncated.wav"
    f["truncated"].write_bytes(raw[: len(raw) // 2])
    f["corrupt"] = d / "corrupt.wav"
    f["corrupt"].write_bytes(raw[:12] + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    f["empty"] = d / "empty.wav"
    f["empty"].write_bytes(b"")
    f["text"] = d / "notes.txt"
    f["text"].write_text("this is not audio\n" * 50)
    f["unsupported"] = d / "song.xyz"
    f["unsupported"].write_bytes(b"MThd" + bytes(200))
    f["nan"] = d / "nan.wav"
    bad = x.copy()
    bad[100] = np.nan
    sf.write(f["nan"], bad, SR, subtype="FLOAT")
    f["one"] = d / "one.wav"
    sf.write(f["one"], np.array([0.5], dtype=np.float32), SR, subtype="FLOAT")
    f["short"] = d / "short.wav"
    sf.write(f["short"], x[:300], SR, subtype="FLOAT")
    f["silent"] = d / "silent.wav"
    sf.write(f["silent"], np.zeros((SR, 2), dtype=np.float32), SR, subtype="FLOAT")
    f["dc"] = d / "dc.wav"
    sf.write(f["dc"], np.full(SR, 0.3, dtype=np.float32), SR, subtype="FLOAT")
    f["denormal"] = d / "denormal.wav"
    sf.write(f["denormal"], (rng.standard_normal(SR) * 1e-40).astype(np.float32), SR, subtype="FLOAT")
    f["dir"] = d / "adir"
    f["dir"].mkdir()
    np.save(d / "neg.npy", -np.ones((513, 1)))
    np.save(d / "nanb.npy", np.full((513, 1), np.nan))
    np.save(d / "wrong.npy", np.ones((100, 1)))
    f["neg"], f["nanb"], f["wrong"] = d / "neg.npy", d / "nanb.npy", d / "wrong.npy"
    f["other_rate_bases"] = d / "bases48k.wav"  # a bases buffer stamped sr/fft for a 48 kHz source
    sf.write(f["other_rate_bases"], np.ones((513, 1), dtype=np.float32), 47, subtype="FLOAT")
    f["a_file"] = d / "taken"
    f["a_file"].write_text("x")
    return f


# (case, arguments after 'decompose', substring of the one-line error)
CASES = [
    ("missing file", ["{missing}"], "does not exist"),
    ("a directory", ["{dir}"], "is a directory"),
    ("not audio", ["{text}"], "is not a readable audio file"),
    ("truncated WAV", ["{truncated}"], "is truncated: its header promises"),
    ("corrupt WAV", ["{corrupt}"], "is not a readable audio file"),
    ("zero-length file", ["{empty}"], "is empty (0 bytes)"),
    ("unsupported format", ["{unsupported}"], "is not a readable audio file"),
    ("NaN samples", ["{nan}"], "NaN or infinite sample(s), first at sample 100"),
    ("components 10**6", ["{good}", "-k", "1000000"], "this run needs about"),
    ("fft 2**24", ["{good}", "--fft-size", str(2**24)], "--fft-size must be at most"),
    ("iterations 10**9", ["{good}", "--iterations", str(10**9)], "is more than 100000"),
    ("negative window", ["{good}", "--window-size", "-5"], "--window-size must be at least 4"),
    ("negative components", ["{good}", "-k", "-2"], "components must be at least 1"),
    ("non-numeric", ["{good}", "--hop-size", "half"], "'half' is not a valid integer"),
    ("max memory too small", ["{good}", "--max-memory", "1M"], "but the --max-memory limit is 1.0 MiB"),
    ("bad memory size", ["{good}", "--max-memory", "lots"], "--max-memory 'lots' is not understood"),
    ("seed wrong shape", ["{good}", "--bases", "{wrong}"], "bases has shape (100, 1), expected (513, 1)"),
    ("seed negative", ["{good}", "--bases", "{neg}"], "bases contains negative values"),
    ("seed NaN", ["{good}", "--bases", "{nanb}"], "bases contains NaN"),
    ("seed other FFT size", ["{good}", "--bases", "{wrong}", "--bases-mode", "fixed"], "expected (513, 1)"),
    ("seed other sample rate", ["{good}", "--bases", "{other_rate_bases}"], "has buffer rate 47 Hz, but this source"),
    ("output is a file", ["{good}", "-o", "{a_file}"], "is a file"),
    ("output unwritable", ["{good}", "-o", "/proc/bufnmf-out"], "cannot create output folder"),
]


@pytest.mark.parametrize(("case", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_no_outputs(case, args, message, files, tmp_path, capsys):
    subs = {f"{{{k}}}": str(v) for k, v in files.items()} | {"{missing}": str(tmp_path / "nope.wav")}
    args = [subs.get(a, a) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out")]
    code, out, err = run(["decompose", *args], capsys)
    assert code == 2, (case, err)
    assert err.startswith("bufnmf: error: ") and message in err, (case, err)
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name", ["one", "short", "silent", "dc", "denormal"])
def test_degenerate_but_valid_input_succeeds_with_finite_outputs(name, files, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(["decompose", files[name], "-o", out, "-k", "2", "--iterations", "20", "--seed", "0"], capsys)
    assert code == 0, err
    n, ch = sf.info(files[name]).frames, sf.info(files[name]).channels
    total = 0
    for p in out.glob("*.wav"):
        data, _ = sf.read(p, always_2d=True)
        assert np.isfinite(data).all(), p
    for p in out.glob("*.npy"):
        assert np.isfinite(np.load(p)).all(), p
    for k in (1, 2):
        data, _ = sf.read(out / f"component_{k}.wav", always_2d=True)
        assert data.shape == (n, ch)
        total = total + data
    src, _ = sf.read(files[name], always_2d=True)
    np.testing.assert_allclose(total, src, atol=1e-5)
    json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))


SUBCOMMANDS = [
    ["decompose", "{src}", "-o", "{out}", "--iterations", "5"],
    ["stft", "{src}", "-o", "{out}"],
    ["seed", "{src}", "-o", "{out}", "-k", "2"],
    ["learn", "{src}", "-o", "{out}/kit.wav", "--iterations", "5"],
    ["track", "{src}", "--bases", "{kit}", "-o", "{out}/ev.csv", "--iterations", "5"],
    ["match", "{src}", "--bases", "{kit}", "-o", "{out}/m.csv"],
    ["filter", "{src}", "--bases", "{kit}", "-o", "{out}"],
    ["cross", "{src}", "{good}", "-o", "{out}/c.wav"],
    ["morph", "--source-bases", "{src}", "--target-bases", "{kit}", "--activations", "{kit}", "-o", "{out}/m.wav"],
]


@pytest.fixture(scope="module")
def kit_file(files, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("kit")
    kit = bufnmf.learn_bases([files["good"]], iterations=5)
    bufnmf.save_kit(kit, d / "kit.wav")
    return d / "kit.wav"


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=[c[0] for c in SUBCOMMANDS])
@pytest.mark.parametrize("bad", ["missing", "text", "truncated", "corrupt", "empty", "nan"])
def test_every_subcommand_refuses_bad_audio(command, bad, files, kit_file, tmp_path, capsys):
    src = files[bad] if bad != "missing" else tmp_path / "nope.wav"
    out = tmp_path / "out"
    args = [a.replace("{src}", str(src)).replace("{out}", str(out)).replace("{kit}", str(kit_file))
            .replace("{good}", str(files["good"])) for a in command]
    code, _, err = run(args, capsys)
    assert code == 2, err
    assert err.startswith("bufnmf: error: ") and err.count("\n") == 1 and str(src) in err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_fuzzed_audio_files_never_crash_the_cli(files, tmp_path, capsys):
    raw = files["good"].read_bytes()
    rng = np.random.default_rng(42)
    outcomes = {0: 0, 2: 0}
    for i in range(40):
        data = bytearray(raw)
        kind = i % 4
        if kind == 0:  # flip bytes in the header
            for _ in range(int(rng.integers(1, 6))):
                data[int(rng.integers(0, 44))] = int(rng.integers(0, 256))
        elif kind == 1:  # cut anywhere
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 2:  # scribble over the samples (may create NaN/Inf floats)
            for _ in range(int(rng.integers(1, 50))):
                data[int(rng.integers(44, len(data)))] = int(rng.integers(0, 256))
        else:  # insert junk chunks
            pos = int(rng.integers(12, 60))
            data = data[:pos] + bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8)) + data[pos:]
        p = tmp_path / f"fuzz{i}.wav"
        p.write_bytes(bytes(data))
        out = tmp_path / f"out{i}"
        code, _, err = run(["decompose", p, "-o", out, "--iterations", "3", "-k", "2"], capsys)
        assert code in (0, 2), (i, err)
        assert "Traceback" not in err and "internal error" not in err, (i, err)
        outcomes[code] += 1
        if code == 2:
            assert err.startswith("bufnmf: error: ") and err.count("\n") == 1
            assert not out.exists() or not any(out.iterdir())
        else:
            for q in out.glob("*.npy"):
                assert np.isfinite(np.load(q)).all()
    assert outcomes[0] and outcomes[2]  # both outcomes were exercised


@pytest.mark.slow
def test_two_runs_into_one_folder_do_not_mix(files, tmp_path):
    out = tmp_path / "shared-out"
    long = tmp_path / "long.wav"
    sf.write(long, np.random.default_rng(1).standard_normal((SR * 20, 1)) * 0.1, SR, subtype="FLOAT")
    cmds = [[sys.executable, "-m", "bufnmf", "decompose", str(long), "-o", str(out), "-k", "3", "--iterations",
             "30", "--seed", str(seed), "--force"] for seed in (1, 2)]
    procs = [subprocess.Popen(c, env=src_env(), stderr=subprocess.PIPE, text=True) for c in cmds]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(code in (0, 2) for code, _ in results), results
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        if code == 2:
            assert "another bufnmf run is writing" in err
    # whatever finished last, the folder holds one whole, consistent run
    summary = json.loads((out / "summary.json").read_text())
    x, _ = sf.read(long)
    again = bufnmf.decompose(x, components=3, iterations=30, seed=summary["parameters"]["seed"], resynth=False)
    np.testing.assert_allclose(np.load(out / "bases.npy"), again.bases, atol=1e-6)
    assert [p.name for p in out.glob(".*")] == [".bufnmf-run.json"]  # the run's manifest, no temporaries


@pytest.mark.slow
def test_peak_memory_stays_within_the_estimate(tmp_path):
    code = """
import sys, json, numpy as np
import bufnmf
from bufnmf.resources import estimate
from bufnmf.dsp.fft import resolve_fft_settings
from bufnmf.resources import peak_memory as hwm, reset_peak_memory as reset_peak, resident_memory as rss
x = np.random.default_rng(0).standard_normal((44100 * 120, 2), dtype=np.float32)
x *= 0.1
bufnmf.decompose(x[:4096], components=4, iterations=1, seed=0)
reset_peak()
before = rss()
peak_before = hwm()
res = bufnmf.decompose(x, components=4, iterations=5, seed=0)
peak = hwm()
est = estimate(x.shape[0], 2, 4, resolve_fft_settings(1024), "float32", True)
print(json.dumps({"used": peak - before, "estimate": est.total, "peak_before": peak_before, "before": before}))
"""
    proc = subprocess.run([sys.executable, "-c", code], env=src_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["peak_before"] < r["before"] + r["estimate"]  # the warm-up did not hide the peak
    assert 0 < r["used"] <= r["estimate"], r


def test_estimate_grows_with_the_job():
    s = bufnmf.resolve_fft_settings(1024)
    small = estimate(44100, 1, 2, s, "float32", True)
    assert estimate(44100 * 10, 1, 2, s, "float32", True).total > small.total
    assert estimate(44100, 1, 20, s, "float32", True).total > small.total
    assert estimate(44100, 1, 2, s, "float64", True).total > small.total
    assert estimate(44100, 1, 2, s, "float32", True, resynth_streamed=True).total < small.total


def test_api_inputs_are_never_modified():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8000, 2))
    W = rng.uniform(0, 5, (513, 4))
    H = rng.uniform(0, 5, (16, 4))
    copies = [a.copy() for a in (x, W, H)]
    bufnmf.decompose(x, components=2, bases=W, bases_mode="seed", activations=H, act_mode="seed", iterations=3)
    bufnmf.decompose(x, components=2, bases=W, bases_mode="fixed", activations=H, act_mode="fixed")
    for a, b in zip((x, W, H), copies, strict=True):
        np.testing.assert_array_equal(a, b)


DTYPES = [np.float32, np.float64, np.float16, np.int16, np.int32, np.uint8, np.int8, np.complex64, np.bool_]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 3000),
    channels=st.integers(0, 3),
    extra_dim=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    components=st.integers(-1, 4),
    iterations=st.integers(-1, 6),
    window=st.sampled_from([-4, 0, 3, 4, 16, 100, 512]),
    hop=st.sampled_from([-1, 0, 1, 7, 64, 700]),
    fft=st.sampled_from([-1, 0, 16, 100, 1024]),
    start_frame=st.integers(-2, 50),
    num_frames=st.sampled_from([-1, 0, 10, 5000]),
    start_chan=st.integers(-1, 3),
    num_chans=st.sampled_from([-1, 0, 1, 2, 5]),
    scale=st.sampled_from([0.0, 1e-30, 1.0, 1e6]),
    seed=st.integers(-3, 5),
)
def test_every_call_returns_valid_outputs_or_a_bufnmf_error(n, channels, extra_dim, dtype, components, iterations,
                                                            window, hop, fft, start_frame, num_frames, start_chan,
                                                            num_chans, scale, seed):
    rng = np.random.default_rng(n + channels)
    shape = (n,) if channels == 0 else (n, channels)
    if extra_dim:
        shape = (*shape, 2)
    with np.errstate(over="ignore", invalid="ignore"):  # float16/int casts of 1e6 overflow: on purpose
        x = (rng.standard_normal(shape) * scale).astype(dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BufNMFWarning)
            res = bufnmf.decompose(x, components=components, iterations=iterations, window_size=window,
                                   hop_size=hop, fft_size=fft, seed=seed, start_frame=start_frame,
                                   num_frames=num_frames, start_chan=start_chan, num_chans=num_chans)
    except BufNMFError:
        return
    for arr in (res.bases, res.activations, res.resynth):
        assert np.isfinite(arr).all()
    assert res.bases.min() >= 0 and res.activations.min() >= 0
    if res.hop_size <= res.window_size // 2:
        sel = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
        sel = sel[res.start_frame : res.start_frame + res.num_samples, res.start_chan : res.start_chan +
                  res.num_channels]
        total = res.resynth.reshape(res.num_samples, res.num_channels, res.components).sum(axis=2)
        assert np.abs(total - sel).max() <= 1e-5 * max(np.abs(sel).max(), 1e-30) + 1e-35
