"""The demo in a real browser: `streamlit run app.py` on a free local port, driven by Debian's
headless Chromium through Playwright. Uploads two images through the page's file input and
checks that both models' predicted labels and latencies appear; saves a screenshot. A second
test uploads a scene to the tiny real exported detector and finds its boxes listed.

Needs /usr/bin/chromium (CI installs it in .ci/run); without it the test FAILS, it does not skip.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from serving.demo.settings import RUNS_ENV

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"]
START_TIMEOUT_S = 45
ANSWER_TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, url: str, log: Path) -> None:
    """Poll Streamlit's health endpoint until it answers 'ok' (bounded)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode} before answering:\n"
                        f"{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"streamlit did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def serve(root: Path, tmp_path: Path):
    """A streamlit server for app.py on a free port with this runs root; always terminated."""
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, RUNS_ENV: str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port),
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def server(demo_runs_root, tmp_path):
    """The demo on the tiny exported classifier run."""
    with serve(demo_runs_root, tmp_path) as url:
        yield url


@pytest.fixture
def det_server(det_runs_root, tmp_path):
    """The demo on the tiny exported detector run (tests/demo_runs.py build_det_run)."""
    with serve(det_runs_root, tmp_path) as url:
        yield url


@contextlib.contextmanager
def demo_page(url: str, shot: Path, height: int = 1000):
    """Headless Chromium on the demo at url, once its title shows; on leaving, no exception box
    may be on the page and a screenshot is saved to shot."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's chromium "
                    "(apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(url, timeout=ANSWER_TIMEOUT_MS)
            expect(page.get_by_text("CNN mobile pipeline · demo")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
            yield page
            expect(page.get_by_test_id("stException")).to_have_count(0)
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_upload_in_chromium_shows_labels_and_latency(server, tmp_path):
    from playwright.sync_api import expect

    with demo_page(server, tmp_path / "demo_browser.png") as page:
        # compare fp32 (A) with int8 (B): the sidebar checkbox
        page.get_by_text("Compare with a second artifact (B)").click()
        expect(page.locator("strong", has_text="B · tiny/model_int8_uint8io.tflite")).to_be_visible(
            timeout=ANSWER_TIMEOUT_MS)
        uploader = page.get_by_test_id("stFileUploader").filter(has_text="Upload images")
        uploader.locator("input[type=file]").set_input_files(
            [str(ROOT / "samples" / "circle.png"), str(ROOT / "samples" / "star.png")])
        for label in ("A: circle", "B: circle", "A: star", "B: star"):
            expect(page.locator("strong", has_text=label)).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        answer = page.get_by_test_id("stMarkdownContainer").filter(has_text="A: circle").first
        assert re.search(r"latency \d+\.\d+ ms \(model \d+\.\d+ ms\)", answer.inner_text())
        expect(page.get_by_text(re.compile(r"Top-1 agreement 2/2"))).to_be_visible()
        # Streamlit scrolls inside its own container, so full_page cannot grow the shot:
        # a tall viewport shows the whole page instead
        page.set_viewport_size({"width": 1400, "height": 2600})
        page.wait_for_timeout(800)   # let the bar charts redraw at the new size


def test_upload_a_scene_to_a_real_detector_in_chromium(det_server, tmp_path):
    from playwright.sync_api import expect

    from tests.demo_runs import scene_truth

    with demo_page(det_server, tmp_path / "demo_browser_detector.png", height=1400) as page:
        expect(page.get_by_text("NMS in the file")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        uploader = page.get_by_test_id("stFileUploader").filter(has_text="Upload images")
        uploader.locator("input[type=file]").set_input_files([str(ROOT / "samples" / "scene_b.png")])
        expect(page.locator("strong", has_text="A: det/")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
        head = page.get_by_test_id("stMarkdownContainer").filter(has_text="A: det/").first
        assert re.search(r"latency \d+\.\d+ ms \(model \d+\.\d+ ms\)", head.inner_text())
        expect(page.get_by_text(re.compile(r"^\d+ boxes \(score > 0\.30"))).to_be_visible()
        boxes = page.get_by_test_id("stTable").filter(has_text="box x0,y0,x1,y1")
        expect(boxes).to_have_count(1)
        listed = set(boxes.inner_text().split())
        truth = {o["label"] for o in scene_truth()["scene_b.png"]["objects"]}     # circle, square
        assert truth <= listed, listed
        expect(page.get_by_text("Download annotated image")).to_be_visible()
