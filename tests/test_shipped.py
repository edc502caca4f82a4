"""The checkpoints shipped in checkpoints/: verified, small, documented, evaluated, and working.

These run on the committed weights (no training). The MorphAEus check on a real Kermany test image
uses ../shared/data when present and is skipped with a message otherwise; the same properties are
also checked on a generated image, which always runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import upd_core
from upd_core.checkpoint import CARD, CONFIG, EVALUATION, WEIGHTS, checkpoints_root, sha256_file
from upd_core.domain import load_domain_classifier
from upd_core.paths import data_root
from upd_core.stopping import stop_label

from .methods.test_contract import smooth_images

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 15 * 1024 * 1024  # each shipped model <= 15 MB
SHIPPED = [c.id for c in upd_core.list_checkpoints()] if (REPO / "checkpoints" / "manifest.json").exists() else []
pytestmark = pytest.mark.skipif(checkpoints_root() != REPO / "checkpoints" or not SHIPPED,
                                reason="no shipped checkpoints in this checkout")


def kermany_test_image() -> np.ndarray:
    folder = data_root() / "cxr-kermany" / "test" / "PNEUMONIA"
    files = sorted(folder.glob("*.jp*g")) if folder.is_dir() else []
    if not files:
        pytest.skip(f"Kermany test images not found under {folder} (set UPD_DATA_ROOT)")
    return upd_core.load_image(files[0], size=128)


def test_foundation_methods_are_shipped() -> None:
    methods = {c.method for c in upd_core.list_checkpoints()}
    assert {"spatial-ae", "dense-ae", "vae"} <= methods


@pytest.mark.parametrize("ckpt_id", SHIPPED)
def test_shipped_checkpoint_is_verified_small_documented_and_evaluated(ckpt_id: str) -> None:
    info = next(c for c in upd_core.list_checkpoints() if c.id == ckpt_id)
    folder = Path(info.path)
    manifest = json.loads((REPO / "checkpoints" / "manifest.json").read_text())["checkpoints"][ckpt_id]
    for name, digest in manifest["sha256"].items():
        assert sha256_file(folder / name) == digest, f"{ckpt_id}/{name} does not match the manifest"
    assert (folder / WEIGHTS).stat().st_size <= MAX_BYTES
    card = (folder / CARD).read_text()
    assert "CC BY 4.0" in card and "Wall-clock time" in card
    ev = json.loads((folder / EVALUATION).read_text())
    assert 0.0 <= ev["image"]["auroc"] <= 1.0 and 0.0 <= ev["image"]["ap"] <= 1.0
    assert {"mean_intensity", "std_intensity"} <= set(ev["floors"])  # the trivial floors, always
    assert f"{ev['image']['auroc']:.3f}" in card  # the card shows the evaluate command's numbers
    cfg = json.loads((folder / CONFIG).read_text())
    assert cfg["training"]["seconds"] > 0 and cfg["training"]["n_train"] > 100
    # issue 14: how the run stopped, under which limit, the splits and the validation-loss curve
    assert f"**{stop_label(cfg['training'])}**" in card and "Limit: paper's rule" in card
    assert f"Epochs trained: {cfg['training']['epochs']} (best epoch {cfg['training']['best_epoch']}" in card
    assert "model selection on normal validation images only (no abnormal labels)" in card
    assert "calibration images; score percentiles come from" in card and "### Validation loss per epoch" in card
    if "ci95" in ev["image"]:
        assert f"[{ev['image']['ci95']['auroc'][0]:.3f}, {ev['image']['ci95']['auroc'][1]:.3f}]" in card
    if "calibration" in ev:
        assert "Calibration transfer" in card


@pytest.mark.parametrize("ckpt_id", SHIPPED)
def test_shipped_checkpoint_predicts(ckpt_id: str) -> None:
    det = upd_core.load_detector(ckpt_id, device="cpu")
    x = smooth_images(2, 128, seed=3)
    pred = det.predict(x)
    assert pred.score.shape == (2,) and np.isfinite(pred.score).all()
    assert pred.anomaly_map.shape == (2, 128, 128) and np.isfinite(pred.anomaly_map).all()
    assert pred.percentile is not None
    for name in type(det).outputs:
        arr = getattr(pred, name)
        assert arr is not None and arr.shape == ((2, 2, 128, 128) if name == "deformation" else (2, 128, 128))


def test_shipped_domain_classifier_is_a_verified_checkpoint() -> None:
    """The domain classifier has the one checkpoint format, is listed in the root manifest and loads."""
    from upd_core.checkpoint import MANIFEST

    folder = REPO / "checkpoints" / "domain-classifier"
    if not folder.is_dir():
        pytest.skip("no shipped domain classifier")
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS, CONFIG, CARD, MANIFEST])
    entry = json.loads((REPO / "checkpoints" / MANIFEST).read_text())["auxiliary"]["domain-classifier"]
    assert entry == {"kind": "domain-classifier", "path": "domain-classifier",
                     "sha256": json.loads((folder / MANIFEST).read_text())["sha256"]}
    for name, digest in entry["sha256"].items():
        assert sha256_file(folder / name) == digest, f"domain-classifier/{name} does not match the manifest"
    assert "domain-classifier" not in SHIPPED
    clf = load_domain_classifier()
    assert clf is not None and clf.classes[0] == "chest-xray" and clf.meta["held_out_accuracy"] > 0.9
    card = (folder / CARD).read_text()
    for text in ("train split", "NORMAL", "CC BY 4.0", "Kermany DS et al., Cell", "doi:10.17632/rscbjbr9sj.2",
                 "embedded demo set", "## Purpose", "out-of-distribution warning", "scripts/train_domain.sh"):
        assert text in card, f"the domain classifier's card does not state {text!r}"


def _check_morphaeus(x: np.ndarray) -> None:
    det = upd_core.load_detector("morphaeus-kermany-128", device="cpu")
    pred = det.predict(x[None])
    assert pred.prior.shape == pred.warped.shape == (1, 128, 128)
    assert pred.deformation.shape == (1, 2, 128, 128)
    assert np.abs(pred.deformation).max() > 0.05, "the deformation field is (nearly) identically zero"
    assert np.abs(pred.warped - pred.prior).mean() > 1e-3, "the warped prior equals the prior"


def test_morphaeus_deforms_its_prior_on_a_generated_image() -> None:
    _check_morphaeus(smooth_images(1, 128, seed=5)[0])


def test_morphaeus_deforms_its_prior_on_a_kermany_test_image() -> None:
    _check_morphaeus(kermany_test_image())


def test_readme_results_table_is_generated_from_the_evaluations() -> None:
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "results_table.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, "README results table is stale: run python scripts/results_table.py"


@pytest.mark.parametrize("cid", [c for c in SHIPPED if c.startswith("vae-")])
def test_shipped_vae_is_what_the_plateau_scheduler_trains(cid):
    """The VAE's plateau scheduler (MorphAEus A.1) came after the shipped VAE was trained: its
    validation history shows no plateau that would have cut the rate, so the same seed with the
    scheduler gives the same weights. A VAE trained with it records the rate in its history."""
    from upd_core.stopping import plateau_reductions

    cfg = json.loads((checkpoints_root() / cid / CONFIG).read_text())
    hist = cfg["training"]["history"]
    method_cfg = cfg.get("config", {})
    if method_cfg.get("lr_plateau_factor") is not None:
        assert all("lr" in h for h in hist)
    else:
        assert plateau_reductions([h["val_loss"] for h in hist], 10) == 0
