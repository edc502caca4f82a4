"""The one training loop: early stopping, time budget, resume, record."""
import json

import numpy as np
import pytest
import torch

from tests.methods.test_contract import smooth_images
from upd_core.checkpoint import load_detector
from upd_core.registry import get_method
from upd_core.training import STATE_DIR, TrainConfig, fit


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


def test_same_seed_same_weights(tmp_path, data):
    tc = TrainConfig(max_epochs=2, batch_size=8, progress=False, amp="off", channels_last=False)
    torch.manual_seed(123)  # the loop must reseed itself: outer RNG state must not matter
    a = get_method("spatial-ae")(image_size=32)
    fit(a, *data, tmp_path / "a", tc=tc)
    torch.manual_seed(123)
    c = get_method("spatial-ae")(image_size=32)
    fit(c, *data, tmp_path / "c", tc=tc)
    for (k, va), vc in zip(a.state_dict().items(), c.state_dict().values()):
        assert torch.allclose(va.float(), vc.float(), atol=1e-6), k


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
