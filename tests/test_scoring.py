"""Maps and reductions of upd_core.scoring."""
import numpy as np
import pytest
import torch

from upd_core import scoring


def test_residual_and_ssim_maps():
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(scoring.residual_map(x, x), torch.zeros(2, 32, 32))
    assert torch.allclose(scoring.ssim_map(x, x), torch.ones(2, 32, 32), atol=1e-5)
    y = x.clone()
    y[:, :, 10:20, 10:20] = 1 - y[:, :, 10:20, 10:20]
    m = scoring.ssim_anomaly_map(x, y)
    assert m[:, 12:18, 12:18].mean() > 5 * m[:, :5, :5].mean()
    assert scoring.ssim(x, y).shape == (2,)


def test_reductions():
    m = torch.zeros(2, 4, 4)
    m[0, 0, 0] = 8.0
    assert scoring.reduce_map(m, "mean").tolist() == [0.5, 0.0]
    assert scoring.reduce_map(m, "max").tolist() == [8.0, 0.0]
    masks = torch.zeros(2, 4, 4)
    masks[0, 1:, 1:] = 1  # excludes the hot pixel
    assert scoring.reduce_map(m, "masked-max", masks).tolist() == [0.0, 0.0]
    top = scoring.reduce_map(torch.arange(16.0).view(1, 4, 4), "mean-top25")
    assert top.item() == pytest.approx(np.mean([12, 13, 14, 15]), abs=0.6)
    with pytest.raises(ValueError, match="unknown score reduction"):
        scoring.reduce_map(m, "median")


def test_postprocess_median_removes_speckle_and_gauss_preserves_mass():
    m = torch.zeros(1, 16, 16)
    m[0, 5, 5] = 1.0
    assert scoring.median_filter(m, 5).abs().sum() == 0
    g = scoring.gaussian_blur(m, 1.0)
    assert g.sum().item() == pytest.approx(1.0, abs=1e-4) and g.max() < 1.0
    assert torch.equal(scoring.postprocess(m, 0, 0.0), m)
