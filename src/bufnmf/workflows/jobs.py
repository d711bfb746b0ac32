"""Jobs: "decompose this file into this folder", "learn a kit from these files", "track this file", ...

Each job validates everything first, then runs, then writes its outputs all together
(:class:`bufnmf.io.outputs.OutputSet`: temporary names, renamed at the end, under a folder
lock) and returns a :class:`JobResult` with the paths it wrote and its summary. The command
line, the web page and the batch runner are thin layers over these functions: they parse
their own input, call a job and show its result.

Common keyword arguments:
    force: replace existing outputs (else refuse, naming them).
    progress: ``progress(done, total)`` during the long part; returning False cancels the job
        (:class:`bufnmf.Cancelled`), leaving nothing written.
    channel: for the jobs of mono objects, which channel of a multichannel source: None (the
        source must be mono), an index (0-based) or "mix" (the mean of the channels).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..checks import as_float, as_int, check_seed
from ..clients.bufnmf import DecomposeResult, prepare, run
from ..clients.bufstft import istft, stft
from ..clients.common import mixdown, parse_mode, span
from ..clients.nmfcross import cross
from ..clients.nmfmatch import match, nmf_filter
from ..clients.nmfmorph import morph
from ..clients.nmfseed import nmf_seed
from ..dsp.fft import FFTSettings, resolve_fft_settings
from ..errors import BufNMFError
from ..io.audio import read_audio, read_buffer
from ..io.events import events_to_midi, events_to_text, output_format
from ..io.outputs import WAV_MAX_CHANNELS, OutputSet
from ..resources import page_releaser, parse_bytes
from .kits import Kit, learn_bases, load_kit, save_kit, sidecar, stack_kits
from .tracking import track

ProgressCallback = Callable[[int, int], "bool | None"]
Channel = int | str | None

#: Above this many bytes of component audio, a decomposition is resynthesised into a memory-mapped
#: scratch file in the output folder instead of memory, and its WAVs are written from it in blocks.
SCRATCH_ABOVE_BYTES = 256 * 2**20


@dataclass
class JobResult:
    """What a job did.

    Attributes:
        outputs: the files written, in writing order.
        summary: what the job reports (parameters as resolved, the seed used, shapes, timings);
            for ``decompose_job`` the contents of its ``summary.json``.
        result: the library's own result (e.g. :class:`bufnmf.DecomposeResult`), for callers
            that want the arrays.
    """

    outputs: list[Path]
    summary: dict[str, Any] = field(default_factory=dict)
    result: Any = None


# ----------------------------------------------------------------------------------------------
# shared pieces


def pick_channel(data: np.ndarray, channel: Channel, what: str = "source") -> np.ndarray:
    """One channel of ``data`` (samples, channels) for a mono object, by the jobs' channel rule."""
    if channel is None:
        if data.shape[1] != 1:
            raise BufNMFError(f"the {what} has {data.shape[1]} channels but this process takes one: choose a "
                              "channel (--start-chan N; channel=N in the library) or mix them down (--mixdown; "
                              "channel='mix')")
        return data[:, 0]
    if isinstance(channel, str):
        if channel != "mix":
            raise BufNMFError(f"channel must be a channel index or 'mix', got {channel!r}")
        return mixdown(data)
    c = as_int("channel", channel)
    if not 0 <= c < data.shape[1]:
        raise BufNMFError(f"channel {c} is outside the {what}: it has {data.shape[1]} channel(s) "
                          f"(0..{data.shape[1] - 1})")
    return data[:, c]


def stem_labels(kit_labels: Sequence[str] | None, k: int, extra: int) -> list[str] | None:
    """File-safe, unique stem labels: the kit's, then extra_1..; None for plain numbering."""
    if kit_labels is None and extra <= 0:
        return None
    base = list(kit_labels) if kit_labels is not None else [str(i + 1) for i in range(k)]
    out: list[str] = []
    for lab in [*base, *(f"extra_{j + 1}" for j in range(max(0, extra)))]:
        safe = re.sub(r"[^A-Za-z0-9_.#+-]+", "_", lab).strip("._") or "component"
        name, n = safe, 2
        while name in out:
            name, n = f"{safe}_{n}", n + 1
        out.append(name)
    return out


def output_names(components: int, resynth: bool, plot: bool, labels: Sequence[str] | None = None,
                 extra: Sequence[str] = (), channels: int = 1) -> list[str]:
    """File names a decomposition writes, in writing order.

    Buffers wider than WAV allows (``channels * components`` > 1024) are written as .npy only.
    """
    stems = list(labels) if labels else [str(k + 1) for k in range(components)]
    names = [*extra, *(f"component_{s}.wav" for s in stems if resynth)]
    if channels * components <= WAV_MAX_CHANNELS:
        names += ["bases.wav", "activations.wav"]
    names += ["bases.npy", "activations.npy", "summary.json"]
    if plot:
        names += ["bases.png", "activations.png"]
    return names


def check_buffer_rate(path: str | os.PathLike[str] | None, rate: int | None, sr: int, divisor: int,
                      what: str) -> None:
    """A WAV buffer written for FluCoMa has rate sr / fft (bases) or sr / hop (activations): a buffer
    with another low rate was made for another source rate or FFT setting. Audio-rate buffers
    (exported by hosts that stamp their own rate) are not checked."""
    if path is None or rate is None or rate >= 1000:
        return
    expected = max(1, round(sr / divisor))
    if rate != expected:
        raise BufNMFError(
            f"{what} buffer {path} has buffer rate {rate} Hz, but this source at {sr} Hz with "
            f"{'fft_size' if what == 'bases' else 'hop_size'} {divisor} needs {expected} Hz: it was made for "
            "another sample rate or FFT setting; use matching settings or re-make the buffer"
        )


def summary(res: DecomposeResult, sample_rate: int, source_name: str, timings: Mapping[str, float],
            outputs: Sequence[str], labels: Sequence[str] | None) -> dict[str, Any]:
    """The contents of ``summary.json``."""
    return {
        "bufnmf_version": __version__,
        "source": source_name,
        "sample_rate": sample_rate,
        "parameters": {
            "components": res.components, "iterations": res.iterations, "window_size": res.window_size,
            "hop_size": res.hop_size, "fft_size": res.fft_size, "seed": res.seed, "bases_mode": res.bases_mode,
            "act_mode": res.act_mode, "start_frame": res.start_frame, "num_frames": res.num_samples,
            "start_chan": res.start_chan, "num_chans": res.num_channels, "precision": res.precision,
            "extra_components": res.extra_components, "kernel": res.kernel,
        },
        "labels": list(labels) if labels else [f"component {k + 1}" for k in range(res.components)],
        "shapes": {
            "bases": list(res.bases.shape), "activations": list(res.activations.shape),
            "resynth": list(res.resynth.shape) if res.resynth is not None else None,
        },
        "buffer_sample_rates": {"bases": sample_rate / res.fft_size, "activations": sample_rate / res.hop_size},
        "divergence": [[float(d) for d in ch] for ch in res.divergences],
        "timings": dict(timings),
        "outputs": list(outputs),
    }


def write_decomposition(res: DecomposeResult, sample_rate: int, out: OutputSet, plot: bool, source_name: str,
                        timings: Mapping[str, float], labels: Sequence[str] | None = None,
                        extra: Mapping[str, tuple[np.ndarray, int]] | None = None,
                        more_summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the outputs of a decomposition into ``out`` (committed when its ``with`` block ends).

    ``extra``: more audio files to write (name -> (samples, rate)); ``more_summary``: more entries
    for the summary. Returns the summary written as ``summary.json``.
    """
    K, C = res.components, res.num_channels
    names = output_names(K, res.resynth is not None, plot, labels, list(extra or {}), C)
    comp_names = [n for n in names if n.startswith("component_")]
    t0 = time.perf_counter()
    for name, (data, sr) in (extra or {}).items():
        out.write_audio(name, data, sr)
    if res.resynth is not None:
        release = page_releaser(res.resynth)  # a memory-mapped resynthesis: keep few pages resident
        for k, name in enumerate(comp_names):
            out.write_audio(name, res.resynth[:, k::K], sample_rate, release)  # columns chan * K + k
    if "bases.wav" in names:
        out.write_audio("bases.wav", res.bases, sample_rate / res.fft_size)
        out.write_audio("activations.wav", res.activations, sample_rate / res.hop_size)
    out.write_npy("bases.npy", res.bases)
    out.write_npy("activations.npy", res.activations)
    if plot:
        from ..plot import plot_activations, plot_bases

        out.write_with("bases.png", lambda p: plot_bases(res, sample_rate, p, labels))
        out.write_with("activations.png", lambda p: plot_activations(res, sample_rate, p, labels))
    timings = {**timings, "write_seconds": round(time.perf_counter() - t0, 4)}
    info = {**summary(res, sample_rate, source_name, timings, names, labels), **(more_summary or {})}
    out.write_json("summary.json", info)
    return info


def _memory(max_memory: int | str | None) -> int | None:
    if max_memory is None or isinstance(max_memory, (int, np.integer)):
        return None if max_memory is None else int(max_memory)
    return parse_bytes(str(max_memory))


def _mode(name: str, mode: str | int | None, given: bool, buffer: str) -> int:
    """A buffer's mode: seed when a buffer is given without a mode; a mode without a buffer is an error."""
    if mode is None:
        return 1 if given else 0
    m = parse_mode(name, mode)
    if m != 0 and not given:
        what = "(a .wav or .npy buffer in FluCoMa layout)"
        raise BufNMFError(f"{name} {mode} needs {buffer}=FILE {what}",
                          cli=f"--{name.replace('_', '-')} {mode} needs --{buffer} FILE {what}")
    return m


def _infer_components(given: int | None, bases: np.ndarray | None, acts: np.ndarray | None, channels: int) -> int:
    if given is not None:
        return as_int("components", given)
    for arr in (bases, acts):
        if arr is not None:
            cols = arr.shape[1]
            return cols // channels if cols % channels == 0 else cols
    return 1


def fft_for(kit: Kit | None, window_size: int | None, hop_size: int | None, fft_size: int | None,
            sample_rate: float | None, source: str = "source") -> FFTSettings:
    """FFT settings: each one given, else the kit's (:meth:`Kit.settings_for`), else FluCoMa's defaults."""
    if kit is not None:
        return kit.settings_for(window_size, hop_size, fft_size, sample_rate, source)
    return resolve_fft_settings(1024 if window_size is None else window_size, -1 if hop_size is None else hop_size,
                                -1 if fft_size is None else fft_size)


# ----------------------------------------------------------------------------------------------
# BufNMF


def decompose_job(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    components: int | None = None,
    iterations: int = 100,
    window_size: int | None = None,
    hop_size: int | None = None,
    fft_size: int | None = None,
    seed: int = -1,
    bases: str | os.PathLike[str] | None = None,
    bases_mode: str | int | None = None,
    activations: str | os.PathLike[str] | None = None,
    act_mode: str | int | None = None,
    start_frame: int = 0,
    num_frames: int = -1,
    start_chan: int = 0,
    num_chans: int = -1,
    precision: str = "float32",
    extra_components: int = 0,
    smooth_activations: float = 0.0,
    smooth_method: str = "median",
    max_memory: int | str | None = None,
    resynth: bool = True,
    plot: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> JobResult:
    """Decompose an audio file into ``out_dir``: ``component_<k>.wav``, FluCoMa buffers, ``summary.json``.

    Args:
        source: an audio file. out_dir: the folder for the outputs (created if needed).
        components: K (default: 1, or the columns per channel of the bases/activations buffer).
        bases, activations: buffer files (.wav/.npy, FluCoMa layout), or a kit from
            :func:`learn_job` (its labels name the stems and its FFT settings are used unless given).
        bases_mode, act_mode: "none", "seed" or "fixed" (default "seed" when a buffer is given).
        smooth_activations: seconds of activation smoothing before resynthesis.
        max_memory: bytes or a size like "4G" (default: the memory available now).
        The rest: as :func:`bufnmf.decompose`.

    Returns:
        :class:`JobResult` (``result`` is the :class:`bufnmf.DecomposeResult`).
    """
    t0 = time.perf_counter()
    data, sr = read_audio(source)
    check_seed(seed)
    kit = load_kit(bases) if bases is not None and sidecar(bases).exists() else None
    W: np.ndarray | None
    H: np.ndarray | None
    if kit is not None:  # the buffer is read once; the kit's own check covers its rate
        W, b_rate = kit.bases, None
    else:
        W, b_rate = read_buffer(bases, "bases") if bases is not None else (None, None)
    H, a_rate = read_buffer(activations, "activations") if activations is not None else (None, None)
    b_mode = _mode("bases_mode", bases_mode, bases is not None, "bases")
    a_mode = _mode("act_mode", act_mode, activations is not None, "activations")
    settings = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {source}")
    check_buffer_rate(bases, b_rate, sr, settings.fft_size, "bases")
    check_buffer_rate(activations, a_rate, sr, settings.hop_size, "activations")
    s0, n_sel = span("start_frame", "num_frames", start_frame, num_frames, data.shape[0], "samples")
    c0, chans = span("start_chan", "num_chans", start_chan, num_chans, data.shape[1], "channel(s)")
    k = _infer_components(components, W, H, chans)
    extra = as_int("extra_components", extra_components)
    smooth_s = as_float("smooth_activations", smooth_activations, low=0.0)
    smooth_frames = round(smooth_s * sr / settings.hop_size) if smooth_s else 0
    if smooth_method == "median" and smooth_frames > 1 and smooth_frames % 2 == 0:
        smooth_frames += 1  # a centred median needs an odd length
    big = resynth and n_sel * chans * max(1, k + max(0, extra)) * 4 > SCRATCH_ABOVE_BYTES
    prep = prepare(data, components=k, iterations=iterations, window_size=settings.window_size,
                   hop_size=settings.hop_size, fft_size=settings.fft_size, seed=seed, bases=W, bases_mode=b_mode,
                   activations=H, act_mode=a_mode, resynth=resynth, start_frame=s0, num_frames=n_sel,
                   start_chan=c0, num_chans=chans, precision=precision, resynth_streamed=big,
                   extra_components=extra, smooth_frames=smooth_frames, smooth_method=smooth_method,
                   max_memory=_memory(max_memory))
    plan = prep.plan  # every size checked: only now build anything per component
    labels = stem_labels(kit.labels if kit is not None and len(kit.labels) == k else None, k, extra)
    names = output_names(plan.components, resynth, plot, labels, channels=plan.num_channels)
    # The folder is checked and locked before the work, not after; files appear only at the end.
    with OutputSet(out_dir, names, force=force) as out:
        t_read = time.perf_counter() - t0
        sink = out.scratch((plan.num_samples, plan.num_channels * plan.components)) if big else None
        t1 = time.perf_counter()
        res = run(prep, progress, track_divergence=True, resynth_out=sink)
        timings = {"read_seconds": round(t_read, 4), "decompose_seconds": round(time.perf_counter() - t1, 4)}
        info = write_decomposition(res, sr, out, plot, str(source), timings, labels)
    return JobResult(list(out.written), info, res)


def demo_job(out_dir: str | os.PathLike[str] = "bufnmf-demo", *, force: bool = False,
             progress: ProgressCallback | None = None) -> JobResult:
    """Synthesise a 4 s drum loop and decompose it into 3 components (no files needed).

    The summary adds ``"matches"``: for each component, the synthetic drum it correlates with best
    and the correlation.
    """
    from ..clients.bufnmf import decompose
    from ..demo import DRUMS, drum_loop

    sr = 44100
    with OutputSet(out_dir, output_names(3, True, True, extra=["demo_loop.wav"]), force=force) as out:
        mix, stems, _ = drum_loop(seconds=4.0, sr=sr)
        t1 = time.perf_counter()
        res = decompose(mix, components=3, iterations=150, seed=2, progress=progress, track_divergence=True)
        timings = {"decompose_seconds": round(time.perf_counter() - t1, 4)}
        assert res.resynth is not None
        corr = np.array([[np.corrcoef(res.resynth[:, k], stems[d])[0, 1] for d in DRUMS] for k in range(3)])
        matches = [{"component": k + 1, "drum": DRUMS[int(np.argmax(corr[k]))], "r": round(float(corr[k].max()), 4)}
                   for k in range(3)]
        info = write_decomposition(res, sr, out, True, "demo_loop.wav (synthesised)", timings,
                                   extra={"demo_loop.wav": (mix[:, None], sr)}, more_summary={"matches": matches})
    return JobResult(list(out.written), info, res)


# ----------------------------------------------------------------------------------------------
# kits and tracking


def learn_job(examples: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
              components_per_file: int = 1, labels: Sequence[str] | None = None, merge_labels: bool = False,
              iterations: int = 100, seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, channel: Channel = None, max_memory: int | str | None = None,
              force: bool = False) -> JobResult:
    """Learn a kit from example files and write it (``.wav``/``.npy`` buffer plus ``.json`` sidecar).

    ``max_memory``: bytes or a size like "4G" that no example's decomposition may need (default: the
    memory available now). The summary's ``durations`` are the examples' lengths in seconds.
    """
    out = Path(output)
    if out.suffix.lower() not in (".wav", ".npy"):
        raise BufNMFError(f"kit output {out} must end in .wav or .npy")
    OutputSet(out.parent, [out.name, sidecar(out).name], force=force).check()
    settings = fft_for(None, window_size, hop_size, fft_size, None)
    sounds: list[object] = []
    durations: list[float] = []
    rate: int | None = None
    for i, ex in enumerate(examples):
        data, sr = read_audio(ex, f"example {i + 1}")
        sounds.append(pick_channel(data, channel, f"example {ex}"))
        durations.append(data.shape[0] / sr)
        if rate is not None and sr != rate:
            raise BufNMFError(f"the examples have different sample rates ({rate} and {sr} Hz): resample them "
                              "to one rate")
        rate = sr
    names = list(labels) if labels else [Path(e).stem for e in examples]
    kit = learn_bases(sounds, components_per_file=components_per_file, labels=names, merge_labels=merge_labels,
                      window_size=settings.window_size, hop_size=settings.hop_size, fft_size=settings.fft_size,
                      iterations=iterations, seed=seed, sample_rate=rate, max_memory=_memory(max_memory))
    kit.sources = [str(e) for e in examples]
    written = save_kit(kit, out, force=force)
    info = {"bufnmf_version": __version__, "labels": kit.labels, "window_size": kit.window_size,
            "hop_size": kit.hop_size, "fft_size": kit.fft_size, "sample_rate": kit.sample_rate, "seed": kit.seed,
            "examples": [str(e) for e in examples], "durations": durations, "outputs": [p.name for p in written]}
    return JobResult(written, info, kit)


def stack_kits_job(kits: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
                   merge_labels: bool = False, force: bool = False) -> JobResult:
    """Stack kits written by :func:`learn_job` into one kit (``.wav``/``.npy`` plus ``.json``).

    Kits learnt from one example each, with one seed and one set of FFT settings (e.g. in parallel,
    by ``bufnmf batch learn``), stack into exactly the kit :func:`learn_job` learns from all the
    examples at once; ``merge_labels`` averages the templates that share a label.
    """
    out = Path(output)
    if out.suffix.lower() not in (".wav", ".npy"):
        raise BufNMFError(f"kit output {out} must end in .wav or .npy")
    OutputSet(out.parent, [out.name, sidecar(out).name], force=force).check()
    kit = stack_kits([load_kit(k) for k in kits], merge_labels=merge_labels)
    written = save_kit(kit, out, force=force)
    info = {"bufnmf_version": __version__, "labels": kit.labels, "window_size": kit.window_size,
            "hop_size": kit.hop_size, "fft_size": kit.fft_size, "sample_rate": kit.sample_rate, "seed": kit.seed,
            "examples": kit.sources, "outputs": [p.name for p in written]}
    return JobResult(written, info, kit)


def _note_overrides(notes: Mapping[str, int] | Sequence[str] | None) -> dict[str, int]:
    if notes is None:
        return {}
    if isinstance(notes, Mapping):
        return {str(k): as_int(f"note {k}", v) for k, v in notes.items()}
    overrides: dict[str, int] = {}
    for item in notes:
        if "=" not in item:
            raise BufNMFError(f"--note {item!r} must look like LABEL=NUMBER, e.g. kick=36")
        lab, num = item.split("=", 1)
        try:
            overrides[lab] = int(num)
        except ValueError:
            raise BufNMFError(f"--note {lab} must be a whole number, got {num!r}") from None
    return overrides


def track_job(source: str | os.PathLike[str], bases: str | os.PathLike[str], output: str | os.PathLike[str], *,
              midi: str | os.PathLike[str] | None = None, notes: Mapping[str, int] | Sequence[str] | None = None,
              threshold: float = 0.3, min_gap: float = 0.05, smooth: float = 0.0, release: float = 0.1,
              iterations: int = 100, seed: int = -1, extra_components: int = 0, window_size: int | None = None,
              hop_size: int | None = None, fft_size: int | None = None, channel: Channel = None,
              max_memory: int | str | None = None, force: bool = False) -> JobResult:
    """Track a kit's templates in an audio file: events as CSV or JSON (by extension), and MIDI.

    ``max_memory``: bytes or a size like "4G" that the decomposition may not exceed (default: the
    memory available now).
    """
    out = Path(output)
    fmt = output_format(out)
    overrides = _note_overrides(notes)
    outputs = [out] + ([Path(midi)] if midi is not None else [])
    for p in outputs:
        OutputSet(p.parent, [p.name], force=force).check()
    data, sr = read_audio(source)
    mono = pick_channel(data, channel)
    kit = load_kit(bases)
    settings = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {source}")
    events = track(mono, kit, sample_rate=sr, threshold=threshold, min_gap=min_gap, smooth=smooth, release=release,
                   iterations=iterations, seed=seed, window_size=settings.window_size,
                   hop_size=settings.hop_size, fft_size=settings.fft_size, extra_components=extra_components,
                   max_memory=_memory(max_memory))
    midi_bytes = events_to_midi(events, overrides) if midi is not None else None
    with OutputSet(out.parent, [out.name], force=force) as o1:
        o1.write_bytes(out.name, events_to_text(events, fmt).encode())
    written = list(o1.written)
    if midi is not None and midi_bytes is not None:
        mp = Path(midi)
        with OutputSet(mp.parent, [mp.name], force=force) as o2:
            o2.write_bytes(mp.name, midi_bytes)
        written += o2.written
    counts = {lab: sum(e.label == lab for e in events) for lab in kit.labels}
    info = {"bufnmf_version": __version__, "source": str(source), "sample_rate": sr, "channels": data.shape[1],
            "duration": data.shape[0] / sr, "kit": str(bases), "seed": events.seed, "events": len(events),
            "components": len(kit.labels) + int(extra_components), "counts": counts,
            "window_size": settings.window_size, "hop_size": settings.hop_size, "fft_size": settings.fft_size,
            "outputs": [str(p) for p in written]}
    return JobResult(written, info, events)


# ----------------------------------------------------------------------------------------------
# the rest of the family


def stft_job(source: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, padding: int = 1,
             window_size: int | None = None, hop_size: int | None = None, fft_size: int | None = None,
             channel: Channel = None, force: bool = False) -> JobResult:
    """BufSTFT of one channel: ``magnitude``/``phase`` buffers (.wav where WAV can hold them, .npy) and ``stft.json``.

    """
    data, sr = read_audio(source)
    x = pick_channel(data, channel)
    s = fft_for(None, window_size, hop_size, fft_size, None)
    names = ["magnitude.npy", "phase.npy", "stft.json"]
    wav_ok = s.bins <= WAV_MAX_CHANNELS  # libsndfile's channel limit: larger FFTs are written as .npy only
    if wav_ok:
        names = ["magnitude.wav", "phase.wav", *names]
    OutputSet(out_dir, names, force=force).check()
    mag, ph = stft(x, s.window_size, s.hop_size, s.fft_size, padding)
    info = {"bufnmf_version": __version__, "source": str(source), "sample_rate": sr, "num_samples": int(x.size),
            "window_size": s.window_size, "hop_size": s.hop_size, "fft_size": s.fft_size, "padding": padding,
            "frames": int(mag.shape[0]), "bins": int(mag.shape[1]),
            "layout": "frames (hops) x channels (bins), as FluCoMa's BufSTFT", "wav_buffers": wav_ok}
    with OutputSet(out_dir, names, force=force) as out:
        if wav_ok:
            out.write_audio("magnitude.wav", mag, sr / s.hop_size)
            out.write_audio("phase.wav", ph, sr / s.hop_size)
        out.write_npy("magnitude.npy", mag.astype(np.float32))
        out.write_npy("phase.npy", ph.astype(np.float32))
        out.write_json("stft.json", {k: v for k, v in info.items() if k != "wav_buffers"})
    return JobResult(list(out.written), info, (mag, ph))


def istft_job(folder: str | os.PathLike[str], output: str | os.PathLike[str], *, force: bool = False) -> JobResult:
    """The inverse of :func:`stft_job`: a folder it wrote back to audio."""
    src, out_path = Path(folder), Path(output)
    meta_path = src / "stft.json"
    if not meta_path.is_file():
        raise BufNMFError(f"{src} has no stft.json: give a folder written by 'bufnmf stft'")
    try:
        meta = json.loads(meta_path.read_text())
        w, h, f, pad, n, sr = (int(meta[k]) for k in ("window_size", "hop_size", "fft_size", "padding",
                                                      "num_samples", "sample_rate"))
    except (ValueError, KeyError, TypeError) as exc:
        raise BufNMFError(f"{meta_path} is not valid ({exc}): run 'bufnmf stft' again") from None
    OutputSet(out_path.parent, [out_path.name], force=force).check()
    mag, _ = read_buffer(src / "magnitude.npy", "magnitude")
    ph, _ = read_buffer(src / "phase.npy", "phase")
    y = istft(mag, ph, w, h, f, pad, n)
    with OutputSet(out_path.parent, [out_path.name], force=force) as out:
        out.write_audio(out_path.name, y[:, None], sr)
    return JobResult(list(out.written), {"sample_rate": sr, "num_samples": int(y.size)}, y)


def seed_job(source: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, components: int = -1,
             coverage: float = 0.5, method: str = "nndsvd", seed: int = -1, window_size: int | None = None,
             hop_size: int | None = None, fft_size: int | None = None, channel: Channel = None,
             force: bool = False) -> JobResult:
    """BufNMFSeed: NNDSVD starting bases and activations, as buffers and ``seed.json``."""
    names = ["bases.wav", "activations.wav", "bases.npy", "activations.npy", "seed.json"]
    OutputSet(out_dir, names, force=force).check()
    data, sr = read_audio(source)
    s = fft_for(None, window_size, hop_size, fft_size, None)
    res = nmf_seed(pick_channel(data, channel), components, coverage, method, s.window_size, s.hop_size,
                   s.fft_size, seed)
    info = {"bufnmf_version": __version__, "source": str(source), "sample_rate": sr, "components": res.components,
            "coverage": res.coverage, "method": method, "seed": res.seed, "window_size": res.window_size,
            "hop_size": res.hop_size, "fft_size": res.fft_size}
    with OutputSet(out_dir, names, force=force) as out:
        out.write_audio("bases.wav", res.bases, sr / res.fft_size)
        out.write_audio("activations.wav", res.activations, sr / res.hop_size)
        out.write_npy("bases.npy", res.bases)
        out.write_npy("activations.npy", res.activations)
        out.write_json("seed.json", info)
    return JobResult(list(out.written), info, res)


def match_job(source: str | os.PathLike[str], bases: str | os.PathLike[str], output: str | os.PathLike[str], *,
              iterations: int = 10, seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, channel: Channel = None, force: bool = False) -> JobResult:
    """NMFMatch over a file: each frame's activation of each basis, as CSV or JSON (by extension)."""
    out_path = Path(output)
    fmt = output_format(out_path)
    OutputSet(out_path.parent, [out_path.name], force=force).check()
    data, sr = read_audio(source)
    kit = load_kit(bases)
    s = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {source}")
    acts = match(pick_channel(data, channel), kit.bases, iterations, seed, s.window_size, s.hop_size, s.fft_size)
    times = (np.arange(acts.shape[0]) + 1) * s.hop_size / sr  # each frame is reported when its last sample arrives
    if fmt == "json":
        text = json.dumps({"labels": kit.labels, "hop_seconds": s.hop_size / sr, "seed": acts.seed,
                           "time": times.round(6).tolist(), "activations": np.asarray(acts).round(8).tolist()}) + "\n"
    else:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["time", *kit.labels])
        for t, row in zip(times, acts, strict=True):
            writer.writerow([f"{t:.6f}", *(f"{v:.8g}" for v in row)])
        text = buf.getvalue()
    with OutputSet(out_path.parent, [out_path.name], force=force) as out:
        out.write_bytes(out_path.name, text.encode())
    info = {"bufnmf_version": __version__, "source": str(source), "sample_rate": sr, "seed": acts.seed,
            "frames": int(acts.shape[0]), "labels": kit.labels}
    return JobResult(list(out.written), info, acts)


def filter_job(source: str | os.PathLike[str], bases: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
               iterations: int = 10, seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
               fft_size: int | None = None, channel: Channel = None, force: bool = False) -> JobResult:
    """NMFFilter over a file: one mono file per basis (latency removed), summing to the source."""
    data, sr = read_audio(source)
    x = pick_channel(data, channel)
    kit = load_kit(bases)
    labels = stem_labels(kit.labels, len(kit.labels), 0) or []
    names = [f"component_{lab}.wav" for lab in labels]
    OutputSet(out_dir, names, force=force).check()
    s = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {source}")
    parts = nmf_filter(x, kit.bases, iterations, seed, s.window_size, s.hop_size, s.fft_size)
    with OutputSet(out_dir, names, force=force) as out:
        for k, name in enumerate(names):
            out.write_audio(name, parts[:, k : k + 1], sr)
    return JobResult(list(out.written), {"sample_rate": sr, "seed": parts.seed, "labels": kit.labels}, parts)


def cross_job(source: str | os.PathLike[str], target: str | os.PathLike[str], output: str | os.PathLike[str], *,
              time_sparsity: int = 7, polyphony: int = 10, continuity: int = 7, iterations: int = 50,
              seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, max_memory: int | str | None = None, channel: Channel = None,
              force: bool = False) -> JobResult:
    """BufNMFCross: rebuild ``target`` from the sound of ``source``, written as one audio file."""
    out_path = Path(output)
    OutputSet(out_path.parent, [out_path.name], force=force).check()
    src, sr = read_audio(source, "source")
    tgt, sr_t = read_audio(target, "target")
    if sr != sr_t:
        raise BufNMFError(f"source {source} is at {sr} Hz but target {target} is at {sr_t} Hz: resample one of them")
    s = fft_for(None, window_size, hop_size, fft_size, None)
    y = cross(pick_channel(src, channel, "source"), pick_channel(tgt, channel, "target"), time_sparsity, polyphony,
              continuity, iterations, seed, s.window_size, s.hop_size, s.fft_size, max_memory=_memory(max_memory))
    with OutputSet(out_path.parent, [out_path.name], force=force) as out:
        out.write_audio(out_path.name, np.asarray(y)[:, None], sr)
    return JobResult(list(out.written), {"sample_rate": sr, "seed": y.seed, "seconds": y.size / sr}, y)


def morph_job(source_bases: str | os.PathLike[str], target_bases: str | os.PathLike[str],
              activations: str | os.PathLike[str], output: str | os.PathLike[str], *,
              interpolation: float | Sequence[float] = 0.5, autoassign: bool = True, sample_rate: int | None = None,
              seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, force: bool = False) -> JobResult:
    """NMFMorph offline from three buffers, written as one audio file.

    The FFT settings and the rate come from the ``summary.json`` beside the source bases (a folder
    written by :func:`decompose_job`) unless given; else window = fft = the bases' FFT size, and 44100 Hz.
    """
    out_path = Path(output)
    OutputSet(out_path.parent, [out_path.name], force=force).check()
    S, _ = read_buffer(source_bases, "source bases")
    T, _ = read_buffer(target_bases, "target bases")
    H, _ = read_buffer(activations, "activations")
    summary_path = Path(source_bases).parent / "summary.json"
    meta: dict[str, Any] = {}
    if summary_path.is_file():
        try:
            loaded = json.loads(summary_path.read_text())
            meta = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            meta = {}
    params = meta.get("parameters", {}) if isinstance(meta.get("parameters"), dict) else {}
    if window_size is None and hop_size is None and fft_size is None and "fft_size" in params:
        window, hop, fft = params["window_size"], params["hop_size"], params["fft_size"]
    else:
        window = window_size if window_size is not None else (S.shape[0] - 1) * 2
        hop, fft = (-1 if hop_size is None else hop_size), (-1 if fft_size is None else fft_size)
    sr = as_int("sample_rate", sample_rate if sample_rate is not None else meta.get("sample_rate", 44100))
    curve = interpolation if isinstance(interpolation, (int, float)) else list(interpolation)
    y = morph(S, T, H, curve, autoassign, seed, window, hop, fft)
    with OutputSet(out_path.parent, [out_path.name], force=force) as out:
        out.write_audio(out_path.name, np.asarray(y)[:, None], sr)
    return JobResult(list(out.written), {"sample_rate": sr, "seed": y.seed, "seconds": y.size / sr}, y)


__all__ = [
    "SCRATCH_ABOVE_BYTES", "JobResult", "cross_job", "decompose_job", "demo_job", "filter_job", "istft_job",
    "learn_job", "match_job", "morph_job", "output_names", "pick_channel", "seed_job", "stack_kits_job",
    "stem_labels", "stft_job", "summary", "track_job", "write_decomposition",
]
