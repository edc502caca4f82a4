"""upd_core.domain: the small domain classifier (train, save, verified load, probabilities, FD)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.app_fixtures import smooth_images
from upd_core import checkpoint as ck
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


def test_saved_in_the_one_checkpoint_format(trained):
    root, meta = trained
    d = root / domain.FOLDER
    assert sorted(p.name for p in d.iterdir()) == sorted([ck.WEIGHTS, ck.CONFIG, ck.CARD, ck.MANIFEST])
    cfg = json.loads((d / ck.CONFIG).read_text())
    assert cfg["format"] == ck.FORMAT and cfg["kind"] == domain.KIND and cfg["config"]["classes"] == meta["classes"]
    assert cfg["training"]["seed"] == 0 and cfg["training"]["epochs"] == 1 and cfg["dataset"]["name"] == "cxr-kermany"
    sha = json.loads((d / ck.MANIFEST).read_text())["sha256"]
    assert sha == {p.name: ck.sha256_file(p) for p in d.iterdir() if p.name != ck.MANIFEST}
    card = (d / ck.CARD).read_text()
    assert "CC BY 4.0" in card and "doi:10.17632/rscbjbr9sj.2" in card and "out-of-distribution warning" in card
    assert "scripts/train_domain.sh" in card and all(f"`{c}`" in card for c in meta["classes"][1:])


def _tamper(path):
    blob = bytearray(path.read_bytes())
    blob[-2] ^= 0x01
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("name", [ck.WEIGHTS, ck.CONFIG])
def test_tampered_or_missing_classifier_is_not_used(trained, tmp_path, name):
    root, _ = trained
    assert domain.load_domain_classifier(tmp_path) is None
    copy = tmp_path / domain.FOLDER
    shutil.copytree(root / domain.FOLDER, copy)
    assert domain.load_domain_classifier(tmp_path) is not None
    _tamper(copy / name)
    assert domain.load_domain_classifier(tmp_path) is None


def test_listed_in_the_root_manifest_and_held_to_it(trained, tmp_path, monkeypatch):
    """Like a shipped detector: the root manifest's sha256 wins over the folder's own manifest."""
    root, _ = trained
    monkeypatch.setenv("UPD_CHECKPOINTS", str(tmp_path))
    copy = tmp_path / domain.FOLDER
    shutil.copytree(root / domain.FOLDER, copy)
    ck.refresh(copy)
    man = json.loads((tmp_path / ck.MANIFEST).read_text())
    assert man["checkpoints"] == {} and man["auxiliary"][domain.FOLDER]["sha256"][ck.WEIGHTS] == \
        ck.sha256_file(copy / ck.WEIGHTS)
    assert ck.list_checkpoints() == [] and domain.load_domain_classifier() is not None
    _tamper(copy / ck.WEIGHTS)
    local = json.loads((copy / ck.MANIFEST).read_text())
    local["sha256"][ck.WEIGHTS] = ck.sha256_file(copy / ck.WEIGHTS)
    (copy / ck.MANIFEST).write_text(json.dumps(local))
    assert domain.load_domain_classifier() is None


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


def test_refresh_ssl_stats_keeps_the_network_and_follows_a_new_encoder(trained, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    root, _ = trained
    d = tmp_path / domain.FOLDER
    shutil.copytree(root / domain.FOLDER, d)
    before = load_file(str(d / ck.WEIGHTS))
    fake = (lambda imgs: np.asarray(imgs, np.float32).reshape(len(imgs), -1)[:, :16], "f" * 64)
    monkeypatch.setattr(domain, "_cradl_features_fn", lambda: fake)
    assert domain.refresh_ssl_stats(smooth_images(20, 64, seed=3), d) == "f" * 64
    after = load_file(str(d / ck.WEIGHTS))
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before if k.startswith("net."))
    assert after["stats.cradl.mu"].shape == (16,)
    cfg = json.loads((d / ck.CONFIG).read_text())
    assert cfg["training"]["cradl_sha256"] == "f" * 64 and "cradl" in cfg["training"]["feature_spaces"]
    monkeypatch.setattr(domain, "_cradl_features_fn", lambda: (None, None))
    assert domain.refresh_ssl_stats(smooth_images(4, 64), d) is None


def test_training_set_leaves_synthetic_chest_radiographs_out_of_the_other_domains(monkeypatch):
    """The DRR demo items are chest radiographs: retraining must not teach them as "not chest"."""
    from upd_core import demo

    items = [demo.DemoImage("drr", "DRR", demo.DRR_DOMAIN, "test", loader=lambda: None),
             demo.DemoImage("tex", "texture", "texture", "test", loader=lambda: None)]
    monkeypatch.setattr(demo, "list_demo_images", lambda *a, **k: [] if a else items)
    monkeypatch.setattr(demo, "load_demo", lambda iid, size=128: np.full((size, size), 0.5, np.float32))
    x, y, classes = domain.build_training_set(smooth_images(4, 64, seed=2), per_domain=4)
    assert demo.DRR_DOMAIN not in classes and "texture" in classes
    assert len(x) == len(y)
