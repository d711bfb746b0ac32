"""The API rules of docs/api.md, checked over every public function, streaming class and subcommand."""

from __future__ import annotations

import dataclasses
import inspect

import click
import numpy as np
import pytest
import soundfile as sf

import bufnmf
from bufnmf.cli import cli, main
from bufnmf.demo import drum_loop
from bufnmf.workflows import jobs

SR = 44100


@pytest.fixture(scope="module")
def mono() -> np.ndarray:
    return drum_loop(seconds=1.0, seed=5)[0].astype(np.float64)


@pytest.fixture(scope="module")
def stereo(mono) -> np.ndarray:
    return np.stack([mono, 0.5 * mono[::-1]], axis=1)


@pytest.fixture(scope="module")
def bases() -> np.ndarray:
    return np.abs(np.random.default_rng(2).standard_normal((513, 3)))


@pytest.fixture
def files(tmp_path, mono, stereo, bases):
    m, s = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    sf.write(m, mono, SR, subtype="FLOAT")
    sf.write(s, stereo, SR, subtype="FLOAT")
    kit = bufnmf.learn_bases([mono[:20000], mono[20000:]], labels=["a", "b"], seed=0, iterations=10, sample_rate=SR)
    bufnmf.save_kit(kit, tmp_path / "kit.wav")
    return {"mono": m, "stereo": s, "kit": tmp_path / "kit.wav", "dir": tmp_path}


def _public_callables():
    for name in bufnmf.__all__:
        obj = getattr(bufnmf, name)
        result_type = dataclasses.is_dataclass(obj) or (inspect.isclass(obj) and issubclass(obj, (tuple, np.ndarray)))
        if inspect.isfunction(obj) or (inspect.isclass(obj) and not issubclass(obj, BaseException) and not result_type):
            yield name, obj
    for name in jobs.__all__:
        obj = getattr(jobs, name)
        if inspect.isfunction(obj):
            yield f"jobs.{name}", obj


def test_every_seed_defaults_to_minus_one():
    seen = []
    for name, obj in _public_callables():
        try:
            sig = inspect.signature(obj)
        except ValueError:  # a class without a signature of its own (e.g. a NamedTuple's builtins)
            continue
        if "seed" in sig.parameters:
            seen.append(name)
            assert sig.parameters["seed"].default == -1, name
    # the functions and classes that draw anything at random all take a seed
    for must in ("decompose", "nmf_seed", "match", "nmf_filter", "cross", "morph", "NMFMatch", "NMFFilter",
                 "NMFMorph", "learn_bases", "track", "jobs.decompose_job", "jobs.learn_job", "jobs.track_job"):
        assert must in seen, must


def test_every_subcommand_seed_defaults_to_minus_one():
    with_seed = []
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and "--seed" in param.opts:
                with_seed.append(name)
                assert param.default == -1, name
    assert sorted(with_seed) == sorted(["decompose", "learn", "track", "seed", "match", "filter", "cross", "morph"])


def test_a_drawn_seed_is_reported_and_reproduces(mono, bases):
    a = bufnmf.decompose(mono, components=2, iterations=3)
    assert a.seed >= 0
    np.testing.assert_array_equal(bufnmf.decompose(mono, components=2, iterations=3, seed=a.seed).bases, a.bases)
    for call in (lambda s: bufnmf.match(mono, bases, seed=s), lambda s: bufnmf.nmf_filter(mono, bases, seed=s),
                 lambda s: bufnmf.cross(mono[:8000], mono[8000:16000], iterations=3, griffin_lim_iterations=2,
                                        seed=s)):
        first = call(-1)
        assert first.seed >= 0
        np.testing.assert_array_equal(np.asarray(call(first.seed)), np.asarray(first))
    S = np.abs(np.random.default_rng(0).standard_normal((513, 2)))
    H = np.abs(np.random.default_rng(1).standard_normal((6, 2)))
    y = bufnmf.morph(S, S[:, ::-1], H, griffin_lim_iterations=2)
    np.testing.assert_array_equal(np.asarray(bufnmf.morph(S, S[:, ::-1], H, griffin_lim_iterations=2, seed=y.seed)),
                                  np.asarray(y))
    assert not np.allclose(np.asarray(bufnmf.morph(S, S[:, ::-1], H, griffin_lim_iterations=2, seed=y.seed + 1)),
                           np.asarray(y))  # the seed matters
    seeded = bufnmf.nmf_seed(mono, components=3, method="nndsvdar")
    assert seeded.seed >= 0
    kit = bufnmf.learn_bases([mono], iterations=5, sample_rate=SR)
    assert kit.seed is not None and kit.seed >= 0
    events = bufnmf.track(mono, bases, sample_rate=SR, iterations=5)
    assert events.seed >= 0
    for cls in (bufnmf.NMFMatch, bufnmf.NMFFilter):
        assert cls(bases).seed >= 0


MONO_FUNCTIONS = {
    "stft": lambda x, b: bufnmf.stft(x),
    "nmf_seed": lambda x, b: bufnmf.nmf_seed(x, components=2),
    "match": lambda x, b: bufnmf.match(x, b),
    "nmf_filter": lambda x, b: bufnmf.nmf_filter(x, b),
    "cross (source)": lambda x, b: bufnmf.cross(x, x[:, 0]),
    "cross (target)": lambda x, b: bufnmf.cross(x[:, 0], x),
    "track": lambda x, b: bufnmf.track(x, b, sample_rate=SR),
    "separate": lambda x, b: bufnmf.separate(x, b, sample_rate=SR),
    "Tracker.process": lambda x, b: bufnmf.Tracker(bufnmf.learn_bases([x[:, 0]], sample_rate=SR)).process(x),
    "learn_bases": lambda x, b: bufnmf.learn_bases([x]),
    "NMFMatch.process": lambda x, b: bufnmf.NMFMatch(b).process(x),
    "NMFFilter.process": lambda x, b: bufnmf.NMFFilter(b).process(x),
    "Sines.process": lambda x, b: bufnmf.Sines().process(x),
}


@pytest.mark.parametrize("who", sorted(MONO_FUNCTIONS))
def test_mono_functions_refuse_several_channels_naming_the_fix(who, stereo, bases):
    with pytest.raises(bufnmf.BufNMFError) as info:
        MONO_FUNCTIONS[who](stereo, bases)
    assert "bufnmf.mixdown(" in str(info.value) and "[:, c]" in str(info.value), str(info.value)


def test_the_fix_works_mixdown_or_one_channel(stereo, bases):
    for x in (bufnmf.mixdown(stereo), stereo[:, 1]):
        assert bufnmf.match(x, bases).shape == (SR // 512 + 1, 20)  # FluCoMa: frame 0 included, 20 outputs
    np.testing.assert_allclose(bufnmf.mixdown(stereo), stereo.mean(axis=1))


def test_buffer_objects_process_every_channel(stereo):
    res = bufnmf.decompose(stereo, components=2, iterations=3, seed=0)
    assert res.bases.shape == (513, 4) and res.resynth.shape == (stereo.shape[0], 4)
    one = bufnmf.decompose(stereo[:, 1], components=2, iterations=3, seed=0)
    np.testing.assert_array_equal(res.bases[:, 2:], one.bases)


def test_a_path_is_a_source_everywhere(files, mono, bases):
    path = files["mono"]
    read = sf.read(path, dtype="float32")[0]
    pairs = [
        (bufnmf.decompose(path, components=2, iterations=3, seed=1).bases,
         bufnmf.decompose(read, components=2, iterations=3, seed=1).bases),
        (bufnmf.stft(path).magnitude, bufnmf.stft(read).magnitude),
        (bufnmf.nmf_seed(path, components=2, seed=0).bases, bufnmf.nmf_seed(read, components=2, seed=0).bases),
        (bufnmf.match(path, bases, seed=1), bufnmf.match(read, bases, seed=1)),
        (bufnmf.nmf_filter(path, bases, seed=1), bufnmf.nmf_filter(read, bases, seed=1)),
        (bufnmf.cross(path, path, iterations=2, griffin_lim_iterations=1, seed=1),
         bufnmf.cross(read, read, iterations=2, griffin_lim_iterations=1, seed=1)),
        (bufnmf.learn_bases([path], iterations=5, seed=1).bases,
         bufnmf.learn_bases([read], iterations=5, seed=1).bases),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert bufnmf.decompose(path, iterations=1).sample_rate == SR
    ev_path = bufnmf.track(path, bases, iterations=5, seed=1)
    ev_read = bufnmf.track(read, bases, sample_rate=SR, iterations=5, seed=1)
    assert ev_path == ev_read


def test_stft_returns_a_named_tuple(mono):
    res = bufnmf.stft(mono)
    mag, ph = res
    assert mag is res.magnitude and ph is res.phase


MONO_COMMANDS = {
    "learn": ["learn", "{stereo}", "-o", "{dir}/k2.wav"],
    "track": ["track", "{stereo}", "--bases", "{kit}", "-o", "{dir}/ev.csv"],
    "stft": ["stft", "{stereo}", "-o", "{dir}/st"],
    "seed": ["seed", "{stereo}", "-o", "{dir}/sd", "-k", "2"],
    "match": ["match", "{stereo}", "--bases", "{kit}", "-o", "{dir}/m.csv"],
    "filter": ["filter", "{stereo}", "--bases", "{kit}", "-o", "{dir}/f"],
    "cross": ["cross", "{stereo}", "{stereo}", "-o", "{dir}/c.wav", "--iterations", "2"],
}


@pytest.mark.parametrize("name", sorted(MONO_COMMANDS))
def test_mono_subcommands_ask_for_a_channel_or_mixdown(name, files, capsys):
    args = [str(files[a[1:-1]]) if a in ("{stereo}", "{kit}") else a.replace("{dir}", str(files["dir"]))
            for a in MONO_COMMANDS[name]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--start-chan" in err and "--mixdown" in err and "2 channels" in err, err
    assert main([*args, "--mixdown"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main([*args, "--start-chan", "1", "--force"]) == 0, capsys.readouterr().err
