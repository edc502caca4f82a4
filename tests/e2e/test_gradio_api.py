"""The Gradio demo over HTTP: gradio_client against gradio_app.py launched on 127.0.0.1:<random port>.

Checks the /predict endpoint (heatmap overlay + score + percentile + report), that a bad file comes
back as the ImageError message, that an unknown checkpoint is refused, that the server listens on
127.0.0.1 by default, and that it serves no file outside its temp folder.
"""
from __future__ import annotations

import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.app_fixtures import png_bytes, shared_checkpoints, smooth_images
from tests.e2e.servers import start_gradio, stop, wait_http

pytestmark = pytest.mark.slow
gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("gradio")
    ckpts = shared_checkpoints()
    log = base / "gradio.log"
    proc, url = start_gradio({"UPD_CHECKPOINTS": str(ckpts), "UPD_DATA_ROOT": str(base / "no-data"),
                              "GRADIO_TEMP_DIR": str(base / "gradio-tmp")}, log=log)
    try:
        wait_http(url + "/", proc, timeout=90)
        yield url, log, base
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def client(server):
    url, _, base = server
    return gradio_client.Client(url, verbose=False, download_files=str(base / "downloads"))


def test_predict_over_http(client, tmp_path):
    from PIL import Image

    f = tmp_path / "chest.png"
    f.write_bytes(png_bytes(smooth_images(1, 80, seed=7)[0]))
    overlay, score, percentile, report = client.predict(gradio_client.handle_file(str(f)), "spatial-ae-tiny-32",
                                                        api_name="/predict")
    heat = np.asarray(Image.open(overlay))
    assert heat.ndim == 3 and heat.shape[2] == 3 and heat.shape[:2] == (128, 128)
    assert np.isfinite(score) and 0 <= percentile <= 100
    assert report["checkpoint"] == "spatial-ae-tiny-32" and report["score"] == pytest.approx(score)
    assert report["out_of_distribution"] in ("ok", "unusual", "far")


def test_bad_file_returns_the_image_error_message(client, tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_text("<html><body>not an image</body></html>")
    with pytest.raises(Exception, match="not an image"):
        client.predict(gradio_client.handle_file(str(bad)), "spatial-ae-tiny-32", api_name="/predict")


def test_unknown_checkpoint_is_refused(client, tmp_path):
    f = tmp_path / "x.png"
    f.write_bytes(png_bytes(smooth_images(1, 32)[0]))
    with pytest.raises(Exception, match="Unknown checkpoint|not in the list of choices"):
        client.predict(gradio_client.handle_file(str(f)), "../../etc/passwd", api_name="/predict")


def test_listens_on_localhost_and_serves_no_outside_files(server):
    url, log, _ = server
    assert url.startswith("http://127.0.0.1:")
    assert "127.0.0.1" in log.read_text(errors="replace")
    for path in ("/gradio_api/file=/etc/passwd", "/file=/etc/passwd", "/gradio_api/file=../../../etc/passwd"):
        try:
            with urllib.request.urlopen(url + path, timeout=10) as r:
                body = r.read()
                assert b"root:" not in body, path
        except urllib.error.HTTPError as exc:
            assert exc.code in (400, 403, 404), path
