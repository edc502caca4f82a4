"""The embedded demo images (shipped by installed packages, see upd_core.demo), as the app uses them.

The picker lists them by domain with their provenance; without any dataset folder,
`demo_labelled_set` makes a small labelled set for teaching: varied copies of the embedded chest
images as normal, and further copies with one synthetic lesion each as abnormal.
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
                                  str(getattr(d, "provenance", ""))))
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
    """Demo items for a picker: chest images first, then those of `prefer_domains`."""
    return sorted(items, key=lambda it: (not is_chest(it), it.domain not in prefer_domains))


def _augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible variant of an image: small shift, zoom, gamma and optional mirror."""
    from scipy import ndimage

    h, w = img.shape
    zoom = rng.uniform(1.0, 1.12)
    z = ndimage.zoom(img, zoom, order=1)
    oy, ox = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
    z = z[oy:oy + h, ox:ox + w]
    z = ndimage.shift(z, rng.uniform(-3, 3, size=2), order=1, mode="nearest")
    z = np.clip(z, 0, 1) ** rng.uniform(0.85, 1.15)
    return np.ascontiguousarray(z[:, ::-1] if rng.random() < 0.5 else z, dtype=np.float32)


def demo_labelled_set(size: int = 128, n_per_class: int = 24, seed: int = 0) -> LabelledSet:
    """A small labelled set without any dataset folder: variants of the embedded chest images
    (normal) and further variants with one synthetic lesion each (abnormal). For teaching only."""
    from ..lesions import lesion_dataset

    items = demo_items()
    base_items = [it for it in items if is_chest(it)] or items
    if not base_items:
        raise DataError("the embedded demo set is not available, so no demo labelled set can be built")
    bases = [demo_image(it.id, size) for it in base_items]
    rng = np.random.default_rng(seed)
    normal = np.stack([_augment(bases[k % len(bases)], rng) for k in range(n_per_class)])
    other = np.stack([_augment(bases[k % len(bases)], rng) for k in range(n_per_class)])
    abnormal, _ = lesion_dataset(other, seed=seed)
    ids = [f"demo:{base_items[k % len(bases)].id}#{k}" for k in range(n_per_class)]
    ids += [f"demo:{base_items[k % len(bases)].id}#{k}+lesion" for k in range(n_per_class)]
    kind = "chest images" if base_items is not items else "images"
    return LabelledSet(np.concatenate([normal, abnormal]).astype(np.float32),
                       np.r_[np.zeros(n_per_class, int), np.ones(n_per_class, int)], ids,
                       f"demo set: {len(bases)} embedded {kind}, varied, half with synthetic lesions",
                       f"demo-lesions|{size}|{n_per_class}|{seed}|{','.join(it.id for it in base_items)}")
