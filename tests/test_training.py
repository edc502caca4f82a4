"""The one training loop: early stopping, time budget, resume, record."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.methods.test_contract import smooth_images
from upd_core.checkpoint import load_detector
from upd_core.registry import get_method
from upd_core.training import STATE_DIR, TrainConfig, fit, is_converged, seed_everything, stop_label


@pytest.fixture(scope="module")
def data():
    x = smooth_images(24)
    return x[:16], x[16:]


def test_early_stopping_and_record(tmp_path, data):
    det = get_method("spatial-ae")(image_size=32)
    det.config.lr = 0.0  # nothing improves after the first epoch...
    for m in det.modules():  # ...not even BatchNorm running statistics (momentum 0 keeps them fixed)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    rec = fit(det, *data, tmp_path / "c", tc=TrainConfig(max_epochs=50, patience=2, batch_size=8, progress=False))
    assert rec["epochs"] == 3 and rec["best_epoch"] == 1
    assert "early stopping" in rec["stop_reason"]
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["training"]["epochs"] == 3 and cfg["training"]["seconds"] >= 0
    assert not (tmp_path / "c" / STATE_DIR).exists()  # resume state removed after success
    card = (tmp_path / "c" / "MODEL_CARD.md").read_text()
    assert "Wall-clock time" in card and "early stopping" in card


def test_resume_continues_where_it_stopped(tmp_path, data, monkeypatch):
    out = tmp_path / "r"
    det = get_method("spatial-ae")(image_size=32)
    # Interrupt after epoch 2 by making the 3rd epoch's first step raise.
    calls = {"n": 0}
    orig = det.training_step

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # 16 images / batch 8 = 2 steps per epoch -> 3rd epoch
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(det, "training_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        fit(det, *data, out, tc=TrainConfig(max_epochs=4, batch_size=8, progress=False))
    state = json.loads((out / STATE_DIR / "state.json").read_text())
    assert state["record"]["epochs"] == 2
    det2 = get_method("spatial-ae")(image_size=32)
    rec = fit(det2, *data, out, tc=TrainConfig(max_epochs=4, batch_size=8, progress=False), resume=True)
    assert rec["epochs"] == 4 and len(rec["history"]) == 4
    assert load_detector(out).predict(data[1]).score.shape == (len(data[1]),)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, data, monkeypatch):
    tc = TrainConfig(max_epochs=3, batch_size=8, progress=False, amp="off", seed=4)
    seed_everything(4)
    full = get_method("spatial-ae")(image_size=32)
    fit(full, *data, tmp_path / "full", tc=tc)
    seed_everything(4)
    part = get_method("spatial-ae")(image_size=32)
    calls = {"n": 0}
    orig = part.training_step

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # 2 steps per epoch: die in the 2nd epoch
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(part, "training_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        fit(part, *data, tmp_path / "part", tc=tc)
    seed_everything(99)  # a different process: RNG state at resume time must not matter
    again = get_method("spatial-ae")(image_size=32)
    fit(again, *data, tmp_path / "part", tc=tc, resume=True)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_stop_kinds_and_labels(tmp_path, data):
    det = get_method("spatial-ae")(image_size=32)
    rec = fit(det, *data, tmp_path / "cap", tc=TrainConfig(cap_epochs=2, batch_size=8, progress=False))
    assert rec["stop_kind"] == "epoch cap" and rec["converged"] is False and rec["epochs"] == 2
    assert stop_label(rec) == "not converged (epoch cap)"
    det = get_method("spatial-ae")(image_size=32)
    rec = fit(det, *data, tmp_path / "max", tc=TrainConfig(max_epochs=2, batch_size=8, progress=False))
    assert stop_label(rec) == "converged (max epochs)"
    assert stop_label({"stop_reason": "time budget of 6.0 min reached"}) == "not converged (time budget)"
    assert not is_converged({"stop_reason": "time budget of 6.0 min reached"})


def test_calibration_scores_give_percentiles_for_every_variant(tmp_path, data):
    det = get_method("vae")(image_size=32)
    fit(det, *data, tmp_path / "v", tc=TrainConfig(cap_epochs=1, batch_size=8, progress=False),
        calib_images=data[1][:5])
    loaded = load_detector(tmp_path / "v")
    assert tuple(loaded.calib_scores.shape) == (len(loaded.variant_names()), 5)
    for name in loaded.variant_names():
        v = load_detector(f"{tmp_path / 'v'}@{name}")
        ref = v.reference_scores().numpy()
        np.testing.assert_allclose(np.sort(ref), np.sort(v.predict(data[1][:5]).score), rtol=1e-4, atol=1e-6)
        assert v.predict(data[1][:2]).percentile is not None


def test_time_budget_stops(tmp_path, data):
    det = get_method("spatial-ae")(image_size=32)
    rec = fit(det, *data, tmp_path / "t", tc=TrainConfig(max_epochs=100, batch_size=8, progress=False,
                                                          time_budget_min=0.0))
    assert rec["epochs"] == 1 and "time budget" in rec["stop_reason"]


def test_bad_training_input(tmp_path):
    det = get_method("spatial-ae")(image_size=32)
    with pytest.raises(ValueError):
        fit(det, np.zeros((1, 32, 32), np.float32), np.zeros((1, 32, 32), np.float32), tmp_path / "x",
            tc=TrainConfig(max_epochs=1, progress=False))


def test_selection_waits_for_the_loss_schedule(tmp_path, data):
    det = get_method("spatial-ae")(image_size=32)
    det.config.lr = 0.0  # nothing improves: without the schedule rule the best epoch would be 1
    for m in det.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    det.selection_start_epoch = lambda: 3  # e.g. MorphAEus: L_warp on and beta at its final value
    rec = fit(det, *data, tmp_path / "s", tc=TrainConfig(max_epochs=50, patience=2, batch_size=8, progress=False))
    assert rec["best_epoch"] == 3 and rec["epochs"] == 5 and rec["selection_start_epoch"] == 3
    assert "early stopping" in rec["stop_reason"]


def test_morphaeus_and_beta_vae_select_after_their_ramps():
    assert get_method("morphaeus")(image_size=32).selection_start_epoch() == 10 + 200
    assert get_method("morphaeus-no-warp")(image_size=32).selection_start_epoch() == 0
    assert get_method("beta-vae")(image_size=32).selection_start_epoch() == 100
    assert get_method("vae")(image_size=32).selection_start_epoch() == 0
