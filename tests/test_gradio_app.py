"""The Gradio demo's storage and queue hygiene (issue 12), in process (no server):

* an upload leaves no empty temp file behind (Gradio's gr.File(type="filepath") made one per upload);
* each result is written under a name of its own, so identical results never share (and
  concurrently rewrite) one file;
* the queue is bounded and a request that finds it full gets the "busy" message;
* uploads and results have a bounded lifetime (Gradio's delete_cache from UPD_GRADIO_CACHE_SECONDS)
  and the sweeper removes what delete_cache leaves (empty folders, results of an earlier run).
The same over HTTP, under load, is tests/e2e/test_gradio_load.py.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from tests.app_fixtures import env, png_bytes, shared_checkpoints, smooth_images  # noqa: E402

import gradio_app  # noqa: E402


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A private Gradio cache folder and no checkpoints (building the demo needs none)."""
    root = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    monkeypatch.setenv("UPD_CHECKPOINTS", str(tmp_path / "no-checkpoints"))
    for name in ("UPD_GRADIO_QUEUE_SIZE", "UPD_GRADIO_CONCURRENCY", "UPD_GRADIO_CACHE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return root


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def file_component(demo: gr.Blocks):
    return next(b for b in demo.blocks.values() if isinstance(b, gr.File))


def test_an_upload_leaves_no_empty_temp_file(cache, tmp_path):
    from gradio.data_classes import FileData

    demo = gradio_app.build()
    upload = cache / "abc" / "chest.png"  # where Gradio puts an upload
    upload.parent.mkdir(parents=True)
    upload.write_bytes(png_bytes(smooth_images(1, 32)[0]))
    before = files_under(cache)
    comp = file_component(demo)
    for _ in range(3):
        got = comp.preprocess(FileData(path=str(upload), orig_name="chest.png"))
        assert str(got) == str(upload) and Path(got).read_bytes() == upload.read_bytes()
    after = files_under(cache)
    assert after == before, f"new files: {[str(p) for p in after if p not in before]}"
    assert comp.get_block_name() == "file"  # the browser still renders a gr.File
    assert not Path(gradio_app.__file__).with_suffix(".pyi").exists()  # no Gradio stub written into the repo


def test_identical_results_are_written_under_distinct_names(cache, tmp_path):
    ckpts = shared_checkpoints(("spatial-ae",))
    f = tmp_path / "chest.png"
    f.write_bytes(png_bytes(smooth_images(1, 80, seed=7)[0]))
    with env(UPD_CHECKPOINTS=str(ckpts)):
        first = gradio_app.predict(str(f), "spatial-ae-tiny-32")
        second = gradio_app.predict(str(f), "spatial-ae-tiny-32")
    a, b = Path(first[0]), Path(second[0])
    assert a != b and a.parent != b.parent
    assert a.read_bytes() == b.read_bytes()  # the same result, in two files
    for p in (a, b):
        assert p.is_relative_to(cache / gradio_app.OUTPUTS) and p.suffix == ".png"
    assert first[1] == second[1] and first[3]["checkpoint"] == "spatial-ae-tiny-32"


def test_the_queue_is_bounded_and_a_full_queue_says_busy(cache):
    limits = gradio_app.Limits(queue_size=3, concurrency=1, cache_seconds=60)
    demo = gradio_app.build(limits)
    queue = demo._queue
    assert queue.max_size == 3 and demo._queue.default_concurrency_limit == 1
    queue.max_size = 0  # full
    ok, message, state = asyncio.run(queue.push(SimpleNamespace(fn_index=0), None, None))
    assert not ok and state == "queue_full"
    assert "busy" in message and "3 requests" in message and "try again" in message


def test_limits_come_from_the_environment(cache, monkeypatch):
    assert gradio_app.Limits.from_env() == gradio_app.Limits()
    monkeypatch.setenv("UPD_GRADIO_QUEUE_SIZE", "5")
    monkeypatch.setenv("UPD_GRADIO_CONCURRENCY", "3")
    monkeypatch.setenv("UPD_GRADIO_CACHE_SECONDS", "120")
    limits = gradio_app.Limits.from_env()
    assert (limits.queue_size, limits.concurrency, limits.cache_seconds, limits.sweep_seconds) == (5, 3, 120, 40)
    demo = gradio_app.build()
    assert demo.delete_cache == (40, 120) and demo._queue.max_size == 5
    monkeypatch.setenv("UPD_GRADIO_QUEUE_SIZE", "0")
    with pytest.raises(SystemExit, match="at least 1"):
        gradio_app.Limits.from_env()


def test_default_lifetime_is_bounded(cache):
    demo = gradio_app.build()
    frequency, age = demo.delete_cache
    assert 0 < age <= 3600 and 0 < frequency <= 300


def test_sweep_removes_empty_folders_and_old_results_only(tmp_path):
    root = tmp_path / "cache"
    old, new = time.time() - 1000, time.time()
    empty_old = root / "hash1"
    empty_new = root / "hash2"
    kept = root / "hash3" / "example.png"  # a file Gradio tracks (e.g. an example): not ours to delete
    result_old = root / gradio_app.OUTPUTS / "r1" / "heatmap.png"
    result_new = root / gradio_app.OUTPUTS / "r2" / "heatmap.png"
    for d in (empty_old, empty_new):
        d.mkdir(parents=True)
    for f in (kept, result_old, result_new):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"png")
    for p in (kept, result_old, kept.parent, result_old.parent, empty_old):
        os.utime(p, (old, old))
    for p in (empty_new, result_new):
        os.utime(p, (new, new))
    gradio_app.sweep(root, age=100)
    assert not empty_old.exists() and empty_new.exists()
    assert kept.exists()
    assert not result_old.exists() and result_new.exists()
    assert (root / gradio_app.OUTPUTS).is_dir()
    assert np.all([p.exists() for p in (root, result_new.parent)])
