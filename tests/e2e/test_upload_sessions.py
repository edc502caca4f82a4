"""Four concurrent browser sessions on the Upload page of the real Streamlit app (issue 12).

Headless Chromium, four browser contexts (four Streamlit sessions) on one server started as the
README does, tiny generated checkpoints, generated files only:

1. each session uploads a ~0.5 MB .nii.gz whose header describes a volume that inflates to the
   command-line limit (512 MB): every session gets the app's size message, and the server's
   resident memory hardly moves (the app's cap is checked from the header before inflating; before,
   each session inflated the file twice per rerun, ~1 GB each);
2. each session uploads a .nii.gz that inflates to 64 MB (under the cap): every session gets its
   scores, and the server's peak memory stays within a bound of four such decodes.
The peak and final server RSS of each round are printed.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.app_fixtures import shared_checkpoints
from tests.e2e.servers import start_streamlit, stop, wait_http
from tests.e2e.test_browser import CHROMIUM, FLAGS, assert_no_error, settle, sync_api  # skips without chromium

pytestmark = pytest.mark.slow
SESSIONS = 4
MB = 2**20


def nifti_gz(path: Path, nbytes: int, side: int = 512) -> int:
    """Stream a .nii.gz of int16 zeros (a bright square in every 8th slice) whose data inflates to
    about `nbytes`, without holding the volume in memory. Returns the inflated size."""
    nib = pytest.importorskip("nibabel")
    depth = max(1, (nbytes - 352) // (side * side * 2))
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((side, side, depth))
    hdr.set_data_dtype(np.int16)
    hdr.set_qform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    plane = np.zeros((side, side), dtype=np.int16)
    with open(path, "wb") as f:
        f.write(z.compress(hdr.binaryblock + b"\0" * 4))
        for k in range(depth):
            plane[:] = 0
            if k % 8 == 0:
                plane[side // 4: side // 2, side // 4: side // 2] = 800
            f.write(z.compress(plane.tobytes(order="F")))
        f.write(z.flush())
    return 352 + side * side * 2 * depth


class RSSWatch:
    """Samples a process' resident memory every 50 ms in a thread (peak since the last reset)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def now(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    def _run(self) -> None:
        while not self._stop:
            try:
                self.peak = max(self.peak, self.now())
            except (OSError, StopIteration):
                return
            time.sleep(0.05)

    def reset(self) -> int:
        self.peak = self.now()
        return self.peak

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("sessions")
    env = {"UPD_CHECKPOINTS": str(shared_checkpoints(("spatial-ae",))), "UPD_DATA_ROOT": str(base / "no-data"),
           "UPD_CACHE_DIR": str(base / "cache"), "UPD_ALLOWED_DIRS": ""}
    proc, url = start_streamlit(env, log=base / "streamlit.log")
    try:
        wait_http(url + "/_stcore/health", proc, timeout=120)
        yield proc, url, base
    finally:
        stop(proc)


def wait_for_text(page, text: str, timeout: float = 300.0) -> None:
    page.get_by_text(text).first.wait_for(timeout=timeout * 1000)
    settle(page, timeout)


def test_four_concurrent_upload_sessions(server):
    proc, url, base = server
    bomb, scan = base / "bomb.nii.gz", base / "scan.nii.gz"
    bomb_size = nifti_gz(bomb, 512 * MB - 4096)
    scan_size = nifti_gz(scan, 64 * MB)
    assert bomb.stat().st_size < MB and bomb_size > 500 * MB
    watch = RSSWatch(proc.pid)
    profile = tempfile.mkdtemp(prefix="upd-chromium-")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            pages = [browser.new_context(viewport={"width": 1280, "height": 1600}).new_page() for _ in range(SESSIONS)]
            for page in pages:
                page.goto(url + "/upload", timeout=120_000)
            for page in pages:
                settle(page, 300)
                assert_no_error(page)
            baseline = watch.reset()

            for page in pages:  # round 1: all at once
                page.locator("input[type='file']").first.set_input_files(str(bomb))
            for page in pages:
                wait_for_text(page, "too large to open here")
                assert_no_error(page)
            bomb_peak, bomb_end = watch.peak, watch.now()

            watch.reset()
            for page in pages:  # round 2
                page.locator("input[type='file']").first.set_input_files(str(scan))
            for page in pages:
                wait_for_text(page, "scan.nii.gz")
                page.wait_for_selector("[data-testid='stMetricValue']", timeout=300_000)
                assert_no_error(page)
                assert page.get_by_text("too large to open here").count() == 0
            scan_peak, scan_end = watch.peak, watch.now()
            browser.close()
    finally:
        watch.close()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"\n{SESSIONS} sessions; server RSS {baseline / MB:.0f} MB with the pages open; "
          f"{bomb.stat().st_size / 1024:.0f} kB file inflating to {bomb_size / MB:.0f} MB: peak "
          f"{bomb_peak / MB:.0f} MB, after {bomb_end / MB:.0f} MB; {scan.stat().st_size / 1024:.0f} kB file "
          f"inflating to {scan_size / MB:.0f} MB: peak {scan_peak / MB:.0f} MB, after {scan_end / MB:.0f} MB")
    assert bomb_peak - baseline < 100 * MB, "the over-cap file was inflated"
    assert scan_peak - baseline < SESSIONS * 1.5 * scan_size + 200 * MB
