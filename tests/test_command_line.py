"""One command line (issue 14): output formats, pipes, the same options everywhere, true help, warnings
once; kits learnt with several components per file; and every class of bad input as one line (CLI)
or a BufNMFError (library)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import click
import mido
import numpy as np
import pytest
import soundfile as sf

import bufnmf
from bufnmf import BufNMFError
from bufnmf.cli import cli, main
from bufnmf.demo import drum_loop
from bufnmf.workflows.tracking import pick_onsets

from .conftest import src_env

SR = 44100


def run(args, capsys):
    code = main([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, (code, err)
    assert err.startswith("bufnmf: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


def pipe(args, stdin: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bufnmf", *map(str, args)], input=stdin, capture_output=True,
                          env=src_env(), timeout=timeout)


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """A loop, its drums, a quiet stereo file and a kit learnt from the drums (one basis each)."""
    d = tmp_path_factory.mktemp("cmd")
    mix, stems, onsets = drum_loop(seconds=4.0, sr=SR)
    sf.write(d / "loop.wav", mix, SR, subtype="FLOAT")
    sf.write(d / "quiet.wav", np.stack([mix, mix[::-1]], axis=1) * 0.3, SR, subtype="FLOAT")
    for name, x in stems.items():
        sf.write(d / f"{name}.wav", x, SR, subtype="FLOAT")
    (d / "onsets.json").write_text(json.dumps(onsets))
    # FluCoMa bases (one spectrum per drum): the kit decompose, match, filter and track --method flucoma take
    assert main(["learn", *(str(d / f"{n}.wav") for n in stems), "-o", str(d / "kit.wav"), "--iterations", "50",
                 "--seed", "0", "--method", "flucoma"]) == 0
    return d


# ----------------------------------------------------------------------------------------------
# output formats


@pytest.mark.parametrize(("name", "fmt", "subtype"), [("x.wav", "WAV", "FLOAT"), ("x.flac", "FLAC", "PCM_24"),
                                                      ("x.ogg", "OGG", "VORBIS"), ("x.aiff", "AIFF", "FLOAT"),
                                                      ("x.caf", "CAF", "FLOAT"), ("x", "WAV", "FLOAT")])
def test_a_single_audio_output_is_what_its_extension_says(name, fmt, subtype, d, tmp_path, capsys):
    assert run(["stft", d / "loop.wav", "-o", tmp_path / "st"], capsys)[0] == 0
    code, _, err = run(["stft", "--inverse", tmp_path / "st", "-o", tmp_path / name], capsys)
    assert code == 0 and err == "", err
    info = sf.info(tmp_path / name)
    assert (info.format, info.subtype) == (fmt, subtype)
    y, sr = sf.read(tmp_path / name)
    x, _ = sf.read(d / "loop.wav")
    assert sr == SR and y.shape == x.shape
    if subtype == "VORBIS":  # lossy: the same sound, not the same samples
        assert np.corrcoef(y, x)[0, 1] > 0.95
    else:
        assert np.abs(y - x).max() <= 1e-5


def test_format_and_subtype_options(d, tmp_path, capsys):
    code, _, err = run(["cross", d / "kick.wav", d / "snare.wav", "-o", tmp_path / "c.wav", "--subtype", "PCM_16",
                        "--iterations", "2", "--seed", "1"], capsys)
    assert code == 0, err
    assert sf.info(tmp_path / "c.wav").subtype == "PCM_16"
    code, _, err = run(["decompose", d / "quiet.wav", "-o", tmp_path / "p", "-k", "2", "--iterations", "5",
                        "--format", "flac"], capsys)
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "p").iterdir() if not p.name.startswith("."))
    assert names == ["activations.npy", "activations.wav", "bases.npy", "bases.wav", "component_1.flac",
                     "component_2.flac", "summary.json"]  # the buffers stay float32 WAV for FluCoMa
    assert sf.info(tmp_path / "p" / "component_1.flac").format == "FLAC"
    assert sf.info(tmp_path / "p" / "bases.wav").subtype == "FLOAT"
    parts = sum(sf.read(tmp_path / "p" / f"component_{k}.flac")[0] for k in (1, 2))
    np.testing.assert_allclose(parts, sf.read(d / "quiet.wav")[0], atol=3e-7)  # PCM_24's step is 1.2e-7
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["outputs"][:2] == ["component_1.flac",
                                                                                       "component_2.flac"]
    code, _, err = run(["filter", d / "loop.wav", "--bases", d / "kit.wav", "-o", tmp_path / "f", "--format",
                        "aiff"], capsys)
    assert code == 0, err
    assert sorted(p.suffix for p in (tmp_path / "f").iterdir() if not p.name.startswith(".")) == [".aiff"] * 3


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "{t}/x.xyz"], "cannot tell the audio format of"),
    (["-o", "{t}/x.wav", "--format", "flac"], "is named as WAV (.wav) but --format is flac"),
    (["-o", "{t}/x.wav", "--subtype", "VORBIS"], "subtype 'VORBIS' cannot be written as WAV"),
    (["-o", "{t}/x.opus"], "cannot be written as OGG OPUS with 1 channel(s) at 44100 Hz"),
])
def test_an_audio_output_its_format_cannot_hold_is_refused_first(args, message, d, tmp_path, capsys):
    args = [a.replace("{t}", str(tmp_path)) for a in args]
    code, _, err = run(["cross", d / "kick.wav", d / "snare.wav", *args, "--iterations", "2"], capsys)
    one_line_error(code, err, message)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_output_named_like_a_file_is_an_error(d, tmp_path, capsys):
    for cmd in (["decompose", d / "loop.wav"], ["seed", d / "loop.wav"], ["stft", d / "loop.wav"],
                ["filter", d / "loop.wav", "--bases", d / "kit.wav"], ["demo"]):
        code, _, err = run([*cmd, "-o", tmp_path / "out.wav"], capsys)
        one_line_error(code, err, "-o ", "out.wav is named like a file (.wav)", "(e.g. -o ")
    assert list(tmp_path.iterdir()) == []


def test_integer_formats_clip_with_one_warning(d, tmp_path, capsys):
    loud = tmp_path / "loud.wav"
    x, _ = sf.read(d / "loop.wav")
    sf.write(loud, x * 1.5, SR, subtype="FLOAT")
    assert run(["stft", loud, "-o", tmp_path / "st"], capsys)[0] == 0
    code, _, err = run(["stft", "--inverse", tmp_path / "st", "-o", tmp_path / "y.flac"], capsys)
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bufnmf: warning: ") and "were clipped" in lines[0], err
    y, _ = sf.read(tmp_path / "y.flac")
    assert np.abs(y).max() <= 1.0 and np.abs(y).max() > 0.99  # clipped, not wrapped around


# ----------------------------------------------------------------------------------------------
# pipes


@pytest.mark.slow
def test_source_dash_reads_standard_input(d, tmp_path):
    raw = (d / "loop.wav").read_bytes()
    res = pipe(["decompose", "-", "-o", tmp_path / "a", "-k", "2", "--iterations", "5", "--seed", "3"], raw)
    assert res.returncode == 0, res.stderr
    assert pipe(["decompose", d / "loop.wav", "-o", tmp_path / "b", "-k", "2", "--iterations", "5", "--seed",
                 "3"]).returncode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "bases.npy"), np.load(tmp_path / "b" / "bases.npy"))
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["source"] == "standard input"
    flac = io.BytesIO()
    sf.write(flac, sf.read(d / "loop.wav")[0], SR, format="FLAC")
    res = pipe(["track", "-", "--bases", d / "kit.wav", "-o", tmp_path / "ev.csv", "--iterations", "20"],
               flac.getvalue())
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "ev.csv").read_text().startswith("time,label,strength,end\n")
    res = pipe(["decompose", "-", "-o", tmp_path / "c"], b"")
    assert res.returncode == 2 and b"standard input is empty" in res.stderr
    res = pipe(["cross", "-", "-", "-o", tmp_path / "x.wav"], raw)
    assert res.returncode == 2 and b"cannot both be standard input" in res.stderr


@pytest.mark.slow
def test_dash_output_writes_standard_output(d, tmp_path):
    args = ["cross", d / "kick.wav", d / "snare.wav", "--iterations", "3", "--seed", "4"]
    res = pipe([*args, "-o", "-"])
    assert res.returncode == 0 and res.stderr == b"", res.stderr
    y, _sr = sf.read(io.BytesIO(res.stdout))
    assert pipe([*args, "-o", tmp_path / "c.wav"]).returncode == 0
    np.testing.assert_array_equal(y, sf.read(tmp_path / "c.wav")[0])
    res = pipe([*args, "-o", "-", "--format", "flac"])
    assert sf.info(io.BytesIO(res.stdout)).format == "FLAC"
    track = ["track", d / "loop.wav", "--bases", d / "kit.wav", "--iterations", "20", "--seed", "1"]
    res = pipe([*track, "-o", "-"])
    assert res.returncode == 0, res.stderr
    assert pipe([*track, "-o", tmp_path / "ev.csv"]).returncode == 0
    assert res.stdout == (tmp_path / "ev.csv").read_bytes()
    res = pipe([*track, "-o", "-", "--format", "json"])
    assert json.loads(res.stdout)[0].keys() == {"time", "label", "strength", "end"}
    res = pipe(["match", d / "loop.wav", "--bases", d / "kit.wav", "-o", "-"])
    assert res.returncode == 0 and res.stdout.startswith(b"time,kick,snare,hihat\n"), res.stdout[:80]
    res = pipe([*track, "-o", "-", "--midi", "-"])
    assert res.returncode == 2 and b"only one output can go to standard output" in res.stderr
    assert pipe([*track, "-o", "-"], timeout=60).returncode == 0


def test_audio_to_a_terminal_is_refused(d, tmp_path):
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "bufnmf", "cross", str(d / "kick.wav"), str(d / "snare.wav"),
                               "-o", "-"], stdout=follower, stderr=subprocess.PIPE, env=src_env(), timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2 and b"standard output, which is a terminal here" in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------------------------
# one command line: names, defaults, help, warnings

AUDIO_WRITERS = {"decompose", "demo", "filter", "cross", "morph", "stft", "sines", "batch decompose"}
NO_OUTPUT = {"serve", "batch"}  # a server writes nothing of its own; batch is a group (its commands are below)


def _command(name: str) -> click.Command:
    """A command by its command-line name ("decompose", or a group's "batch decompose")."""
    group, _, sub = name.partition(" ")
    cmd = cli.commands[group]
    return cmd.commands[sub] if sub and isinstance(cmd, click.Group) else cmd


def _options(name: str) -> dict[str, click.Option]:
    return {opt: p for p in _command(name).params if isinstance(p, click.Option) for opt in p.opts}


def test_the_same_options_mean_the_same_everywhere():
    batch = cli.commands["batch"]
    assert isinstance(batch, click.Group)
    names = sorted(set(cli.commands) - NO_OUTPUT) + [f"batch {sub}" for sub in batch.commands]
    for name in names:
        opts = _options(name)
        assert opts["-o"].help, name  # -o is described everywhere
        assert {"--quiet", "--force"} <= set(opts), name
        if "--seed" in opts:
            assert opts["--seed"].default == -1 and opts["--seed"].help.startswith("-1 draws a seed ("), name
        if name in AUDIO_WRITERS:
            assert {"--format", "--subtype"} <= set(opts), name
            assert opts["--subtype"].help == _options("decompose")["--subtype"].help
            assert set(opts["--format"].type.choices) >= {"wav", "flac", "ogg", "aiff"}, name
        if "--max-memory" in opts:
            assert opts["--max-memory"].help == _options("decompose")["--max-memory"].help, name
        if "--bases" not in opts:  # no kit taken: no "or the kit's" in the FFT options
            assert all("kit" not in (opts[o].help or "") for o in ("--window-size", "--hop-size", "--fft-size")
                       if o in opts), name
    for name in ("track", "match", "batch track"):
        assert list(_options(name)["--format"].type.choices) == ["csv", "json"]
    dec = _options("decompose")
    assert "in samples" in dec["--start-frame"].help and "in samples" in dec["--num-frames"].help
    assert "--components-per-file" in _options("learn") and _options("learn")["--components-per-file"].help


def test_messages_and_warnings_in_command_line_terms_and_once(d, tmp_path, capsys):
    code, _, err = run(["decompose", d / "loop.wav", "-o", tmp_path / "a", "--bases-mode", "fixed"], capsys)
    one_line_error(code, err, "--bases-mode fixed needs --bases FILE")
    code, _, err = run(["decompose", d / "loop.wav", "-o", tmp_path / "b", "--bases", d / "kit.wav", "--bases-mode",
                        "none", "--iterations", "2"], capsys)
    assert code == 0
    assert err == ("bufnmf: warning: --bases given but --bases-mode is 0 ('none'): ignored; set --bases-mode to "
                   "'seed' or 'fixed' to use it\n"), err
    code, _, err = run(["decompose", d / "quiet.wav", "-o", tmp_path / "c", "--fft-size", "1000", "--hop-size", "1000",
                        "--iterations", "2"], capsys)
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 2 and len(set(lines)) == 2, err  # two warnings, each once (the FFT size is resolved twice)
    assert "--fft-size 1000 adjusted to 1024" in lines[0] and "--hop-size 1000 is more than half" in lines[1]
    code, _, err = run(["learn", d / "kick.wav", d / "snare.wav", d / "hihat.wav", "-o", tmp_path / "k.wav",
                        "--fft-size", "1000", "--iterations", "5"], capsys)
    assert code == 0 and err.count("\n") == 1, err  # three examples, one warning


# ----------------------------------------------------------------------------------------------
# kits with several components per file


@pytest.fixture(scope="module")
def kit2(d) -> Path:
    assert main(["learn", str(d / "kick.wav"), str(d / "snare.wav"), str(d / "hihat.wav"), "-o", str(d / "kit2.wav"),
                 "--components-per-file", "2", "--iterations", "50", "--seed", "0"]) == 0
    return d / "kit2.wav"


def test_components_per_file_kits_track_one_event_per_hit(d, kit2, tmp_path, capsys):
    meta = json.loads(kit2.with_suffix(".json").read_text())
    assert meta["labels"] == ["kick-1", "kick-2", "snare-1", "snare-2", "hihat-1", "hihat-2"]
    assert meta["groups"] == ["kick", "kick", "snare", "snare", "hihat", "hihat"]
    code, _, err = run(["track", d / "loop.wav", "--bases", kit2, "-o", tmp_path / "ev.csv", "--midi",
                        tmp_path / "ev.mid", "--seed", "1"], capsys)
    assert code == 0, err
    events = list(csv.DictReader((tmp_path / "ev.csv").open()))
    onsets = json.loads((d / "onsets.json").read_text())
    for drum in ("kick", "snare"):
        times = [float(e["time"]) for e in events if e["label"] == drum]
        assert len(times) == len(onsets[drum]), (drum, times)  # one event per hit, not two
        assert max(abs(t - min(onsets[drum], key=lambda o: abs(o - t))) for t in times) < 0.03
    assert {e["label"] for e in events} <= {"kick", "snare", "hihat"}
    assert all(0 < float(e["strength"]) <= 1 for e in events)
    notes = {m.note for m in mido.MidiFile(tmp_path / "ev.mid").tracks[0] if m.type == "note_on"}
    assert notes <= {36, 38, 42} and {36, 38} <= notes  # General MIDI drums from the sounds' names


def test_a_kit_without_groups_is_read_as_its_numbered_labels(d, kit2, tmp_path):
    meta = json.loads(kit2.with_suffix(".json").read_text())
    del meta["groups"]  # as written before kits recorded their sounds
    (tmp_path / "old.json").write_text(json.dumps(meta))
    (tmp_path / "old.wav").write_bytes(kit2.read_bytes())
    assert bufnmf.load_kit(tmp_path / "old.wav").sounds == ["kick", "kick", "snare", "snare", "hihat", "hihat"]
    meta["labels"] = ["kick-1", "kick-2", "snare-1", "snare-3", "hihat-1", "hihat-2"]  # not a numbered run
    (tmp_path / "old.json").write_text(json.dumps(meta))
    assert bufnmf.load_kit(tmp_path / "old.wav").sounds == meta["labels"]


def test_min_gap_holds():
    hop = 512 / 44100  # 11.6 ms: a gap of 0.05 s is 4.3 frames
    act = np.zeros(200)
    for start in (20, 24, 60, 65):  # rises 4 frames (46 ms) and 5 frames (58 ms) apart
        act[start : start + 3] += [1.0, 0.6, 0.3]
    times = [t for t, _, _ in pick_onsets(act, hop, threshold=0.1, min_gap=0.05)]
    assert times == pytest.approx([20 * hop, 60 * hop, 65 * hop])  # the one 46 ms after an onset is dropped
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(times))


def test_min_gap_holds_on_the_loop(d, kit2, tmp_path, capsys):
    for gap in ("0.05", "0.2"):
        code, _, err = run(["track", d / "loop.wav", "--bases", kit2, "-o", tmp_path / f"e{gap}.csv", "--min-gap",
                            gap, "--threshold", "0.05", "--seed", "1"], capsys)
        assert code == 0, err
        events = list(csv.DictReader((tmp_path / f"e{gap}.csv").open()))
        for label in {e["label"] for e in events}:
            t = [float(e["time"]) for e in events if e["label"] == label]
            assert all(b - a >= float(gap) - 1e-9 for a, b in itertools.pairwise(t)), (gap, label, t)


@pytest.mark.parametrize(("extra", "message"), [
    (["--midi", "{t}/x.mid", "--note", "cowbell=56"], "--note cowbell: the kit has no sound 'cowbell'"),
    (["--note", "kick=35"], "--note maps labels to MIDI notes, but no MIDI file is written: add --midi FILE"),
    (["--midi", "{t}/x.mid", "--note", "kick=200"], "--note kick=200: MIDI notes are 0..127"),
])
def test_note_mappings_are_checked(extra, message, d, kit2, tmp_path, capsys):
    extra = [a.replace("{t}", str(tmp_path)) for a in extra]
    code, _, err = run(["track", d / "loop.wav", "--bases", kit2, "-o", tmp_path / "ev.csv", *extra], capsys)
    one_line_error(code, err, message)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# bad input on the command line: one line, exit 2, nothing written


def _kit_with(tmp_path: Path, kit: Path, **fields) -> Path:
    meta = json.loads(kit.with_suffix(".json").read_text())
    meta.update(fields)
    p = tmp_path / "bad.wav"
    p.write_bytes(kit.read_bytes())
    p.with_suffix(".json").write_text(json.dumps(meta) if "raw" not in fields else fields["raw"])
    return p


BAD_NUMBERS = [
    (["decompose", "{loop}", "--smooth-activations", "nan"], "--smooth-activations must be a finite number"),
    (["decompose", "{loop}", "--smooth-activations", "inf"], "--smooth-activations must be a finite number"),
    (["decompose", "{loop}", "--smooth-activations", "1e300"], "--smooth-activations 1e+300 s is longer than"),
    (["decompose", "{loop}", "--max-memory", "nan"], "--max-memory 'nan' must be a size between"),
    (["decompose", "{loop}", "--max-memory", "inf"], "--max-memory 'inf' must be a size between"),
    (["decompose", "{loop}", "--max-memory", "1e400"], "--max-memory '1e400' must be a size between"),
    (["decompose", "{loop}", "--max-memory", "-5"], "--max-memory '-5' must be a size between"),
    (["cross", "{loop}", "{loop}", "--max-memory", "1e999G"], "--max-memory '1e999G' must be a size between"),
    (["track", "{loop}", "--bases", "{kit}", "--min-gap", "nan"], "--min-gap must be a finite number"),
    (["track", "{loop}", "--bases", "{kit}", "--min-gap", "inf"], "--min-gap must be a finite number"),
    (["track", "{loop}", "--bases", "{kit}", "--smooth", "1e300"], "--smooth 1e+300 s is longer than the source"),
    (["track", "{loop}", "--bases", "{kit}", "--smooth", "-inf"], "--smooth must be a finite number"),
    (["track", "{loop}", "--bases", "{kit}", "--threshold", "nan"], "--threshold must be a finite number"),
]


@pytest.mark.parametrize(("args", "message"), BAD_NUMBERS, ids=[" ".join(a[-2:]) for a, _ in BAD_NUMBERS])
def test_nan_inf_and_huge_numbers(args, message, d, tmp_path, capsys):
    args = [a.replace("{loop}", str(d / "loop.wav")).replace("{kit}", str(d / "kit.wav")) for a in args]
    out = tmp_path / ("o.wav" if args[0] == "cross" else "o.csv" if args[0] == "track" else "o")
    code, _, err = run([*args, "-o", out], capsys)
    one_line_error(code, err, message)
    assert list(tmp_path.iterdir()) == []


BAD_KITS = [
    ({"labels": "kick"}, "labels must be a list of strings"),
    ({"labels": [1, 2, 3]}, "labels must be a list of strings"),
    ({"labels": ["a", "b"]}, "labels has 2 entries for the 3 bases"),
    ({"window_size": "1024"}, "window_size must be a whole number >= 4, got '1024'"),
    ({"window_size": 1024.5}, "window_size must be a whole number >= 4, got 1024.5"),
    ({"hop_size": None}, "hop_size must be a whole number >= 1, got None"),
    ({"fft_size": True}, "fft_size must be a whole number >= 4, got True"),
    ({"fft_size": 10**30}, "window_size/hop_size/fft_size"),
    ({"window_size": 4096}, "are not consistent"),
    ({"sample_rate": "fast"}, "sample_rate must be a whole number >= 1, got 'fast'"),
    ({"seed": 1.5}, "seed must be a whole number >= 0, got 1.5"),
    ({"groups": ["a"]}, "groups has 1 entries for the 3 bases"),
    ({"raw": "[1, 2]"}, "the file holds a list, not an object"),
    ({"raw": "{not json"}, "is not valid JSON"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_KITS, ids=[str(f)[:40] for f, _ in BAD_KITS])
@pytest.mark.parametrize("command", ["track", "decompose", "match"])
def test_a_kit_description_with_wrong_types(fields, message, command, d, tmp_path, capsys):
    bad = _kit_with(tmp_path, d / "kit.wav", **fields)
    out = tmp_path / {"track": "ev.csv", "decompose": "out", "match": "m.csv"}[command]
    code, _, err = run([command, d / "loop.wav", "--bases", bad, "-o", out], capsys)
    one_line_error(code, err, "bad.json", message)
    assert not out.exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"parameters": {"window_size": "x", "hop_size": 512, "fft_size": 1024}}, "window_size must be a whole number"),
    ({"parameters": [1, 2]}, None),  # not a table: ignored, defaults used
    ({"sample_rate": "fast"}, "sample_rate must be a whole number in 1..2147483647, got 'fast'"),
    ({"sample_rate": 1e300}, "sample_rate must be a whole number in 1..2147483647"),
])
def test_a_summary_with_wrong_types(change, message, d, tmp_path, capsys):
    assert run(["decompose", d / "loop.wav", "-o", tmp_path / "p", "-k", "2", "--iterations", "3"], capsys)[0] == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    summary.update(change)
    (tmp_path / "p" / "summary.json").write_text(json.dumps(summary))
    p = tmp_path / "p"
    code, _, err = run(["morph", "--source-bases", p / "bases.npy", "--target-bases", p / "bases.npy",
                        "--activations", p / "activations.npy", "-o", tmp_path / "m.wav"], capsys)
    if message is None:
        assert code == 0, err
    else:
        one_line_error(code, err, "summary.json: ", message)
        assert not (tmp_path / "m.wav").exists()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("num_samples", -5, "num_samples must be a whole number >= 1, got -5"),
    ("num_samples", 10**15, "num_samples must be 0.."),
    ("num_samples", "x", "num_samples must be a whole number >= 1, got 'x'"),
    ("padding", 7, "padding must be a whole number in 0..2, got 7"),
    ("sample_rate", 0, "sample_rate must be a whole number in 1..2147483647, got 0"),
])
def test_an_stft_description_with_wrong_values(field, value, message, d, tmp_path, capsys):
    assert run(["stft", d / "loop.wav", "-o", tmp_path / "st"], capsys)[0] == 0
    meta = json.loads((tmp_path / "st" / "stft.json").read_text())
    meta[field] = value
    (tmp_path / "st" / "stft.json").write_text(json.dumps(meta))
    code, _, err = run(["stft", "--inverse", tmp_path / "st", "-o", tmp_path / "y.wav"], capsys)
    one_line_error(code, err, message)
    assert not (tmp_path / "y.wav").exists()


def test_names_longer_than_the_file_system_allows(d, tmp_path, capsys):
    long = "x" * 300
    code, _, err = run(["cross", d / "kick.wav", d / "snare.wav", "-o", tmp_path / f"{long}.wav"], capsys)
    one_line_error(code, err, "file name too long for the file system")
    code, _, err = run(["decompose", d / "loop.wav", "-o", tmp_path / long / "p"], capsys)
    one_line_error(code, err)
    assert list(tmp_path.iterdir()) == []
    # a label longer than a file name may be is shortened for the stem; the kit keeps it whole
    code, _, err = run(["learn", d / "kick.wav", d / "snare.wav", "-o", tmp_path / "k.wav", "--label", "k" * 400,
                        "--label", "s" * 400, "--iterations", "10", "--method", "flucoma"], capsys)
    assert code == 0, err
    assert bufnmf.load_kit(tmp_path / "k.wav").labels == ["k" * 400, "s" * 400]
    code, _, err = run(["decompose", d / "loop.wav", "-o", tmp_path / "p", "--bases", tmp_path / "k.wav",
                        "--bases-mode", "fixed", "--iterations", "3"], capsys)
    assert code == 0, err
    assert {p.name for p in (tmp_path / "p").glob("component_*")} == {f"component_{'k' * 100}.wav",
                                                                     f"component_{'s' * 100}.wav"}


def test_names_that_are_not_utf8(d, tmp_path, capsys):
    folder = os.fsencode(tmp_path) + b"/out\xff"
    code, _, err = run(["decompose", d / "loop.wav", "-o", folder, "-k", "2", "--iterations", "3"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(folder + b"/")) [0] == b".bufnmf-run.json"
    code, _, err = run(["cross", d / "kick.wav", d / "snare.wav", "-o", folder + b"/x\xfe.wav", "--iterations", "2"],
                       capsys)
    assert code == 0, err
    assert sf.info(folder + b"/x\xfe.wav").format == "WAV"
    code, _, err = run(["decompose", folder + b"/missing\xfd.wav", "-o", tmp_path / "q"], capsys)
    one_line_error(code, err, "missing\\xfd.wav does not exist")
    code, _, err = run(["decompose", d / "loop.wav", "-o", folder, "-k", "2"], capsys)
    one_line_error(code, err, "out\\xff holds the outputs of an earlier run")
    # labels from such file names (a kit learnt from them) reach the CSV as the names' bytes
    kick = os.fsencode(tmp_path) + b"/k\xff.wav"
    Path(os.fsdecode(kick)).write_bytes((d / "kick.wav").read_bytes())
    code, _, err = run(["learn", kick, d / "snare.wav", "-o", tmp_path / "kx.wav", "--iterations", "10"], capsys)
    assert code == 0, err
    code, _, err = run(["track", d / "loop.wav", "--bases", tmp_path / "kx.wav", "-o", tmp_path / "t.csv"], capsys)
    assert code == 0, err
    assert b",k\xff," in (tmp_path / "t.csv").read_bytes()


@pytest.mark.parametrize("args", [["decompose", "{loop}", "-o", "/sys"], ["decompose", "{loop}", "-o", "/sys/x"],
                                  ["cross", "{loop}", "{loop}", "-o", "/sys/x.wav"],
                                  ["track", "{loop}", "--bases", "{kit}", "-o", "/proc/ev.csv"]])
def test_unwritable_places(args, d, capsys):
    if not Path("/sys").is_dir() or not Path("/proc").is_dir():
        pytest.skip("no /sys or /proc on this system")
    args = [a.replace("{loop}", str(d / "loop.wav")).replace("{kit}", str(d / "kit.wav")) for a in args]
    code, _, err = run(args, capsys)
    one_line_error(code, err, "cannot ")


# ----------------------------------------------------------------------------------------------
# bad input to the library: BufNMFError, never ValueError/TypeError/MemoryError from inside


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return drum_loop(seconds=1.0, sr=SR)[0].astype(np.float64)


@pytest.fixture(scope="module")
def W() -> np.ndarray:  # noqa: N802 - the bases, as in the papers
    return np.abs(np.random.default_rng(2).standard_normal((513, 3)))


def test_max_memory_as_a_size(x):
    assert bufnmf.decompose(x, iterations=2, max_memory="4G").bases.shape == (513, 1)
    assert bufnmf.cross(x[:8000], x[8000:16000], iterations=2, max_memory="1G").size == 8000
    for bad, message in (("lots", "not understood"), (float("nan"), "whole number of bytes"), (-1, "between 1"),
                         (True, "a number of bytes"), ("0", "between 1 byte"), (2.5, "whole number")):
        with pytest.raises(BufNMFError, match=message):
            bufnmf.decompose(x, iterations=2, max_memory=bad)
    with pytest.raises(BufNMFError, match=r"the max_memory limit is 1\.0 MiB"):
        bufnmf.decompose(x, iterations=2, max_memory="1M")


LIBRARY_CASES = {
    "smooth_frames=10**9": (lambda x, W: bufnmf.decompose(x, smooth_frames=10**9), "smooth_frames 1000000000"),
    "istft(num_samples=-5)": (lambda x, W: bufnmf.istft(*bufnmf.stft(x), num_samples=-5), "num_samples must be 0.."),
    "istft(num_samples=10**15)": (lambda x, W: bufnmf.istft(*bufnmf.stft(x), num_samples=10**15),
                                  "num_samples must be 0.."),
    "istft(num_samples=2.5)": (lambda x, W: bufnmf.istft(*bufnmf.stft(x), num_samples=2.5), "must be an integer"),
    "track(sample_rate=nan)": (lambda x, W: bufnmf.track(x, W, sample_rate=float("nan")), "finite number"),
    "track(sample_rate=0)": (lambda x, W: bufnmf.track(x, W, sample_rate=0), "sample_rate must be > 0"),
    "track(labels='abc')": (lambda x, W: bufnmf.track(x, W, labels="abc", sample_rate=SR), "a single string"),
    "track(labels=[1, 2, 3])": (lambda x, W: bufnmf.track(x, W, labels=[1, 2, 3], sample_rate=SR), "must be strings"),
    "learn_bases(labels=[1])": (lambda x, W: bufnmf.learn_bases([x], labels=[1], sample_rate=SR), "must be strings"),
    "decompose(complex bases)": (lambda x, W: bufnmf.decompose(x, components=3, bases=W + 1j, bases_mode="fixed"),
                                 "real numbers|complex"),
    "match(complex bases)": (lambda x, W: bufnmf.match(x, W + 1j), "complex"),
    "nmf_filter(complex bases)": (lambda x, W: bufnmf.nmf_filter(x, W + 0j), "complex"),
    "NMFMatch(complex bases)": (lambda x, W: bufnmf.NMFMatch(W + 1j), "complex"),
    "NMFFilter(complex bases)": (lambda x, W: bufnmf.NMFFilter(W.astype(np.complex64)), "complex"),
    "morph(complex bases)": (lambda x, W: bufnmf.morph(W + 1j, W, np.ones((4, 3))), "source_bases holds complex"),
    "morph(complex activations)": (lambda x, W: bufnmf.morph(W, W, np.ones((4, 3)) * 1j), "activations holds complex"),
    "track(complex bases)": (lambda x, W: bufnmf.track(x, W + 1j, sample_rate=SR), "complex"),
    "istft(complex magnitude)": (lambda x, W: bufnmf.istft(bufnmf.stft(x)[0] + 1j, bufnmf.stft(x)[1]), "complex"),
    "decompose(bool max_memory)": (lambda x, W: bufnmf.decompose(x, max_memory=False), "a number of bytes"),
}


@pytest.mark.parametrize("case", sorted(LIBRARY_CASES))
def test_library_bad_input_is_a_bufnmf_error(case, x, W):
    call, message = LIBRARY_CASES[case]
    with pytest.raises(BufNMFError, match=message):
        call(x, W)


def test_labels_may_be_any_iterable(x, W):
    kit = bufnmf.learn_bases([x[:20000], x[20000:]], labels=(s for s in ("a", "b")), sample_rate=SR, iterations=5)
    assert kit.labels == ["a", "b"]
    events = bufnmf.track(x, W, labels=(s for s in ("p", "q", "r")), sample_rate=SR, iterations=5, seed=0)
    assert {e.label for e in events} <= {"p", "q", "r"}
    # columns that share a label are one sound: one event per onset
    assert {e.label for e in bufnmf.track(x, W, labels=["p", "p", "r"], sample_rate=SR, iterations=5)} <= {"p", "r"}


def test_very_loud_input(x):
    loud = x / np.abs(x).max() * 3e38
    res = bufnmf.decompose(loud, components=3, iterations=10, seed=0)
    assert np.isfinite(res.resynth).all()
    np.testing.assert_allclose(res.resynth.sum(axis=1), loud, rtol=0, atol=1e-5 * 3e38)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way either
        square = np.sign(np.random.default_rng(1).standard_normal(4096)).astype(np.float32) * np.float32(3.4e38)
        with pytest.raises(BufNMFError, match=r"louder than float32 can hold .* scale the source down"):
            bufnmf.decompose(square, components=2, iterations=20, seed=1)


def test_match_csv_quotes_its_labels(d, tmp_path, capsys):
    labels = ["a,b", 'say "hi"', "two\nlines", "1"]
    kit = bufnmf.Kit(np.abs(np.random.default_rng(0).standard_normal((513, 4))).astype(np.float32), labels, 1024, 512,
                     1024, SR)
    bufnmf.save_kit(kit, tmp_path / "k.wav")
    code, _, err = run(["match", d / "loop.wav", "--bases", tmp_path / "k.wav", "-o", tmp_path / "m.csv", "--seed",
                        "1"], capsys)
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "m.csv").open(newline="")))
    assert rows[0] == ["time", *labels]
    assert all(len(r) == 5 for r in rows)
    acts = bufnmf.match(d / "loop.wav", kit.bases, None, seed=1)  # one column per basis, as the job writes
    np.testing.assert_allclose([[float(v) for v in r[1:]] for r in rows[1:]], acts, rtol=1e-6)
    code, _, err = run(["track", d / "loop.wav", "--bases", tmp_path / "k.wav", "-o", tmp_path / "t.csv",
                        "--threshold", "0.05"], capsys)
    assert code == 0, err
    assert {r["label"] for r in csv.DictReader((tmp_path / "t.csv").open(newline=""))} <= set(labels)
