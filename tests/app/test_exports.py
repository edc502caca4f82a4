"""upd_core.app.exports: full-resolution heatmaps with a colour bar, the ZIP of all results."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image

from tests.app_fixtures import png_bytes, smooth_images
from upd_core.app import analysis, exports


def test_native_image_keeps_the_original_size_and_caps_huge_ones(monkeypatch):
    data = png_bytes(smooth_images(1, 96, seed=1)[0][:, :80])  # 96 x 80, not square
    assert exports.native_image(data).shape == (96, 80)
    monkeypatch.setattr(exports, "MAX_SIDE", 48)
    assert exports.native_image(data).shape == (48, 40)


def test_full_size_heatmap_and_zip(ckpts):
    import upd_core

    original = smooth_images(1, 96, seed=2)[0][:, :72]
    model = np.array(Image.fromarray(original).resize((32, 32)), np.float32)
    results = analysis.run_checkpoints(model, ["spatial-ae-tiny-32", "morphaeus-tiny-32", "nope"],
                                       upd_core.load_detector)
    pic = exports.full_size_heatmap(original, results[0])
    assert pic.shape[1] == 72 and pic.shape[0] > 96 and pic.dtype == np.uint8  # the image plus its legend strip
    assert (pic[96:] == 255).mean() > 0.5  # a white legend strip under the picture
    png = exports.full_size_png(original, results[0])
    assert Image.open(io.BytesIO(png)).size == (72, pic.shape[0])
    report = analysis.results_json(results, "chest.png")
    z = zipfile.ZipFile(io.BytesIO(exports.results_zip(original, model, results, report, "chest.png")))
    names = set(z.namelist())
    assert {"README.txt", "report.json", "input_model_size.png", "spatial-ae-tiny-32/heatmap_full_size.png",
            "spatial-ae-tiny-32/anomaly_map.npy", "morphaeus-tiny-32/reconstruction.png"} <= names
    assert not any(n.startswith("nope/") for n in names)  # a failed checkpoint is only in the report
    assert np.load(io.BytesIO(z.read("spatial-ae-tiny-32/anomaly_map.npy"))).shape == (32, 32)
    assert json.loads(z.read("report.json"))["results"][0]["score_unit"] == results[0].units.score
    assert "residual" in z.read("README.txt").decode()
    assert exports.safe_name("a b/c@gmm4.png") == "a_b_c@gmm4.png"
