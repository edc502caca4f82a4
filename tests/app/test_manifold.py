"""upd_core.app.manifold: the manifold test's numbers (domain sets, reconstructions, bootstrap
intervals, the Fréchet distance), their file myth.json and the `myth precompute` command.
Generated images and tiny models only (no ../shared/data)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.app_fixtures import env, smooth_images, tiny_domain_model, with_blob
from upd_core.app import manifold
from upd_core.app.demo_set import DemoItem
from upd_core.metrics import feature_stats, frechet_distance

TINY = "spatial-ae-tiny-32"


def groups_and_images():
    """A demo set of three domains (one of them chest radiographs) and an image for each id."""
    groups = {"photo": [DemoItem("p1", "P1", "photo", ""), DemoItem("p2", "P2", "photo", "")],
              "chest-xray (DRR)": [DemoItem("d1", "Chest radiograph, synthetic (DRR)", "chest-xray (DRR)", "")],
              "digits": [DemoItem("g1", "G1", "digits", "")]}
    imgs = {k: smooth_images(1, 32, seed=i + 20)[0] for i, k in enumerate(("p1", "p2", "d1", "g1"))}
    return groups, imgs.__getitem__


def test_fast_frechet_distance_equals_the_metrics_formula():
    rng = np.random.default_rng(0)
    ref_f, f = rng.normal(size=(300, 8)), rng.normal(size=(120, 8)) * 1.7 + 0.4
    mu, sig = feature_stats(ref_f)
    ref = manifold.Reference(mu, sig)
    assert ref.dim == 8
    assert ref.frechet(f) == pytest.approx(frechet_distance(*feature_stats(f), mu, sig), rel=1e-9)
    assert ref.frechet(ref_f) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(mu + 2, sig, mu, sig) == pytest.approx(32, rel=1e-6)


def test_variants_are_deterministic_images_of_the_same_size():
    src = smooth_images(2, 32)
    a = manifold.variants(src, 7, np.random.default_rng(3))
    assert a.shape == (7, 32, 32) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, manifold.variants(src, 7, np.random.default_rng(3)))
    assert not np.allclose(a[0], a[2])  # random crops / gamma of the same source differ


def test_domain_sets_give_every_domain_the_same_number_of_images():
    groups, image_of = groups_and_images()
    chest = smooth_images(30, 32, seed=5)
    sets = manifold.domain_sets(chest, groups, image_of, n_images=12, chest_source="generated")
    assert [s.name for s in sets] == [manifold.IN_DISTRIBUTION, "chest-xray (DRR)", "digits", "photo"]
    assert [s.kind for s in sets] == [manifold.KIND_IN, manifold.KIND_SYNTHETIC, manifold.KIND_OTHER, manifold.KIND_OTHER]
    assert all(len(s.images) == 12 for s in sets)
    assert [s.sources for s in sets] == [12, 1, 1, 2]
    np.testing.assert_array_equal(sets[3].images[:2], np.stack([image_of("p1"), image_of("p2")]))  # originals first
    assert "10 random variants" in sets[3].source
    live = manifold.domain_sets(chest[:4], groups, image_of)  # the page's live fallback: the images as they are
    assert [len(s.images) for s in live] == [4, 1, 1, 2]
    assert manifold.domain_sets(None, groups, image_of, 5)[0].name == "chest-xray (DRR)"  # no chest X-rays given


def test_example_images_one_per_domain():
    groups, image_of = groups_and_images()
    ex = manifold.example_images(smooth_images(3, 32), groups, ["photo", "absent", "digits"], image_of)
    assert list(ex) == [manifold.IN_DISTRIBUTION, "photo", "digits"]
    np.testing.assert_array_equal(ex["photo"], image_of("p1"))


def test_reconstruct_matches_predict(ckpts):
    import upd_core

    x = smooth_images(5, 32, seed=4)
    for cid in ("spatial-ae-tiny-32", "morphaeus-tiny-32", "ae-latent-1-tiny-32"):
        det = upd_core.load_detector(cid)
        np.testing.assert_allclose(manifold.reconstruct(det, x, batch=2), np.clip(det.predict(x).reconstruction, 0, 1),
                                   atol=1e-5)
    big = smooth_images(2, 48, seed=4)  # another size: resized to the model's and back, like predict
    assert manifold.reconstruct(det, big).shape == (2, 48, 48)

    class PredictOnly:  # a detector without the `reconstruct` hook: through predict
        def predict(self, images):
            return type("P", (), {"reconstruction": np.asarray(images) * 0.5})()

    np.testing.assert_allclose(manifold.reconstruct(PredictOnly(), x), x * 0.5)


def test_manifold_numbers_with_fd_intervals_and_fd_dropped_with_a_reason(ckpts):
    import upd_core

    det = upd_core.load_detector(TINY)
    dom = tiny_domain_model()
    sets = [manifold.DomainSet(manifold.IN_DISTRIBUTION, manifold.KIND_IN, smooth_images(24, 32, seed=7), 24, "generated"),
            manifold.DomainSet("blobs", manifold.KIND_OTHER, np.stack([with_blob(i, k) for k, i in
                                                              enumerate(smooth_images(24, 32, seed=8))]), 24, "gen"),
            manifold.DomainSet("few", manifold.KIND_OTHER, smooth_images(5, 32, seed=9), 5, "five")]
    num = manifold.manifold_numbers(det, sets, dom, "tiny@v", n_boot=40, seed=1)
    assert num["format"] == manifold.FORMAT and num["checkpoint"] == "tiny@v" and num["n_boot"] == 40
    assert num["feature_space"] == "FD (domain-classifier features)" and num["feature_dim"] == 16
    ind, blobs, few = num["domains"]
    for row in (ind, blobs, few):
        for key in ("ssim", "l1", "p_chest", "p_chest_inputs"):
            s = row[key]
            assert s["lo"] <= s["value"] + 1e-9 and s["value"] <= s["hi"] + 1e-9 and s["se"] >= 0, (row["domain"], key)
    assert 0 <= blobs["p_chest"]["value"] <= 1 and blobs["l1"]["value"] > 0
    assert blobs["fd"]["value"] > 0 and blobs["fd"]["lo"] < blobs["fd"]["hi"] and "fd_inputs" in blobs
    assert "fd" not in few and "5 images for 16 feature dimensions" in few["fd_note"]
    # the same numbers again (seeded bootstrap), and the input side can be shared between checkpoints
    inputs = manifold.input_numbers(sets, dom, 40, 1)
    again = manifold.manifold_numbers(det, sets, dom, "tiny@v", n_boot=40, seed=1, inputs=inputs)
    assert json.dumps(manifold._round(again["domains"])) == json.dumps(manifold._round(num["domains"]))
    plain = manifold.manifold_numbers(det, sets[:1], None, n_boot=10)  # without a domain classifier
    assert plain["checkpoint"] == TINY and "p_chest" not in plain["domains"][0] and "feature_space" not in plain


def copy_of(root, tmp_path):
    dest = tmp_path / "ckpts"
    shutil.copytree(root, dest)
    return dest


def test_numbers_file_is_registered_and_checked_against_weights_and_manifest(ckpts, tmp_path, monkeypatch):
    import upd_core
    from upd_core.checkpoint import MANIFEST, WEIGHTS, resolve, sha256_file

    root = copy_of(ckpts, tmp_path)
    with env(UPD_CHECKPOINTS=str(root)):
        folder, expected = resolve(TINY)
        assert manifold.load_numbers(TINY) == (None, "not precomputed")
        numbers = {"format": manifold.FORMAT, "checkpoint": TINY, "weights_sha256": expected[WEIGHTS],
                   "domain_classifier_sha256": "abc", "feature_space": "FD (x)", "domains": []}
        path = manifold.write_numbers(folder, numbers)
        assert path == folder / manifold.MYTH_FILE
        local = json.loads((folder / MANIFEST).read_text())["sha256"]
        shipped = json.loads((root / MANIFEST).read_text())["checkpoints"][TINY]["sha256"]
        assert local[manifold.MYTH_FILE] == shipped[manifold.MYTH_FILE] == sha256_file(path)
        upd_core.load_detector(TINY)  # the checkpoint still verifies
        got, why = manifold.load_numbers(TINY + "@whatever", "abc", "FD (x)")  # a scoring reads its checkpoint's file
        assert why == "" and got["checkpoint"] == TINY
        assert manifold.load_numbers(TINY, "other")[1] == "precomputed with another domain classifier"
        assert manifold.load_numbers(TINY, "abc", "FD (y)")[1].startswith("precomputed in another feature space")
        manifold.write_numbers(folder, {**numbers, "weights_sha256": "0" * 64})
        assert manifold.load_numbers(TINY) == (None, "precomputed for other weights")
        manifold.write_numbers(folder, numbers)
        path.write_text(path.read_text().replace('"domains": []', '"domains": [{}]'))  # edited after writing
        assert "does not match its sha256" in manifold.load_numbers(TINY)[1]
        assert "no checkpoint" in manifold.load_numbers("absent-checkpoint")[1]


def test_precompute_writes_every_checkpoint_and_shares_the_inputs(ckpts, tmp_path, monkeypatch):
    from upd_core.app import demo_set

    groups, image_of = groups_and_images()
    items = [it for g in groups.values() for it in g]
    monkeypatch.setattr(demo_set, "demo_items", lambda: items)
    monkeypatch.setattr(demo_set, "demo_image", lambda i, size=128: image_of(i))
    root = copy_of(ckpts, tmp_path)
    lines = []
    with env(UPD_CHECKPOINTS=str(root)):
        done = manifold.precompute([TINY, "ae-latent-1-tiny-32@whatever", "absent"], smooth_images(30, 32, seed=3),
                               "generated", tiny_domain_model(), n_images=20, n_boot=20, log=lines.append)
        assert done[-1]["checkpoint"] == "absent" and "no checkpoint" in done[-1]["error"]
        assert lines[-1].startswith("absent: skipped (")
        done = done[:-1]
        assert [d["checkpoint"] for d in done] == [TINY, "ae-latent-1-tiny-32"]
        assert lines[0].startswith("4 domains of 20 images each")
        for d in done:
            got, why = manifold.load_numbers(d["checkpoint"], None, "FD (domain-classifier features)")
            assert why == "" and got["images_per_domain"] == 20 and got["n_boot"] == 20
            assert [r["domain"] for r in got["domains"]] == [manifold.IN_DISTRIBUTION, "chest-xray (DRR)", "digits",
                                                            "photo"]
            assert all("fd" in r for r in got["domains"])  # 20 images > 16 dimensions
        a, b = (manifold.load_numbers(d["checkpoint"])[0]["domains"] for d in done)
        assert [r["fd_inputs"] for r in a] == [r["fd_inputs"] for r in b]  # one input side for all


def test_cli_myth_precompute(ckpts, tmp_path, monkeypatch, capsys):
    from upd_core import cli
    from upd_core.app import demo_set

    groups, image_of = groups_and_images()
    monkeypatch.setattr(demo_set, "demo_items", lambda: [it for g in groups.values() for it in g])
    monkeypatch.setattr(demo_set, "demo_image", lambda i, size=128: image_of(i))
    root = copy_of(ckpts, tmp_path)
    with env(UPD_CHECKPOINTS=str(root)):
        assert cli.main(["myth", "precompute", "--checkpoint", TINY, "--no-data", "--images", "6",
                         "--bootstrap", "5", "--quiet"]) == 0
        out = capsys.readouterr()
        assert out.out.startswith(f"{TINY}: SSIM CXR") and "no domain classifier" in out.err
        got, why = manifold.load_numbers(TINY)
        assert why == "" and [r["kind"] for r in got["domains"]][0] == manifold.KIND_SYNTHETIC  # no real chest X-rays
        assert cli.main(["myth", "precompute", "--checkpoint", "absent", TINY, "--no-data", "--images", "6",
                         "--bootstrap", "5", "--quiet"]) == 2  # the others are still computed
        out = capsys.readouterr()
        assert out.out.startswith(f"{TINY}: SSIM CXR") and "error: absent: no checkpoint 'absent'" in out.err
