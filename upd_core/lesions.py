"""Synthetic lesions with exact masks, for pixel-level evaluation on real normal anatomy.

Real test sets with pixel masks are rare (and the shared brain-MRI set has none), so, as CRADL's
"HCP Synth." and the UPD study's size / intensity analyses do, we paint lesions of known shape,
size, contrast and texture into normal images and score detectors against the known masks.

    out, mask = add_lesion(image, shape="blob", radius=10, intensity="hypo", strength=0.3, seed=1)
    images, masks = lesion_dataset(normal_images, seed=0)

Model of one lesion (all parameters in `LesionSpec`):
* shape: ``circle``; ``ellipse`` (random axis ratio 0.45-1 and rotation); ``blob`` (smooth lobed
  outline: radius modulated by low-order harmonics); ``irregular`` (thresholded smooth noise
  around the centre: ragged outline).
* size: `radius` in pixels, or `size` = radius as a fraction of the image's shorter side.
* intensity: the lesion tissue has level ``m + strength`` (``hyper``), ``m - strength``
  (``hypo``) or ``m`` (``iso``), where m is the image's mean under the mask; ``iso`` lesions
  differ only in texture (noise; `texture` defaults to 0.1 for them). `texture` is the standard
  deviation of smooth noise added to the lesion tissue. ``blend="replace"`` (default) replaces
  the tissue (tumour-like, MRI); ``blend="add"`` adds the change on top of it (an opacity on a
  radiograph keeps the ribs visible).
* border: inside the mask the lesion fades in over `smooth` pixels (a ramp on the distance to
  the mask's edge). Pixels outside the mask are never changed, so the mask is exact; pixels of
  the mask may change little (border ramp, or clipping to [0, 1] in already saturated areas).
* location: (y, x) centre, or random: inside `foreground` (e.g. the brain, image > 0) and, when
  possible, far enough from the image edge and the foreground's edge for the whole lesion. The
  mask is intersected with `foreground`.
All randomness comes from `rng` / `seed`: the same seed gives the same lesion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

SHAPES = ("ellipse", "circle", "blob", "irregular")
INTENSITIES = ("hyper", "hypo", "iso")
BLENDS = ("replace", "add")
ISO_TEXTURE = 0.1


@dataclass(frozen=True)
class LesionSpec:
    """Parameters of one synthetic lesion (see module docstring)."""

    shape: str = "ellipse"
    radius: float | None = None            # mean radius in pixels; None -> size * shorter side
    size: float = 0.08                     # radius as a fraction of the shorter image side
    intensity: str = "hyper"               # hyper | hypo | iso
    strength: float = 0.35                 # contrast: offset of the lesion level from the local mean
    texture: float = 0.0                   # std of smooth noise in the lesion (iso: 0 -> 0.1)
    location: tuple[int, int] | None = None  # (y, x) centre; None = random
    smooth: float = 1.5                    # soft-border width in pixels (0 = hard edge)
    blend: str = "replace"                 # replace | add

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"lesion shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if self.intensity not in INTENSITIES:
            raise ValueError(f"lesion intensity must be one of {', '.join(INTENSITIES)}, "
                             f"got {self.intensity!r}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")
        if self.radius is not None and not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius!r}")
        if not 0 < self.size <= 0.5:
            raise ValueError(f"size (radius / image side) must be in (0, 0.5], got {self.size!r}")
        if self.strength < 0 or self.texture < 0 or self.smooth < 0:
            raise ValueError("strength, texture and smooth must not be negative")

    def radius_px(self, shape: tuple[int, int]) -> float:
        """The radius in pixels for an image of this shape."""
        return float(self.radius) if self.radius is not None else self.size * min(shape)


@dataclass(frozen=True)
class LesionRanges:
    """Ranges from which `lesion_dataset` draws one `LesionSpec` per image."""

    shapes: tuple[str, ...] = SHAPES
    intensities: tuple[str, ...] = ("hyper", "hypo")
    size: tuple[float, float] = (0.04, 0.12)
    strength: tuple[float, float] = (0.15, 0.45)
    texture: tuple[float, float] = (0.0, 0.04)
    smooth: tuple[float, float] = (0.5, 2.5)
    blend: str = "replace"

    def sample(self, rng: np.random.Generator) -> LesionSpec:
        return LesionSpec(shape=str(rng.choice(self.shapes)), size=float(rng.uniform(*self.size)),
                          intensity=str(rng.choice(self.intensities)),
                          strength=float(rng.uniform(*self.strength)),
                          texture=float(rng.uniform(*self.texture)),
                          smooth=float(rng.uniform(*self.smooth)), blend=self.blend)


# --------------------------------------------------------------------------- helpers

def _rng(rng: np.random.Generator | int | None, seed: int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None:
        return np.random.default_rng(rng)
    return np.random.default_rng(seed)


def _check_image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2 or min(a.shape) < 4:
        raise ValueError(f"add_lesion needs a 2D image, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the image contains NaN or infinite values")
    return np.clip(a, 0.0, 1.0)


def auto_foreground(image: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Body / brain region: pixels above `threshold` (specks removed, holes filled).

    Never extends beyond the bright pixels' outline; all True when it would be tiny (< 5 %).
    """
    fg = np.asarray(image, np.float32) > threshold
    fg = ndimage.binary_fill_holes(ndimage.binary_opening(fg, np.ones((3, 3), bool)))
    if fg.mean() < 0.05:
        return np.ones(image.shape, bool)
    return fg


def shape_mask(shape: str, hw: tuple[int, int], center: tuple[float, float], radius: float,
               rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of one lesion outline of mean radius `radius` around `center`."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - center[0], xx - center[1]
    r = max(float(radius), 0.75)
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "ellipse":
        q = rng.uniform(0.45, 1.0)
        a, b = r / math.sqrt(q), r * math.sqrt(q)
        t = rng.uniform(0, math.pi)
        u = dx * math.cos(t) + dy * math.sin(t)
        v = -dx * math.sin(t) + dy * math.cos(t)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    d = np.sqrt(dy * dy + dx * dx)
    if shape == "blob":
        phi = np.arctan2(dy, dx)
        rho = np.ones_like(phi)
        for k in (2, 3, 4):
            rho += rng.uniform(0.04, 0.16) * np.cos(k * phi + rng.uniform(0, 2 * math.pi))
        return d <= r * rho
    # irregular: ragged region of smooth noise around the centre, connected to it
    noise = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), max(1.0, r / 4))
    noise /= noise.std() + 1e-8
    m = (1.0 - d / r + 0.45 * noise > 0) | (d <= r / 3)
    lab, _ = ndimage.label(m)
    cy, cx = int(round(min(max(center[0], 0), h - 1))), int(round(min(max(center[1], 0), w - 1)))
    return lab == lab[cy, cx] if lab[cy, cx] else m


def _pick_center(hw: tuple[int, int], radius: float, fg: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[int, int]:
    """Random centre: inside the foreground, whole lesion inside image and foreground if possible."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    margin = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, w - 1 - xx))
    inside = margin >= min(math.ceil(radius * 1.3), min(h, w) // 2 - 1)
    options = [inside]
    if fg is not None:
        depth = ndimage.distance_transform_edt(fg)
        options = [fg & inside & (depth >= radius), fg & inside, fg]
    for cand in options:
        ys, xs = np.nonzero(cand)
        if len(ys):
            k = int(rng.integers(len(ys)))
            return int(ys[k]), int(xs[k])
    return h // 2, w // 2


def _smooth_noise(hw: tuple[int, int], rng: np.random.Generator, sigma: float = 1.0) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(hw).astype(np.float32), sigma)
    return n / (n.std() + 1e-8)


# --------------------------------------------------------------------------- public API

def add_lesion(image: np.ndarray, spec: LesionSpec | None = None, *, shape: str | None = None,
               radius: float | None = None, size: float | None = None,
               intensity: str | None = None, strength: float | None = None,
               texture: float | None = None, location: tuple[int, int] | None = None,
               smooth: float | None = None, blend: str | None = None,
               foreground: np.ndarray | None = None,
               rng: np.random.Generator | int | None = None,
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paint one lesion into a 2D image in [0, 1]; returns (image float32, mask float32 {0, 1}).

    Parameters given here override those of `spec` (default `LesionSpec()`); see the module
    docstring for their meaning. `foreground` (bool, same shape) restricts the lesion (e.g. to
    the brain). `rng` (Generator or int) or `seed` make the result reproducible.
    """
    img = _check_image(image)
    given = {"shape": shape, "radius": radius, "size": size, "intensity": intensity,
             "strength": strength, "texture": texture, "location": location, "smooth": smooth,
             "blend": blend}
    spec = replace(spec or LesionSpec(), **{k: v for k, v in given.items() if v is not None})
    gen = _rng(rng, seed)
    hw = (int(img.shape[0]), int(img.shape[1]))
    fg = None
    if foreground is not None:
        fg = np.asarray(foreground).astype(bool)
        if fg.shape != img.shape:
            raise ValueError(f"foreground shape {fg.shape} differs from the image's {img.shape}")
        if not fg.any():
            raise ValueError("the foreground mask is empty: nowhere to put a lesion")
    r = spec.radius_px(hw)
    if spec.location is not None:
        cy, cx = spec.location
        if not (0 <= cy < hw[0] and 0 <= cx < hw[1]):
            raise ValueError(f"lesion location {spec.location} is outside the {hw} image")
    else:
        cy, cx = _pick_center(hw, r, fg, gen)
    mask = shape_mask(spec.shape, hw, (cy, cx), r, gen)
    if fg is not None:
        mask &= fg
    if not mask.any():
        raise ValueError(f"the lesion at {(cy, cx)} lies outside the foreground")
    alpha = np.ones(hw, np.float32)
    if spec.smooth > 0:
        alpha = np.clip(ndimage.distance_transform_edt(mask) / (spec.smooth + 1.0), 0.0, 1.0)
    alpha = (alpha * mask).astype(np.float32)
    tex = spec.texture if (spec.texture > 0 or spec.intensity != "iso") else ISO_TEXTURE
    noise = _smooth_noise(hw, gen) if tex > 0 else np.zeros(hw, np.float32)
    if tex > 0:  # zero-mean inside the lesion, so texture never shifts its mean
        noise -= noise[mask].mean()
    sign = {"hyper": 1.0, "hypo": -1.0, "iso": 0.0}[spec.intensity]
    if spec.blend == "replace":
        level = float(np.clip(img[mask].mean() + sign * spec.strength, 0.0, 1.0))
        lesion = level + tex * noise
        out = img * (1.0 - alpha) + alpha * lesion
    else:
        out = img + alpha * (sign * spec.strength + tex * noise)
    out = np.where(mask, np.clip(out, 0.0, 1.0), img).astype(np.float32)
    return out, mask.astype(np.float32)


def lesion_dataset(images: np.ndarray, specs: LesionSpec | Sequence[LesionSpec] | None = None, *,
                   seed: int = 0, ranges: LesionRanges | None = None,
                   foreground: np.ndarray | str | None = "auto",
                   return_specs: bool = False) -> Any:
    """One synthetic lesion per image -> (images float32 (N,H,W), masks float32 (N,H,W)).

    `specs`: one `LesionSpec` for all images, a sequence (cycled), or None to draw each image's
    spec from `ranges` (default `LesionRanges()`: all shapes, hyper/hypo, radius 4-12 % of the
    side). `foreground`: ``"auto"`` (`auto_foreground` of each image), None (anywhere) or a
    bool array (N,H,W). Image i uses ``numpy.random.default_rng([seed, i])``, so results are
    reproducible and do not depend on N. With `return_specs` the drawn specs are returned
    third.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {np.shape(images)}")
    ranges = ranges or LesionRanges()
    if isinstance(specs, LesionSpec):
        specs = [specs]
    fg_arr = None
    if foreground is not None and not isinstance(foreground, str):
        fg_arr = np.asarray(foreground).astype(bool)
        if fg_arr.shape != x.shape:
            raise ValueError(f"foreground shape {fg_arr.shape} differs from the images' {x.shape}")
    elif isinstance(foreground, str) and foreground != "auto":
        raise ValueError(f"foreground must be 'auto', None or an array, got {foreground!r}")
    out = np.empty_like(x)
    masks = np.empty_like(x)
    used: list[LesionSpec] = []
    for i, img in enumerate(x):
        gen = np.random.default_rng([int(seed), i])
        spec = specs[i % len(specs)] if specs else ranges.sample(gen)
        if fg_arr is not None:
            fg = fg_arr[i]
        elif foreground == "auto":
            fg = auto_foreground(img)
        else:
            fg = None
        out[i], masks[i] = add_lesion(img, spec, foreground=fg, rng=gen)
        used.append(spec)
    return (out, masks, used) if return_specs else (out, masks)
