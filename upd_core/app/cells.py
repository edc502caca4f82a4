"""Finished cells: a picture (or the reason there is none) with its caption, ready to lay out.

Pages and the Gradio demo show cells as they are. A heatmap cell holds the overlay that is
shown, and its PNG download encodes that same array, so the overlay is computed once. Every map
cell carries its `Legend` (colours, the values they stand for and the unit): the page draws it as
a colour bar under the picture.
`result_grid` builds the Compare and Upload grids from `MethodResult`s: one row per method, one
cell per output; an output a method does not have becomes an empty cell that says why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..visualize import colorize, colormap_hex, map_scale, overlay, to_png
from .analysis import MethodResult
from .formatting import sig3
from .views import missing_reason

RESIDUAL_UNIT = "residual |x − x̂| (intensity, 0–1)"
DISPLACEMENT_COLOURS = ["#0040ff", "#ff4000"]  # deformation_grid: blue = small, red = large


@dataclass(frozen=True)
class Legend:
    """The colour bar of a map picture: colours from `vmin` to `vmax`, in `unit`."""

    colors: tuple[str, ...]
    vmin: float
    vmax: float
    unit: str
    note: str = ""  # e.g. how an overlay shows low values

    @property
    def low(self) -> str:
        return sig3(self.vmin)

    @property
    def high(self) -> str:
        return sig3(self.vmax)


def legend(cmap: str, vmax: float, unit: str, note: str = "", vmin: float = 0.0) -> Legend:
    return Legend(tuple(colormap_hex(cmap)), float(vmin), float(vmax), unit, note)


@dataclass(frozen=True, eq=False)
class Cell:
    """One picture exactly as shown ((H,W) float in [0,1] or (H,W,3) uint8), or why there is none."""

    image: np.ndarray | None = None
    caption: str = ""
    reason: str = ""  # why the cell is empty (the method has no such output, ...)
    download: str = ""  # file name under which the page offers the picture as PNG ('' = none)
    legend: Legend | None = None  # the colour bar of a map picture

    def png(self) -> bytes:
        """The shown picture as PNG bytes (the picture itself is not recomputed)."""
        if self.image is None:
            raise ValueError(f"an empty cell has no picture ({self.reason})")
        return to_png(self.image)


def picture(arr: np.ndarray, caption: str = "", download: str = "") -> Cell:
    """A grey image (clipped to [0, 1]) or a uint8 colour picture, as a cell."""
    a = np.asarray(arr)
    return Cell(a if a.dtype == np.uint8 else np.clip(a, 0, 1), caption, download=download)


def empty(reason: str) -> Cell:
    """A cell without picture that says why."""
    return Cell(reason=reason)


OVERLAY_NOTE = "overlay: the lower the value, the fainter the colour"


def heatmap(image: np.ndarray, amap: np.ndarray, caption: str = "", download: str = "", unit: str = "",
            vmax: float | None = None) -> Cell:
    """The map blended over the grey image, scaled to `vmax` (default: its own 99.5th percentile)."""
    top = map_scale(amap) if vmax is None else float(vmax)
    return Cell(overlay(image, amap, vmax=top), caption, download=download,
                legend=legend("jet", top, unit or "anomaly map", OVERLAY_NOTE))


def colour_map(amap: np.ndarray, vmax: float | None = None, caption: str = "", unit: str = "") -> Cell:
    """A map in the inferno colours, scaled to `vmax` (default: its 99.5th percentile)."""
    top = map_scale(amap) if vmax is None else float(vmax)
    return Cell(colorize(amap, "inferno", vmax=top), caption, legend=legend("inferno", top, unit or "anomaly map"))


def deformation_grid(deformation: np.ndarray, spacing: int = 8, image: np.ndarray | None = None) -> np.ndarray:
    """A regular grid warped by a (2,H,W) displacement field (pixels; channel 0 = x, 1 = y).

    Grid lines are coloured by the local displacement magnitude (blue small, red large), drawn over
    the optional grey `image`. Returns (H,W,3) uint8. Each output pixel p shows the grid at p - u(p)
    (backward warping), which is how the method samples the prior.
    """
    from scipy.ndimage import map_coordinates

    d = np.asarray(deformation, dtype=np.float32)
    _, h, w = d.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = xs + d[0], ys + d[1]
    line = np.zeros((h, w), np.float32)
    step = max(2, int(spacing))
    line[::step, :] = 1
    line[:, ::step] = 1
    line[-1, :] = line[:, -1] = 1
    warped = map_coordinates(line, [sy, sx], order=1, mode="nearest")
    mag = np.hypot(d[0], d[1])
    m = mag / max(float(np.percentile(mag, 99)), 1e-6)
    colour = np.stack([np.clip(m, 0, 1), 0.25 + 0 * m, np.clip(1 - m, 0, 1)], -1) * 255
    base = np.zeros((h, w, 3), np.float32) + 255 if image is None else np.repeat(
        np.clip(np.asarray(image, np.float32), 0, 1)[..., None] * 180, 3, -1)
    a = np.clip(warped, 0, 1)[..., None]
    return (base * (1 - a) + colour * a).astype(np.uint8)


def deformation_stats(deformation: np.ndarray) -> str:
    """Mean and largest displacement of a (2,H,W) field, as one line."""
    mag = np.hypot(deformation[0], deformation[1])
    return f"mean |u| {mag.mean():.2f} px, max {mag.max():.2f} px"


# ---------------------------------------------------------------- result grids (Compare, Upload)

COLUMN_TITLES = {"reconstruction": "Reconstruction", "prior": "Global prior", "warped": "Warped prior",
                 "deformation": "Deformation", "residual": "Residual |x − x̂|", "heatmap": "Heatmap",
                 "anomaly_map": "Anomaly map"}
COMPARE_COLUMNS = ("reconstruction", "prior", "warped", "deformation", "residual", "heatmap")
UPLOAD_COLUMNS = ("heatmap", "anomaly_map", "reconstruction")


def output_cell(image: np.ndarray, r: MethodResult, name: str, residual_vmax: float | None = None) -> Cell:
    """The cell of one output (a COLUMN_TITLES key) of one result on `image`."""
    if name in ("reconstruction", "prior", "warped"):
        v = getattr(r, name)
        return picture(v) if v is not None else empty(missing_reason(r.method, name))
    if name == "deformation":
        if r.deformation is None:
            return empty(missing_reason(r.method, name))
        mag = np.hypot(r.deformation[0], r.deformation[1])
        return Cell(deformation_grid(r.deformation, image=image), deformation_stats(r.deformation),
                    legend=Legend(tuple(DISPLACEMENT_COLOURS), 0.0, max(float(np.percentile(mag, 99)), 1e-6),
                                  "displacement |u| (pixels)", "grid lines coloured by displacement"))
    if name == "residual":
        if r.residual is None:
            return empty(missing_reason(r.method, name))
        return colour_map(r.residual, residual_vmax, unit=RESIDUAL_UNIT)
    if name == "heatmap":
        return heatmap(image, r.anomaly_map, download=f"heatmap_{r.checkpoint}.png", unit=r.units.map)
    if name == "anomaly_map":
        return colour_map(r.anomaly_map, unit=r.units.map)
    raise ValueError(f"unknown output {name!r}; choose one of {', '.join(COLUMN_TITLES)}")


@dataclass
class ResultRow:
    """One method's row: its result and one cell per grid column ([] when the method failed)."""

    result: MethodResult
    cells: list[Cell]


@dataclass
class ResultGrid:
    """The input picture, the output columns and one row per method."""

    input: Cell
    columns: tuple[str, ...]
    rows: list[ResultRow]
    residual_vmax: float | None = None  # the shared colour scale of the residual maps, if any

    @property
    def headers(self) -> list[str]:
        return [COLUMN_TITLES[c] for c in self.columns]


def residual_scale(results: Sequence[MethodResult]) -> float | None:
    """One colour scale for all residual maps: the 99.5th percentile of their pixels (None without any)."""
    maps = [r.residual for r in results if r.residual is not None]
    if not maps:
        return None
    return float(np.percentile(np.concatenate([m.ravel() for m in maps]), 99.5)) or None


def result_grid(image: np.ndarray, results: Sequence[MethodResult], columns: Sequence[str] = COMPARE_COLUMNS,
                shared_residual_scale: bool = False) -> ResultGrid:
    """The cells of every result, residual maps on one scale when `shared_residual_scale`."""
    vmax = residual_scale(results) if shared_residual_scale else None
    rows = [ResultRow(r, [] if r.error else [output_cell(image, r, c, vmax) for c in columns]) for r in results]
    return ResultGrid(picture(image), tuple(columns), rows, vmax)
