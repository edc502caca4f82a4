"""MorphAEus, its ablations and the curse-of-resolution AEs: shapes, warp, LNCC, schedules."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from upd_core.overrides import method_config
from upd_core.methods import morphaeus as mm
from upd_core.registry import get_method, list_methods
from upd_core.training import TrainConfig, fit

from .test_contract import smooth_images

SERIES = ("ae-latent-32", "ae-latent-16", "ae-latent-8", "ae-latent-4", "ae-latent-1")
FAMILY = ("morphaeus", "morphaeus-no-warp", "morphaeus-no-warp-no-pl") + SERIES


def blobs(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images as an (N,1,H,W) tensor (the contract test's generator)."""
    return torch.as_tensor(smooth_images(n, size, seed))[:, None]


@pytest.fixture(autouse=True)
def no_perceptual_lookup(monkeypatch):
    """Keep tests offline and independent of shipped checkpoints: no SSL encoder, empty hub cache."""
    monkeypatch.setattr("upd_core.perceptual._load_ssl_detector", lambda *a: None)
    monkeypatch.setattr("upd_core.perceptual.lpips_available", lambda net="alex": False)


def test_registered() -> None:
    assert set(FAMILY) <= set(list_methods())


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("method", FAMILY)
def test_shapes(method: str, size: int) -> None:
    det = get_method(method)(image_size=size).eval()
    x = blobs(3, size)
    pred = det.predict(x[:, 0].numpy())
    assert pred.anomaly_map.shape == (3, size, size) and pred.score.shape == (3,)
    assert pred.reconstruction.shape == (3, size, size)
    for name in det.outputs:
        arr = getattr(pred, name)
        assert arr is not None and arr.shape == ((3, 2, size, size) if name == "deformation" else (3, size, size))
    if method == "morphaeus":
        assert pred.extras["prior_residual"].shape == (3, size, size)
        np.testing.assert_allclose(pred.anomaly_map, np.abs(x[:, 0].numpy() - pred.warped), atol=1e-5)
    losses = det.train().loss(x, epoch=50)
    assert torch.isfinite(losses["loss"])


def test_morphaeus_latent_is_1x1_and_size_below_15mb() -> None:
    for size in (32, 64, 128):
        det = get_method("morphaeus")(image_size=size)
        h, _ = det.ae.encoder(torch.zeros(2, 1, size, size), return_features=True)
        assert h.shape[-2:] == (1, 1) and det.ae.to_latent.out_channels == 128
    assert sum(p.numel() for p in det.parameters()) * 4 < 15e6


def test_identity_field_is_identity_and_shift_moves_pixels() -> None:
    img = torch.rand(2, 1, 16, 20)
    torch.testing.assert_close(mm.warp(img, torch.zeros(2, 2, 16, 20)), img, atol=1e-5, rtol=0)
    flow = torch.zeros(2, 2, 16, 20)
    flow[:, 0] = 1.0  # sample one pixel to the right
    out = mm.warp(img, flow)
    torch.testing.assert_close(out[..., :-1], img[..., 1:], atol=1e-5, rtol=0)
    flow = torch.zeros(2, 2, 16, 20)
    flow[:, 1] = -2.0  # sample two pixels up
    torch.testing.assert_close(mm.warp(img, flow)[..., 2:, :], img[..., :-2, :], atol=1e-5, rtol=0)


def test_lncc_of_image_with_itself_is_optimum() -> None:
    x = blobs(2, 32) + 0.05 * torch.rand(2, 1, 32, 32)
    assert float(mm.lncc_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    others = [x + 0.1 * torch.randn_like(x), torch.roll(x, 3, dims=-1), torch.rand_like(x), 1 - x * 0.5]
    losses = [float(mm.lncc_loss(y, x)) for y in others]
    assert min(losses) >= 0 and min(losses[:3]) > 1e-3
    # (nearly) invariant to a global gain/offset: only the zero-padded border differs
    assert float(mm.lncc_loss(2 * x + 0.3, x)) < min(losses[:3])
    # it is a usable training signal: differentiable
    y = x.clone().requires_grad_(True)
    mm.lncc_loss(y + 0.1 * torch.rand_like(x), x).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_beta_ramp() -> None:
    cfg = mm.MorphAEusConfig(beta_ramp_epochs=20, warp_start_epoch=10)
    assert mm.beta_schedule(cfg, 0) == pytest.approx(1e-3)
    assert mm.beta_schedule(cfg, 10) == pytest.approx(1e-3)  # the ramp starts with L_warp
    assert mm.beta_schedule(cfg, 20) == pytest.approx(1e-3 + 0.5 * (3 - 1e-3))
    assert mm.beta_schedule(cfg, 30) == pytest.approx(3.0)
    assert mm.beta_schedule(cfg, 500) == pytest.approx(3.0)
    vals = [mm.beta_schedule(cfg, e) for e in range(25)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))


def test_warp_loss_switched_on_after_warp_start_epoch() -> None:
    det = get_method("morphaeus")(mm.MorphAEusConfig(warp_start_epoch=3, alpha=0.0), image_size=32).train()
    x = blobs(4, 32)
    assert "lncc" not in det.loss(x, epoch=2)
    late = det.loss(x, epoch=3)
    assert {"lncc", "reg", "beta"} <= set(late)


def test_deformation_learns_and_warped_differs_from_prior() -> None:
    torch.manual_seed(0)
    det = get_method("morphaeus")(mm.MorphAEusConfig(warp_start_epoch=0, alpha=0.0), image_size=32)
    x = blobs(4, 32, seed=1)
    opt = torch.optim.Adam(det.parameters(), lr=5e-3)
    det.train()
    for _ in range(8):
        opt.zero_grad()
        det.loss(x, epoch=1)["loss"].backward()
        opt.step()
    det.eval()
    with torch.no_grad():
        out = det.reconstruct(x)
    assert out["deformation"].shape == (4, 2, 32, 32)
    assert out["deformation"].abs().max() > 1e-2
    assert (out["warped"] - out["prior"]).abs().max() > 1e-3
    assert out["reconstruction"] is out["warped"]


@pytest.mark.parametrize("method", ["morphaeus-no-warp", "morphaeus-no-warp-no-pl"])
def test_ablations_do_not_compute_the_warp(method: str, monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("ablation computed the warp")

    monkeypatch.setattr(mm, "warp", boom)
    monkeypatch.setattr(mm, "lncc_loss", boom)
    det = get_method(method)(image_size=32)
    assert det.deformer is None and "deformation" not in det.outputs and "warped" not in det.outputs
    assert not any("deformer" in k for k in det.state_dict())
    x = blobs(4, 32)
    losses = det.train().loss(x, epoch=100)
    assert "lncc" not in losses
    assert ("pl" in losses) == (method == "morphaeus-no-warp")
    out = det.eval().forward_maps(x)
    assert "deformation" not in out and "warped" not in out
    torch.testing.assert_close(out["reconstruction"], out["prior"])


def test_validation_loss_is_full_loss_at_final_beta_for_every_epoch() -> None:
    det = get_method("morphaeus")(mm.MorphAEusConfig(alpha=0.0), image_size=32).eval()
    x = blobs(4, 32)
    assert det.validation_loss(x, 0) == det.validation_loss(x, 500)
    with torch.no_grad():
        out = det.forward_all(x)
        expected = (torch.nn.functional.mse_loss(out["prior"], x) + mm.lncc_loss(out["warped"], x)
                    + 3.0 * mm.smoothness(out["deformation"]))
    assert det.validation_loss(x, 0) == pytest.approx(float(expected), rel=1e-5)


def test_perceptual_backend_recorded_in_checkpoint_config(tmp_path) -> None:
    det = get_method("morphaeus-no-warp")(image_size=32)
    x = blobs(10, 32)[:, 0].numpy()
    with pytest.warns(RuntimeWarning, match="perceptual loss disabled"):
        fit(det, x[:8], x[8:], tmp_path / "m", tc=TrainConfig(max_epochs=1, batch_size=4, progress=False))
    import json

    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["config"]["perceptual_used"] == "none"
    assert "perceptual_used" in (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert not any("perceptual" in k or "lpips" in k for k in det.state_dict())


@pytest.mark.parametrize("method", SERIES)
def test_resolution_series_latent_size(method: str) -> None:
    side = int(method.rsplit("-", 1)[1])
    det = get_method(method)(image_size=128)
    assert det.config.latent_size == side
    assert method_config(method, []).latent_size == side  # CLI --set keeps the id's latent size
    h, _ = det.ae.encoder(torch.zeros(2, 1, 128, 128), return_features=True)
    assert h.shape[-1] == side
    small = get_method(method)(image_size=32)
    assert small.ae.encoder(torch.zeros(2, 1, 32, 32)).shape[-1] == max(1, side // 4)
