"""Jobs: "decompose this file into this folder", "learn a kit from these files", "track this file", ...

Each job validates everything first, then runs, then writes its outputs all together
(:class:`bufnmf.io.outputs.OutputSet`: temporary names, renamed at the end, under a folder
lock) and returns a :class:`JobResult` with the paths it wrote and its summary. The command
line, the web page and the batch runner are thin layers over these functions: they parse
their own input, call a job and show its result.

What every job does the same way (so every front end gets it):

- sources are read only as far as needed (:func:`bufnmf.io.audio.read_audio`: the selected
  frames and channels, in blocks); ``-`` is standard input;
- outputs go through one :class:`OutputSet` per run, with the run's inputs named (a kit's sidecar
  too), so an output can never replace an input; folder outputs are run folders (one run per
  folder, ``force`` replaces the earlier run's files); single-file outputs may be ``-``
  (standard output);
- audio outputs take the format of their extension, or ``format``/``subtype``.

Common keyword arguments:
    force: replace existing outputs (else refuse, naming them); in a folder output, the earlier
        run's files are removed.
    progress: ``progress(done, total)`` during the long part; returning False cancels the job
        (:class:`bufnmf.Cancelled`), leaving nothing written.
    channel: for the jobs of mono objects, which channel of a multichannel source: None (the
        source must be mono), an index (0-based) or "mix" (the mean of the channels).
    format, subtype: audio outputs' format ("wav", "flac", "ogg", "aiff", ... see
        :data:`bufnmf.io.outputs.AUDIO_FORMATS`) and libsndfile subtype; default from the output's
        extension, float32 WAV for folder outputs. For ``track_job``/``match_job``: "csv" or "json".
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..checks import as_float, as_int, check_seed, span
from ..clients.bufnmf import DecomposeResult, prepare, run
from ..clients.bufstft import istft, stft
from ..clients.common import mixdown, parse_mode
from ..clients.nmfcross import cross
from ..clients.nmfmatch import match, nmf_filter
from ..clients.nmfmorph import morph
from ..clients.nmfseed import nmf_seed
from ..clients.sines import TRACK_DTYPE, SinesResult, kernels_ready, resolve_sines_config, sines
from ..dsp.fft import FFTSettings, resolve_fft_settings
from ..errors import BufNMFError
from ..io.audio import AudioInfo, audio_info, display_name, is_stdin, read_audio, read_buffer
from ..io.events import events_to_midi, events_to_text, output_format
from ..io.outputs import WAV_MAX_CHANNELS, OutputSet, audio_extension, check_audio_output
from ..resources import memory_limit, page_releaser
from .kits import Kit, check_method, learn_bases, load_kit, save_kit, sidecar, stack_kits
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


def read_channel(source: str | os.PathLike[str], channel: Channel, what: str = "source", *, start_frame: int = 0,
                 num_frames: int = -1, info: AudioInfo | None = None) -> tuple[np.ndarray, int]:
    """One channel of an audio file for a mono object, by the jobs' channel rule, reading only it
    (and only the frames ``start_frame .. + num_frames``, -1: to the end).

    ``info``: the file's :func:`bufnmf.io.audio.audio_info`, when the caller has it already.

    Returns ``(samples, sample_rate)``: (samples,) float32 (float64 for ``channel="mix"``, the mean).
    """
    if info is None:
        info = audio_info(source, what)
    if channel is None:
        if info.channels != 1:
            raise BufNMFError(f"the {what} has {info.channels} channels but this process takes one: choose a "
                              "channel (--start-chan N; channel=N in the library) or mix them down (--mixdown; "
                              "channel='mix')")
        cols: int | str = 0
    elif isinstance(channel, str):
        if channel != "mix":
            raise BufNMFError(f"channel must be a channel index or 'mix', got {channel!r}")
        cols = "mix"
    else:
        cols = as_int("channel", channel)
        if not 0 <= cols < info.channels:
            raise BufNMFError(f"channel {cols} is outside the {what}: it has {info.channels} channel(s) "
                              f"(0..{info.channels - 1})")
    data, sr = read_audio(source, what, start_frame=start_frame, num_frames=num_frames, channels=cols)
    return data[:, 0], sr


def stem_labels(kit_labels: Sequence[str] | None, k: int, extra: int) -> list[str] | None:
    """File-safe, unique stem labels (at most 100 characters): the kit's, then extra_1..; None for
    plain numbering."""
    if kit_labels is None and extra <= 0:
        return None
    base = list(kit_labels) if kit_labels is not None else [str(i + 1) for i in range(k)]
    out: list[str] = []
    for lab in [*base, *(f"extra_{j + 1}" for j in range(max(0, extra)))]:
        safe = re.sub(r"[^A-Za-z0-9_.#+-]+", "_", lab).strip("._")[:100].strip("._") or "component"
        name, n = safe, 2
        while name in out:
            name, n = f"{safe}_{n}", n + 1
        out.append(name)
    return out


def output_names(components: int, resynth: bool, plot: bool, labels: Sequence[str] | None = None,
                 extra: Sequence[str] = (), channels: int = 1, ext: str = ".wav", templates: bool = False) -> list[str]:
    """File names a decomposition writes, in writing order (``ext``: the components' audio format).

    Buffers wider than WAV allows (``channels * components`` > 1024) are written as .npy only.
    ``templates``: model "nmfd"'s templates are written too, as ``templates.npy``.
    """
    stems = list(labels) if labels else [str(k + 1) for k in range(components)]
    names = [*extra, *(f"component_{s}{ext}" for s in stems if resynth)]
    if channels * components <= WAV_MAX_CHANNELS:
        names += ["bases.wav", "activations.wav"]
    names += ["bases.npy", "activations.npy", *(["templates.npy"] if templates else []), "summary.json"]
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
        "model": res.model.describe(),
        "labels": list(labels) if labels else [f"component {k + 1}" for k in range(res.components)],
        "shapes": {
            "bases": list(res.bases.shape), "activations": list(res.activations.shape),
            "resynth": list(res.resynth.shape) if res.resynth is not None else None,
        },
        "buffer_sample_rates": {"bases": sample_rate / res.fft_size, "activations": sample_rate / res.hop_size},
        "activation_scale": [float(v) for v in res.activation_scale],
        "divergence": [[float(d) for d in ch] for ch in res.divergences],
        "timings": dict(timings),
        "outputs": list(outputs),
    }


def write_decomposition(res: DecomposeResult, sample_rate: int, out: OutputSet, plot: bool, source_name: str,
                        timings: Mapping[str, float], labels: Sequence[str] | None = None,
                        extra: Mapping[str, tuple[np.ndarray, int]] | None = None,
                        more_summary: Mapping[str, Any] | None = None, *, format: str | None = None,
                        subtype: str | None = None) -> dict[str, Any]:
    """Write the outputs of a decomposition into ``out`` (committed when its ``with`` block ends).

    ``extra``: more audio files to write (name -> (samples, rate)); ``more_summary``: more entries
    for the summary; ``format``/``subtype``: the audio files' format (float32 WAV by default; the
    buffers stay float32 WAV, as FluCoMa loads them). Returns the summary written as ``summary.json``.
    """
    K, C = res.components, res.num_channels
    names = output_names(K, res.resynth is not None, plot, labels, list(extra or {}), C, audio_extension(format),
                         templates=res.templates is not None)
    comp_names = [n for n in names if n.startswith("component_")]
    t0 = time.perf_counter()
    for name, (data, sr) in (extra or {}).items():
        out.write_audio(name, data, sr, format=format, subtype=subtype)
    if res.resynth is not None:
        release = page_releaser(res.resynth)  # a memory-mapped resynthesis: keep few pages resident
        for k, name in enumerate(comp_names):  # columns chan * K + k
            out.write_audio(name, res.resynth[:, k::K], sample_rate, release, format=format, subtype=subtype)
    if "bases.wav" in names:
        out.write_audio("bases.wav", res.bases, sample_rate / res.fft_size)
        out.write_audio("activations.wav", res.activations, sample_rate / res.hop_size)
    out.write_npy("bases.npy", res.bases)
    out.write_npy("activations.npy", res.activations)
    if res.templates is not None:
        out.write_npy("templates.npy", res.templates)
    if plot:
        from ..plot import plot_activations, plot_bases

        out.write_with("bases.png", lambda p: plot_bases(res, sample_rate, p, labels))
        out.write_with("activations.png", lambda p: plot_activations(res, sample_rate, p, labels))
    timings = {**timings, "write_seconds": round(time.perf_counter() - t0, 4)}
    info = {**summary(res, sample_rate, source_name, timings, names, labels), **(more_summary or {})}
    out.write_json("summary.json", info)
    return info


def _memory(max_memory: int | str | None) -> int | None:
    return memory_limit(max_memory)


def _with_sidecar(path: str | os.PathLike[str] | None) -> list[str | os.PathLike[str]]:
    """A buffer or kit the run reads, with its sidecar (both are inputs no output may replace)."""
    if path is None or is_stdin(path):
        return []
    return [path, sidecar(path)]


def _single(output: str | os.PathLike[str]) -> Path:
    """A single-file output: a path, or ``-`` for standard output."""
    return Path(os.fspath(output))


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
    plan_only: bool = False,
    format: str | None = None,
    subtype: str | None = None,
    model: str = "flucoma",
    beta: float | None = None,
    template_frames: int | None = None,
    warm_iterations: int | None = None,
    sparsity: float | None = None,
    continuity: float | None = None,
) -> JobResult:
    """Decompose an audio file into ``out_dir``: ``component_<k>.wav``, FluCoMa buffers, ``summary.json``.

    Args:
        source: an audio file (``-``: standard input). out_dir: the folder for the outputs
            (created if needed; it holds this run only: ``force`` replaces an earlier run's files).
        components: K (default: 1, or the columns per channel of the bases/activations buffer).
        bases, activations: buffer files (.wav/.npy, FluCoMa layout), or a kit from
            :func:`learn_job` (its labels name the stems and its FFT settings are used unless given).
        bases_mode, act_mode: "none", "seed" or "fixed" (default "seed" when a buffer is given).
        start_frame, num_frames, start_chan, num_chans: the selection; only it is read.
        smooth_activations: seconds of activation smoothing before resynthesis.
        max_memory: bytes or a size like "4G" (default: the memory available now); reading the
            selection counts.
        plan_only: check everything and plan the run (:func:`bufnmf.clients.bufnmf.prepare`: shapes,
            seed, memory estimate), then stop: nothing is read, run or written. ``summary`` then holds
            ``memory_bytes``, ``memory`` (the estimate by part), ``components``, ``channels``,
            ``samples``, ``bins``, ``frames`` and ``outputs`` (the names a run would write); ``result`` is the plan.
        format, subtype: the components' audio format (default float32 WAV).
        model, beta, template_frames, warm_iterations, sparsity, continuity: the factorisation model
            (as :func:`bufnmf.decompose`); model "nmfd" also writes ``templates.npy`` (bins,
            channels * components, template_frames), and ``summary.json`` records the model.
        The rest: as :func:`bufnmf.decompose`.

    Returns:
        :class:`JobResult` (``result`` is the :class:`bufnmf.DecomposeResult`).
    """
    t0 = time.perf_counter()
    info = audio_info(source)
    check_seed(seed)
    kit = load_kit(bases) if bases is not None and sidecar(bases).exists() else None
    W: np.ndarray | None
    H: np.ndarray | None
    if kit is not None:  # the buffer is read once; the kit's own check covers its rate
        # one basis per template: an NMFD kit's templates (several frames each) summed over their frames
        W, b_rate = kit.spectra, None
    else:
        W, b_rate = read_buffer(bases, "bases") if bases is not None else (None, None)
    H, a_rate = read_buffer(activations, "activations") if activations is not None else (None, None)
    b_mode = _mode("bases_mode", bases_mode, bases is not None, "bases")
    a_mode = _mode("act_mode", act_mode, activations is not None, "activations")
    sr = info.sample_rate
    settings = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {info.name}")
    check_buffer_rate(bases, b_rate, sr, settings.fft_size, "bases")
    check_buffer_rate(activations, a_rate, sr, settings.hop_size, "activations")
    s0, n_sel = span("start_frame", "num_frames", start_frame, num_frames, info.frames, "samples")
    c0, chans = span("start_chan", "num_chans", start_chan, num_chans, info.channels, "channel(s)")
    k = _infer_components(components, W, H, chans)
    extra = as_int("extra_components", extra_components)
    smooth_s = as_float("smooth_activations", smooth_activations, low=0.0)
    if smooth_s > n_sel / sr:
        raise BufNMFError(f"smooth_activations {smooth_s:g} s is longer than the selection ({n_sel / sr:.3g} s): "
                          "use less, or 0 for no smoothing")
    smooth_frames = round(smooth_s * sr / settings.hop_size) if smooth_s else 0
    if smooth_method == "median" and smooth_frames > 1 and smooth_frames % 2 == 0:
        smooth_frames += 1  # a centred median needs an odd length
    big = resynth and n_sel * chans * max(1, k + max(0, extra)) * 4 > SCRATCH_ABOVE_BYTES
    # Every check and the memory estimate (reading the selection included) on a stand-in of the
    # selection's shape, which costs no memory: a run that cannot work is refused before reading.
    stand_in = np.broadcast_to(np.zeros(1, np.float32), (n_sel, chans))
    checked = prepare(stand_in, components=k, iterations=iterations, window_size=settings.window_size,
                      hop_size=settings.hop_size, fft_size=settings.fft_size, seed=seed, bases=W, bases_mode=b_mode,
                      activations=H, act_mode=a_mode, resynth=resynth, precision=precision, resynth_streamed=big,
                      extra_components=extra, smooth_frames=smooth_frames, smooth_method=smooth_method,
                      max_memory=_memory(max_memory), held_source=n_sel * chans * 4, model=model, beta=beta,
                      template_frames=template_frames, warm_iterations=warm_iterations, sparsity=sparsity,
                      continuity=continuity)
    plan = replace(checked.plan, start_frame=s0, start_chan=c0)  # every size checked: only now build anything
    labels = stem_labels(kit.labels if kit is not None and len(kit.labels) == k else None, k, extra)
    names = output_names(plan.components, resynth, plot, labels, channels=plan.num_channels,
                         ext=audio_extension(format), templates=plan.model.name == "nmfd")
    if resynth:
        check_audio_output(names[0], plan.num_channels, sr, format, subtype)
    out = OutputSet(out_dir, names, force=force, inputs=[source, *_with_sidecar(bases), activations],
                    run_folder=True, job="decompose")
    out.check()
    if plan_only:
        return JobResult([], {"memory_bytes": plan.memory.total, "memory": plan.memory.describe(),
                              "components": plan.components, "channels": plan.num_channels,
                              "samples": plan.num_samples, "bins": plan.bins, "frames": plan.hops,
                              "sample_rate": sr, "outputs": names}, plan)
    data, _ = read_audio(source, start_frame=s0, num_frames=n_sel, channels=slice(c0, c0 + chans))
    prep = replace(checked, plan=plan, data=data, sample_rate=sr)
    # The folder is checked and locked before the work, not after; files appear only at the end.
    with out:
        t_read = time.perf_counter() - t0
        sink = out.scratch((plan.num_samples, plan.num_channels * plan.components)) if big else None
        t1 = time.perf_counter()
        res = run(prep, progress, track_divergence=True, resynth_out=sink)
        timings = {"read_seconds": round(t_read, 4), "decompose_seconds": round(time.perf_counter() - t1, 4)}
        info_out = write_decomposition(res, sr, out, plot, display_name(source), timings, labels, format=format,
                                       subtype=subtype)
    return JobResult(list(out.written), info_out, res)


def demo_job(out_dir: str | os.PathLike[str] = "bufnmf-demo", *, force: bool = False,
             progress: ProgressCallback | None = None, format: str | None = None,
             subtype: str | None = None) -> JobResult:
    """Synthesise a 4 s drum loop and decompose it into 3 components (no files needed).

    The summary adds ``"matches"``: for each component, the synthetic drum it correlates with best
    and the correlation. ``format``/``subtype``: the audio files' format (default float32 WAV).
    """
    from ..clients.bufnmf import decompose
    from ..demo import DRUMS, drum_loop

    sr = 44100
    ext = audio_extension(format)
    check_audio_output(f"demo_loop{ext}", 1, sr, format, subtype)
    names = output_names(3, True, True, extra=[f"demo_loop{ext}"], ext=ext)
    with OutputSet(out_dir, names, force=force, run_folder=True, job="demo") as out:
        mix, stems, _ = drum_loop(seconds=4.0, sr=sr)
        t1 = time.perf_counter()
        res = decompose(mix, components=3, iterations=150, seed=2, progress=progress, track_divergence=True)
        timings = {"decompose_seconds": round(time.perf_counter() - t1, 4)}
        assert res.resynth is not None
        corr = np.array([[np.corrcoef(res.resynth[:, k], stems[d])[0, 1] for d in DRUMS] for k in range(3)])
        matches = [{"component": k + 1, "drum": DRUMS[int(np.argmax(corr[k]))], "r": round(float(corr[k].max()), 4)}
                   for k in range(3)]
        info = write_decomposition(res, sr, out, True, f"demo_loop{ext} (synthesised)", timings,
                                   extra={f"demo_loop{ext}": (mix[:, None], sr)}, more_summary={"matches": matches},
                                   format=format, subtype=subtype)
    return JobResult(list(out.written), info, res)


# ----------------------------------------------------------------------------------------------
# kits and tracking


def learn_job(examples: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
              components_per_file: int = 1, labels: Sequence[str] | None = None, merge_labels: bool = False,
              iterations: int = 100, seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, channel: Channel = None, max_memory: int | str | None = None,
              force: bool = False, method: str = "auto", frames: int | None = None) -> JobResult:
    """Learn a kit from example files and write it (``.wav``/``.npy`` buffer plus ``.json`` sidecar).

    ``method`` and ``frames``: as :func:`bufnmf.learn_bases` ("auto": "pitched" when every label is a
    note name, else "percussive"); FFT settings left out are the method's. ``max_memory``: bytes or
    a size like "4G" that no example's decomposition may need (default: the memory available now).
    The summary's ``durations`` are the examples' lengths in seconds.
    """
    out = Path(output)
    examples = list(examples)
    if out.suffix.lower() not in (".wav", ".npy"):
        raise BufNMFError(f"kit output {out} must end in .wav or .npy")
    OutputSet.files([out, sidecar(out)], force=force, inputs=examples).check()
    check_method(method)
    if window_size is not None or hop_size is not None or fft_size is not None:
        fft_for(None, window_size, hop_size, fft_size, None)  # refuse bad settings before reading the examples
    sounds: list[object] = []
    durations: list[float] = []
    rate: int | None = None
    for i, ex in enumerate(examples):
        x, sr = read_channel(ex, channel, f"example {i + 1}")
        sounds.append(x)
        durations.append(len(x) / sr)
        if rate is not None and sr != rate:
            raise BufNMFError(f"the examples have different sample rates ({rate} and {sr} Hz): resample them "
                              "to one rate")
        rate = sr
    names = list(labels) if labels else [Path(e).stem if not is_stdin(e) else "stdin" for e in examples]
    kit = learn_bases(sounds, components_per_file=components_per_file, labels=names, merge_labels=merge_labels,
                      window_size=window_size, hop_size=hop_size, fft_size=fft_size,
                      iterations=iterations, seed=seed, sample_rate=rate, method=method, frames=frames,
                      max_memory=_memory(max_memory))
    kit.sources = [display_name(e) for e in examples]
    written = save_kit(kit, out, force=force, inputs=examples)
    info = {"bufnmf_version": __version__, "labels": kit.labels, "sounds": kit.sounds, "method": kit.method,
            "frames": kit.frames, "window_size": kit.window_size, "hop_size": kit.hop_size,
            "fft_size": kit.fft_size, "sample_rate": kit.sample_rate, "seed": kit.seed, "examples": kit.sources,
            "durations": durations, "outputs": [p.name for p in written]}
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
    OutputSet.files([out, sidecar(out)], force=force, inputs=list(kits)).check()
    kit = stack_kits([load_kit(k) for k in kits], merge_labels=merge_labels)
    written = save_kit(kit, out, force=force, inputs=list(kits))
    info = {"bufnmf_version": __version__, "labels": kit.labels, "sounds": kit.sounds, "method": kit.method,
            "frames": kit.frames, "window_size": kit.window_size, "hop_size": kit.hop_size, "fft_size": kit.fft_size,
            "sample_rate": kit.sample_rate, "seed": kit.seed, "examples": kit.sources,
            "outputs": [p.name for p in written]}
    return JobResult(written, info, kit)


def _note_overrides(notes: Mapping[str, int] | Sequence[str] | None) -> dict[str, int]:
    if notes is None:
        return {}
    if isinstance(notes, Mapping):
        overrides = {str(k): as_int(f"note {k}", v) for k, v in notes.items()}
    else:
        overrides = {}
        for item in notes:
            if "=" not in item:
                raise BufNMFError(f"--note {item!r} must look like LABEL=NUMBER, e.g. kick=36")
            lab, num = item.split("=", 1)
            try:
                overrides[lab] = int(num)
            except ValueError:
                raise BufNMFError(f"--note {lab} must be a whole number, got {num!r}") from None
    for lab, note in overrides.items():
        if not 0 <= note <= 127:
            raise BufNMFError(f"--note {lab}={note}: MIDI notes are 0..127")
    return overrides


def track_job(source: str | os.PathLike[str], bases: str | os.PathLike[str], output: str | os.PathLike[str], *,
              midi: str | os.PathLike[str] | None = None, notes: Mapping[str, int] | Sequence[str] | None = None,
              threshold: float | None = None, min_gap: float | None = None, smooth: float | None = None,
              release: float | None = None, iterations: int | None = None, seed: int = -1,
              extra_components: int = 0, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, channel: Channel = None, max_memory: int | str | None = None,
              force: bool = False, format: str | None = None,
              method: str = "auto", causal: bool = False, floor_db: float | None = None,
              mask_db: float | None = None, retrigger: float | None = None, mix_rise: float | None = None,
              release_db: float | None = None) -> JobResult:
    """Track a kit's sounds in an audio file: events as CSV or JSON (``format``, else by extension;
    ``-`` is standard output, CSV by default), and MIDI (``midi``).

    One event per onset of each sound of the kit (:attr:`Kit.sounds`: a kit learnt with
    ``components_per_file`` > 1 gives one event per hit, not one per column). ``notes``: MIDI
    notes for sounds (``{"kick": 36}`` or ``["kick=36"]``); they need ``midi`` and a sound of
    the kit. ``method``, ``causal`` and the picking options: as :func:`bufnmf.track` (None: the
    method's defaults). ``max_memory``: bytes or a size like "4G" that the "flucoma" method's
    decomposition may not exceed (default: the memory available now).
    """
    out = _single(output)
    fmt = output_format(out, format)
    overrides = _note_overrides(notes)
    if overrides and midi is None:
        raise BufNMFError("notes map labels to MIDI notes, but no MIDI file is written: add midi=FILE",
                          cli="--note maps labels to MIDI notes, but no MIDI file is written: add --midi FILE")
    outputs = OutputSet.files([out] + ([_single(midi)] if midi is not None else []), force=force,
                              inputs=[source, *_with_sidecar(bases)])
    outputs.check()
    kit = load_kit(bases)
    unknown = [lab for lab in overrides if lab not in kit.sounds]
    if unknown:
        raise BufNMFError(f"--note {unknown[0]}: the kit has no sound {unknown[0]!r}; its sounds are "
                          f"{', '.join(dict.fromkeys(kit.sounds))}")
    source_info = audio_info(source)
    mono, sr = read_channel(source, channel, info=source_info)
    settings = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {display_name(source)}")
    events = track(mono, kit, sample_rate=sr, threshold=threshold, min_gap=min_gap, smooth=smooth, release=release,
                   iterations=iterations, seed=seed, window_size=settings.window_size,
                   hop_size=settings.hop_size, fft_size=settings.fft_size, extra_components=extra_components,
                   method=method, causal=causal, floor_db=floor_db, mask_db=mask_db, retrigger=retrigger,
                   mix_rise=mix_rise, release_db=release_db, max_memory=_memory(max_memory))
    midi_bytes = events_to_midi(events, overrides) if midi is not None else None
    with outputs:
        outputs.write_bytes(out, events_to_text(events, fmt).encode("utf-8", "surrogateescape"))
        if midi is not None and midi_bytes is not None:
            outputs.write_bytes(_single(midi), midi_bytes)
    written = list(outputs.written)
    sounds = list(dict.fromkeys(kit.sounds))
    counts = {lab: sum(e.label == lab for e in events) for lab in sounds}
    info = {"bufnmf_version": __version__, "source": display_name(source), "sample_rate": sr, "kit": str(bases),
            "channels": source_info.channels, "duration": len(mono) / sr, "method": events.method,
            "causal": bool(causal), "seed": events.seed, "events": len(events),
            "components": len(kit.labels) + int(extra_components), "counts": counts,
            "window_size": settings.window_size, "hop_size": settings.hop_size, "fft_size": settings.fft_size,
            "outputs": [str(p) for p in written]}
    return JobResult(written, info, events)


# ----------------------------------------------------------------------------------------------
# the rest of the family


def stft_job(source: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, padding: int = 1,
             window_size: int | None = None, hop_size: int | None = None, fft_size: int | None = None,
             start_frame: int = 0, num_frames: int = -1, channel: Channel = None, force: bool = False) -> JobResult:
    """BufSTFT of one channel: ``magnitude``/``phase`` buffers (.wav where WAV can hold them, .npy) and ``stft.json``.

    ``start_frame``/``num_frames`` select the samples (FluCoMa's startFrame/numFrames); ``stft.json``
    records the selection's length, which :func:`istft_job` gives back.
    """
    s = fft_for(None, window_size, hop_size, fft_size, None)
    names = ["magnitude.npy", "phase.npy", "stft.json"]
    wav_ok = s.bins <= WAV_MAX_CHANNELS  # libsndfile's channel limit: larger FFTs are written as .npy only
    if wav_ok:
        names = ["magnitude.wav", "phase.wav", *names]
    out = OutputSet(out_dir, names, force=force, inputs=[source], run_folder=True, job="stft")
    out.check()
    s0, n = span("start_frame", "num_frames", start_frame, num_frames, audio_info(source).frames, "samples")
    x, sr = read_channel(source, channel, start_frame=s0, num_frames=n)
    mag, ph = stft(x, s.window_size, s.hop_size, s.fft_size, padding)
    info = {"bufnmf_version": __version__, "source": display_name(source), "sample_rate": sr, "start_frame": s0,
            "num_samples": int(x.size), "window_size": s.window_size, "hop_size": s.hop_size,
            "fft_size": s.fft_size, "padding": padding, "frames": int(mag.shape[0]), "bins": int(mag.shape[1]),
            "layout": "frames (hops) x channels (bins), as FluCoMa's BufSTFT", "wav_buffers": wav_ok}
    with out:
        if wav_ok:
            out.write_audio("magnitude.wav", mag, sr / s.hop_size)
            out.write_audio("phase.wav", ph, sr / s.hop_size)
        out.write_npy("magnitude.npy", mag.astype(np.float32))
        out.write_npy("phase.npy", ph.astype(np.float32))
        out.write_json("stft.json", {k: v for k, v in info.items() if k != "wav_buffers"})
    return JobResult(list(out.written), info, (mag, ph))


def _meta_int(meta: Mapping[str, Any], key: str, path: Path, low: int, high: int | None = None) -> int:
    """A whole-number field of a JSON file bufnmf wrote, checked (a hand-edited file is named)."""
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        limits = f">= {low}" if high is None else f"in {low}..{high}"
        message = f"{path}: {key} must be a whole number {limits}, got {value!r:.60}: repair the file or write it again"
        raise BufNMFError(message, cli=message)  # the file's field names, on the command line too
    return value


def _read_meta(path: Path, written_by: str) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BufNMFError(f"{path} is not valid JSON ({exc}): run '{written_by}' again") from None
    if not isinstance(meta, dict):
        raise BufNMFError(f"{path} holds a {type(meta).__name__}, not an object: run '{written_by}' again")
    return meta


def istft_job(folder: str | os.PathLike[str], output: str | os.PathLike[str], *, force: bool = False,
              format: str | None = None, subtype: str | None = None) -> JobResult:
    """The inverse of :func:`stft_job`: a folder it wrote back to audio (``-``: standard output), as long
    as the analysed selection.

    (FluCoMa's inverse, which does not know the original length, is ``(frames - 1) * hop + window - P``
    samples long: :func:`bufnmf.istft`'s default. ``stft.json`` knows the length, so this gives it back.)
    """
    src, out_path = Path(folder), _single(output)
    meta_path = src / "stft.json"
    if not meta_path.is_file():
        raise BufNMFError(f"{src} has no stft.json: give a folder written by 'bufnmf stft'")
    meta = _read_meta(meta_path, "bufnmf stft")
    w, h, f = (_meta_int(meta, k, meta_path, 4 if k != "hop_size" else 1) for k in ("window_size", "hop_size",
                                                                                      "fft_size"))
    pad = _meta_int(meta, "padding", meta_path, 0, 2)
    sr = _meta_int(meta, "sample_rate", meta_path, 1, 2**31 - 1)
    n = _meta_int(meta, "num_samples", meta_path, 1)
    inputs = [meta_path, src / "magnitude.npy", src / "phase.npy", src / "magnitude.wav", src / "phase.wav"]
    out = OutputSet.files([out_path], force=force, inputs=inputs)
    out.check()
    check_audio_output(str(out_path), 1, sr, format, subtype)
    mag, _ = read_buffer(src / "magnitude.npy", "magnitude")
    ph, _ = read_buffer(src / "phase.npy", "phase")
    y = istft(mag, ph, w, h, f, pad, n)
    with out:
        out.write_audio(out_path, y[:, None], sr, format=format, subtype=subtype)
    return JobResult(list(out.written), {"sample_rate": sr, "num_samples": int(y.size)}, y)


def seed_job(source: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, min_components: int = 1,
             max_components: int = 200, coverage: float = 0.5, method: int | str = 0, seed: int = -1,
             components: int | None = None, window_size: int | None = None, hop_size: int | None = None,
             fft_size: int | None = None, channel: Channel = None, force: bool = False) -> JobResult:
    """BufNMFSeed: starting bases and activations, as buffers and ``seed.json`` (FluCoMa's parameters;
    ``components`` fixes the rank instead of choosing it from ``coverage``)."""
    names = ["bases.wav", "activations.wav", "bases.npy", "activations.npy", "seed.json"]
    out = OutputSet(out_dir, names, force=force, inputs=[source], run_folder=True, job="seed")
    out.check()
    x, sr = read_channel(source, channel)
    s = fft_for(None, window_size, hop_size, fft_size, None)
    res = nmf_seed(x, min_components, max_components, coverage, method, seed, s.window_size, s.hop_size,
                   s.fft_size, components=components)
    info = {"bufnmf_version": __version__, "source": display_name(source), "sample_rate": sr,
            "components": res.components, "coverage": res.coverage, "method": res.method,
            "method_name": res.method_name, "seed": res.seed,
            "min_components": res.components if components is not None else min_components,
            "max_components": res.components if components is not None else max_components,
            "window_size": res.window_size, "hop_size": res.hop_size, "fft_size": res.fft_size}
    with out:
        out.write_audio("bases.wav", res.bases, sr / res.fft_size)
        out.write_audio("activations.wav", res.activations, sr / res.hop_size)
        out.write_npy("bases.npy", res.bases)
        out.write_npy("activations.npy", res.activations)
        out.write_json("seed.json", info)
    return JobResult(list(out.written), info, res)


def match_job(source: str | os.PathLike[str], bases: str | os.PathLike[str], output: str | os.PathLike[str], *,
              iterations: int = 10, seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, channel: Channel = None, force: bool = False,
              format: str | None = None) -> JobResult:
    """NMFMatch over a file: each frame's activation of each basis, as CSV or JSON (``format``, else by
    extension; ``-`` is standard output, CSV by default); CSV quotes labels as CSV needs.

    One column per basis (``max_components`` = the number of bases, as FluCoMa's Max object lists
    them); frame ``k`` (time ``k * hop / sr``, when its last sample arrives) covers the window
    before it, so frame 0 holds no sound yet (its activations are eps-small).
    """
    out_path = _single(output)
    fmt = output_format(out_path, format)
    out = OutputSet.files([out_path], force=force, inputs=[source, *_with_sidecar(bases)])
    out.check()
    kit = load_kit(bases)
    x, sr = read_channel(source, channel)
    s = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {display_name(source)}")
    acts = match(x, kit.spectra, None, iterations, seed, s.window_size, s.hop_size, s.fft_size)
    times = np.arange(acts.shape[0]) * s.hop_size / sr  # frame k is complete (and reported) at sample k * hop
    if fmt == "json":
        text = json.dumps({"labels": kit.labels, "hop_seconds": s.hop_size / sr, "seed": acts.seed,
                           "time": times.round(6).tolist(), "activations": np.asarray(acts).round(8).tolist()}) + "\n"
    else:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")  # labels with commas, quotes or newlines are quoted
        writer.writerow(["time", *kit.labels])
        for t, row in zip(times, acts, strict=True):
            writer.writerow([f"{t:.6f}", *(f"{v:.8g}" for v in row)])
        text = buf.getvalue()
    with out:
        out.write_bytes(out_path, text.encode("utf-8", "surrogateescape"))  # labels from file names: their bytes
    info = {"bufnmf_version": __version__, "source": display_name(source), "sample_rate": sr, "seed": acts.seed,
            "frames": int(acts.shape[0]), "labels": kit.labels}
    return JobResult(list(out.written), info, acts)


def filter_job(source: str | os.PathLike[str], bases: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
               iterations: int = 10, seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
               fft_size: int | None = None, channel: Channel = None, force: bool = False, format: str | None = None,
               subtype: str | None = None) -> JobResult:
    """NMFFilter over a file: one mono file per basis (latency removed), summing to the source."""
    kit = load_kit(bases)
    labels = stem_labels(kit.labels, len(kit.labels), 0) or []
    ext = audio_extension(format)
    names = [f"component_{lab}{ext}" for lab in labels]
    out = OutputSet(out_dir, names, force=force, inputs=[source, *_with_sidecar(bases)], run_folder=True,
                    job="filter")
    out.check()
    x, sr = read_channel(source, channel)
    check_audio_output(names[0], 1, sr, format, subtype)
    s = fft_for(kit, window_size, hop_size, fft_size, sr, f"source {display_name(source)}")
    parts = nmf_filter(x, kit.spectra, None, iterations, seed, s.window_size, s.hop_size, s.fft_size)
    with out:
        for k, name in enumerate(names):
            out.write_audio(name, parts[:, k : k + 1], sr, format=format, subtype=subtype)
    return JobResult(list(out.written), {"sample_rate": sr, "seed": parts.seed, "labels": kit.labels}, parts)


def cross_job(source: str | os.PathLike[str], target: str | os.PathLike[str], output: str | os.PathLike[str], *,
              time_sparsity: int = 7, polyphony: int = 10, continuity: int = 7, iterations: int = 50,
              seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, max_memory: int | str | None = None, channel: Channel = None,
              force: bool = False, format: str | None = None, subtype: str | None = None) -> JobResult:
    """BufNMFCross: rebuild ``target`` from the sound of ``source``, written as one audio file
    (``-``: standard output)."""
    out_path = _single(output)
    if is_stdin(source) and is_stdin(target):
        raise BufNMFError("the source and the target cannot both be standard input (-)")
    out = OutputSet.files([out_path], force=force, inputs=[source, target])
    out.check()
    _memory(max_memory)
    src, sr = read_channel(source, channel, "source")
    tgt, sr_t = read_channel(target, channel, "target")
    if sr != sr_t:
        raise BufNMFError(f"source {display_name(source)} is at {sr} Hz but target {display_name(target)} is at "
                          f"{sr_t} Hz: resample one of them")
    check_audio_output(str(out_path), 1, sr, format, subtype)
    s = fft_for(None, window_size, hop_size, fft_size, None)
    y = cross(src, tgt, time_sparsity, polyphony, continuity, iterations, seed, s.window_size, s.hop_size,
              s.fft_size, max_memory=_memory(max_memory))
    with out:
        out.write_audio(out_path, np.asarray(y)[:, None], sr, format=format, subtype=subtype)
    return JobResult(list(out.written), {"sample_rate": sr, "seed": y.seed, "seconds": y.size / sr}, y)


def _summary_beside(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``summary.json`` in the folder of ``path`` (written by :func:`decompose_job`), or {} if none is usable."""
    summary_path = Path(path).parent / "summary.json"
    if not summary_path.is_file():
        return {}
    try:
        loaded = json.loads(summary_path.read_text())
    except (ValueError, OSError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _decomposition_scale(meta: Mapping[str, Any], H: np.ndarray) -> list[float] | None:
    """The per-channel activation scale a summary records, if it describes activations of H's shape."""
    scale = meta.get("activation_scale")
    shape = meta.get("shapes", {}).get("activations") if isinstance(meta.get("shapes"), dict) else None
    if not isinstance(scale, list) or not scale or shape != list(H.shape):
        return None
    try:
        values = [float(v) for v in scale]
    except (TypeError, ValueError):
        return None
    if H.shape[1] % len(values) or not all(np.isfinite(v) and v >= 0 for v in values):
        return None
    return values


def morph_job(source_bases: str | os.PathLike[str], target_bases: str | os.PathLike[str],
              activations: str | os.PathLike[str], output: str | os.PathLike[str], *,
              interpolation: float | Sequence[float] = 0.0, autoassign: bool = True, sample_rate: int | None = None,
              seed: int = -1, window_size: int | None = None, hop_size: int | None = None,
              fft_size: int | None = None, activation_scale: float | Sequence[float] | None = None,
              griffin_lim_iterations: int = 0, force: bool = False, progress: ProgressCallback | None = None,
              format: str | None = None, subtype: str | None = None) -> JobResult:
    """NMFMorph offline from three buffers, written as one audio file (``-``: standard output).

    The FFT settings and the rate come from the ``summary.json`` beside the source bases (a folder
    written by :func:`decompose_job`) unless given; else window = fft = the bases' FFT size, and 44100 Hz.
    The activation scale (the factor BufNMF divided the activations by, so the morph plays at the
    sound's level) comes from the ``summary.json`` beside the activations, when it describes
    activations of that shape, unless given; else 1.0 (FluCoMa's level, typically 30-45 dB down). That
    summary also gives the output length (its ``num_frames``) when its frame count matches.
    """
    out_path = _single(output)
    summary_path = Path(source_bases).parent / "summary.json"
    out = OutputSet.files([out_path], force=force, inputs=[source_bases, target_bases, activations, summary_path])
    out.check()
    S, _ = read_buffer(source_bases, "source bases")
    T, _ = read_buffer(target_bases, "target bases")
    H, _ = read_buffer(activations, "activations")
    meta = _summary_beside(source_bases)
    params = meta.get("parameters") if isinstance(meta.get("parameters"), dict) else {}
    assert isinstance(params, dict)
    if window_size is None and hop_size is None and fft_size is None and "fft_size" in params:
        window, hop, fft = (_meta_int(params, k, summary_path, 1) for k in ("window_size", "hop_size", "fft_size"))
    else:
        window = window_size if window_size is not None else (S.shape[0] - 1) * 2
        hop, fft = (-1 if hop_size is None else hop_size), (-1 if fft_size is None else fft_size)
    if sample_rate is not None:
        sr = as_int("sample_rate", sample_rate)
    elif "sample_rate" in meta:
        sr = _meta_int(meta, "sample_rate", summary_path, 1, 2**31 - 1)
    else:
        sr = 44100
    if not 1 <= sr <= 2**31 - 1:
        raise BufNMFError(f"sample_rate must be 1..{2**31 - 1} Hz, got {sr}")
    check_audio_output(str(out_path), 1, sr, format, subtype)
    acts_meta = _summary_beside(activations)
    found = _decomposition_scale(acts_meta, H)
    scale: float | list[float] = (found if found is not None else 1.0) if activation_scale is None else (
        activation_scale if isinstance(activation_scale, (int, float)) else [float(v) for v in activation_scale])
    scale_from = "given" if activation_scale is not None else (
        str(Path(activations).parent / "summary.json") if found is not None else "none (FluCoMa's level)")
    num_samples = None
    acts_params = acts_meta.get("parameters", {}) if isinstance(acts_meta.get("parameters"), dict) else {}
    settings = resolve_fft_settings(window, hop, fft)
    if found is not None and isinstance(acts_params.get("num_frames"), int) and \
            acts_params.get("hop_size") == settings.hop_size and \
            settings.num_frames(acts_params["num_frames"]) == H.shape[0]:
        num_samples = acts_params["num_frames"]
    curve = interpolation if isinstance(interpolation, (int, float)) else list(interpolation)
    y = morph(S, T, H, curve, autoassign, seed, window, hop, fft, activation_scale=scale,
              griffin_lim_iterations=griffin_lim_iterations, num_samples=num_samples, progress=progress)
    with out:
        out.write_audio(out_path, np.asarray(y)[:, None], sr, format=format, subtype=subtype)
    scales = [float(v) for v in np.broadcast_to(np.asarray(scale, dtype=np.float64), (np.size(scale),))]
    info = {"sample_rate": sr, "seed": y.seed, "seconds": y.size / sr, "activation_scale": scales,
            "activation_scale_from": scale_from}
    return JobResult(list(out.written), info, y)


# ----------------------------------------------------------------------------------------------
# Sines


def tracks_csv(tracks: np.ndarray) -> str:
    """A :data:`bufnmf.clients.sines.TRACK_DTYPE` table as CSV text, with a header row of its column names."""
    import io

    buf = io.StringIO()
    buf.write(",".join(TRACK_DTYPE.names or ()) + "\n")
    if tracks.size:
        np.savetxt(buf, tracks, fmt=["%d", "%d", "%.6f", "%.6f", "%.6f", "%d"], delimiter=",")
    return buf.getvalue()


def _sines_summary(res: SinesResult, source: str | os.PathLike[str], num_frames: int, timings: Mapping[str, Any],
                   names: Sequence[str]) -> dict[str, Any]:
    channels = []
    for c in range(res.num_channels):
        chan = res.start_chan + c
        rows = res.tracks[res.tracks["channel"] == chan]
        x = res.sines[:, c].astype(np.float64) + res.residual[:, c]
        energy = float(np.dot(x, x))
        share = float(np.dot(res.sines[:, c].astype(np.float64), res.sines[:, c])) / energy if energy > 0 else None
        channels.append({"channel": chan, "tracks": res.track_count(chan), "track_points": int(rows.size),
                         "sines_energy_share": None if share is None else round(share, 6)})
    return {
        "bufnmf_version": __version__, "source": display_name(source), "sample_rate": res.sample_rate,
        "parameters": {**res.parameters, "start_frame": res.start_frame, "num_frames": num_frames,
                       "start_chan": res.start_chan, "num_chans": res.num_channels},
        "num_samples": res.num_samples, "num_channels": res.num_channels,
        "streaming_latency_samples": res.latency,
        "tracks_columns": list(TRACK_DTYPE.names or ()),
        "channels": channels, "timings": dict(timings), "outputs": list(names),
    }


def sines_job(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    bandwidth: int = 76,
    detection_threshold: float = -96.0,
    birth_low_threshold: float = -24.0,
    birth_high_threshold: float = -60.0,
    min_track_len: int = 15,
    track_method: int | str = 0,
    track_mag_range: float = 15.0,
    track_freq_range: float = 50.0,
    track_prob: float = 0.5,
    window_size: int | None = None,
    hop_size: int | None = None,
    fft_size: int | None = None,
    start_frame: int = 0,
    num_frames: int = -1,
    start_chan: int = 0,
    num_chans: int = -1,
    max_fft_size: int = -1,
    flucoma_quirks: bool = False,
    plot: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
    format: str | None = None,
    subtype: str | None = None,
) -> JobResult:
    """BufSines on an audio file: ``sines.wav`` and ``residual.wav`` (every selected channel, lined up with the
    source, summing to it), ``tracks.csv`` (one row per track point), ``summary.json``; with ``plot``,
    ``tracks.png`` (the first selected channel's tracks over its spectrogram).

    Every parameter and the selection are checked before the output folder is touched.
    The parameters are :func:`bufnmf.sines`'; FFT sizes None mean FluCoMa's defaults;
    ``format``/``subtype``: the audio files' format (default float32 WAV).

    Returns:
        :class:`JobResult` (``result`` is the :class:`bufnmf.SinesResult`).
    """
    t0 = time.perf_counter()
    data, sr = read_audio(source)
    fft = fft_for(None, window_size, hop_size, fft_size, None)
    config = resolve_sines_config(bandwidth, detection_threshold, birth_low_threshold, birth_high_threshold,
                                  min_track_len, track_method, track_mag_range, track_freq_range, track_prob,
                                  fft.window_size, fft.hop_size, fft.fft_size, sample_rate=sr,
                                  max_fft_size=max_fft_size, flucoma_quirks=flucoma_quirks)
    s0, n_sel = span("start_frame", "num_frames", start_frame, num_frames, data.shape[0], "samples")
    c0, chans = span("start_chan", "num_chans", start_chan, num_chans, data.shape[1], "channel(s)")
    if chans > WAV_MAX_CHANNELS:
        raise BufNMFError(f"num_chans {chans} is more than a WAV file holds ({WAV_MAX_CHANNELS}): select fewer "
                          "channels (start_chan, num_chans)")
    ext = audio_extension(format)
    names = [f"sines{ext}", f"residual{ext}", "tracks.csv", "summary.json", *(["tracks.png"] if plot else [])]
    check_audio_output(names[0], chans, sr, format, subtype)
    out = OutputSet(out_dir, names, force=force, inputs=[source], run_folder=True, job="sines")
    out.check()
    with out:
        t_read = time.perf_counter() - t0
        compiled = not kernels_ready()  # the first run on a machine compiles the kernels (numba's cache after)
        t1 = time.perf_counter()
        res = sines(data, config.bandwidth, config.detection_threshold, config.birth_low_threshold,
                    config.birth_high_threshold, config.min_track_len, config.track_method, config.track_mag_range,
                    config.track_freq_range, config.track_prob, config.window_size, config.hop_size,
                    config.fft_size, s0, n_sel, c0, chans, sample_rate=sr, max_fft_size=config.table_size,
                    flucoma_quirks=flucoma_quirks, progress=progress)
        t_run = time.perf_counter() - t1
        t2 = time.perf_counter()
        out.write_audio(names[0], res.sines, sr, format=format, subtype=subtype)
        out.write_audio(names[1], res.residual, sr, format=format, subtype=subtype)
        out.write_bytes("tracks.csv", tracks_csv(res.tracks).encode())
        if plot:
            from ..plot import plot_sines_tracks

            out.write_with("tracks.png", lambda p: plot_sines_tracks(data[s0 : s0 + n_sel, c0], res, p))
        timings = {"read_seconds": round(t_read, 4), "sines_seconds": round(t_run, 4),
                   "write_seconds": round(time.perf_counter() - t2, 4), "compiled_kernels": compiled}
        info = _sines_summary(res, source, n_sel, timings, names)
        out.write_json("summary.json", info)
    return JobResult(list(out.written), info, res)


__all__ = [
    "SCRATCH_ABOVE_BYTES", "JobResult", "cross_job", "decompose_job", "demo_job", "filter_job", "istft_job",
    "learn_job", "match_job", "morph_job", "output_names", "pick_channel", "read_channel", "seed_job",
    "sines_job", "stack_kits_job", "stem_labels", "stft_job", "summary", "track_job", "tracks_csv",
    "write_decomposition",
]
