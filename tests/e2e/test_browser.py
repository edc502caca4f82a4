"""End-to-end test in a real headless Chromium (Debian `chromium` + Playwright, no browser download).

Starts the real Streamlit app (the README's command) on a free local port with the shipped
checkpoints (or tiny generated ones on a fresh clone) and no data folder (the data root points at
an empty folder, as on a machine without any data set), then, in the browser:
* Compare opens on the synthetic (DRR) chest radiograph of the embedded demo set;
* Upload: a generated PNG gives heatmaps with a colour bar, a score, and a PNG download that is a
  PNG of the heatmap;
* Lesion lab: the sweep over lesion size x contrast renders exactly the grid that was chosen;
* Myth: the manifold-test summary table fits a 1400 px window (no horizontal scrolling);
* every page shows no error, and a screenshot of each goes to screenshots/ (git-ignored). No
  screenshot can contain an image from ../shared/data.
Each test is bounded (pytest-timeout, and every wait has its own limit).
"""
from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

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


def use_best(page, n: int) -> None:
    """Select the page's n best checkpoints with the picker's 'Best N' button (bounds the work)."""
    page.locator("input[aria-label='N']").first.fill(str(n))
    page.locator("input[aria-label='N']").first.press("Enter")
    settle(page)
    page.get_by_role("button", name=f"Best {n}", exact=True).first.click()
    settle(page)


@pytest.mark.timeout(300)
def test_compare_opens_on_the_synthetic_drr_without_data(app, browser_page):
    from upd_core.app import demo_set

    if demo_set.chest_note() is not None:
        pytest.skip(f"no synthetic chest radiograph in this installation: {demo_set.chest_note()}")
    page = browser_page
    page.goto(app + "/compare")
    settle(page, timeout=240)
    assert_no_error(page)
    # no data folder: the picker starts on the demo set, on the normal synthetic (DRR) chest radiograph
    radio = page.locator("[data-testid='stRadio']").first
    assert radio.locator("input[type='radio']:checked").count() == 1
    assert "Demo set" in radio.locator("label:has(input:checked)").inner_text()
    picker = page.locator("[data-testid='stSelectbox']").first
    shown = picker.inner_text() + " " + " ".join(picker.locator("input").evaluate_all(
        "els => els.map(e => e.value + ' ' + (e.getAttribute('aria-label') || ''))"))
    assert "Chest radiograph (PA), synthetic (DRR)" in shown, shown
    assert page.get_by_text("Source: demo:drr-chest.").count() == 1
    assert page.locator("[data-testid='stImage'] img").count() >= 2  # the input and the methods' outputs
    assert page.locator("[data-testid='stMetricValue']").count() >= 1
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "compare_no_data.png"), full_page=True)


@pytest.mark.timeout(300)
def test_upload_shows_heatmap_colour_bar_score_and_downloads(app, browser_page, tmp_path):
    page = browser_page
    page.goto(app + "/upload")
    settle(page, timeout=240)
    img = tmp_path / "chest.png"
    img.write_bytes(png_bytes(with_blob(smooth_images(1, 160, seed=4)[0], 2)))
    page.locator("input[type='file']").first.set_input_files(str(img))
    page.wait_for_function("() => document.body.innerText.includes('chest.png — ')", timeout=120_000)
    page.wait_for_selector("[data-testid='stMetricValue']", timeout=120_000)
    settle(page, timeout=240)
    assert_no_error(page)
    value = page.locator("[data-testid='stMetricValue']").first.inner_text()
    assert float(value) == float(value)  # a finite number
    assert page.get_by_text("Score").first.is_visible()
    # input + one heatmap and one anomaly map per method at least
    assert page.locator("[data-testid='stImage'] img").count() >= 3
    # every map picture has its colour bar: a gradient with the values at both ends and the unit
    bars = page.locator("div[style*='linear-gradient']")
    assert bars.count() >= 1
    bar = bars.first.locator("xpath=..")
    ends = bar.locator("span")
    assert ends.count() == 2 and all(ends.nth(i).inner_text().strip() for i in range(2))
    assert bar.inner_text().strip().count("\n") >= 2  # low, high, unit
    assert page.get_by_text("Download all results (JSON)").count() == 1
    # the heatmap download is the PNG of the heatmap as shown
    button = page.locator("[data-testid='stDownloadButton'] button", has_text="PNG").first
    with page.expect_download(timeout=60_000) as info:
        button.click()
    download = info.value
    assert download.suggested_filename.endswith(".png")
    data = Path(download.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert Image.open(io.BytesIO(data)).size[0] >= 128
    settle(page)
    assert_no_error(page)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "upload_result.png"), full_page=True)


@pytest.mark.timeout(420)
def test_lesion_lab_sweep_renders_the_exact_size_by_contrast_grid(app, browser_page):
    page = browser_page
    page.goto(app + "/lesion_lab")
    settle(page, timeout=240)
    assert_no_error(page)
    use_best(page, 1)  # one method: the sweep stays short
    for tag in ("16", "0.5"):  # drop a size and a contrast from the default grid
        page.locator(f"button[aria-label='Remove {tag}']").first.click()
        settle(page)
    page.get_by_role("button", name="Run the sweep").click()
    page.wait_for_selector(".js-plotly-plot", timeout=240_000)
    settle(page, timeout=240)
    assert_no_error(page)
    grids = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .flatMap(p => (p.data || []).filter(t => t.type === 'heatmap')
        .map(t => ({x: Array.from(t.x), y: Array.from(t.y), text: Array.from(t.text, r => Array.from(r))})))""")
    assert len(grids) == 1, grids  # one method, one grid
    g = grids[0]
    assert g["x"] == ["3 %", "5 %", "8 %", "12 %"] and g["y"] == ["-0.3", "-0.15", "+0.1", "+0.2", "+0.3"]
    assert len(g["text"]) == 5  # one row per contrast, one column per size, a Dice printed in each cell
    assert all(len(row) == 4 and all(0 <= float(t) <= 1 for t in row) for row in g["text"]), g["text"]
    heat = page.locator(".js-plotly-plot").first
    assert heat.locator(".heatmaplayer image, .hm image").count() >= 1  # drawn, not only data
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "lesion_lab_sweep.png"), full_page=True)


@pytest.mark.timeout(420)
def test_myth_summary_table_fits_1400_px(app, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 2000})
    try:
        page.goto(app + "/myth")
        page.wait_for_selector("[data-testid='stDataFrame']", timeout=360_000)
        settle(page, timeout=360)
        assert_no_error(page)
        table = page.locator("[data-testid='stDataFrame']").first
        table.scroll_into_view_if_needed()
        fits = page.evaluate("""el => {
            const s = el.querySelector('.dvn-scroller') || el;
            return {scroll: s.scrollWidth, client: s.clientWidth, right: el.getBoundingClientRect().right};
        }""", table.element_handle())
        assert fits["scroll"] <= fits["client"] + 2, fits  # no horizontal scrolling
        assert fits["right"] <= 1400, fits
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "myth_1400.png"), full_page=True)
        # the tabs are lazy: the curse-of-resolution tab runs when it is opened
        page.get_by_role("tab", name="(b) Curse of resolution").click()
        page.wait_for_function("() => document.body.innerText.includes('Latent side at 128')", timeout=240_000)
        settle(page, timeout=240)
        assert_no_error(page)
    finally:
        page.set_viewport_size({"width": 1440, "height": 2000})


@pytest.mark.timeout(900)
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
