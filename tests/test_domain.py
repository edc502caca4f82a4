"""upd_core.domain: the small domain classifier (train, save, verified load, probabilities, FD)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app_fixtures import smooth_images
from upd_core import domain


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from upd_core import demo

    if not demo.list_demo_images():
        pytest.skip("the embedded demo set is not available")
    root = tmp_path_factory.mktemp("dom")
    chest = smooth_images(24, 64, seed=1)
    meta = domain.train(chest, root / domain.FOLDER, epochs=1, per_domain=6, progress=False)
    return root, meta


def test_train_save_and_load(trained):
    root, meta = trained
    assert meta["classes"][0] == domain.CHEST and meta["classes"][-1] == "noise"
    clf = domain.load_domain_classifier(root)
    assert clf is not None and clf.classes == meta["classes"]
    x = smooth_images(5, 128, seed=2)
    p = clf.probabilities(x)
    assert p.shape == (5, len(clf.classes)) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert clf.chest_probability(x).shape == (5,)
    fd = clf.frechet_to_training(x)
    assert fd is not None and np.isfinite(fd) and fd >= 0
    assert clf.frechet_to_training(x[:1]) is None
    assert clf.feature_space().startswith("FD (") and "FID" not in clf.feature_space()


def test_tampered_or_missing_classifier_is_not_used(trained, tmp_path):
    root, _ = trained
    assert domain.load_domain_classifier(tmp_path) is None
    import shutil

    copy = tmp_path / domain.FOLDER
    shutil.copytree(root / domain.FOLDER, copy)
    blob = bytearray((copy / domain.WEIGHTS).read_bytes())
    blob[-1] ^= 0xFF
    (copy / domain.WEIGHTS).write_bytes(bytes(blob))
    assert domain.load_domain_classifier(tmp_path) is None


def test_shipped_classifier_recognises_demo_domains():
    """The shipped classifier (when present) does not call a photo or a brain MRI a chest X-ray."""
    from upd_core import demo

    clf = domain.load_domain_classifier()
    if clf is None:
        pytest.skip("no shipped domain classifier in checkpoints/domain-classifier")
    ids = [i for i in ("astronaut", "camera", "colin27-t1", "digit-3") if any(d.id == i for d in demo.list_demo_images())]
    if not ids:
        pytest.skip("demo images absent")
    p = clf.chest_probability(np.stack([demo.load_demo(i, 128) for i in ids]))
    assert (p < 0.5).all(), dict(zip(ids, p))
