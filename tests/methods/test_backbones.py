"""The ResNet-18 backbone of the feature-modeling family: layers, grey input, float16 storage,
where the weights come from (ImageNet only from the hub cache, the project's CCD checkpoint,
seeded random), the label every result carries, and the 15 MB limit of every family member."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from upd_core.checkpoint import load_detector
from upd_core.methods import backbones
from upd_core.methods.backbones import BackboneUnavailable, ResNet18Features
from upd_core.registry import get_method
from upd_core.training import TrainConfig, fit, seed_everything

from .test_contract import smooth_images

FAMILY = ("padim", "rd", "fae", "cflow-ad")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache of this test only (no ImageNet weights)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def fake_imagenet_file(hub) -> dict[str, torch.Tensor]:
    """A small stand-in for torchvision's resnet18-f37072fd.pth: seeded random weights (with layer4
    and fc, as the real file), written where torchvision would have put the download."""
    from torchvision.models import resnet18

    torch.manual_seed(123)
    state = resnet18(weights=None).state_dict()
    path = hub / "checkpoints" / backbones.IMAGENET_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_layers_and_grey_input() -> None:
    ext = ResNet18Features(("layer0", "layer1", "layer2", "layer3"), "center").eval()
    x = torch.rand(2, 1, 128, 128)
    f = ext(x)
    assert {k: tuple(v.shape[1:]) for k, v in f.items()} == {
        "layer0": (64, 32, 32), "layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8)}
    rgb = ext(x.expand(-1, 3, -1, -1))  # grey is the image repeated to 3 channels
    torch.testing.assert_close(f["layer3"], rgb["layer3"])
    assert not hasattr(ResNet18Features(("layer0", "layer2")), "layer3")  # truncated after the deepest


def test_frozen_extractor_stays_in_eval_mode_and_is_stored_as_float16() -> None:
    ext = ResNet18Features(("layer1",), "center", frozen=True)
    ext.train()
    assert not ext.training and not any(p.requires_grad for p in ext.parameters())
    sd = ext.state_dict()
    assert sd["layer1.0.conv1.weight"].dtype == torch.float16 and sd["bn1.running_var"].dtype == torch.float32
    # the weights in use are exactly the stored ones (rounded when loaded)
    torch.testing.assert_close(ext.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"].float(), rtol=0, atol=0)
    trainable = ResNet18Features(("layer1",), "center", frozen=False)
    assert trainable.state_dict()["layer1.0.conv1.weight"].dtype == torch.float32


def test_random_backbone_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    a = ResNet18Features(("layer1",), seed=3).conv1.weight
    after = torch.rand(1)
    torch.manual_seed(0)
    b = ResNet18Features(("layer1",), seed=3).conv1.weight
    assert torch.equal(a, b) and torch.equal(after, torch.rand(1))
    assert not torch.equal(a, ResNet18Features(("layer1",), seed=4).conv1.weight)


def test_imagenet_absent_is_a_clear_error(hub) -> None:
    with pytest.raises(BackboneUnavailable, match="not in the torch hub cache") as err:
        get_method("padim")(get_method("padim").Config(backbone="imagenet"), image_size=32)
    assert str(hub / "checkpoints" / backbones.IMAGENET_FILE) in str(err.value)
    assert "nothing is downloaded" in str(err.value)
    with pytest.warns(RuntimeWarning, match="RANDOM backbone"):  # auto falls back, and says so
        det = get_method("padim")(image_size=32)
    assert det.config.backbone_used.startswith("random")


def test_imagenet_weights_load_from_the_hub_cache(hub) -> None:
    state = fake_imagenet_file(hub)
    cls = get_method("rd")
    det = cls(cls.Config(backbone="imagenet"), image_size=32)
    assert det.config.backbone_used.startswith("ImageNet") and det.backbone.norm == "imagenet"
    w = det.backbone.layer3[1].conv2.weight
    torch.testing.assert_close(w, state["layer3.1.conv2.weight"].half().float(), rtol=0, atol=0)
    assert torch.equal(det.backbone.bn1.running_mean, state["bn1.running_mean"])
    # ImageNet normalisation of the grey image, only for ImageNet weights
    torch.testing.assert_close(det.backbone.mean.flatten(), torch.tensor(backbones.IMAGENET_MEAN))
    # "auto" prefers cached ImageNet weights
    auto = cls(image_size=32)
    assert auto.config.backbone_used == det.config.backbone_used
    torch.testing.assert_close(auto.backbone.layer3[1].conv2.weight, w)


def test_ccd_backbone_comes_from_a_ccd_checkpoint_and_is_named(tmp_path, hub) -> None:
    x = smooth_images(20, 32, seed=2)
    seed_everything(0)
    ccd = get_method("ccd")(image_size=32)
    assert ccd.config.init_used == "random"  # no ImageNet weights in this test's cache
    fit(ccd, x[:16], x[16:], tmp_path / "ccd", dataset={"name": "generated"},
        tc=TrainConfig(max_epochs=1, batch_size=8, progress=False))
    cls = get_method("padim")
    det = cls(cls.Config(backbone="ccd", backbone_checkpoint=str(tmp_path / "ccd")), image_size=32)
    label = det.config.backbone_used
    assert label.startswith("CCD on generated normal (ccd, sha256 ") and "init random" in label
    assert det.backbone.norm == "center"
    torch.testing.assert_close(det.backbone.layer2[0].conv1.weight, ccd.backbone.layer2[0].conv1.weight.cpu(),
                               rtol=1e-3, atol=1e-4)  # float16-rounded copy of the CCD weights
    with pytest.raises(BackboneUnavailable, match="train it first"):
        cls(cls.Config(backbone="ccd", backbone_checkpoint=str(tmp_path / "nothing")), image_size=32)
    fit(det, x[:16], x[16:], tmp_path / "padim", tc=TrainConfig(progress=False))
    with pytest.raises(BackboneUnavailable, match="not ccd"):  # a checkpoint of another method
        cls(cls.Config(backbone="ccd", backbone_checkpoint=str(tmp_path / "padim")), image_size=32)


def test_backbone_origin_survives_save_and_load_and_is_in_the_card(tmp_path) -> None:
    cls = get_method("padim")
    det = cls(cls.Config(backbone="random", backbone_seed=5), image_size=32)
    x = smooth_images(12, 32, seed=3)
    fit(det, x[:10], x[10:], tmp_path / "p", tc=TrainConfig(progress=False))
    loaded = load_detector(tmp_path / "p", device="cpu")
    assert loaded.config.backbone_used == "random (torchvision initialisation, seed 5)"
    torch.testing.assert_close(loaded.backbone.conv1.weight, det.backbone.conv1.weight.cpu(), rtol=0, atol=0)
    card = (tmp_path / "p" / "MODEL_CARD.md").read_text()
    assert "**Backbone:** frozen ResNet-18, random (torchvision initialisation, seed 5)" in card


@pytest.mark.parametrize("method", ("ccd",) + FAMILY)
def test_checkpoint_below_15_mb_at_128(method: str) -> None:
    cls = get_method(method)
    cfg = cls.Config(**({} if method == "ccd" else {"backbone": "random"}))
    det = cls(cfg, image_size=128)
    n_bytes = sum(t.numel() * t.element_size() for t in det.state_dict().values())
    assert n_bytes < 15e6, f"{method}: {n_bytes / 1e6:.2f} MB"


@pytest.mark.parametrize("method", FAMILY)
def test_maps_have_the_image_size(method: str) -> None:
    cls = get_method(method)
    det = cls(cls.Config(backbone="random"), image_size=64).eval()
    with torch.no_grad():
        out = det.forward_maps(torch.rand(3, 1, 64, 64))
    assert out["anomaly_map"].shape == (3, 64, 64) and np.isfinite(out["anomaly_map"].numpy()).all()
