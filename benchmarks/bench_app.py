"""App performance: warm upload -> all heatmaps, and cold start of the Streamlit app.

Targets (issue 6): warm upload -> heatmaps of all shipped single-pass methods < 2 s on this CPU;
cold start < 15 s.

    .venv/bin/python benchmarks/bench_app.py            # all measurements, JSON to benchmarks/results/
    .venv/bin/python benchmarks/bench_app.py --no-browser

Measured:
* warm_upload_core_s: what the Upload page computes for one uploaded PNG once the models are
  loaded (decode + every checkpoint's predict + the result cells and their heatmap PNGs + OOD
  check), median of repeats, for
  (a) the page's default selection and (b) every single-pass checkpoint (no gradient maps).
* model_load_s: loading all those checkpoints once (sha256 check + safetensors), i.e. the first
  upload's extra cost.
* cold_start_server_s: `streamlit run app.py` until the server answers its health check.
* cold_start_first_page_s: process start until the Home page is rendered in headless Chromium
  (when Debian chromium + Playwright are available).
* warm_upload_browser_s: in the browser, a second upload until all scores are shown.
Uses the shipped checkpoints (or $UPD_CHECKPOINTS) and a generated image, never ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import upd_core  # noqa: E402
from upd_core.app import analysis, cells, selection, views  # noqa: E402


def test_png(seed: int = 0) -> bytes:
    from tests.app_fixtures import png_bytes, smooth_images, with_blob

    return png_bytes(with_blob(smooth_images(1, 224, seed=seed)[0], seed))


def core_upload(ids: list[str], repeats: int) -> dict:
    """Upload-page work for one image with warm (already loaded) models."""
    t0 = time.perf_counter()
    dets = {cid: upd_core.load_detector(cid) for cid in ids}
    load_s = time.perf_counter() - t0
    data = [test_png(i) for i in range(repeats + 1)]

    def once(blob: bytes) -> float:
        t = time.perf_counter()
        img = upd_core.load_image(blob, size=128)
        results = analysis.run_checkpoints(img, ids, dets.__getitem__)
        grid = cells.result_grid(img, results, cells.UPLOAD_COLUMNS)
        for row in grid.rows:  # the PNG downloads, encoded from the cells shown
            for cell in row.cells:
                if cell.download:
                    cell.png()
        analysis.ood_check(results, analysis.domain_probability(img))
        return time.perf_counter() - t

    once(data[0])  # warm-up (first call allocates, JIT-free but caches kernels)
    times = [once(b) for b in data[1:]]
    return {"checkpoints": ids, "model_load_s": round(load_s, 3), "warm_upload_core_s": round(statistics.median(times), 3),
            "warm_upload_core_max_s": round(max(times), 3)}


def browser_measure(env: dict[str, str]) -> dict:
    """Cold start (process -> Home rendered) and a warm upload in headless Chromium."""
    from tests.e2e.servers import free_port, start_streamlit, stop, wait_http

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    out: dict = {}
    t0 = time.perf_counter()
    proc, url = start_streamlit(env, port=free_port())
    try:
        out["cold_start_server_s"] = round(wait_http(url + "/_stcore/health", proc, timeout=120), 2)
        if sync_playwright is None or not Path(chromium).exists():
            out["browser"] = "skipped (no Playwright or Debian chromium)"
            return out
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="upd-bench-"), executable_path=chromium,
                                                       headless=True, args=flags, viewport={"width": 1440, "height": 1600})
            page = ctx.new_page()
            page.goto(url)
            page.wait_for_selector("h1", timeout=120_000)
            page.wait_for_selector("[data-testid='stDataFrame'], [data-testid='stAlert']", timeout=120_000)
            out["cold_start_first_page_s"] = round(time.perf_counter() - t0, 2)
            page.goto(url + "/upload")
            page.wait_for_selector("input[type='file']", state="attached", timeout=60_000)
            tmp = Path(tempfile.mkdtemp())
            times = []
            for i in range(3):  # the first upload loads the models; the next ones are warm
                f = tmp / f"img{i}.png"
                f.write_bytes(test_png(10 + i))
                t = time.perf_counter()
                page.locator("input[type='file']").first.set_input_files(str(f))
                page.wait_for_function(  # the new file's analysis is on screen and the app is idle
                    "name => document.body.innerText.includes(name + ' — ') && "
                    "document.querySelectorAll(\"[data-testid='stMetricValue']\").length > 0 && "
                    "!document.querySelector(\"[data-testid='stStatusWidget']\")", arg=f.name, timeout=120_000)
                times.append(time.perf_counter() - t)
            out["first_upload_browser_s"] = round(times[0], 2)
            out["warm_upload_browser_s"] = round(min(times[1:]), 2)
            out["n_scores_shown"] = page.locator("[data-testid='stMetricValue']").count()
            ctx.close()
    finally:
        stop(proc)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_app.json"))
    args = ap.parse_args(argv)
    views.configure_threads()  # as the app does
    found = views.checkpoint_views()
    if not found:
        print("no checkpoints found; train some or set UPD_CHECKPOINTS", file=sys.stderr)
        return 1
    single = [v.id for v in found if not v.needs_grad]
    default = selection.page_default(found, "upload")  # what the Upload page selects by default
    res: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                             "torch_threads": __import__("torch").get_num_threads(), "device": views.device_summary()},
                 "upload_page_default": core_upload(default, args.repeats),
                 "all_single_pass": core_upload(single, args.repeats)}
    if not args.no_browser:
        with tempfile.TemporaryDirectory() as d:
            env = {"UPD_DATA_ROOT": str(Path(d) / "no-data"), "UPD_CACHE_DIR": str(Path(d) / "cache")}
            res["browser"] = browser_measure(env)
    res["targets"] = {"warm_upload_s": 2.0, "cold_start_s": 15.0}
    print(json.dumps(res, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
