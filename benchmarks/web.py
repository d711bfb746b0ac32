"""The web page's speed: time from pressing run to the result drawn, and the server's responsiveness
while a run works, against the command line and the idle server in the same run.

Starts ``bufnmf serve --port 0 --max-jobs 1``, drives the page in Debian's Chromium (Playwright),
uploads the shared drum loop (``../shared/data/drums/mix.wav``, 4.5 s) and runs K=3 (100 iterations)
``--runs`` times. "result shown" is measured in the page, from the click on Run to the moment the
plots are drawn and the players are loaded. The reference is ``bufnmf decompose`` of the same
file from the shell (a new process each time, as a user runs it). Responsiveness: the latency of
``GET /api/config`` with no job, and while a long job (the loop, 20000 iterations) runs.

    python benchmarks/web.py [--runs 5] [--json benchmarks/results/web.json] [--screenshots docs]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BUFNMF_SHARED", ROOT.parent / "shared"))
CHROMIUM = os.environ.get("BUFNMF_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]


def latency_ms(url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url + "api/config", timeout=30) as r:
            r.read()
        out.append((time.perf_counter() - t) * 1000)
    return out


def cli_seconds(src: Path, runs: int) -> list[float]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bufnmf", "decompose", str(src), "-o", f"{tmp}/{i}", "-k", "3",
                            "-q"], check=True)
            out.append(time.perf_counter() - t)
    return out


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--screenshots", type=Path, default=None,
                    help="folder for web_page.png, web_kit.png and web_sines.png")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    src = SHARED / "data" / "drums" / "mix.wav"
    load_before = load()
    proc = subprocess.Popen([sys.executable, "-m", "bufnmf", "serve", "--port", "0", "--max-jobs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)
    shown, server_s = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_selector("[data-testid=server-status][data-state=ready]")
            page.set_input_files("[data-testid=source-input]", str(src))
            page.wait_for_selector("[data-testid=source-name][data-uploaded='1']")
            page.fill("[data-testid=components]", "3")
            for i in range(args.runs + 1):  # the first run is a warm-up of the page (and the browser's decoder)
                old = page.get_attribute("[data-testid=results]", "data-job")
                page.click("[data-testid=run-button]")
                page.wait_for_function("old => document.querySelector('[data-testid=results]').dataset.job !== old "
                                       "&& document.querySelector('[data-testid=results]').dataset.state === 'ready'",
                                       arg=old)
                t = page.evaluate("bufnmf.timings")
                if i:
                    shown.append((t["result_ready"] - t["run_clicked"]) / 1000)
                    server_s.append(page.evaluate("bufnmf.job.seconds"))
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                page.locator("[data-testid=mute]").nth(1).click()
                page.locator("[data-testid=gain]").nth(2).fill("1.4")
                page.locator("[data-testid=gain]").nth(2).dispatch_event("input")
                page.click("[data-testid=play-remix]")
                page.wait_for_function("document.querySelector('[data-testid=source-audio]').currentTime > 1.2")
                page.click("[data-testid=play-remix]")  # pause: the playhead stays on the plot
                page.screenshot(path=str(args.screenshots / "web_page.png"), full_page=True)
            # responsiveness: idle, then while a long run works
            idle = latency_ms(url, 50)
            page.fill("[data-testid=iterations]", "20000")
            page.click("[data-testid=run-button]")
            page.wait_for_selector("[data-testid=progress][data-state=running]")
            page.wait_for_function("document.querySelector('[data-testid=progress]').value > 0.02")
            busy = latency_ms(url, 50)
            still_running = page.get_attribute("[data-testid=progress]", "data-state") == "running"
            page.click("[data-testid=cancel-button]")
            page.wait_for_selector("[data-testid=progress][data-state=cancelled]")
            if args.screenshots:
                kit_screenshot(page, args.screenshots)
                sines_screenshot(page, args.screenshots)
            browser.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    cli = cli_seconds(src, args.runs)
    rows = [
        ("page: result shown after pressing run", statistics.median(shown), max(shown)),
        ("  of which the job in its worker", statistics.median(server_s), max(server_s)),
        ("bufnmf decompose (new process, reference)", statistics.median(cli), max(cli)),
    ]
    print(f"drum loop (4.5 s, 44.1 kHz), K=3, 100 iterations; {args.runs} runs; load average {load_before} "
          f"before, {load()} after (2 cores, shared)")
    print(f"{'':48} {'median s':>9} {'max s':>8}")
    for name, med, mx in rows:
        print(f"{name:48} {med:9.3f} {mx:8.3f}")
    print(f"GET /api/config idle: median {statistics.median(idle):.1f} ms, max {max(idle):.1f} ms; while a run "
          f"works: median {statistics.median(busy):.1f} ms, max {max(busy):.1f} ms (run still going: {still_running})")
    result = {"runs": args.runs, "load_before": load_before, "load_after": load(),
              "result_shown_s": shown, "job_s": server_s, "cli_s": cli,
              "api_latency_ms": {"idle": idle, "while_running": busy, "run_still_going": still_running}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def kit_screenshot(page, folder: Path) -> None:
    """The page with a kit learnt from the shared drum hits: the hits on the timeline."""
    from bufnmf.workflows.jobs import learn_job

    hits = SHARED / "data" / "drums" / "hits"
    with tempfile.TemporaryDirectory() as tmp:
        kit = Path(tmp) / "drum_kit.wav"
        learn_job([hits / "kick.wav", hits / "snare.wav", hits / "hihat.wav"], kit, seed=1)
        page.click("summary:has-text('Kit')")
        page.set_input_files("[data-testid=kit-input]", [str(kit), str(kit.with_suffix(".json"))])
        page.wait_for_selector("[data-testid=kit-name][data-uploaded='1']")
    page.fill("[data-testid=iterations]", "100")
    page.fill("#extra_components", "1")
    old = page.get_attribute("[data-testid=results]", "data-job")
    page.click("[data-testid=run-button]")
    page.wait_for_function("old => document.querySelector('[data-testid=results]').dataset.job !== old "
                           "&& document.querySelector('[data-testid=results]').dataset.state === 'ready'", arg=old)
    page.click("[data-testid=zoom-in]")
    page.screenshot(path=str(folder / "web_kit.png"), full_page=True)


def sines_screenshot(page, folder: Path) -> None:
    """The page after Sines on the shared piano passage: the tracks, the sines and the residual."""
    piano = SHARED / "data" / "piano" / "mix.wav"
    page.set_input_files("[data-testid=source-input]", str(piano))
    page.wait_for_selector("[data-testid=source-name][data-uploaded='1']")
    page.select_option("[data-testid=process]", "sines")
    old = page.get_attribute("[data-testid=results]", "data-job")
    page.click("[data-testid=run-button]")
    page.wait_for_function("old => document.querySelector('[data-testid=results]').dataset.job !== old "
                           "&& document.querySelector('[data-testid=results]').dataset.state === 'ready'", arg=old)
    page.screenshot(path=str(folder / "web_sines.png"), full_page=True)


if __name__ == "__main__":
    main()
