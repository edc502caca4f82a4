"""Downloads of the Upload page: full-resolution heatmaps with a legend, and a ZIP of all results.

The models see the image at their size (128 × 128); a heatmap for a report is wanted at the
image's own size. `full_size_heatmap` resamples a result's map to the original image (decoded
again at its native size by `native_image`, at most `MAX_SIDE` pixels on its long side) and burns
a colour bar with the map's unit and the method's name under it; its colour scale is the one the
app shows. `results_zip` packs every result: both heatmaps, the raw map (.npy), the
reconstruction, the JSON report and a README saying what each file is.
"""
from __future__ import annotations

import io
import re
import zipfile
from typing import Sequence

import numpy as np

from ..visualize import map_scale, overlay, resize_map, to_png, with_colorbar
from .analysis import MethodResult
from .cells import OVERLAY_NOTE

MAX_SIDE = 4096  # larger images are scaled down to this long side (memory), the aspect kept


def native_image(data: bytes, slice_index: int | None = None, window: tuple[float, float] | None = None) -> np.ndarray:
    """The uploaded image at its own size (grey, [0, 1]), the long side capped at MAX_SIDE."""
    from PIL import Image

    from ..imaging import load_image
    from .uploads import app_max_decoded_bytes

    img = load_image(data, size=None, slice_index=slice_index, window=window,
                     max_bytes=app_max_decoded_bytes())
    h, w = img.shape
    if max(h, w) > MAX_SIDE:
        f = MAX_SIDE / max(h, w)
        im = Image.fromarray(np.ascontiguousarray(img, np.float32), mode="F")
        img = np.clip(np.asarray(im.resize((max(1, round(w * f)), max(1, round(h * f))),
                                           Image.Resampling.BILINEAR), np.float32), 0, 1)
    return img


def full_size_heatmap(original: np.ndarray, result: MethodResult) -> np.ndarray:
    """The result's heatmap overlay at the original image's size, with its colour bar (H+legend, W, 3)."""
    if result.anomaly_map is None:
        raise ValueError(f"{result.checkpoint} has no anomaly map ({result.error or 'no result'})")
    top = map_scale(result.anomaly_map)  # the scale of the picture shown in the app
    pic = overlay(np.asarray(original, np.float32), resize_map(result.anomaly_map, original.shape), vmax=top)
    return with_colorbar(pic, "jet", 0.0, top, result.units.map,
                         title=f"{result.title} ({result.checkpoint}): heatmap; {OVERLAY_NOTE}")


def full_size_png(original: np.ndarray, result: MethodResult) -> bytes:
    """`full_size_heatmap` as PNG bytes."""
    return to_png(full_size_heatmap(original, result))


def safe_name(text: str) -> str:
    """A file-name-safe version of a checkpoint id or an upload's name."""
    return re.sub(r"[^A-Za-z0-9@._-]+", "_", text).strip("._") or "image"


def _readme(source: str, original: np.ndarray, results: Sequence[MethodResult]) -> str:
    h, w = original.shape
    lines = [f"UPD explorer results for {source or 'an uploaded image'}",
             "Research and teaching software, not a medical device.", "",
             "report.json                 scores, percentiles vs normal validation images, out-of-distribution check",
             "input_model_size.png        the image as the models saw it",
             "<checkpoint>/heatmap_full_size.png   heatmap overlay at the image's size "
             f"({w} x {h}; at most {MAX_SIDE} px long side), with its colour bar",
             "<checkpoint>/heatmap.png    the overlay at the model's size, as shown in the app",
             "<checkpoint>/anomaly_map.npy   the raw anomaly map (float32, model size)",
             "<checkpoint>/reconstruction.png   the reconstruction, where the method has one", "",
             "Units of the maps and scores:"]
    lines += [f"  {r.checkpoint}: score = {r.units.score}; map = {r.units.map}" for r in results if not r.error]
    return "\n".join(lines) + "\n"


def results_zip(original: np.ndarray, model_image: np.ndarray, results: Sequence[MethodResult], report_json: str,
                source: str = "") -> bytes:
    """A ZIP of every result (see the module docstring); failed results appear only in the report."""
    from .cells import heatmap

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.txt", _readme(source, original, results))
        z.writestr("report.json", report_json)
        z.writestr("input_model_size.png", to_png(model_image))
        for r in results:
            if r.error or r.anomaly_map is None:
                continue
            d = safe_name(r.checkpoint)
            z.writestr(f"{d}/heatmap_full_size.png", full_size_png(original, r))
            z.writestr(f"{d}/heatmap.png", heatmap(model_image, r.anomaly_map).png())
            npy = io.BytesIO()
            np.save(npy, np.asarray(r.anomaly_map, np.float32))
            z.writestr(f"{d}/anomaly_map.npy", npy.getvalue())
            if r.reconstruction is not None:
                z.writestr(f"{d}/reconstruction.png", to_png(np.clip(r.reconstruction, 0, 1)))
    return buf.getvalue()
