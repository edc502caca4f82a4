"""The Gradio demo under load and over time, on loopback (issue 12): gradio_app.py on a free
127.0.0.1 port in a subprocess, generated images only (never ../shared/data).

* 8 concurrent gradio_client clients x 25 requests (half of them the same image, so identical
  results are computed at the same moment) -> 0 errors; p50 / p95 latency printed; the server's
  resident memory after the run stays within a bound of its level after a warm-up round; no
  empty temp file is left per upload; every result has its own file.
* With a short cache lifetime (UPD_GRADIO_CACHE_SECONDS=20) uploads and results are deleted, and
  the folders they leave empty are removed.
* With a queue of 1 and one worker, a burst of simultaneous requests gets "busy" refusals
  (gradio_client's QueueError) and the others their results.
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.app_fixtures import png_bytes, shared_checkpoints, smooth_images
from tests.e2e.servers import start_gradio, stop, wait_http

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")

CLIENTS, REQUESTS = 8, 25
CHECKPOINT = "spatial-ae-tiny-32"
RSS_BOUND = 96 * 2**20  # growth allowed over 200 requests after the warm-up
HTTP = {"timeout": 120}  # gradio_client's HTTP calls (default 5 s: too short on a loaded CI machine)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def server(base: Path, **env: str):
    cache = base / "gradio-cache"
    proc, url = start_gradio({"UPD_CHECKPOINTS": str(shared_checkpoints(("spatial-ae",))),
                              "UPD_DATA_ROOT": str(base / "no-data"), "GRADIO_TEMP_DIR": str(cache), **env},
                             log=base / "gradio.log")
    try:
        wait_http(url + "/", proc, timeout=180)
    except Exception:
        stop(proc)
        raise
    return proc, url, cache


def images(base: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        f = base / f"img{i}.png"
        f.write_bytes(png_bytes(smooth_images(1, 96, seed=100 + i)[0]))
        out.append(f)
    return out


@pytest.fixture()
def client_tmp(tmp_path, monkeypatch):
    """gradio_client stages every download in a folder of the system temp dir: keep them here."""
    staging = tmp_path / "client-tmp"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    return tmp_path


def test_8_clients_x_25_requests(client_tmp):
    base = client_tmp
    proc, url, cache = server(base)
    try:
        same, *own = images(base, CLIENTS + 1)
        clients = [gradio_client.Client(url, verbose=False, download_files=str(base / f"dl{i}"), httpx_kwargs=HTTP)
                   for i in range(CLIENTS)]
        for i, c in enumerate(clients):  # warm-up: model loaded, every session started
            c.predict(gradio_client.handle_file(str(same if i % 2 else own[i])), CHECKPOINT, api_name="/predict")
        start_rss = rss(proc.pid)
        latencies: list[float] = []
        errors: list[str] = []
        results: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(CLIENTS)

        def run(i: int) -> None:
            barrier.wait()
            for j in range(REQUESTS):
                f = same if j % 2 == 0 else own[i]  # even requests: the same image for everyone
                t0 = time.perf_counter()
                try:
                    overlay, score, pct, report = clients[i].predict(gradio_client.handle_file(str(f)), CHECKPOINT,
                                                                     api_name="/predict")
                    ok = Path(overlay).stat().st_size > 0 and report["checkpoint"] == CHECKPOINT
                    msg = None if ok else f"client {i} request {j}: empty result"
                except Exception as exc:  # noqa: BLE001 - counted
                    msg = f"client {i} request {j}: {type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if msg:
                        errors.append(msg)
                    else:
                        results.append(report["checkpoint"])

        t0 = time.perf_counter()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(1800)
        wall = time.perf_counter() - t0
        end_rss = rss(proc.pid)
        lat = sorted(latencies)
        p95 = lat[int(round(0.95 * (len(lat) - 1)))]
        print(f"\n{CLIENTS} clients x {REQUESTS} requests: {len(errors)} errors, p50 {statistics.median(lat):.2f} s, "
              f"p95 {p95:.2f} s, max {lat[-1]:.2f} s, {len(lat) / wall:.1f} requests/s; server RSS "
              f"{start_rss / 2**20:.0f} MB after warm-up -> {end_rss / 2**20:.0f} MB after the run")
        assert not errors, errors[:5]
        assert len(results) == CLIENTS * REQUESTS
        assert end_rss < start_rss + RSS_BOUND, f"RSS grew by {(end_rss - start_rss) / 2**20:.0f} MB"
        stored = files(cache)
        assert not [p for p in stored if p.stat().st_size == 0], "empty temp files left in the cache"
        outputs = [p for p in stored if p.name == "heatmap.png"]
        assert len(outputs) >= CLIENTS * (REQUESTS + 1), "every result has a file of its own"
    finally:
        stop(proc)


def test_uploads_and_results_are_deleted_after_the_cache_lifetime(client_tmp):
    base = client_tmp
    life = 20  # long enough for one request on a busy CI machine (an upload must outlive its request)
    proc, url, cache = server(base, UPD_GRADIO_CACHE_SECONDS=str(life))
    try:
        c = gradio_client.Client(url, verbose=False, download_files=str(base / "dl"), httpx_kwargs=HTTP)
        f, = images(base, 1)
        c.predict(gradio_client.handle_file(str(f)), CHECKPOINT, api_name="/predict")
        stored = files(cache)
        assert any(p.name == f.name for p in stored) and any(p.name == "heatmap.png" for p in stored)
        deadline = time.monotonic() + 4 * life
        while time.monotonic() < deadline and any(p.name in (f.name, "heatmap.png") for p in files(cache)):
            time.sleep(1)
        left = [str(p.relative_to(cache)) for p in files(cache) if p.name in (f.name, "heatmap.png")]
        assert not left, f"still stored after the cache lifetime: {left}"
        time.sleep(life + 10)  # the sweeper removes the emptied folders one lifetime later
        empty = [p for p in cache.rglob("*") if p.is_dir() and p.name != "upd-results" and not any(p.iterdir())]
        assert not empty, [str(p) for p in empty]
    finally:
        stop(proc)


def test_a_full_queue_refuses_with_busy(client_tmp):
    base = client_tmp
    proc, url, cache = server(base, UPD_GRADIO_QUEUE_SIZE="1", UPD_GRADIO_CONCURRENCY="1")
    try:
        big = base / "big.png"  # a little slower to decode: keeps the one worker busy
        big.write_bytes(png_bytes(smooth_images(1, 384, seed=5)[0]))
        n = 8
        clients = [gradio_client.Client(url, verbose=False, download_files=str(base / f"dl{i}"), httpx_kwargs=HTTP)
                   for i in range(n)]
        outcome: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(n)

        def run(i: int) -> None:
            barrier.wait()
            try:
                clients[i].predict(gradio_client.handle_file(str(big)), CHECKPOINT, api_name="/predict")
                got = "ok"
            except gradio_client.utils.QueueError:
                got = "busy"
            except Exception as exc:  # noqa: BLE001
                got = f"{type(exc).__name__}: {exc}"
            with lock:
                outcome.append(got)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        print(f"\nqueue of 1, one worker, {n} simultaneous requests: {outcome.count('ok')} done, "
              f"{outcome.count('busy')} refused as busy")
        assert len(outcome) == n and set(outcome) <= {"ok", "busy"}, outcome
        assert outcome.count("busy") >= 1 and outcome.count("ok") >= 1
    finally:
        stop(proc)
