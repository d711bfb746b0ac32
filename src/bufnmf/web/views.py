"""What the page is told about a finished job: its parts to hear, its buffers to draw, its files.

A result has a ``kind`` that tells the page how to draw it; everything else is shared:
``parts`` (one player, gain, solo and mute each; they sum to the source, so the remix is theirs
re-summed with the gains), ``source``, ``downloads`` and ``zip``.

* ``"nmf"`` (decompose, demo): ``bases`` and ``activations`` (the ``.npy`` buffers, drawn by the
  page as spectra on a log-frequency axis and as curves over each part's waveform), ``events``
  when a kit was tracked.
* ``"sines"`` (BufSines): its parts the sines and the residual, and ``tracks`` (the ``tracks.csv``
  of the tracked peaks, drawn by the page over time and log frequency).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from .runner import Job

DEFAULT_ITERATIONS = 100


def output_files(out: Path) -> list[str]:
    """The finished outputs in a job's folder (no temporaries, no locks), sorted."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")
                  and not p.name.endswith(".part"))


def stem_of(job: Job) -> str:
    """A name for the job's zip and the command line's output folder: ``mix-parts``, ``mix-sines``."""
    if job.kind == "demo":
        return "bufnmf-demo"
    return Path(str(job.spec.get("source", "sound"))).stem + ("-sines" if job.kind == "sines" else "-parts")


def command_line(job: Job) -> list[str]:
    """The commands that make the same files (with the seed the run used, so they reproduce it)."""
    if job.kind == "demo":
        return ["bufnmf demo -o bufnmf-demo"]
    if job.kind == "sines":
        args = ["bufnmf", "sines", shlex.quote(str(job.spec["source"])), "-o", shlex.quote(stem_of(job))]
        for name, value in job.spec["params"].items():
            args += ["--" + name.replace("_", "-"), shlex.quote(str(value))]
        return [" ".join(args)]
    s = job.summary
    p = job.spec["params"]
    seed = s.get("parameters", {}).get("seed", p.get("seed", -1))
    src = shlex.quote(str(job.spec["source"]))
    args = ["bufnmf", "decompose", src, "-o", shlex.quote(stem_of(job))]
    if "components" in p:
        args += ["-k", str(p["components"])]
    if p.get("iterations", DEFAULT_ITERATIONS) != DEFAULT_ITERATIONS:
        args += ["--iterations", str(p["iterations"])]
    for name in ("window_size", "hop_size", "fft_size"):
        if name in p:
            args += ["--" + name.replace("_", "-"), str(p[name])]
    args += ["--seed", str(seed)]
    bases = job.spec.get("bases")
    if bases:
        args += ["--bases", shlex.quote(bases)]
        if "bases_mode" in p:
            args += ["--bases-mode", str(p["bases_mode"])]
        if p.get("extra_components"):
            args += ["--extra-components", str(p["extra_components"])]
    lines = [" ".join(args)]
    if job.spec.get("track") and "tracking" in s:
        t = ["bufnmf", "track", src, "--bases", shlex.quote(bases or ""), "-o", "events.json", "--midi",
             "events.mid", "--seed", str(s["tracking"]["seed"])]
        if p.get("iterations", DEFAULT_ITERATIONS) != DEFAULT_ITERATIONS:
            t += ["--iterations", str(p["iterations"])]
        if p.get("extra_components"):
            t += ["--extra-components", str(p["extra_components"])]
        if s["tracking"].get("channel") == "mixdown":
            t += ["--mixdown"]
        lines.append(" ".join(t))
    return lines


def _group(name: str) -> str:
    if name.startswith("component_") or name in ("sines.wav", "residual.wav"):
        return "parts"
    if name == "tracks.csv":
        return "tracks"
    if name.startswith(("bases.", "activations.")) and not name.endswith(".png"):
        return "buffers"
    if name.startswith("events."):
        return "events"
    return "other"


def _downloads(job: Job, out: Path, files: list[str], url: str) -> list[dict[str, Any]]:
    listed = [n for n in job.summary.get("outputs", []) if n in files]  # in the order the job wrote them
    ordered = listed + [n for n in files if n not in listed]
    return [{"name": n, "url": f"{url}/files/{n}", "bytes": (out / n).stat().st_size, "group": _group(n)}
            for n in ordered]


def describe_sines(job: Job, out: Path, base: str) -> dict[str, Any]:
    """The page's view of a finished sines job: the sines and the residual, the tracks."""
    s = job.summary
    files = output_files(out)
    url = f"{base}/jobs/{job.id}"
    params = s.get("parameters", {})
    return {
        "kind": "sines",
        "title": job.title,
        "sample_rate": s.get("sample_rate"),
        "channels": s.get("num_channels"),
        "components": 2,
        "labels": ["sines", "residual"],
        "parameters": params,
        "window_size": params.get("window_size"), "hop_size": params.get("hop_size"),
        "fft_size": params.get("fft_size"),
        "per_channel": s.get("channels", []),
        "seconds": s.get("timings", {}).get("sines_seconds"),
        "source": {"name": str(job.spec["source"]), "url": f"{url}/source"},
        "parts": [{"label": lab, "file": f"{lab}.wav", "url": f"{url}/files/{lab}.wav?inline=1"}
                  for lab in ("sines", "residual") if f"{lab}.wav" in files],
        "tracks": f"{url}/files/tracks.csv" if "tracks.csv" in files else None,
        "downloads": _downloads(job, out, files, url),
        "zip": f"{url}/zip",
        "zip_name": f"{stem_of(job)}.zip",
        "commands": command_line(job),
        "warnings": s.get("warnings", []),
        "source_upload": None,
    }


def describe(job: Job, out: Path, base: str) -> dict[str, Any]:
    """The page's view of a finished job whose outputs are in ``out``; URLs start with ``base``."""
    if job.kind == "sines":
        return describe_sines(job, out, base)
    s = job.summary
    files = output_files(out)
    url = f"{base}/jobs/{job.id}"
    params = s.get("parameters", {})
    names = [n for n in s.get("outputs", []) if n.startswith("component_") and n in files]
    labels = list(s.get("labels", []))
    parts = [{"label": labels[i] if i < len(labels) else n[len("component_"):-4], "file": n,
              "url": f"{url}/files/{n}?inline=1"} for i, n in enumerate(names)]
    downloads = _downloads(job, out, files, url)
    if job.kind == "demo":
        source = {"name": "demo_loop.wav", "url": f"{url}/files/demo_loop.wav?inline=1"}
    else:
        source = {"name": str(job.spec["source"]), "url": f"{url}/source"}
    view: dict[str, Any] = {
        "kind": "nmf",
        "title": job.title,
        "sample_rate": s.get("sample_rate"),
        "channels": params.get("num_chans"),
        "components": params.get("components"),
        "iterations": params.get("iterations"),
        "window_size": params.get("window_size"),
        "hop_size": params.get("hop_size"),
        "fft_size": params.get("fft_size"),
        "seed": str(params.get("seed")),  # up to 2**64: more than a JavaScript number holds exactly
        "kernel": params.get("kernel"),
        "divergence": [ch[-1] for ch in s.get("divergence", []) if ch],
        "seconds": s.get("timings", {}).get("decompose_seconds"),
        "labels": labels,
        "source": source,
        "parts": parts,
        "bases": f"{url}/files/bases.npy" if "bases.npy" in files else None,
        "activations": f"{url}/files/activations.npy" if "activations.npy" in files else None,
        "events": f"{url}/files/events.json" if "events.json" in files else None,
        "tracking": s.get("tracking"),
        "matches": s.get("matches"),
        "downloads": downloads,
        "zip": f"{url}/zip",
        "zip_name": f"{stem_of(job)}.zip",
        "commands": command_line(job),
        "warnings": s.get("warnings", []),
        "source_upload": s.get("source_upload"),
    }
    return view
