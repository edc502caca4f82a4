"""Checkpoint format: global manifest, list_checkpoints, verification, evaluation refresh, model cards."""
import json

import numpy as np
import pytest
import torch

from tests.methods.test_contract import smooth_images
from upd_core import checkpoint as ck
from upd_core import model_card, stopping, training
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
    assert set(res["image"]) == {"auroc", "ap", "fpr95", "fpr99", "ci95"}
    assert set(res["floors"]) == {"mean_intensity", "std_intensity"}
    assert 0 <= res["reconstruction"]["ssim"] <= 1
    evaluate_checkpoint_dir(det, root / "vae-tiny", res, "tiny")
    card = (root / "vae-tiny" / "MODEL_CARD.md").read_text()
    assert f"{res['image']['auroc']:.3f}" in card and "floor: mean_intensity" in card
    lo, hi = res["image"]["ci95"]["auroc"]
    assert f"[{lo:.3f}, {hi:.3f}]" in card and "Calibration transfer" in card
    assert ck.list_checkpoints()[0].metrics["auroc"] == res["image"]["auroc"]
    ck.load_detector("vae-tiny")  # weights/config untouched by evaluation: still verifies


def test_missing_and_corrupt_files(root):
    (root / "vae-tiny" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        ck.load_detector("vae-tiny")
    with pytest.raises(CheckpointError, match="not a known id"):
        ck.load_detector("nope")


def test_card_states_how_training_stopped_and_the_splits(tmp_path):
    x = smooth_images(14)
    rec = fit(get_method("vae")(image_size=32), x[:8], x[8:11], tmp_path / "c",
              tc=TrainConfig(cap_epochs=2, batch_size=4, progress=False), calib_images=x[11:])
    card = (tmp_path / "c" / "MODEL_CARD.md").read_text()
    assert rec["stop_kind"] == stopping.STOP_CAP
    assert "**not converged (epoch cap)**" in card and rec["stop_reason"] in card
    assert f"Epochs trained: 2 (best epoch {rec['best_epoch']}" in card
    assert "up to 1000 epochs, early stopping after 25 epochs" in card and "stated epoch cap of 2 epochs" in card
    assert "seed: 0" in card.lower() and f"on {rec['device']}" in card
    assert "8 training, 3 validation, 3 calibration images" in card and "from 3 normal calibration images" in card
    assert "model selection on normal validation images only (no abnormal labels)" in card
    assert "### Validation loss per epoch" in card and f"{rec['history'][-1]['val_loss']:.5g}" in card


def _card_inputs(n_calib: int) -> tuple[dict, dict]:
    history = [{"epoch": e, "val_loss": 1.0 / e + (0.5 if e == 30 else 0.0), "loss": 2.0 / e} for e in range(1, 41)]
    training = {"epochs": 40, "best_epoch": 37, "best_val_loss": 1 / 37, "stop_kind": stopping.STOP_EARLY,
                "stop_reason": "early stopping (no improvement for 3 epochs)", "history": history, "seconds": 90.0,
                "device": "cuda", "seed": 7, "n_train": 100, "n_val": 20, "n_calib": n_calib, "max_epochs": 1000,
                "patience": 3, "train_config": {"cap_epochs": None, "time_budget_min": None}}
    cfg = {"id": "vae-x", "method": "vae", "image_size": 32, "config": {}, "dataset": {}, "training": training}
    ev = {"split": "x/test", "n_normal": 10, "n_abnormal": 10,
          "image": {"auroc": 0.7, "ap": 0.6, "ci95": {"auroc": [0.61, 0.79], "ap": [0.5, 0.71], "n_boot": 1000}},
          "floors": {}, "calibration": {"bin_shares": [0.1] * 9 + [0.2], "ks": 0.0912, "n": 10,
                                        "median_percentile": 51.0, "reference": "calibration split"},
          "variant": "rec", "variants": {"elbo": {"image": {"auroc": 0.8, "ci95": {"auroc": [0.7, 0.9]}},
                                                  "calibration": {"ks": 0.25}}}}
    return cfg, ev


def test_card_shows_curve_intervals_and_calibration():
    cfg, ev = _card_inputs(n_calib=0)
    card = model_card.render_card(cfg, ev, 1000)
    assert "**converged (early stopping)**" in card and "patience set to 3" in card
    assert "Seed: 7" in card and "on cuda" in card and "90.0 s (1.5 min)" in card
    rows = [line for line in card.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    epochs = [int(r.split("|")[1]) for r in rows]
    assert epochs[0] == 1 and epochs[-1] == 40 and 37 in epochs and 10 <= len(epochs) <= 13
    assert "| 37 | 0.027027 | 0.054054 | best |" in card and "| 40 | 0.025 | 0.05 | last |" in card
    spark = card.split("### Validation loss per epoch\n\n`")[1].split("`")[0]
    assert len(spark) == 40 and spark[0] == "█" and set(spark) <= set(model_card.SPARK)
    assert "| 0.700 | 0.600 |" in card and "[0.610, 0.790] | [0.500, 0.710] |" in card
    assert "10 10 10 10 10 10 10 10 10 20" in card and "0.091" in card
    assert "| elbo | 0.800 |" in card and "[0.700, 0.900]" in card and "0.250" in card
    assert "from the 20 normal validation images" in card and "percentiles refer to the normal validation" in card
    card = model_card.render_card(_card_inputs(n_calib=30)[0], None, 1000)
    assert "from 30 normal calibration images" in card and "percentiles refer to the normal calibration" in card


@pytest.mark.parametrize("record", [
    {"stop_kind": "early stopping"}, {"stop_kind": "max epochs"}, {"stop_kind": "epoch cap"},
    {"stop_kind": "time budget"}, {"stop_reason": "time budget of 6.0 min reached"}, {"stop_reason": "max_epochs"},
    {"stop_reason": "early stopping (no improvement for 25 epochs)"}, {}])
def test_stop_label_is_the_training_loops(record):
    """The cards' label (upd_core.stopping) is the one the training loop and `list` use."""
    assert stopping.stop_label(record) == training.stop_label(record)
    assert stopping.is_converged(record) == training.is_converged(record)


def test_sparkline_and_curve_rows_edge_cases():
    assert model_card.sparkline([]) == "" and model_card.sparkline([2.0, 2.0]) == "▁▁"
    assert len(model_card.sparkline(list(range(500)), width=60)) == 60
    assert model_card.sparkline([1.0, 10.0, 100.0], log=True) == "▁▅█"
    assert model_card.sparkline([1.0, 10.0, 100.0]) == "▁▁█"
    assert model_card.curve_rows([], None) == []
    rows = model_card.curve_rows([{"epoch": 1, "val_loss": 0.5}], 1)
    assert rows == [{"epoch": 1, "val loss": "0.5", "train loss": "", "note": "best, last"}]


def test_auxiliary_models_are_verified_but_not_listed(root):
    """A folder whose config names a `kind` (the domain classifier) is no detector."""
    d = root / "aux"
    ck.save_tensors_atomic(d / ck.WEIGHTS, {"w": torch.zeros(3)})
    ck.write_json(d / ck.CONFIG, {"format": ck.FORMAT, "id": "aux", "kind": "domain-classifier", "image_size": 64,
                                  "config": {"classes": ["a", "b"]}, "dataset": {}, "training": {}})
    ck.refresh(d)
    man = json.loads((root / "manifest.json").read_text())
    assert set(man["checkpoints"]) == {"vae-tiny"} and man["auxiliary"]["aux"]["path"] == "aux"
    assert [i.id for i in ck.list_checkpoints()] == ["vae-tiny"]
    assert ck.expected_sha256(d) == man["auxiliary"]["aux"]["sha256"]
    with pytest.raises(CheckpointError, match="not a detector"):
        ck.load_detector(d)
    (d / ck.CONFIG).write_text((d / ck.CONFIG).read_text().replace('"a"', '"c"'))
    with pytest.raises(CheckpointError, match="config.json does not match"):
        ck.read_verified(d, ck.expected_sha256(d))


# ---- path-loaded folders, bad configs, faults while saving (issue 12) ----

def test_a_folder_loaded_by_path_reports_its_path_never_a_shipped_id(root, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "runs" / "retrained"
    shutil.copytree(root / "vae-tiny", copy)  # its config.json claims "id": "vae-tiny", a shipped id
    assert json.loads((copy / "config.json").read_text())["id"] == "vae-tiny"
    det = ck.load_detector(copy)
    assert det.checkpoint_id == str(copy) and det.checkpoint_dir == copy
    variant = det.variant_names()[1]
    assert ck.load_detector(f"{copy}@{variant}").checkpoint_id == str(copy)
    assert ck.load_detector("vae-tiny").checkpoint_id == "vae-tiny"  # by id: its id
    assert ck.load_detector(root / "vae-tiny").checkpoint_id == "vae-tiny"  # the listed folder, verified as such
    monkeypatch.setattr(ck, "REPO_ROOT", tmp_path.resolve())
    assert ck.load_detector(copy).checkpoint_id == "runs/retrained"  # inside the repository: relative


@pytest.mark.parametrize("cfg", [{"method": "no-such-method"}, {}, {"method": 3}, {"method": "vae", "config": [1]},
                                 {"method": "vae", "image_size": "big"}])
def test_a_bad_config_is_a_checkpoint_error(cfg):
    with pytest.raises(CheckpointError):
        ck.build_detector({"format": ck.FORMAT, **cfg})


def test_a_checkpoint_naming_an_unknown_method_is_refused_clearly(root, tmp_path):
    import shutil

    d = shutil.copytree(root / "vae-tiny", tmp_path / "odd")
    cfg = json.loads((d / ck.CONFIG).read_text())
    (d / ck.CONFIG).write_text(json.dumps({**cfg, "method": "vae-from-the-future"}))
    man = json.loads((d / ck.MANIFEST).read_text())
    man["sha256"][ck.CONFIG] = ck.sha256_file(d / ck.CONFIG)
    (d / ck.MANIFEST).write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="unknown method 'vae-from-the-future'"):
        ck.load_detector(d)


def _full_disk_after(n_ok: int, monkeypatch) -> None:
    import errno
    import os

    from upd_core import checkpoint_files as cf

    real, calls = cf._write_file, {"n": 0}

    def write(tmp, payload):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(tmp, payload)

    monkeypatch.setattr(cf, "_write_file", write)


@pytest.mark.parametrize("n_ok", [0, 1, 2, 3])  # the weights, the config, the card or the manifest does not fit
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(root, monkeypatch, n_ok):
    from upd_core.errors import StorageError

    d = root / "vae-tiny"
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    global_before = (root / "manifest.json").read_bytes()
    with monkeypatch.context() as m:
        _full_disk_after(n_ok, m)
        with pytest.raises(StorageError, match="No space left on device"):
            ck.save_checkpoint(get_method("vae")(image_size=32), d, training={"epochs": 1})
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # nothing replaced, no temporary file
    assert (root / "manifest.json").read_bytes() == global_before
    ck.load_detector("vae-tiny")


def test_new_weights_drop_the_old_evaluation_and_match_a_refresh(root):
    d = root / "vae-tiny"
    ck.write_json(d / ck.EVALUATION, _card_inputs(0)[1])
    ck.refresh(d)
    assert ck.EVALUATION in json.loads((d / ck.MANIFEST).read_text())["sha256"]
    ck.save_checkpoint(get_method("vae")(image_size=32), d, keep_evaluation=False)
    assert not (d / ck.EVALUATION).exists()
    assert set(json.loads((d / ck.MANIFEST).read_text())["sha256"]) == {ck.WEIGHTS, ck.CONFIG, ck.CARD}
    assert ck.list_checkpoints()[0].metrics == {}
    written = {n: (d / n).read_bytes() for n in (ck.CARD, ck.MANIFEST)}
    ck.refresh(d)  # the staged card and manifest are exactly what a refresh makes
    assert {n: (d / n).read_bytes() for n in (ck.CARD, ck.MANIFEST)} == written
    ck.load_detector("vae-tiny")
