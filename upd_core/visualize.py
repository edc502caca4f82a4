"""Turn maps into pictures: colour heatmaps, overlays on the grey image, colour bars, PNG bytes.

`map_scale` is the colour scale every map picture uses by default (its 99.5th percentile), so the
colour bar next to a picture (`colormap_hex` for the app, `with_colorbar` burnt into a downloaded
PNG) states exactly the values the colours stand for; `resize_map` brings a map to an image's
original size for full-resolution downloads."""
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


def map_scale(amap: np.ndarray) -> float:
    """The default top of a map's colour scale: its 99.5th percentile (robust to outliers)."""
    return float(np.percentile(np.nan_to_num(np.asarray(amap, dtype=np.float32)), 99.5))


def normalise_map(amap: np.ndarray, vmax: float | None = None, vmin: float = 0.0) -> np.ndarray:
    """Scale a map to [0,1]; `vmax` defaults to `map_scale` (the map's 99.5th percentile)."""
    a = np.nan_to_num(np.asarray(amap, dtype=np.float32))
    if vmax is None:
        vmax = map_scale(a)
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


def colormap_hex(cmap: str, n: int = 9) -> list[str]:
    """`n` evenly spaced colours of a colour map as '#rrggbb' (the stops of a colour bar)."""
    lut = _colormap(cmap)
    return ["#%02x%02x%02x" % tuple(int(c) for c in lut[int(round(i * 255 / max(1, n - 1)))]) for i in range(n)]


def resize_map(amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (h,w) float map resampled bilinearly to `shape` (H, W)."""
    a = np.nan_to_num(np.asarray(amap, dtype=np.float32))
    if a.shape == tuple(shape):
        return a
    im = Image.fromarray(np.ascontiguousarray(a), mode="F")
    return np.asarray(im.resize((int(shape[1]), int(shape[0])), Image.Resampling.BILINEAR), dtype=np.float32)


_ASCII = str.maketrans({"−": "-", "–": "-", "—": "-", "×": "x", "∂": "d", "Σ": "sum ", "̂": "^", "|": "|"})


def _font(px: int):
    """(font, unicode ok): DejaVu Sans (matplotlib's, or the system's) for symbols such as x̂, ∂ and
    −, else Pillow's own font, which only has ASCII."""
    from PIL import ImageFont

    candidates = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")]
    try:
        import matplotlib

        candidates.insert(0, Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    for path in candidates:
        try:
            return ImageFont.truetype(str(path), px), True
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=px), False
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default(), False


def _tick(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}"


def with_colorbar(picture: np.ndarray, cmap: str, vmin: float, vmax: float, unit: str, title: str = "",
                  colors: list[str] | None = None) -> np.ndarray:
    """The picture (H,W,3 uint8) with a legend strip below it: a colour bar from `vmin` to `vmax`
    with ticks, the unit, and an optional title line (what the picture shows)."""
    from PIL import ImageDraw

    pic = np.asarray(picture)
    if pic.ndim == 2:
        pic = (np.clip(pic, 0, 1) * 255).astype(np.uint8) if pic.dtype != np.uint8 else pic
        pic = np.repeat(pic[..., None], 3, -1)
    h, w = pic.shape[:2]
    px = int(np.clip(round(max(h, w) / 45), 11, 40))  # legend text size grows with the picture
    pad, bar_h = px // 2, px
    font, unicode = _font(px)
    if not unicode:
        title, unit = title.translate(_ASCII), unit.translate(_ASCII)
    x0, x1 = pad * 2, max(pad * 2 + 10, w - pad * 2)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_lines = _wrap(title, font, x1 - x0, measure) if title else []
    unit_lines = _wrap(unit, font, x1 - x0, measure)
    step = px + pad // 2  # line height
    strip_h = pad * 3 + bar_h + px + step * (len(title_lines) + len(unit_lines)) + pad
    out = Image.new("RGB", (w, h + strip_h), "white")
    out.paste(Image.fromarray(pic.astype(np.uint8)), (0, 0))
    draw = ImageDraw.Draw(out)
    y = h + pad
    for line in title_lines:
        draw.text((x0, y), line, fill="black", font=font)
        y += step
    if colors:
        lut = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], np.float32)
        t = np.linspace(0, len(lut) - 1, 256)
        lo = np.floor(t).astype(int)
        hi = np.minimum(lo + 1, len(lut) - 1)
        lut = (lut[lo] * (1 - (t - lo))[:, None] + lut[hi] * (t - lo)[:, None]).astype(np.uint8)
    else:
        lut = _colormap(cmap)
    ramp = lut[np.linspace(0, 255, x1 - x0).astype(int)]
    out.paste(Image.fromarray(np.repeat(ramp[None], bar_h, 0)), (x0, y))
    draw.rectangle((x0, y, x1 - 1, y + bar_h - 1), outline="black")
    y += bar_h + pad // 2
    for frac in (0.0, 0.5, 1.0):
        x = int(x0 + frac * (x1 - x0 - 1))
        draw.line((x, y - pad // 2, x, y), fill="black")
        label = _tick(vmin + frac * (vmax - vmin))
        tw = draw.textlength(label, font=font)
        draw.text((int(np.clip(x - tw / 2, 0, w - tw)), y), label, fill="black", font=font)
    y += px + pad
    for line in unit_lines:
        draw.text((x0, y), line, fill="black", font=font)
        y += step
    return np.asarray(out)


def _wrap(text: str, font, width: int, draw) -> list[str]:
    """`text` broken into lines no wider than `width` pixels (at spaces; a long word stays whole)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]
