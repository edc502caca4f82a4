"""upd_core.app.lesion_lab: synthetic lesions, before/after cells and the Dice sweep."""
from __future__ import annotations

import numpy as np

from tests.app_fixtures import smooth_images
from upd_core.app import lesion_lab


def test_add_lesion_and_sweep(ckpts):
    import upd_core

    img = smooth_images(1, 32, seed=5)[0]
    out, mask = lesion_lab.add_lesion(img, size=0.15, contrast=0.4, center=(0.5, 0.5))
    assert mask.sum() > 0 and not np.array_equal(out, img) and np.array_equal(out[mask == 0], img[mask == 0])
    assert mask[16, 16] == 1
    rows = lesion_lab.lesion_sweep({"spatial-ae-tiny-32": upd_core.load_detector("spatial-ae-tiny-32")}, img,
                                   [0.08, 0.16], [-0.3, 0.3])
    assert len(rows) == 4 and all(0 <= r["dice"] <= 1 for r in rows)
    assert {(r["size"], r["contrast"]) for r in rows} == {(0.08, -0.3), (0.08, 0.3), (0.16, -0.3), (0.16, 0.3)}
    assert set(lesion_lab.lesion_shapes()) >= {"ellipse", "circle"}
    (grid,) = lesion_lab.sweep_grids(rows)
    assert grid.sizes == [0.08, 0.16] and grid.contrasts == [-0.3, 0.3] and grid.dice.shape == (2, 2)
    by = {(r["contrast"], r["size"]): r["dice"] for r in rows}
    assert grid.dice[0, 1] == by[(-0.3, 0.16)] and grid.dice[1, 0] == by[(0.3, 0.08)]


def test_sweep_grid_is_exact_one_cell_per_setting():
    rows = [{"checkpoint": c, "size": s, "contrast": k, "dice": d}
            for c in ("a", "b") for s, k, d in ((0.03, -0.3, 0.1), (0.05, -0.3, 0.2), (0.03, 0.5, 0.3),
                                               (0.05, 0.5, float("nan")), (0.2, 0.1, 0.9))]
    a, b = lesion_lab.sweep_grids(rows)
    assert a.checkpoint == "a" and b.checkpoint == "b"
    assert a.size_labels == ["3 %", "5 %", "20 %"] and a.contrast_labels == ["-0.3", "+0.1", "+0.5"]
    assert "0" not in a.contrast_labels  # no contrast row that was never run
    assert a.text == [["0.10", "0.20", "–"], ["–", "–", "0.90"], ["0.30", "–", "–"]]


def test_lesion_row_before_and_after(ckpts):
    import upd_core

    img = smooth_images(1, 32, seed=8)[0]
    lesioned, mask = lesion_lab.add_lesion(img, size=0.2, contrast=0.5, center=(0.5, 0.5))
    pics = lesion_lab.lesion_cells(img, lesioned, mask)
    assert [c.caption for c in pics[:2]] == ["normal image", "with synthetic lesion"]
    assert pics[2].caption == f"lesion mask ({100 * mask.mean():.1f} % of pixels)"
    det = upd_core.load_detector("spatial-ae-tiny-32")
    row = lesion_lab.lesion_row(det, "spatial-ae-tiny-32", img, lesioned, mask)
    assert row.error is None and len(row.cells) == 3 and 0 <= row.dice <= 1
    assert row.cells[0].legend.vmax == row.cells[1].legend.vmax  # both heatmaps on one colour scale
    assert "|x − x̂|" in row.cells[1].legend.unit
    assert row.dice == lesion_lab.image_dice(mask, row.after.anomaly_map)
    assert row.before.score != row.after.score
    contour = row.cells[2]
    assert contour.caption == "map, lesion in green"
    inside, outside = contour.image[mask > 0.5], contour.image[mask <= 0.5]
    assert inside[:, 1].mean() > outside[:, 1].mean()  # the lesion is tinted green
    broken = lesion_lab.lesion_row(_Broken(), "x", img, lesioned, mask)
    assert broken.error == "RuntimeError: out of memory" and broken.cells == []


class _Broken:
    method, title = "spatial-ae", "broken"

    def predict(self, x):
        raise RuntimeError("out of memory")
