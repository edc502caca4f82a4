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


# ---- faults while the training state is written (issue 12) ----

_TC = dict(max_epochs=2, batch_size=8, progress=False, amp="off", seed=4)


def _ae():
    """A spatial AE whose checkpoint is its last epoch (model selection waits, as during a loss
    schedule), so the weights show whether any epoch was repeated or skipped."""
    det = get_method("spatial-ae")(image_size=32)
    det.selection_start_epoch = lambda: 10 ** 6
    return det


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data):
    """Weights and per-epoch losses of a 2-epoch run that nothing interrupted."""
    out = tmp_path_factory.mktemp("full")
    seed_everything(4)
    rec = fit(_ae(), *data, out, tc=TrainConfig(**_TC))
    return load_file(str(out / "model.safetensors")), rec["history"]


def _assert_same_run(reference: tuple[dict, list], out) -> None:
    a, history = reference
    assert json.loads((out / "config.json").read_text())["training"]["history"] == history
    b = load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_while_the_state_is_committed_neither_repeats_nor_skips_an_epoch(
        tmp_path, data, monkeypatch, uninterrupted, crash_at):
    """Die at the 1st or 2nd rename of epoch 2's state (before: between state.safetensors and
    state.json, which made the resume train epoch 2 again on epoch-2 weights)."""
    import os

    real, renames = os.replace, {"n": 0}

    def replace(src, dst):
        if STATE_DIR in str(dst):
            renames["n"] += 1
            if renames["n"] == 2 + crash_at:  # epoch 1's state took two renames
                raise KeyboardInterrupt
        return real(src, dst)

    seed_everything(4)
    part = _ae()
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        fit(part, *data, tmp_path, tc=TrainConfig(**_TC))
    monkeypatch.undo()
    state = json.loads((tmp_path / STATE_DIR / "state.json").read_text())
    assert state["record"]["epochs"] == 1  # the state of the last committed epoch
    seed_everything(99)
    rec = fit(_ae(), *data, tmp_path, tc=TrainConfig(**_TC), resume=True)
    assert [h["epoch"] for h in rec["history"]] == [1, 2]
    _assert_same_run(uninterrupted, tmp_path)


def test_a_full_disk_while_saving_the_state_keeps_the_previous_state(tmp_path, data, monkeypatch, uninterrupted):
    import errno
    import os

    from upd_core import checkpoint_files as cf
    from upd_core.errors import StorageError

    real, writes = cf._write_file, {"n": 0}

    def write(tmp, payload):
        if STATE_DIR in tmp:
            writes["n"] += 1
            if writes["n"] == 3:  # epoch 2's tensors
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(tmp, payload)

    seed_everything(4)
    monkeypatch.setattr(cf, "_write_file", write)
    with pytest.raises(StorageError, match="No space left on device"):
        fit(_ae(), *data, tmp_path, tc=TrainConfig(**_TC))
    monkeypatch.undo()
    folder = tmp_path / STATE_DIR
    assert json.loads((folder / "state.json").read_text())["record"]["epochs"] == 1
    assert not list(folder.glob("*.tmp")) and len(list(folder.glob("*.safetensors"))) == 1
    fit(_ae(), *data, tmp_path, tc=TrainConfig(**_TC), resume=True)
    _assert_same_run(uninterrupted, tmp_path)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, data):
    """A training state after epoch 1, as a kill in epoch 2 would leave it (copy it before use)."""
    out = tmp_path_factory.mktemp("interrupted")
    det = get_method("spatial-ae")(image_size=32)
    orig, calls = det.training_step, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # 2 steps per epoch
            raise KeyboardInterrupt
        return orig(*a, **k)

    det.training_step = flaky
    with pytest.raises(KeyboardInterrupt):
        fit(det, *data, out, tc=TrainConfig(**_TC))
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def test_stray_temporary_files_are_removed_at_start(tmp_path, data, interrupted):
    _copy(interrupted, tmp_path)
    folder = tmp_path / STATE_DIR
    junk = [folder / "state-00002.safetensors.k3x_9az2.tmp", tmp_path / "model.safetensors.abcdefgh.tmp",
            folder / "state-00002.safetensors"]  # uncommitted: state.json still names epoch 1's file
    for p in junk:
        p.write_bytes(b"\0" * 1000)
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    fit(get_method("spatial-ae")(image_size=32), *data, tmp_path, tc=TrainConfig(**_TC), resume=True)
    assert not any(p.exists() for p in junk) and keep.read_text() == "mine"
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["json", "keys", "tensors-missing", "tensors-truncated"])
def test_a_corrupt_state_is_a_clear_error(tmp_path, data, interrupted, damage):
    from upd_core.training import TrainingStateError

    _copy(interrupted, tmp_path)
    folder = tmp_path / STATE_DIR
    tensors = next(folder.glob("*.safetensors"))
    if damage == "json":
        (folder / "state.json").write_text('{"record": ')
    elif damage == "keys":
        (folder / "state.json").write_text('{"record": {}}')
    elif damage == "tensors-missing":
        tensors.unlink()
    else:
        tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(TrainingStateError, match="unusable") as e:
        fit(get_method("spatial-ae")(image_size=32), *data, tmp_path, tc=TrainConfig(**_TC), resume=True)
    assert "\n" not in str(e.value) and "--force" in str(e.value)


def test_the_optimizer_resumes_with_the_recorded_settings(tmp_path, data, monkeypatch, interrupted):
    """The learning rate (and the Adam moments) come from the state, not from a fresh optimizer."""
    from upd_core import training

    _copy(interrupted, tmp_path)
    info = json.loads((tmp_path / STATE_DIR / "state.json").read_text())
    recorded = info["optimizers"]["main"]["param_groups"][0]
    recorded["lr"] = 0.0123  # e.g. a schedule had lowered it: the resume must not reset it to config.lr
    (tmp_path / STATE_DIR / "state.json").write_text(json.dumps(info))
    seen = {}
    real = training._restore_optimizers

    def spy(optimizers, tensors, meta):
        real(optimizers, tensors, meta)
        opt = optimizers["main"]
        seen.update(lr=opt.param_groups[0]["lr"], betas=tuple(opt.param_groups[0]["betas"]),
                    moments=sum(1 for st in opt.state.values() if "exp_avg" in st))

    monkeypatch.setattr(training, "_restore_optimizers", spy)
    fit(get_method("spatial-ae")(image_size=32), *data, tmp_path, tc=TrainConfig(**_TC), resume=True)
    assert seen["lr"] == recorded["lr"] and seen["betas"] == tuple(recorded["betas"])
    assert seen["moments"] > 0


def test_an_unwritable_output_fails_before_the_first_epoch(tmp_path, data, monkeypatch):
    from upd_core.errors import StorageError

    (tmp_path / "file").write_text("x")
    det = get_method("spatial-ae")(image_size=32)
    monkeypatch.setattr(det, "training_step", lambda *a, **k: pytest.fail("trained before checking --out"))
    with pytest.raises(StorageError, match="is a file"):
        fit(det, *data, tmp_path / "file" / "out", tc=TrainConfig(**_TC))


def test_a_state_in_the_earlier_two_file_layout_still_resumes(tmp_path, data, interrupted):
    """Runs interrupted before the commit marker (state.safetensors + state.json without a name)."""
    _copy(interrupted, tmp_path)
    folder = tmp_path / STATE_DIR
    info = json.loads((folder / "state.json").read_text())
    (folder / info.pop("tensors")).rename(folder / "state.safetensors")
    info.pop("sha256")
    (folder / "state.json").write_text(json.dumps(info))
    rec = fit(get_method("spatial-ae")(image_size=32), *data, tmp_path, tc=TrainConfig(**_TC), resume=True)
    assert [h["epoch"] for h in rec["history"]] == [1, 2] and not folder.exists()


def _constant_val(det, losses):
    """Make the validation loss of epoch e (0-based) losses[e]: a plateau on demand."""
    def val(x, epoch):
        return torch.tensor(losses[epoch])
    det.validation_loss = val


def test_plateau_scheduler_cuts_the_rate_and_resumes_alike(tmp_path, data, monkeypatch):
    losses = [1.0, 1.0, 1.0, 0.5, 0.5]  # patience 0: cut after epochs 2, 3 and 5
    tc = TrainConfig(max_epochs=5, patience=99, batch_size=8, progress=False, amp="off", seed=2)

    def build():
        seed_everything(2)
        det = get_method("spatial-ae")(image_size=32)
        det.config.lr_plateau_factor, det.config.lr_plateau_patience = 0.1, 0
        _constant_val(det, losses)
        return det

    rec = fit(build(), *data, tmp_path / "full", tc=tc)
    base = get_method("spatial-ae").Config().lr
    assert [h["lr"] for h in rec["history"]] == pytest.approx([base, base, base * 0.1, base * 0.01, base * 0.01])
    part = build()
    calls = {"n": 0}
    orig = part.training_step

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 7:  # 2 steps per epoch: die in the 4th epoch, after two cuts
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(part, "training_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        fit(part, *data, tmp_path / "part", tc=tc)
    again = build()
    rec2 = fit(again, *data, tmp_path / "part", tc=tc, resume=True)
    assert [h["lr"] for h in rec2["history"]] == pytest.approx([h["lr"] for h in rec["history"]])
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_only_the_vae_uses_the_plateau_scheduler():
    """MorphAEus appendix A.1 gives the plateau scheduler for the VAE only."""
    uses = {m: get_method(m).Config().lr_plateau_factor for m in ("vae", "beta-vae", "soft-intro-vae", "cevae",
                                                                  "spatial-ae", "dae", "morphaeus")}
    assert uses == {"vae": 0.1, "beta-vae": None, "soft-intro-vae": None, "cevae": None,
                    "spatial-ae": None, "dae": None, "morphaeus": None}
