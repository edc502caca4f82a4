"""beta-VAE, AAE, Soft-Intro VAE and the coarse-noise DAE: shapes, training steps, noise model."""
from __future__ import annotations

import contextlib

import pytest
import torch

from upd_core.methods import generative as gm
from upd_core.registry import get_method, list_methods

from .test_contract import smooth_images

METHODS = ("beta-vae", "aae", "soft-intro-vae", "dae")
AMP = contextlib.nullcontext


def blobs(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images as an (N,1,H,W) tensor (the contract test's generator)."""
    return torch.as_tensor(smooth_images(n, size, seed))[:, None]


def test_registered() -> None:
    assert set(METHODS) <= set(list_methods())


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_one_training_step(method: str, size: int) -> None:
    torch.manual_seed(0)
    det = get_method(method)(image_size=size)
    x = blobs(4, size)
    det.train()
    losses = det.training_step(x, 0, det.configure_optimizers(), AMP)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    det.eval()
    with torch.no_grad():
        out = det.forward_maps(x)
    assert out["reconstruction"].shape == (4, 1, size, size)
    assert out["anomaly_map"].shape == (4, size, size)
    assert 0 <= float(out["reconstruction"].min()) and float(out["reconstruction"].max()) <= 1
    torch.testing.assert_close(out["anomaly_map"], (x - out["reconstruction"]).abs()[:, 0])
    v = det.validation_loss(x, 0)
    assert v == det.validation_loss(x, 7)  # deterministic and comparable across epochs


@pytest.mark.parametrize("method", METHODS)
def test_below_15_mb_at_128(method: str) -> None:
    det = get_method(method)(image_size=128)
    assert sum(t.numel() * t.element_size() for t in det.state_dict().values()) < 15e6


def test_beta_vae_capacity_ramp_and_objective() -> None:
    det = get_method("beta-vae")(gm.BetaVAEConfig(c_ramp_epochs=10), image_size=32)
    assert det.capacity(0) == 0 and det.capacity(5) == pytest.approx(25) and det.capacity(99) == 50
    assert det.config.gamma == 10 and det.config.beta == 4 and det.config.latent_dim == 32
    losses = det.train().loss(blobs(4, 32), epoch=3)
    assert {"rec", "kl"} <= set(losses) and torch.isfinite(losses["loss"])


def _snapshot(mod: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in mod.parameters()]


def _changed(before: list[torch.Tensor], mod: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, mod.parameters()))


def test_aae_step_updates_all_four_networks() -> None:
    torch.manual_seed(0)
    det = get_method("aae")(image_size=32).train()
    parts = {"E": det.E, "G": det.G, "D": det.D, "Dz": det.Dz}
    before = {k: _snapshot(m) for k, m in parts.items()}
    out = det.training_step(blobs(4, 32), 0, det.configure_optimizers(), AMP)
    assert {"d", "g", "dz", "rec"} <= set(out)
    for k, m in parts.items():
        assert _changed(before[k], m), f"{k} was not updated"


def test_soft_intro_vae_step_updates_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    det = get_method("soft-intro-vae")(image_size=32).train()
    enc, dec = _snapshot(det.encoder), _snapshot(det.decoder)
    det.training_step(blobs(4, 32), 0, det.configure_optimizers(), AMP)
    assert _changed(enc, det.encoder) and _changed(dec, det.decoder)
    assert all(p.requires_grad for p in det.parameters())  # restored after the alternating steps


def test_dae_noise_is_coarse() -> None:
    x = torch.ones(8, 1, 128, 128)
    g = torch.Generator().manual_seed(0)
    ns = gm.coarse_noise(x, res=16, std=0.2, generator=g)
    assert ns.shape == x.shape
    assert 0.1 < float(ns.std()) < 0.3
    # neighbouring pixels are strongly correlated (white noise would give ~0)
    a, b = ns[..., :, :-1].flatten(), ns[..., :, 1:].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.9
    # spectral energy sits at low frequencies: almost nothing above 1/4 of the Nyquist band
    power = torch.fft.rfft2(ns[:, 0]).abs().pow(2).mean(0)
    fy = torch.fft.fftfreq(128).abs()[:, None]
    fx = torch.fft.rfftfreq(128)[None, :]
    high = (fy > 0.125) | (fx > 0.125)
    assert float(power[high].sum() / power.sum()) < 0.05
    # only the foreground is corrupted
    half = torch.ones(2, 1, 32, 32)
    half[..., :16] = 0
    ns = gm.coarse_noise(half, generator=torch.Generator().manual_seed(1))
    assert float(ns[..., :16].abs().max()) == 0 and float(ns[..., 16:].abs().max()) > 0


def test_dae_learns_to_remove_its_noise() -> None:
    torch.manual_seed(0)
    det = get_method("dae")(gm.DAEConfig(channels=(8, 16)), image_size=32).train()
    opt = det.configure_optimizers()
    x = blobs(8, 32, seed=3)
    with torch.no_grad():
        first = float(det.loss(x, 0)["loss"])
    for _ in range(30):
        det.training_step(x, 0, opt, AMP)
    with torch.no_grad():
        assert float(det.loss(x, 0)["loss"]) < first
