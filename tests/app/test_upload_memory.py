"""Bounded memory for uploads (issue 12): the apps decode an upload once, under a lower cap than the CLI.

* `upd_core.app.uploads`: the apps' cap is below the command-line limit, is checked from the
  header before anything is inflated, and a file at the cap decodes with a peak resident memory
  close to its decoded size (benchmarks/bench_upload_memory.py, in a fresh process);
* the Upload page decodes each upload once per session: not twice per rerun, not again when the
  slice slider moves or the methods change; a file over the cap is a message, not a traceback.
Four concurrent sessions on the Upload page are tested in a real browser
(tests/e2e/test_upload_sessions.py): streamlit.testing runs one session at a time (its AppTests
share one mock runtime, so they cannot run in parallel threads).
"""
from __future__ import annotations

import gzip
import importlib.util
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tests.app_fixtures import env, shared_checkpoints, smooth_images
from upd_core import imaging
from upd_core.app import uploads
from upd_core.errors import ImageError

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TINY = ("spatial-ae",)  # one tiny checkpoint is enough here (and quick to make)


def nifti_bytes(depth: int = 12, side: int = 32, seed: int = 3, compress: bool = True) -> bytes:
    nib = pytest.importorskip("nibabel")
    vol = (smooth_images(depth, side, seed=seed) * 1000).astype(np.int16).transpose(1, 2, 0)
    raw = nib.Nifti1Image(vol, np.eye(4)).to_bytes()
    return gzip.compress(raw) if compress else raw


def zeros_nifti_gz(nbytes: int) -> bytes:
    """A .nii.gz of a few kB whose int16 volume inflates to about `nbytes`."""
    nib = pytest.importorskip("nibabel")
    depth = max(1, nbytes // (256 * 256 * 2))
    vol = np.zeros((256, 256, depth), dtype=np.int16)
    vol[100:150, 100:150, :] = 500
    return gzip.compress(nib.Nifti1Image(vol, np.eye(4)).to_bytes(), compresslevel=9)


# ---------------------------------------------------------------------------- the apps' cap

def test_app_cap_is_below_the_cli_limit(monkeypatch):
    monkeypatch.delenv("UPD_APP_MAX_DECODED_MB", raising=False)
    assert uploads.app_max_decoded_bytes() == uploads.APP_MAX_DECODED_BYTES
    assert uploads.APP_MAX_DECODED_BYTES < imaging.MAX_DECOMPRESSED_BYTES
    assert uploads.APP_MAX_DECODED_BYTES // 4 < imaging.MAX_PIXELS  # a 2D plane counts 4 bytes a pixel
    monkeypatch.setenv("UPD_APP_MAX_DECODED_MB", "2")
    assert uploads.app_max_decoded_bytes() == 2 * 2**20
    monkeypatch.setenv("UPD_APP_MAX_DECODED_MB", "100000")  # never above the CLI's limit
    assert uploads.app_max_decoded_bytes() == imaging.MAX_DECOMPRESSED_BYTES


def test_a_file_over_the_cap_is_refused_from_its_header_before_inflating(monkeypatch):
    data = zeros_nifti_gz(3 * 2**20)  # ~40 kB inflating to 3 MB
    monkeypatch.setenv("UPD_APP_MAX_DECODED_MB", "2")
    tracemalloc.start()
    try:
        for decode in (uploads.decode_upload, uploads.load_upload):
            with pytest.raises(ImageError, match="too large to open here") as info:
                decode(data, 64)
            assert "2 MB" in str(info.value) and "command-line" in str(info.value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"refusing allocated {peak / 2**20:.1f} MB"
    assert imaging.load_image(data, 64).shape == (64, 64)  # the command line keeps its limit


def test_a_2d_image_over_the_cap_is_refused_before_decoding(monkeypatch):
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (1024, 1024)).save(buf, format="PNG")  # 4 MB as float32
    monkeypatch.setenv("UPD_APP_MAX_DECODED_MB", "2")
    with pytest.raises(ImageError, match="too large to open here"):
        uploads.decode_upload(buf.getvalue(), 64)
    assert imaging.load_image(buf.getvalue(), 64).shape == (64, 64)


def test_decode_upload_keeps_every_slice_as_load_image_gives_it():
    data = nifti_bytes()
    dec = uploads.decode_upload(data, 64)
    assert dec.digest == uploads.digest(data) and dec.n_slices == 12 and dec.default_slice == 6
    assert dec.info == imaging.image_info(data)
    assert sorted(dec.slices) == list(range(12))
    for k in (0, 6, 11):
        assert np.array_equal(dec.image(data, k), imaging.load_image(data, 64, slice_index=k))
    assert np.array_equal(dec.image(data), imaging.load_image(data, 64))


def test_slices_beyond_the_kept_stack_are_decoded_on_demand(monkeypatch):
    data = nifti_bytes(depth=12)
    monkeypatch.setattr(uploads, "MAX_STACK_BYTES", 3 * 64 * 64 * 4)  # room for 3 slices
    dec = uploads.decode_upload(data, 64)
    assert list(dec.slices) == [6]
    for k in (0, 1, 2, 3, 4):
        assert np.array_equal(dec.image(data, k), imaging.load_image(data, 64, slice_index=k))
    assert len(dec.slices) <= 3 and 6 in dec.slices  # bounded; the default slice stays
    with pytest.raises(ValueError):
        dec.image(b"other bytes", 9)


def test_a_file_at_the_cap_peaks_near_its_decoded_size(monkeypatch, tmp_path):
    """The benchmark's measurement, at a 32 MB cap: the decode of a .nii.gz that inflates to the cap
    holds about the inflated data once (it grew to twice that while inflating, before)."""
    spec = importlib.util.spec_from_file_location("bench_upload_memory", REPO / "benchmarks" / "bench_upload_memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cap = 32 * 2**20
    monkeypatch.setenv("UPD_APP_MAX_DECODED_MB", "32")
    scan, warm = tmp_path / "scan.nii.gz", tmp_path / "warm.nii.gz"
    decoded = bench.nifti_gz(scan, cap)
    bench.nifti_gz(warm, 2**20)
    assert decoded <= cap and scan.stat().st_size < 200_000
    for how in ("upload-page", "gradio"):
        m = bench.measure(scan, how, warm)
        peak = m["rss_peak"]
        assert peak < 1.5 * decoded + 8 * 2**20, f"{how}: peak {peak / 2**20:.0f} MB for {decoded / 2**20:.0f} MB"
        print(f"{how}: peak RSS {m['rss_peak'] / 2**20:.0f} MB = {m['rss_peak'] / decoded:.2f} x the decoded "
              f"{decoded / 2**20:.0f} MB")


# ---------------------------------------------------------------------------- the Upload page

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402


@pytest.fixture(scope="module")
def page_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("upload-memory")
    with env(UPD_CHECKPOINTS=str(shared_checkpoints(TINY)), UPD_DATA_ROOT=str(base / "no-data"),
             UPD_CACHE_DIR=str(base / "cache"), UPD_ALLOWED_DIRS=None, UPD_APP_MAX_DECODED_MB=None):
        yield base


class DecodeCounter:
    """Counts how often imaging reads (sniffs) the bytes of given uploads."""

    def __init__(self, monkeypatch, *payloads: bytes):
        self.payloads = {bytes(p): 0 for p in payloads}
        self.lock = threading.Lock()
        orig = imaging._sniff

        def sniff(data):
            with self.lock:
                if bytes(data) in self.payloads:
                    self.payloads[bytes(data)] += 1
            return orig(data)

        monkeypatch.setattr(imaging, "_sniff", sniff)

    def __getitem__(self, payload: bytes) -> int:
        return self.payloads[payload]


def upload_page(timeout: float = 180) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    at.switch_page("pages/upload.py")
    at.run()
    return at


def scores(at: AppTest) -> list[str]:
    return [m.value for m in at.metric if m.label == "Score"]


def test_upload_page_decodes_each_upload_once(page_env, monkeypatch):
    vol, other = nifti_bytes(seed=3), nifti_bytes(seed=4)
    count = DecodeCounter(monkeypatch, vol, other)
    at = upload_page()
    at.file_uploader(key="upload_file").set_value(("brain.nii.gz", vol, "application/gzip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert scores(at) and count[vol] == 1, f"decoded {count[vol]} times on the first run"
    for k in (3, 9, 0):
        at.slider(key="upload_slice").set_value(k).run()
        assert not at.exception and scores(at)
    assert count[vol] == 1, f"decoded again when the slice moved ({count[vol]} decodes)"
    at.toggle(key="upload_large").set_value(True).run()  # any other rerun
    assert count[vol] == 1
    at.file_uploader(key="upload_file").set_value(("other.nii.gz", other, "application/gzip")).run()
    assert not at.exception and scores(at)
    assert count[other] == 1 and count[vol] == 1


def test_upload_over_the_app_cap_is_a_message(page_env, monkeypatch):
    monkeypatch.setenv("UPD_APP_MAX_DECODED_MB", "1")
    at = upload_page()
    at.file_uploader(key="upload_file").set_value(("big.nii.gz", zeros_nifti_gz(2 * 2**20), "application/gzip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.error and "too large to open here" in at.error[0].value
    assert not scores(at)


def test_uploads_on_other_pages_have_the_app_cap_too(page_env, monkeypatch):
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (1024, 1024)).save(buf, format="PNG")  # 4 MB as float32
    monkeypatch.setenv("UPD_APP_MAX_DECODED_MB", "1")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("pages/compare.py")
    at.run()
    at.radio(key="compare_src").set_value("Upload").run()
    at.file_uploader(key="compare_upload").set_value(("big.png", buf.getvalue(), "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("too large to open here" in e.value for e in at.error)
