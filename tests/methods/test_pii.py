"""PII / FPI: network shapes, self-supervised samples, training signal, scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from upd_core.methods.pii import FPI, PII, PIIConfig, WideResEncoderDecoder
from upd_core.registry import list_methods
from upd_core.training import TrainConfig, fit

from .test_contract import smooth_images


def test_registered() -> None:
    assert {"pii", "fpi"} <= set(list_methods())
    assert PII.blend == "poisson" and FPI.blend == "linear"
    c = PIIConfig()
    assert c.patch_size == (0.1, 0.4) and c.patch_center == (0.1, 0.9) and c.alpha_range == (0.05, 0.95)
    assert c.lr == 1e-3 and c.gradient_mixing


@pytest.mark.parametrize("size", [32, 64, 128])
def test_network_shapes_and_size(size: int) -> None:
    det = PII(image_size=size).eval()
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        m = det.forward_maps(x)["anomaly_map"]
    assert m.shape == (2, size, size) and m.min() >= 0 and m.max() <= 1
    n_bytes = sum(t.numel() * t.element_size() for t in det.state_dict().values())
    assert n_bytes < 15e6


def test_wide_resnet_widths() -> None:
    net = WideResEncoderDecoder(width=4)
    widths = [b.conv1.out_channels for b in net.encoder]
    assert widths == [64, 128, 256, 256, 256]  # 16k, 32k, 64k, 64k, 64k with k = 4 (PII / FPI)


@pytest.mark.parametrize("cls", [PII, FPI])
def test_samples_and_training_signal(cls, tmp_path) -> None:
    x = torch.as_tensor(smooth_images(16, 32, seed=4))[:, None]
    det = cls(image_size=32)
    xt, y = det.samples(x, torch.Generator().manual_seed(0))
    assert xt.shape == x.shape and y.shape == x.shape
    assert ((y > 0).flatten(1).any(1)).all()  # every image got a labelled patch
    if cls is FPI:  # FPI: the patch is the convex combination with the label as weight
        src = x[torch.roll(torch.arange(16), 1)]
        sel = y > 0
        torch.testing.assert_close(xt[sel], ((1 - y) * x + y * src)[sel])
    # a few steps on one fixed batch lower the BCE of Eq. 9
    torch.manual_seed(0)
    opt = det.configure_optimizers()["main"]
    g = torch.Generator().manual_seed(1)
    batch = det.samples(x, g)
    losses = []
    for _ in range(10):
        logits = det.net(batch[0])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_scores_mean_and_top25(tmp_path) -> None:
    x = smooth_images(20, 32, seed=5)
    det = PII(image_size=32)
    fit(det, x[:16], x[16:], tmp_path / "pii", tc=TrainConfig(max_epochs=1, batch_size=8, progress=False))
    pred = det.predict(x[16:])
    np.testing.assert_allclose(pred.score, pred.anomaly_map.reshape(4, -1).mean(1), rtol=1e-5)
    det.config.score_reduction = "mean-top25"
    top = det.predict(x[16:]).score
    assert (top >= pred.score - 1e-6).all()
