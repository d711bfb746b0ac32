"""The page of ``bufnmf serve`` in a real browser: Debian's Chromium, headless, driven by Playwright.

The server runs as ``python -m bufnmf serve --port 0 --max-jobs 1`` on a free loopback port and
is stopped at the end of the module (its folder must be gone then). Waits are explicit (a
selector or a condition in the page, with a deadline), never sleeps.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bufnmf.cli import main
from bufnmf.workflows.jobs import learn_job

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("BUFNMF_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]
WAIT_MS = 90_000
TAB10 = [(0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)]


def _need_browser() -> None:
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} is missing: apt-get install chromium (the CI script installs it)"
        if os.environ.get("CI") or os.environ.get("BUFNMF_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    pytest.importorskip("playwright.sync_api", reason="pip install '.[test]' installs playwright")


@pytest.fixture(scope="module")
def server():
    _need_browser()
    proc = subprocess.Popen([sys.executable, "-m", "bufnmf", "serve", "--port", "0", "--max-jobs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.match(r"bufnmf serve: (http://\S+/) .* files in (\S+), removed", line)
    if not m:
        proc.kill()
        pytest.fail(f"bufnmf serve did not start: {line}{proc.stderr.read()}")
    root = Path(m.group(2))
    yield {"url": m.group(1), "root": root}
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not root.exists()  # every session's files go with the server


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


def open_page(context, server):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server["url"])
    page.wait_for_selector("[data-testid=server-status][data-state=ready]")
    page.js_errors = errors  # checked by the tests: the page's script must not fail
    return page


def choose(page, path: Path) -> None:
    page.set_input_files("[data-testid=source-input]", str(path))
    page.wait_for_selector("[data-testid=source-name][data-uploaded='1']")


def run_and_wait(page, components: int | None = 3) -> None:
    if components is not None:
        page.fill("[data-testid=components]", str(components))
    old = page.get_attribute("[data-testid=results]", "data-job")
    page.click("[data-testid=run-button]")
    page.wait_for_function("old => { const r = document.querySelector('[data-testid=results]');"
                           " return r.dataset.state === 'ready' && r.dataset.job !== old; }", arg=old)


def colours_in(page, testid: str) -> list[int]:
    """Pixels of each of the first three tab10 colours drawn on a plot's canvas."""
    return page.evaluate("""([id, cols]) => {
        const c = document.querySelector(`[data-testid=${id}] canvas`);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const n = cols.map(() => 0);
        for (let i = 0; i < d.length; i += 4) cols.forEach((col, k) => {
            if (d[i + 3] > 200 && Math.abs(d[i] - col[0]) < 12 && Math.abs(d[i + 1] - col[1]) < 12 &&
                Math.abs(d[i + 2] - col[2]) < 12) n[k]++; });
        return n; }""", [testid, TAB10])


def test_drum_loop_run_see_hear_download(context, server, data_dir, tmp_path):
    src = data_dir / "drums" / "mix.wav"
    page = open_page(context, server)
    choose(page, src)
    run_and_wait(page, 3)
    timings = page.evaluate("bufnmf.timings")
    print(f"\ndrum loop, K=3: result shown {timings['result_ready'] - timings['run_clicked']:.0f} ms after run")
    # three players, both plots drawn in the three colours
    audios = page.locator("[data-testid=component-audio]")
    assert audios.count() == 3
    assert page.get_attribute("[data-testid=bases-plot]", "data-drawn") == "3"
    assert page.get_attribute("[data-testid=activations-plot]", "data-drawn") == "3"
    for plot in ("bases-plot", "activations-plot"):
        counts = colours_in(page, plot)
        assert all(n > 50 for n in counts), (plot, counts)
    assert page.inner_text("[data-testid=result-title]") == "mix.wav, 3 components"
    assert "bufnmf decompose mix.wav -o mix-parts -k 3 --seed" in page.text_content("[data-testid=commands]")
    # play: every part's player moves, in step with the source
    page.click("[data-testid=play-remix]")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=component-audio]')]"
                           ".every(a => !a.paused && a.currentTime > 0.3)")
    times = page.evaluate("() => [document.querySelector('[data-testid=source-audio]').currentTime, ...[..."
                          "document.querySelectorAll('[data-testid=component-audio]')].map(a => a.currentTime)]")
    assert max(times) - min(times) < 0.1, times
    page.click("[data-testid=stop]")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=component-audio]')].every(a => a.paused)")
    # the zip: every output, its parts sum to the source
    with page.expect_download() as dl:
        page.click("[data-testid=download-zip]")
    assert dl.value.suggested_filename == "mix-parts.zip"
    zpath = tmp_path / "parts.zip"
    dl.value.save_as(zpath)
    with zipfile.ZipFile(zpath) as zf:
        names = set(zf.namelist())
        assert {f"mix-parts/{n}" for n in ("component_1.wav", "component_2.wav", "component_3.wav", "bases.wav",
                                           "activations.wav", "bases.npy", "activations.npy", "summary.json")} == names
        parts = [sf.read(io.BytesIO(zf.read(f"mix-parts/component_{k}.wav")), dtype="float32")[0] for k in (1, 2, 3)]
    mix = sf.read(src, dtype="float32")[0]
    np.testing.assert_allclose(np.sum(parts, axis=0), mix, atol=1e-5)
    # the remix with part 2 muted and part 3 at half gain, as a WAV
    page.locator("[data-testid=mute]").nth(1).click()
    page.locator("[data-testid=gain]").nth(2).fill("0.5")
    with page.expect_download() as dl:
        page.click("[data-testid=remix-download]")
    remix, sr = sf.read(dl.value.path(), dtype="float32")
    assert sr == 44100 and dl.value.suggested_filename == "mix-parts-remix.wav"
    np.testing.assert_allclose(remix, parts[0] + 0.5 * parts[2], atol=1e-6)
    assert page.js_errors == []


def test_zoom_in_time(context, server, data_dir):
    page = open_page(context, server)
    choose(page, data_dir / "drums" / "mix.wav")
    run_and_wait(page, 2)
    plot = "[data-testid=activations-plot]"

    def span() -> tuple[float, float]:
        return float(page.get_attribute(plot, "data-t0")), float(page.get_attribute(plot, "data-t1"))

    assert span() == pytest.approx((0.0, 4.5), abs=1e-3)
    page.click("[data-testid=zoom-in]")
    t0, t1 = span()
    assert t1 - t0 == pytest.approx(2.25, abs=1e-3)
    box = page.locator(plot).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -100)  # zoom in around the pointer
    page.wait_for_function("p => document.querySelector(p).dataset.t1 - document.querySelector(p).dataset.t0 < 2",
                           arg=plot)
    t0b, t1b = span()
    assert t1b - t0b == pytest.approx(1.8, abs=1e-3) and t0b > t0
    page.click("[data-testid=zoom-fit]")
    assert span() == pytest.approx((0.0, 4.5), abs=1e-3)
    assert page.js_errors == []


def test_a_bad_file_shows_the_command_lines_error(context, server, tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("not a sound at all\n")
    page = open_page(context, server)
    choose(page, bad)
    page.click("[data-testid=run-button]")
    page.wait_for_selector("[data-testid=error]:not([hidden])")
    shown = page.inner_text("[data-testid=error]")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["decompose", "bad.wav", "-o", "out", "-k", "3"]) == 2
    finally:
        os.chdir(old)
    assert f"bufnmf: error: {shown}\n" == capsys.readouterr().err
    assert page.get_attribute("[data-testid=progress]", "data-state") == "error"
    assert page.get_attribute("[data-testid=results]", "data-state") == "empty"


def test_a_second_tabs_job_queues_behind_the_first(context, server, data_dir):
    src = data_dir / "drums" / "mix.wav"
    first, second = open_page(context, server), open_page(context, server)
    choose(first, src)
    first.fill("[data-testid=iterations]", "100000")  # runs until cancelled
    first.fill("[data-testid=components]", "3")
    first.click("[data-testid=run-button]")
    first.wait_for_selector("[data-testid=progress][data-state=running]")
    first.wait_for_function("() => document.querySelector('[data-testid=progress]').value > 0")
    choose(second, src)
    second.fill("[data-testid=components]", "2")
    second.click("[data-testid=run-button]")
    second.wait_for_selector("[data-testid=progress][data-state=queued]")
    assert second.inner_text("[data-testid=job-status]").startswith("Queued: 1st in line")
    # the first page stays responsive and its progress moves while the second waits
    before = first.evaluate("document.querySelector('[data-testid=progress]').value")
    first.wait_for_function("v => document.querySelector('[data-testid=progress]').value > v", arg=before)
    first.click("[data-testid=cancel-button]")
    first.wait_for_selector("[data-testid=progress][data-state=cancelled]")
    second.wait_for_selector("[data-testid=results][data-state=ready]")
    assert second.locator("[data-testid=component-audio]").count() == 2
    assert first.get_attribute("[data-testid=results]", "data-state") == "empty"
    assert first.js_errors == [] and second.js_errors == []


def test_a_kit_shows_its_hits_coloured_by_label(context, server, data_dir, tmp_path):
    hits = data_dir / "drums" / "hits"
    kit = tmp_path / "kit.wav"
    # the page decomposes with the kit's bases fixed: FluCoMa-layout bases (percussive kits hold NMFD templates)
    learn_job([hits / "kick.wav", hits / "snare.wav", hits / "hihat.wav"], kit, seed=1, method="flucoma")
    page = open_page(context, server)
    choose(page, data_dir / "drums" / "mix.wav")
    page.click("summary:has-text('Kit')")
    page.set_input_files("[data-testid=kit-input]", [str(kit), str(tmp_path / "kit.json")])
    page.wait_for_selector("[data-testid=kit-name][data-uploaded='1']")
    assert page.input_value("[data-testid=components]") == ""  # K comes from the kit
    run_and_wait(page, None)
    labels = page.evaluate("bufnmf.data.events.map(e => e.label)")
    assert set(labels) == {"kick", "snare", "hihat"} and len(labels) >= 10
    assert page.evaluate("eventColours()") == {"kick": "#1f77b4", "snare": "#ff7f0e", "hihat": "#2ca02c"}
    assert [page.locator(".part .name").nth(k).inner_text() for k in range(3)] == ["kick", "snare", "hihat"]
    assert page.locator("[data-testid='download-events.mid']").count() == 1
    assert "hits found" in page.inner_text("[data-testid=result-facts]")
    assert page.js_errors == []


def test_closing_the_page_removes_its_files(context, server, data_dir):
    sessions_before = set(server["root"].iterdir())
    page = open_page(context, server)
    choose(page, data_dir / "drums" / "mix.wav")
    mine = set(server["root"].iterdir()) - sessions_before
    assert len(mine) == 1
    folder = mine.pop()
    assert any(folder.rglob("mix.wav"))
    page.close()  # the page says goodbye (sendBeacon on pagehide)
    end = time.monotonic() + 30
    while folder.exists():
        assert time.monotonic() < end, f"{folder} still there 30 s after the page closed"
        time.sleep(0.05)


def test_demo_button(context, server):
    page = open_page(context, server)
    page.click("[data-testid=demo-button]")
    page.wait_for_selector("[data-testid=results][data-state=ready]")
    assert page.locator("[data-testid=component-audio]").count() == 3
    assert page.inner_text("[data-testid=source-name]") == "demo_loop.wav · the demo loop"
    assert page.js_errors == []


def test_stereo_has_a_channel_picker_and_a_stereo_remix(context, server, data_dir, tmp_path):
    mix, sr = sf.read(data_dir / "drums" / "mix.wav", dtype="float32")
    stereo = np.stack([mix, 0.5 * mix[::-1]], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, sr, subtype="FLOAT")
    page = open_page(context, server)
    choose(page, path)
    run_and_wait(page, 2)
    assert page.is_visible("#channel-pick") and page.locator("#channel option").count() == 2
    page.select_option("#channel", index=1)  # the second channel
    assert page.get_attribute("[data-testid=activations-plot]", "data-channel") == "1"
    assert all(n > 50 for n in colours_in(page, "bases-plot")[:2])
    with page.expect_download() as dl:
        page.click("[data-testid=remix-download]")
    remix, rate = sf.read(dl.value.path(), dtype="float32", always_2d=True)
    assert rate == sr and remix.shape == stereo.shape
    np.testing.assert_allclose(remix, stereo, atol=1e-5)  # all gains 1: the parts sum back to the source
    assert page.js_errors == []


def test_dropping_a_file_chooses_it(context, server, data_dir):
    import base64

    page = open_page(context, server)
    data = base64.b64encode((data_dir / "drums" / "mix.wav").read_bytes()).decode()
    transfer = page.evaluate_handle("""b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dropped loop.wav", {type: "audio/wav"}));
        return dt; }""", data)
    page.dispatch_event("[data-testid=drop-zone]", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("[data-testid=drop-zone]", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("[data-testid=source-name][data-uploaded='1']")
    assert page.inner_text("[data-testid=source-name]") == "dropped loop.wav · 775.3 KiB"
    run_and_wait(page, 2)
    assert page.inner_text("[data-testid=result-title]") == "dropped loop.wav, 2 components"
    assert page.js_errors == []


def test_sines_shows_tracks_and_plays_sines_and_residual(context, server, data_dir):
    page = open_page(context, server)
    choose(page, data_dir / "drums" / "mix.wav")
    page.select_option("[data-testid=process]", "sines")
    assert page.is_hidden("[data-testid=components]") and page.is_visible("[data-testid=detection-threshold]")
    page.fill("[data-testid=detection-threshold]", "-80")
    run_and_wait(page, None)
    assert page.inner_text("[data-testid=result-title]") == "mix.wav, sines and residual"
    assert page.is_hidden("[data-testid=bases-plot]") and page.is_visible("[data-testid=tracks-plot]")
    tracks = int(page.get_attribute("[data-testid=tracks-plot]", "data-tracks"))
    assert tracks > 10 and int(page.get_attribute("[data-testid=tracks-plot]", "data-drawn")) == tracks
    assert [page.locator(".part .name").nth(k).inner_text() for k in range(2)] == ["sines", "residual"]
    assert page.locator("[data-testid=component-audio]").count() == 2
    page.click("[data-testid=zoom-in]")  # the tracks follow the lanes' time view
    assert int(page.get_attribute("[data-testid=tracks-plot]", "data-drawn")) < tracks
    page.click("[data-testid=play-remix]")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=component-audio]')]"
                           ".every(a => a.currentTime > 0.2)")
    assert "bufnmf sines mix.wav -o mix-sines --detection-threshold -80" in page.text_content("[data-testid=commands]")
    assert page.locator("[data-testid='download-tracks.csv']").count() == 1
    assert page.js_errors == []
