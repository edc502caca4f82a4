"""Myth page render time on a warm server (issue 13 item 6: under 5 s warm).

    .venv/bin/python benchmarks/bench_myth.py                # served app + headless Chromium
    .venv/bin/python benchmarks/bench_myth.py --no-browser   # streamlit.testing AppTest only
    .venv/bin/python benchmarks/bench_myth.py --no-data      # as on a machine without a data folder

Measured:
* precomputed: which of the page's default checkpoints have precomputed manifold-test numbers
  (myth.json, `python -m upd_core myth precompute`) and which the page computes live.
* browser (Debian chromium + Playwright): `streamlit run app.py` on a free port; the first visit
  of /myth (cold: models loaded, pictures reconstructed), then `--repeats` visits in fresh browser
  pages (new sessions on the now warm server), each timed from navigation until the page is
  complete (summary table and the captions under it shown, every picture loaded, the app idle); the median of
  those is `warm_visit_s`, the number compared with the 5 s target.
* apptest: the page's script run under streamlit.testing in this process: the first run, then
  fresh sessions (new AppTest) on the warm caches.
Uses the shipped checkpoints (or $UPD_CHECKPOINTS); the data folder as configured (default
../shared/data, read at run time only) unless --no-data. JSON goes to benchmarks/results/.
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

TARGET_S = 5.0
DONE_JS = ("() => !!document.querySelector(\"[data-testid='stDataFrame']\") && "
           "document.body.textContent.includes('not FID') && "
           "!document.querySelector(\"[data-testid='stStatusWidget']\") && "
           "Array.from(document.querySelectorAll(\"[data-testid='stImage'] img\")).every(i => i.complete)")


def precomputed_status() -> dict:
    """The Myth page's default checkpoints and whether each has precomputed numbers."""
    from upd_core.app import manifold, selection, views

    rec = manifold.reconstruction_views(views.checkpoint_views())
    default = selection.page_default(rec, "myth")
    dom = manifold.domain_classifier_sha256()
    status = {cid: (manifold.load_numbers(cid, dom)[1] or "precomputed") for cid in default}
    return {"default_checkpoints": default, "status": status,
            "all_reconstruction_checkpoints": {v.id: (manifold.load_numbers(v.id, dom)[1] or "precomputed") for v in rec}}


def browser_measure(env: dict[str, str], repeats: int) -> dict:
    from tests.e2e.servers import free_port, start_streamlit, stop, wait_http

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "Playwright for Python is not installed"}
    if not Path(chromium).exists():
        return {"skipped": "Debian chromium is not installed (scripts/install_optional.sh)"}
    out: dict = {}
    log = Path(tempfile.mkdtemp(prefix="upd-bench-myth-")) / "streamlit.log"
    proc, url = start_streamlit(env, port=free_port(), log=log)
    try:
        out["server_start_s"] = round(wait_http(url + "/_stcore/health", proc, timeout=180), 2)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="upd-bench-"), executable_path=chromium,
                                                       headless=True, args=flags,
                                                       viewport={"width": 1400, "height": 1600})

            def visit() -> float:
                page = ctx.new_page()  # a new session each time
                try:
                    t = time.perf_counter()
                    page.goto(url + "/myth")
                    page.wait_for_selector("[data-testid='stDataFrame']", timeout=600_000)
                    page.wait_for_function(DONE_JS, timeout=600_000, polling=100)
                    took = time.perf_counter() - t
                    if page.locator("[data-testid='stException']").count():
                        raise RuntimeError("the Myth page shows an exception")
                    return took
                finally:
                    page.close()

            out["first_visit_s"] = round(visit(), 2)
            times = [visit() for _ in range(repeats)]
            out["warm_visits_s"] = [round(t, 2) for t in times]
            out["warm_visit_s"] = round(statistics.median(times), 2)
            ctx.close()
    finally:
        stop(proc)
    return out


def apptest_measure(repeats: int) -> dict:
    from streamlit.testing.v1 import AppTest

    def run_once() -> float:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=900)
        at.run()
        at.switch_page("pages/myth.py")
        t = time.perf_counter()
        at.run()
        took = time.perf_counter() - t
        if at.exception:
            raise RuntimeError(f"the Myth page raised: {[e.value for e in at.exception]}")
        return took

    first = run_once()
    times = [run_once() for _ in range(repeats)]
    return {"first_run_s": round(first, 2), "warm_runs_s": [round(t, 2) for t in times],
            "warm_run_s": round(statistics.median(times), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true", help="only the in-process AppTest measurement")
    ap.add_argument("--apptest", action="store_true", help="also the AppTest measurement (with the browser)")
    ap.add_argument("--no-data", action="store_true", help="hide the data folder (UPD_DATA_ROOT -> an empty folder)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_myth.json"))
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="upd-bench-myth-env-"))
    if args.no_data:
        os.environ["UPD_DATA_ROOT"] = str(tmp / "no-data")
    from upd_core.app import views

    views.configure_threads()  # as the app does
    res: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                             "load_average": os.getloadavg(), "device": views.device_summary()},
                 "data_folder": "hidden" if args.no_data else os.environ.get("UPD_DATA_ROOT", "../shared/data"),
                 "myth": precomputed_status(), "target_warm_s": TARGET_S}
    if not args.no_browser:
        env = {"UPD_CACHE_DIR": os.environ.get("UPD_CACHE_DIR", str(Path.home() / ".cache" / "upd"))}
        if args.no_data:
            env["UPD_DATA_ROOT"] = os.environ["UPD_DATA_ROOT"]
        res["browser"] = browser_measure(env, args.repeats)
    if args.no_browser or args.apptest:
        res["apptest"] = apptest_measure(args.repeats)
    warm = res.get("browser", {}).get("warm_visit_s", res.get("apptest", {}).get("warm_run_s"))
    res["warm_s"] = warm
    res["meets_target"] = None if warm is None else bool(warm < TARGET_S)
    print(json.dumps(res, indent=2))
    if warm is not None:
        print(f"Myth page, warm: {warm:.2f} s (target < {TARGET_S:.0f} s): {'OK' if warm < TARGET_S else 'SLOWER'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
