"""Templates (kits), partial fixing, smoothing, onset picking, MIDI, and the learn/track CLI."""

from __future__ import annotations

import json

import mido
import numpy as np
import pytest
import soundfile as sf

import bufnmf
from bufnmf import BufNMFError
from bufnmf.cli import main
from bufnmf.demo import DRUMS, drum_loop
from bufnmf.io.events import Event, events_to_midi, events_to_text, note_hz, note_number
from bufnmf.workflows.tracking import pick_onsets, track

SR = 44100


@pytest.fixture(scope="module")
def synth():
    return drum_loop(seconds=4.0, sr=SR, seed=5)


@pytest.fixture(scope="module")
def kit(synth):
    _, stems, onsets = synth
    # one isolated hit of each drum, cut from its stem
    hits = [stems[d][int(onsets[d][0] * SR): int(onsets[d][0] * SR) + 8000] for d in DRUMS]
    return bufnmf.learn_bases(hits, labels=list(DRUMS), sample_rate=SR, method="flucoma")


def test_learn_bases_shapes_labels_and_norms(kit):
    assert kit.bases.shape == (513, 3) and kit.bases.dtype == np.float32
    assert kit.labels == ["kick", "snare", "hihat"]
    assert (kit.window_size, kit.hop_size, kit.fft_size, kit.sample_rate) == (1024, 512, 1024, SR)
    np.testing.assert_allclose(np.linalg.norm(kit.bases, axis=0), 1.0, rtol=1e-5)
    freqs = np.arange(513) * SR / 1024
    centroid = (kit.bases * freqs[:, None]).sum(0) / kit.bases.sum(0)
    assert centroid[0] < centroid[1] < centroid[2]  # kick low, snare mid, hi-hat high


@pytest.mark.slow
def test_several_bases_per_file_and_merged_labels(synth):
    _, stems, _ = synth
    k2 = bufnmf.learn_bases([stems["snare"], stems["hihat"]], components_per_file=2, sample_rate=SR)
    assert k2.labels == ["example1-1", "example1-2", "example2-1", "example2-2"]
    merged = bufnmf.learn_bases([stems["snare"][:30000], stems["snare"][30000:], stems["kick"]],
                                labels=["snare", "snare", "kick"], merge_labels=True, sample_rate=SR, method="flucoma")
    single = bufnmf.learn_bases([stems["snare"][:30000], stems["snare"][30000:]], labels=["a", "b"], sample_rate=SR,
                                method="flucoma")
    assert merged.labels == ["snare", "kick"] and merged.bases.shape == (513, 2)
    mean = single.bases.mean(axis=1)
    np.testing.assert_allclose(merged.bases[:, 0], mean / np.linalg.norm(mean), atol=1e-6)


def test_learn_errors(tmp_path):
    with pytest.raises(BufNMFError, match="2 label\\(s\\) given for 1 example"):
        bufnmf.learn_bases([np.ones(5000)], labels=["a", "b"])
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, np.random.default_rng(0).standard_normal(8000) * 0.1, 44100)
    sf.write(b, np.random.default_rng(1).standard_normal(8000) * 0.1, 22050)
    with pytest.raises(BufNMFError, match=r"different sample rates .*44100 Hz.*22050 Hz"):
        bufnmf.learn_bases([a, b])
    with pytest.raises(BufNMFError, match="at least one example"):
        bufnmf.learn_bases([])


@pytest.mark.parametrize("ext", [".wav", ".npy"])
def test_kit_round_trip(kit, tmp_path, ext):
    path = tmp_path / f"kit{ext}"
    written = bufnmf.save_kit(kit, path)
    assert sorted(p.name for p in written) == sorted([f"kit{ext}", "kit.json"])
    meta = json.loads((tmp_path / "kit.json").read_text())
    assert meta["labels"] == kit.labels and meta["fft_size"] == 1024 and meta["sample_rate"] == SR
    back = bufnmf.load_kit(path)
    np.testing.assert_array_equal(back.bases, kit.bases)
    assert back.labels == kit.labels and back.settings == kit.settings and back.sample_rate == SR
    with pytest.raises(BufNMFError, match="already exist"):
        bufnmf.save_kit(kit, path)


def test_kit_mismatch_names_both(kit):
    with pytest.raises(BufNMFError, match="learnt with window/hop/fft 1024/512/1024 but the source is analysed with "
                                          "2048/1024/2048"):
        kit.check_compatible(bufnmf.resolve_fft_settings(2048), SR)
    with pytest.raises(BufNMFError, match="learnt at 44100 Hz but the source is at 48000 Hz"):
        kit.check_compatible(kit.settings, 48000)


def test_extra_components_learn_beside_fixed_bases(synth, kit):
    mix = synth[0]
    noise = np.random.default_rng(9).standard_normal(mix.size).astype(np.float32) * 0.05
    x = mix + noise
    res = bufnmf.decompose(x, components=3, bases=kit.bases, bases_mode="fixed", extra_components=2, seed=1,
                           iterations=50)
    assert res.components == 5 and res.extra_components == 2 and res.bases_mode == 2
    assert res.bases.shape == (513, 5) and res.resynth.shape == (x.size, 5)
    np.testing.assert_allclose(res.bases[:, :3], kit.bases, atol=1e-6)  # the kit is untouched
    start = bufnmf.dsp.random.flucoma_init(1, 513, 5)[:, 3:]
    assert not np.allclose(res.bases[:, 3:], start / np.linalg.norm(start, axis=0), atol=1e-3)
    np.testing.assert_allclose(res.resynth.sum(axis=1), x, atol=1e-5)
    # the free components soak up the noise: the kit's parts get cleaner than without them
    plain = bufnmf.decompose(x, components=3, bases=kit.bases, bases_mode="fixed", seed=1, iterations=50)
    stems = synth[1]

    def err(r):
        return sum(np.sum((r.resynth[:, i] - stems[d]) ** 2) for i, d in enumerate(DRUMS))

    assert err(res) < err(plain)


def test_extra_components_errors():
    with pytest.raises(BufNMFError, match="extra_components needs bases"):
        bufnmf.decompose(np.ones(4000), extra_components=1)
    with pytest.raises(BufNMFError, match="cannot be combined with supplied activations"):
        bufnmf.decompose(np.ones(4000), bases=np.ones((513, 1)), bases_mode=2, activations=np.ones((8, 1)),
                         act_mode=1, extra_components=1)


@pytest.mark.parametrize("method", ["median", "mean"])
def test_smoothing_activations_before_resynthesis(synth, method):
    from scipy.ndimage import median_filter, uniform_filter1d

    mix = synth[0]
    raw = bufnmf.decompose(mix, components=3, iterations=30, seed=2, precision="float64")
    smooth = bufnmf.decompose(mix, components=3, iterations=30, seed=2, precision="float64", smooth_frames=5,
                              smooth_method=method)
    if method == "median":
        expect = median_filter(raw.activations.astype(np.float64), size=(5, 1), mode="nearest")
    else:
        expect = uniform_filter1d(raw.activations.astype(np.float64), size=5, axis=0, mode="nearest")
    np.testing.assert_allclose(smooth.activations, expect / expect.max(), atol=2e-6)
    np.testing.assert_allclose(smooth.resynth.sum(axis=1), mix, atol=1e-5)
    assert not np.allclose(smooth.resynth, raw.resynth, atol=1e-4)


def test_pick_onsets_on_a_known_activation():
    hop = 0.01
    a = np.zeros(300)
    for start, height in ((20, 1.0), (100, 0.6), (104, 0.9), (200, 0.1)):
        a[start:] = np.maximum(a[start:], height * np.exp(-np.arange(300 - start) / 8.0))
    ev = pick_onsets(a, hop, threshold=0.3, min_gap=0.05, release=0.1)
    assert [round(t, 2) for t, _, _ in ev] == [0.2, 1.0]  # 1.04 is within min_gap; 2.0 is below threshold
    assert ev[0][1] == pytest.approx(1.0)
    assert ev[0][2] == pytest.approx(0.2 + 0.19, abs=0.011)  # exp(-t/8) < 0.1 after 19 frames
    close = pick_onsets(a, hop, threshold=0.3, min_gap=0.02)
    assert [round(t, 2) for t, _, _ in close] == [0.2, 1.0, 1.04]
    assert close[1][2] == pytest.approx(1.04)  # ends where the same activation starts again
    assert pick_onsets(np.zeros(10), hop) == []


def test_note_names():
    assert (note_number("C4"), note_number("A4"), note_number("F#3"), note_number("Bb2")) == (60, 69, 54, 46)
    assert note_number("kick") is None
    assert note_hz("A4") == pytest.approx(440.0)


def test_track_finds_the_synthetic_hits(synth, kit):
    mix, _, onsets = synth
    events = track(mix, kit, sample_rate=SR)
    for d in DRUMS:
        found = np.array([e.time for e in events if e.label == d])
        assert len(found) == len(onsets[d]), d
        assert np.abs(found - np.array(onsets[d])).max() < 0.03, d
    assert all(0 < e.strength <= 1 and e.end > e.time for e in events)
    assert [e.time for e in events] == sorted(e.time for e in events)


def test_events_text_and_midi():
    events = [Event(0.0, "kick", 1.0, 0.2), Event(0.5, "snare", 0.5, 0.6), Event(1.0, "C4", 0.25, 1.8)]
    text = events_to_text(events, "csv").splitlines()
    assert text[0] == "time,label,strength,end" and text[2] == "0.500000,snare,0.500000,0.600000"
    assert json.loads(events_to_text(events, "json"))[2] == {"time": 1.0, "label": "C4", "strength": 0.25,
                                                              "end": 1.8}
    import io

    mid = mido.MidiFile(file=io.BytesIO(events_to_midi(events, {"snare": 40})))
    on = [(m.note, m.velocity, m.channel) for m in mid.tracks[0] if m.type == "note_on"]
    assert on == [(36, 127, 9), (40, 64, 9), (60, 32, 0)]
    ticks = 0
    times = {}
    for m in mid.tracks[0]:
        ticks += m.time
        if m.type == "note_off":
            times[m.note] = ticks
    assert times[60] == 1.8 * 960  # 480 ticks per beat at 120 bpm
    with pytest.raises(BufNMFError, match="no MIDI note for label\\(s\\) thing: map them with --note"):
        events_to_midi([Event(0.0, "thing", 1.0, 0.1)])


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_learn_decompose_track(tmp_path, capsys, synth, kit):
    mix, stems, onsets = synth
    hits = []
    for d in DRUMS:
        p = tmp_path / f"{d}.wav"
        s0 = int(onsets[d][0] * SR)
        sf.write(p, stems[d][s0 : s0 + 8000], SR, subtype="FLOAT")
        hits.append(p)
    loop = tmp_path / "loop.wav"
    sf.write(loop, mix, SR, subtype="FLOAT")
    # by default drum labels learn NMFD templates: 8 frames each, side by side in the buffer
    code, _, err = run(["learn", *hits, "-o", tmp_path / "nmfd.wav"], capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "nmfd.json").read_text())
    assert meta["labels"] == list(DRUMS) and meta["method"] == "percussive" and meta["frames"] == 8
    assert sf.read(tmp_path / "nmfd.wav")[0].shape == (513, 24)
    code, _, err = run(["track", loop, "--bases", tmp_path / "nmfd.wav", "-o", tmp_path / "nmfd.csv"], capsys)
    assert code == 0, err
    rows = (tmp_path / "nmfd.csv").read_text().splitlines()
    assert rows[0] == "time,label,strength,end,velocity,pitch"
    assert len(rows) - 1 == sum(len(v) for v in onsets.values())
    # decompose --bases with that kit: one basis per drum (each template summed over its frames)
    code, _, err = run(["decompose", loop, "-o", tmp_path / "nmfd-parts", "--bases", tmp_path / "nmfd.wav",
                        "--bases-mode", "fixed", "--iterations", "30"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "nmfd-parts").glob("component_*.wav")) == [
        "component_hihat.wav", "component_kick.wav", "component_snare.wav"]
    W = np.load(tmp_path / "nmfd-parts" / "bases.npy")
    T = sf.read(tmp_path / "nmfd.wav")[0].reshape(513, 3, 8).sum(axis=2)
    np.testing.assert_allclose(W, T / np.linalg.norm(T, axis=0), rtol=1e-4, atol=1e-6)
    # FluCoMa's bases (one spectrum per drum, as FluCoMa learns them)
    code, _, err = run(["learn", *hits, "-o", tmp_path / "kit.wav", "--method", "flucoma"], capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "kit.json").read_text())
    assert meta["labels"] == list(DRUMS) and meta["method"] == "flucoma"
    assert sf.read(tmp_path / "kit.wav")[0].shape == (513, 3)

    out = tmp_path / "parts"
    code, _, err = run(["decompose", loop, "-o", out, "--bases", tmp_path / "kit.wav", "--bases-mode", "fixed",
                        "--extra-components", "1", "--smooth-activations", "0.03"], capsys)
    assert code == 0, err
    names = sorted(p.name for p in out.glob("component_*.wav"))
    assert names == ["component_extra_1.wav", "component_hihat.wav", "component_kick.wav", "component_snare.wav"]
    total = sum(sf.read(out / n)[0] for n in names)
    np.testing.assert_allclose(total, mix, atol=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == ["kick", "snare", "hihat", "extra_1"]

    code, _, err = run(["decompose", loop, "-o", tmp_path / "bad", "--bases", tmp_path / "kit.wav",
                        "--bases-mode", "fixed", "--window-size", "2048"], capsys)
    assert code == 2 and "learnt with window/hop/fft 1024/512/1024" in err and "2048/1024/2048" in err

    code, _, err = run(["track", loop, "--bases", tmp_path / "kit.wav", "-o", tmp_path / "ev.csv",
                        "--midi", tmp_path / "ev.mid", "--note", "kick=35"], capsys)
    assert code == 0, err
    rows = (tmp_path / "ev.csv").read_text().splitlines()
    assert rows[0] == "time,label,strength,end"
    assert len(rows) - 1 == sum(len(v) for v in onsets.values())
    mid = mido.MidiFile(tmp_path / "ev.mid")
    notes = {m.note for m in mid.tracks[0] if m.type == "note_on"}
    assert notes == {35, 38, 42}
    code, _, err = run(["track", loop, "--bases", tmp_path / "kit.wav", "-o", tmp_path / "ev.txt"], capsys)
    assert code == 2 and "must end in .csv or .json" in err
    code, _, err = run(["track", loop, "--bases", tmp_path / "kit.wav", "-o", tmp_path / "ev.json",
                        "--note", "kick"], capsys)
    assert code == 2 and "LABEL=NUMBER" in err
    assert not (tmp_path / "ev.json").exists()
