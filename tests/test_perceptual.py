"""Perceptual loss backends: never a download, honest names, LPIPS only with real cached weights."""
from __future__ import annotations

import urllib.request

import pytest
import torch
from torch import nn

from upd_core import perceptual as pm
from upd_core.methods.blocks import ConvEncoder


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """Empty torch hub cache and any network access fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    pm._LPIPS_MODELS.clear()

    def no_network(*a, **k):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    yield
    pm._LPIPS_MODELS.clear()


class FakeSSL(nn.Module):
    """Stands in for the CRADL detector: a frozen conv encoder at 32 px."""

    def __init__(self, sequential: bool = False) -> None:
        super().__init__()
        self.image_size = 32
        torch.manual_seed(0)
        enc = ConvEncoder((8, 16, 16), 3, "relu")
        self.encoder = nn.Sequential(*enc.blocks, nn.Flatten(), nn.LazyLinear(4)) if sequential else enc


def test_auto_without_anything_is_none_with_warning(monkeypatch) -> None:
    monkeypatch.setattr(pm, "_load_ssl_detector", lambda *a: None)
    assert not pm.lpips_available("alex") and not pm.lpips_available("vgg")
    pl = pm.PerceptualLoss("auto")
    with pytest.warns(RuntimeWarning, match="perceptual loss disabled"):
        assert pl.resolve() == "none"
    x = torch.rand(2, 1, 32, 32)
    assert float(pl(x, torch.rand_like(x))) == 0.0
    assert pm.reconstruction_lpips(x.numpy(), x.numpy()) is None


def test_missing_ssl_checkpoint_is_handled_without_download(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("UPD_CHECKPOINTS", str(tmp_path / "no_checkpoints"))
    assert pm._load_ssl_detector() is None
    with pytest.warns(RuntimeWarning):
        assert pm.PerceptualLoss().resolve() == "none"


def test_explicit_unavailable_backend_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(pm, "_load_ssl_detector", lambda *a: None)
    with pytest.raises(RuntimeError, match="cache"):
        pm.PerceptualLoss("lpips-alex").resolve()
    with pytest.raises(RuntimeError, match="cradl"):
        pm.PerceptualLoss("domain-ssl").resolve()
    with pytest.raises(ValueError):
        pm.PerceptualLoss("imagenet-whatever")


def test_lpips_used_only_when_weights_are_cached(monkeypatch) -> None:
    calls = []

    class FakeLPIPS(nn.Module):
        def __init__(self, net="alex", pretrained=True, verbose=True, **kw):
            super().__init__()
            assert pm.lpips_cache_file(net).is_file(), "LPIPS constructed before checking the cache"
            calls.append((net, pretrained))
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, a, b, normalize=False):
            assert a.shape[1] == 3 and normalize
            return ((a - b) ** 2).mean((1, 2, 3), keepdim=True) * self.w

    import lpips

    monkeypatch.setattr(lpips, "LPIPS", FakeLPIPS)
    monkeypatch.setattr(pm, "_load_ssl_detector", lambda *a: None)
    cache = pm.lpips_cache_file("alex")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"pretend weights")  # what an online machine would have downloaded
    assert pm.lpips_available("alex") and not pm.lpips_available("vgg")
    pl = pm.PerceptualLoss("auto")
    assert pl.resolve() == "LPIPS (alex)"
    assert calls == [("alex", True)]
    x = torch.rand(3, 1, 16, 16)
    assert float(pl(x, x)) == 0.0
    d = pm.reconstruction_lpips(x[:, 0].numpy(), torch.rand(3, 16, 16).numpy())
    assert d is not None and d.shape == (3,) and (d > 0).all()


@pytest.mark.parametrize("sequential", [False, True])
def test_domain_ssl_features(monkeypatch, sequential: bool) -> None:
    fake = FakeSSL(sequential)
    if sequential:
        fake.encoder(torch.zeros(1, 1, 32, 32))  # materialise the lazy layer
    monkeypatch.setattr(pm, "_load_ssl_detector", lambda *a: fake)
    pl = pm.PerceptualLoss("auto")
    assert pl.resolve() == "perceptual: domain SSL features (cradl-kermany-128)"
    assert "LPIPS" not in pl.name
    before = [p.clone() for p in fake.parameters()]
    x = torch.rand(2, 1, 64, 64)  # resized to the encoder's 32 px
    y = torch.rand(2, 1, 64, 64, requires_grad=True)
    pl.train()
    assert float(pl(x, x)) == pytest.approx(0.0, abs=1e-6)
    d = pl(y, x)
    assert float(d.detach()) > 0
    d.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in fake.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, fake.parameters()))
    assert not fake.training  # BN statistics of the frozen encoder are never updated


def test_morphaeus_records_backend_in_config(monkeypatch) -> None:
    from upd_core.registry import get_method

    monkeypatch.setattr(pm, "_load_ssl_detector", lambda *a: FakeSSL())
    det = get_method("morphaeus")(image_size=32)
    assert det.config.perceptual_used == ""
    det.train().loss(torch.rand(2, 1, 32, 32), epoch=0)
    assert det.config.perceptual_used.startswith("perceptual: domain SSL features")
    assert all(k.split(".")[0] in ("ae", "deformer", "val_scores", "calib_scores") for k in det.state_dict())
