"""upd_core.app.cells: finished cells and the Compare / Upload result grids."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.app_fixtures import smooth_images
from upd_core.app import analysis, cells
from upd_core.visualize import overlay


def test_cells_hold_what_is_shown():
    img = smooth_images(1, 16)[0] * 1.5 - 0.2
    pic = cells.picture(img, "cap")
    assert pic.image.min() >= 0 and pic.image.max() <= 1 and pic.caption == "cap"
    rgb = np.zeros((4, 4, 3), np.uint8)
    assert cells.picture(rgb).image is rgb
    blank = cells.empty("no prior")
    assert blank.image is None and blank.reason == "no prior"
    with pytest.raises(ValueError, match="no prior"):
        blank.png()
    amap = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    heat = cells.heatmap(np.clip(img, 0, 1), amap, download="h.png")
    np.testing.assert_array_equal(heat.image, overlay(np.clip(img, 0, 1), amap))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(heat.png()))), heat.image)
    assert heat.legend.vmax == pytest.approx(np.percentile(amap, 99.5)) and heat.legend.vmin == 0
    assert heat.legend.unit == "anomaly map" and len(heat.legend.colors) > 2 and heat.legend.colors[0].startswith("#")
    scaled = cells.colour_map(amap, vmax=2.0, unit="NLL")
    assert scaled.legend.high == "2" and scaled.legend.unit == "NLL" and blank.legend is None


def test_deformation_grid_shows_a_regular_grid_for_zero_field():
    g = cells.deformation_grid(np.zeros((2, 32, 32), np.float32), spacing=8)
    assert g.shape == (32, 32, 3) and g.dtype == np.uint8
    lines = (g != 255).any(-1)
    assert lines[0].all() and lines[:, 8].all() and not lines[4, 4]
    moved = cells.deformation_grid(np.stack([np.full((32, 32), 3.0), np.zeros((32, 32))]).astype(np.float32), 8)
    assert not np.array_equal(moved, g)
    assert "max 3.00 px" in cells.deformation_stats(np.stack([np.full((4, 4), 3.0), np.zeros((4, 4))]))


def test_compare_grid_has_a_cell_or_a_reason_for_every_output(ckpts):
    import upd_core

    img = smooth_images(1, 32, seed=3)[0]
    results = analysis.run_checkpoints(img, ["spatial-ae-tiny-32", "morphaeus-tiny-32", "nope"], upd_core.load_detector)
    grid = cells.result_grid(img, results, cells.COMPARE_COLUMNS, shared_residual_scale=True)
    assert grid.headers == ["Reconstruction", "Global prior", "Warped prior", "Deformation", "Residual |x − x̂|",
                            "Heatmap"]
    ae, morph, missing = grid.rows
    by_name = dict(zip(grid.columns, ae.cells))
    assert "learns no global prior" in by_name["prior"].reason and by_name["prior"].image is None
    assert "estimates no deformation" in by_name["deformation"].reason
    assert by_name["reconstruction"].image.shape == (32, 32) and by_name["heatmap"].download == \
        "heatmap_spatial-ae-tiny-32.png"
    assert all(c.image is not None for c in morph.cells)
    assert "px" in dict(zip(grid.columns, morph.cells))["deformation"].caption
    legends = {c: cell.legend for c, cell in zip(grid.columns, morph.cells)}
    assert "|x − x̂|" in legends["residual"].unit and legends["residual"].vmax == grid.residual_vmax
    assert legends["heatmap"].unit == results[1].units.map and "pixels" in legends["deformation"].unit
    assert legends["reconstruction"] is None
    assert missing.cells == [] and missing.result.error
    both = np.concatenate([results[0].residual.ravel(), results[1].residual.ravel()])
    assert grid.residual_vmax == pytest.approx(float(np.percentile(both, 99.5)))
    assert cells.result_grid(img, results).residual_vmax is None


def test_upload_grid_computes_each_overlay_once(ckpts, monkeypatch):
    import upd_core

    calls = []
    real = cells.overlay
    monkeypatch.setattr(cells, "overlay", lambda *a, **k: calls.append(1) or real(*a, **k))
    img = smooth_images(1, 32, seed=4)[0]
    results = analysis.run_checkpoints(img, ["spatial-ae-tiny-32", "morphaeus-tiny-32"], upd_core.load_detector)
    grid = cells.result_grid(img, results, cells.UPLOAD_COLUMNS)
    pngs = [c.png() for row in grid.rows for c in row.cells if c.download]
    assert len(pngs) == 2 and all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert len(calls) == 2  # one overlay per method, shown and downloaded
    assert grid.headers == ["Heatmap", "Anomaly map", "Reconstruction"]
    with pytest.raises(ValueError, match="unknown output"):
        cells.output_cell(img, results[0], "nope")
