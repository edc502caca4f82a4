"""One contract test for every registered method: tiny fit, predict, save, load, tamper refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import upd_core
from upd_core.checkpoint import WEIGHTS, load_detector
from upd_core.errors import CheckpointError, ImageError
from upd_core.registry import get_method, list_methods
from upd_core.training import TrainConfig, fit

SIZE = 32


def smooth_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth random blobs in [0,1]: a cheap stand-in for 'normal anatomy'."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True) + 1e-6)
    return x[:, 0].numpy().astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    x = smooth_images(20)
    return x[:16], x[16:]


@pytest.mark.parametrize("method", list_methods())
def test_method_contract(method: str, data, tmp_path) -> None:
    cls = get_method(method)
    assert method == method.lower() and " " not in method
    det = cls(image_size=SIZE)
    train, val = data
    rec = fit(det, train, val, tmp_path / method,
              tc=TrainConfig(max_epochs=1, batch_size=8, progress=False, seed=0))
    assert rec["epochs"] == 1 and np.isfinite(rec["best_val_loss"])

    pred = det.predict(val)
    n = len(val)
    assert pred.score.shape == (n,) and np.isfinite(pred.score).all()
    assert pred.anomaly_map.shape == (n, SIZE, SIZE) and np.isfinite(pred.anomaly_map).all()
    assert pred.percentile is not None and ((pred.percentile >= 0) & (pred.percentile <= 100)).all()
    for name in cls.outputs:
        arr = getattr(pred, name)
        assert arr is not None, f"{method} declares output {name} but did not produce it"
        assert arr.shape == ((n, 2, SIZE, SIZE) if name == "deformation" else (n, SIZE, SIZE))
    # predict accepts (N,1,H,W) tensors and other sizes (resized to the model's size)
    big = torch.as_tensor(np.kron(val[:2], np.ones((2, 2), np.float32)))[:, None]
    pred_big = det.predict(big)
    assert pred_big.anomaly_map.shape == (2, 2 * SIZE, 2 * SIZE)

    # save/load round trip reproduces the scores
    loaded = load_detector(tmp_path / method, device="cpu")
    assert loaded.method == method
    torch.manual_seed(0)
    a = det.to("cpu").predict(val).score
    torch.manual_seed(0)
    b = loaded.predict(val).score
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(loaded.val_scores.numpy(), det.val_scores.cpu().numpy())

    # bad input is refused with a clear error
    with pytest.raises(ImageError):
        loaded.predict(np.full((1, SIZE, SIZE), np.nan, np.float32))
    with pytest.raises(ImageError):
        loaded.predict(np.zeros((SIZE,), np.float32))

    # tampering and truncation are refused
    weights = tmp_path / method / WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_detector(tmp_path / method)
    weights.write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(CheckpointError):
        load_detector(tmp_path / method)


def test_registry_lists_first_methods() -> None:
    assert {"spatial-ae", "dense-ae", "vae"} <= set(upd_core.list_methods())


def test_scoring_variants_are_not_registered_as_methods() -> None:
    """One mechanism for other scorings of the same weights: `<checkpoint>@<variant>`."""
    ids = set(list_methods())
    for method in ids:
        det = get_method(method)(image_size=SIZE)
        assert not hasattr(det, "set_density"), method
        twins = {f"{method}-{v}" for v in det.variant_names()} & ids
        assert not twins, f"{sorted(twins)} duplicate scoring variants of {method}"


def test_unknown_method_is_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        get_method("no-such-method")


def test_checkpoint_without_manifest_refused(tmp_path, data) -> None:
    det = get_method("spatial-ae")(image_size=SIZE)
    fit(det, data[0], data[1], tmp_path / "c", tc=TrainConfig(max_epochs=1, batch_size=8, progress=False))
    (tmp_path / "c" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        load_detector(tmp_path / "c")


def test_config_with_unknown_key_refused(tmp_path, data) -> None:
    det = get_method("spatial-ae")(image_size=SIZE)
    fit(det, data[0], data[1], tmp_path / "c", tc=TrainConfig(max_epochs=1, batch_size=8, progress=False))
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    cfg["config"]["bogus"] = 1
    (tmp_path / "c" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError):  # sha256 mismatch comes first: config is verified too
        load_detector(tmp_path / "c")
