"""End-to-end test in a real headless Chromium (Debian `chromium` + Playwright, no browser download).

Starts the real Streamlit app (the README's command) on a free local port with the shipped
checkpoints (or tiny generated ones on a fresh clone) and no data folder, uploads a generated image
on the Upload page and checks that heatmap images and a score appear; then visits every page,
checks it shows no error, and saves a screenshot of each to screenshots/ (git-ignored). The data
root points at an empty folder, so no screenshot can contain an image from ../shared/data.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.app_fixtures import png_bytes, shared_checkpoints, smooth_images, with_blob
from tests.e2e.servers import REPO, start_streamlit, stop, wait_http

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
if CHROMIUM is None:
    pytest.skip("Debian chromium is not installed (run scripts/install_optional.sh as root)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
SHOTS = REPO / "screenshots"
PAGES = ["home", "compare", "upload", "tails", "myth", "lesion_lab", "benchmarks"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    shipped = (REPO / "checkpoints" / "manifest.json").exists()
    env = {"UPD_DATA_ROOT": str(base / "no-data"), "UPD_CACHE_DIR": str(base / "cache"), "UPD_ALLOWED_DIRS": ""}
    if not shipped:
        env["UPD_CHECKPOINTS"] = str(shared_checkpoints())
    proc, url = start_streamlit(env, log=base / "streamlit.log")
    try:
        wait_http(url + "/_stcore/health", proc, timeout=90)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser_page():
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="upd-chromium-"),
                                                   executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                   viewport={"width": 1440, "height": 2000})
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def settle(page, timeout: float = 120.0) -> None:
    """Wait until the app has finished running (no 'Running…' status widget for a moment)."""
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    t0 = time.monotonic()
    quiet_since = None
    while time.monotonic() - t0 < timeout:
        running = page.locator("[data-testid='stStatusWidget']").count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        time.sleep(0.25)
    raise TimeoutError("the app kept running")


def assert_no_error(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    assert "This app has encountered an error" not in page.content()


def test_upload_shows_heatmap_and_score(app, browser_page, tmp_path):
    page = browser_page
    page.goto(app + "/upload")
    settle(page)
    img = tmp_path / "chest.png"
    img.write_bytes(png_bytes(with_blob(smooth_images(1, 160, seed=4)[0], 2)))
    page.locator("input[type='file']").first.set_input_files(str(img))
    page.wait_for_selector("[data-testid='stMetricValue']", timeout=120_000)
    settle(page)
    assert_no_error(page)
    value = page.locator("[data-testid='stMetricValue']").first.inner_text()
    assert float(value) == float(value)  # a finite number
    assert page.get_by_text("Score").first.is_visible()
    # input + one heatmap and one anomaly map per method at least
    assert page.locator("[data-testid='stImage'] img").count() >= 3
    assert page.get_by_text("Download all results (JSON)").count() == 1
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "upload_result.png"), full_page=True)


def test_every_page_in_the_browser(app, browser_page):
    page = browser_page
    SHOTS.mkdir(exist_ok=True)
    for name in PAGES:
        page.goto(f"{app}/" if name == "home" else f"{app}/{name}")  # the default page lives at "/"
        settle(page)
        assert_no_error(page)
        assert page.get_by_text("Page not found").count() == 0, name
        assert page.locator("h1").count() >= 1, name
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
