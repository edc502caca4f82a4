"""Checkpoint format: global manifest, list_checkpoints, verification, evaluation refresh."""
import json

import numpy as np
import pytest

from tests.methods.test_contract import smooth_images
from upd_core import checkpoint as ck
from upd_core.errors import CheckpointError
from upd_core.evaluate import evaluate, evaluate_checkpoint_dir
from upd_core.registry import get_method
from upd_core.training import TrainConfig, fit


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("UPD_CHECKPOINTS", str(tmp_path / "checkpoints"))
    x = smooth_images(12)
    fit(get_method("vae")(image_size=32), x[:8], x[8:], tmp_path / "checkpoints" / "vae-tiny",
        tc=TrainConfig(max_epochs=1, batch_size=4, progress=False), checkpoint_id="vae-tiny")
    return tmp_path / "checkpoints"


def test_global_manifest_lists_and_loads_by_id(root):
    infos = ck.list_checkpoints()
    assert [i.id for i in infos] == ["vae-tiny"] and infos[0].method == "vae"
    man = json.loads((root / "manifest.json").read_text())
    entry = man["checkpoints"]["vae-tiny"]
    assert entry["sha256"]["model.safetensors"] == ck.sha256_file(root / "vae-tiny" / "model.safetensors")
    det = ck.load_detector("vae-tiny", device="cpu")
    assert det.checkpoint_id == "vae-tiny" and not det.training


def test_global_manifest_wins_over_local(root):
    # an attacker rewriting both the weights and the local manifest is still caught
    d = root / "vae-tiny"
    blob = bytearray((d / "model.safetensors").read_bytes())
    blob[100] ^= 1
    (d / "model.safetensors").write_bytes(bytes(blob))
    local = json.loads((d / "manifest.json").read_text())
    local["sha256"]["model.safetensors"] = ck.sha256_file(d / "model.safetensors")
    (d / "manifest.json").write_text(json.dumps(local))
    with pytest.raises(CheckpointError, match="sha256"):
        ck.load_detector(d)
    with pytest.raises(CheckpointError, match="sha256"):
        ck.load_detector("vae-tiny")


def test_evaluation_updates_card_and_manifest(root):
    det = ck.load_detector("vae-tiny")
    x = smooth_images(10, seed=3)
    x[5:, 10:20, 10:20] = 1.0  # 'abnormal' bright squares
    res = evaluate(det, x, np.r_[np.zeros(5), np.ones(5)], split="tiny/test")
    assert set(res["image"]) == {"auroc", "ap", "fpr95", "fpr99"}
    assert set(res["floors"]) == {"mean_intensity", "std_intensity"}
    assert 0 <= res["reconstruction"]["ssim"] <= 1
    evaluate_checkpoint_dir(det, root / "vae-tiny", res, "tiny")
    card = (root / "vae-tiny" / "MODEL_CARD.md").read_text()
    assert f"{res['image']['auroc']:.3f}" in card and "floor: mean_intensity" in card
    assert ck.list_checkpoints()[0].metrics["auroc"] == res["image"]["auroc"]
    ck.load_detector("vae-tiny")  # weights/config untouched by evaluation: still verifies


def test_missing_and_corrupt_files(root):
    (root / "vae-tiny" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        ck.load_detector("vae-tiny")
    with pytest.raises(CheckpointError, match="not a known id"):
        ck.load_detector("nope")
