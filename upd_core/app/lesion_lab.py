"""The Lesion lab: a synthetic lesion of known shape, size, contrast and place on a normal image.

`add_lesion` paints it (upd_core.lesions), `lesion_row` gives each method's heatmaps before and
after on one colour scale, its map against the lesion mask and the best Dice, and `lesion_sweep`
repeats this over lesion size x contrast (UPD study, Fig. 2); `sweep_grids` lays the sweep out as
one exact size x contrast grid per method, one cell per setting that was run (nothing re-binned).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .analysis import MethodResult, run_detector
from .cells import Cell, heatmap, picture
from .formatting import MISSING


def add_lesion(image: np.ndarray, *, size: float, contrast: float, shape: str = "ellipse",
               center: tuple[float, float] = (0.5, 0.5), blend: str = "add", texture: float = 0.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic lesion on `image` (upd_core.lesions); returns (image, mask).

    `size`: radius as a fraction of the image side; `contrast`: signed strength (> 0 brighter /
    hyper-intense, < 0 darker / hypo-intense, 0 = iso-intense, texture only); `center` (row, col)
    as fractions of the image; `blend` "add" keeps the anatomy visible under the lesion (an
    opacity on a radiograph), "replace" replaces the tissue (a tumour-like mass).
    """
    from .. import lesions

    img = np.asarray(image, np.float32)
    h, w = img.shape
    loc = (int(np.clip(round(center[0] * (h - 1)), 0, h - 1)), int(np.clip(round(center[1] * (w - 1)), 0, w - 1)))
    kind = "hyper" if contrast > 0 else "hypo" if contrast < 0 else "iso"
    return lesions.add_lesion(img, shape=shape, size=float(size), intensity=kind, strength=abs(float(contrast)),
                              texture=float(texture) if texture > 0 else None, location=loc, blend=blend,
                              seed=seed)


def lesion_shapes() -> list[str]:
    """The lesion shapes upd_core.lesions can draw ([] when it is unavailable)."""
    try:
        from .. import lesions
    except ImportError:
        return []
    return list(lesions.SHAPES)


def image_dice(mask: np.ndarray, amap: np.ndarray) -> float:
    """Best Dice over thresholds of one map against one lesion mask (UPD study Fig. 2)."""
    from ..metrics import best_dice

    return best_dice(mask, amap)[0]


def lesion_cells(image: np.ndarray, lesioned: np.ndarray, mask: np.ndarray) -> list[Cell]:
    """The normal image, the image with its lesion, and the lesion mask."""
    return [picture(image, "normal image"), picture(lesioned, "with synthetic lesion"),
            picture(mask, f"lesion mask ({100 * mask.mean():.1f} % of pixels)")]


@dataclass
class LesionRow:
    """One method on the normal and the lesioned image."""

    checkpoint: str
    before: MethodResult
    after: MethodResult
    cells: list[Cell]  # heatmap (normal), heatmap (lesion), map vs mask; [] after an error
    dice: float = float("nan")  # best Dice of the lesion map against the mask

    @property
    def error(self) -> str | None:
        return self.before.error or self.after.error


def lesion_row(det, checkpoint_id: str, image: np.ndarray, lesioned: np.ndarray, mask: np.ndarray) -> LesionRow:
    """Both heatmaps on one colour scale (99.5th percentile of both maps), the lesion map with the
    lesion drawn in green, and the best Dice of that map."""
    before = run_detector(det, image, checkpoint_id)
    after = run_detector(det, lesioned, checkpoint_id)
    if before.error or after.error:
        return LesionRow(checkpoint_id, before, after, [])
    vmax = float(np.percentile(np.concatenate([before.anomaly_map.ravel(), after.anomaly_map.ravel()]), 99.5))
    contour = heatmap(np.zeros_like(mask), after.anomaly_map).image
    inside = mask > 0.5
    contour[inside] = (0.5 * contour[inside] + 0.5 * np.array([0, 255, 0])).astype(np.uint8)
    unit = after.units.map
    cells = [heatmap(image, before.anomaly_map, unit=unit, vmax=vmax),
             heatmap(lesioned, after.anomaly_map, unit=unit, vmax=vmax), Cell(contour, "map, lesion in green")]
    dice = image_dice(mask, after.anomaly_map) if mask.any() else float("nan")
    return LesionRow(checkpoint_id, before, after, cells, dice)


def lesion_sweep(dets: dict[str, Any], image: np.ndarray, sizes: Sequence[float], contrasts: Sequence[float],
                 shape: str = "ellipse", center: tuple[float, float] = (0.5, 0.5), blend: str = "add",
                 seed: int = 0, progress: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """Dice of each detector's map for every (size, contrast) lesion on one normal image (UPD Fig. 2).

    All lesion images of the grid are predicted in one batch per detector. Rows: checkpoint, size,
    contrast, lesion_area (fraction of pixels), dice (best over thresholds), score, percentile.
    """
    grid = [(r, i) for r in sizes for i in contrasts]
    imgs, masks = [], []
    for r, i in grid:
        im, mk = add_lesion(image, size=r, contrast=i, shape=shape, center=center, blend=blend, seed=seed)
        imgs.append(im)
        masks.append(mk)
    x = np.stack(imgs).astype(np.float32)
    rows = []
    for j, (cid, det) in enumerate(dets.items()):
        pred = det.predict(x)
        for k, (r, i) in enumerate(grid):
            dice = image_dice(masks[k], pred.anomaly_map[k]) if masks[k].any() else float("nan")
            rows.append({"checkpoint": cid, "size": float(r), "contrast": float(i),
                         "lesion_area": float(np.mean(masks[k] > 0.5)), "dice": dice,
                         "score": float(pred.score[k]),
                         "percentile": None if pred.percentile is None else float(pred.percentile[k])})
        if progress:
            progress((j + 1) / max(1, len(dets)))
    return rows


@dataclass
class SweepGrid:
    """One method's sweep as an exact grid: `dice[i][j]` for contrasts[i] x sizes[j] (NaN = not run)."""

    checkpoint: str
    sizes: list[float]  # lesion radius, fraction of the image side, ascending (columns)
    contrasts: list[float]  # signed lesion contrast, ascending (rows, darkest first)
    dice: np.ndarray  # (len(contrasts), len(sizes))

    @property
    def size_labels(self) -> list[str]:
        return [f"{100 * s:g} %" for s in self.sizes]

    @property
    def contrast_labels(self) -> list[str]:
        return [f"{c:+g}" if c else "0" for c in self.contrasts]

    @property
    def text(self) -> list[list[str]]:
        """The value printed in each cell (2 decimals; MISSING where the setting was not run)."""
        return [[MISSING if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in self.dice]


def sweep_grids(rows: Sequence[dict[str, Any]]) -> list[SweepGrid]:
    """The rows of `lesion_sweep` as one grid per checkpoint (in the rows' order): exactly the sizes
    and contrasts that were run, each cell the Dice of that one setting (the mean only where a
    setting was run more than once, e.g. on several images)."""
    out = []
    for cid in dict.fromkeys(r["checkpoint"] for r in rows):
        mine = [r for r in rows if r["checkpoint"] == cid]
        sizes = sorted({float(r["size"]) for r in mine})
        contrasts = sorted({float(r["contrast"]) for r in mine})
        total = np.zeros((len(contrasts), len(sizes)))
        count = np.zeros_like(total)
        for r in mine:
            i, j = contrasts.index(float(r["contrast"])), sizes.index(float(r["size"]))
            if r["dice"] is not None and np.isfinite(r["dice"]):
                total[i, j] += r["dice"]
                count[i, j] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        out.append(SweepGrid(cid, sizes, contrasts, dice))
    return out
