"""Turn maps into pictures: colour heatmaps, overlays on the grey image, PNG bytes."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def _colormap(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table; matplotlib's when installed, else a simple 'hot' ramp."""
    try:
        from matplotlib import colormaps

        return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    except Exception:  # matplotlib absent or unknown name
        t = np.linspace(0, 1, 256)
        return (np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], 1)
                * 255).astype(np.uint8)


def normalise_map(amap: np.ndarray, vmax: float | None = None, vmin: float = 0.0) -> np.ndarray:
    """Scale a map to [0,1]; `vmax` defaults to the map's 99.5th percentile (robust to outliers)."""
    a = np.nan_to_num(np.asarray(amap, dtype=np.float32))
    if vmax is None:
        vmax = float(np.percentile(a, 99.5))
    if vmax <= vmin:
        return np.zeros_like(a)
    return np.clip((a - vmin) / (vmax - vmin), 0, 1)


def colorize(amap: np.ndarray, cmap: str = "inferno", vmax: float | None = None) -> np.ndarray:
    """(H,W) map -> (H,W,3) uint8 colour image."""
    return _colormap(cmap)[(normalise_map(amap, vmax) * 255).astype(np.uint8)]


def overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.5, cmap: str = "jet",
            vmax: float | None = None) -> np.ndarray:
    """Heatmap blended over the grey image, weighted by the map's own strength."""
    grey = (np.clip(image, 0, 1) * 255).astype(np.float32)[..., None].repeat(3, axis=2)
    heat = colorize(amap, cmap, vmax).astype(np.float32)
    w = alpha * normalise_map(amap, vmax)[..., None]
    return (grey * (1 - w) + heat * w).astype(np.uint8)


def to_png(arr: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H,W) / (H,W,3) array or a float array in [0,1]."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def save_png(arr: np.ndarray, path: str | Path) -> Path:
    from .checkpoint_files import write_atomic

    write_atomic(Path(path), to_png(arr))
    return Path(path)
