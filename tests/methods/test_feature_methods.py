"""The UPD study's feature-modeling family and its CCD pre-training: PaDiM (statistics, batched
Mahalanobis, a bright blob lights up), RD (teacher/student shapes, loss and map vanish when the
student matches), FAE (feature SSIM, AE levels), CFLOW-AD (positional encoding, exact identity
flow), CCD (shifts, loss, schedule)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from upd_core.methods.ccd import CCD, CCDConfig, shift, weak_view
from upd_core.methods.cflow import CFLOWAD, CFLOWConfig, ConditionalFlow, positional_encoding_2d
from upd_core.methods.fae import FAE, FAEConfig, channel_ssim
from upd_core.methods.padim import PaDiM, PaDiMConfig
from upd_core.methods.rd import RD, RDConfig
from upd_core.training import TrainConfig, fit

from .test_contract import smooth_images


def noise(n: int, size: int, seed: int) -> np.ndarray:
    return torch.rand(n, size, size, generator=torch.Generator().manual_seed(seed)).numpy()


# ---------------------------------------------------------------- PaDiM


def test_padim_buffers_and_seeded_channel_subset() -> None:
    det = PaDiM(PaDiMConfig(backbone="random"), image_size=128)
    assert det.grid == 16 and det.channel_idx.shape == (100,) and det.channel_idx.max() < 448
    assert det.mean.shape == (256, 100) and det.prec_factor.shape == (256, 100 * 101 // 2)
    same = PaDiM(PaDiMConfig(backbone="random"), image_size=128)
    other = PaDiM(PaDiMConfig(backbone="random", channel_seed=1), image_size=128)
    assert torch.equal(det.channel_idx, same.channel_idx) and not torch.equal(det.channel_idx, other.channel_idx)


def test_padim_statistics_and_batched_mahalanobis_match_the_direct_formula() -> None:
    cfg = PaDiMConfig(backbone="random", n_features=12)
    det = PaDiM(cfg, image_size=32)
    x = torch.as_tensor(smooth_images(40, 32, seed=4))[:, None]
    det.fit_extra(x)
    emb = det.embedding(x).double()  # (N, P, d)
    mu = emb.mean(0)
    p = 3  # one position, checked against numpy's covariance and an explicit inverse
    cov = np.cov(emb[:, p].numpy(), rowvar=False) + cfg.cov_eps * np.eye(12)
    np.testing.assert_allclose(det.mean[p].numpy(), mu[p].numpy(), rtol=1e-5, atol=1e-5)
    w = det.precision_factor()[p].double().numpy()
    np.testing.assert_allclose(w.T @ w, np.linalg.inv(cov), rtol=1e-3, atol=1e-3)
    test = det.embedding(torch.rand(2, 1, 32, 32))
    d = test[:, p].double().numpy() - mu[p].numpy()
    direct = np.sqrt(np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d))
    np.testing.assert_allclose(det.mahalanobis(test)[:, p].numpy(), direct, rtol=1e-3)


def test_padim_fits_in_one_pass_of_the_training_loop(tmp_path) -> None:
    x = smooth_images(20, 32, seed=5)
    det = PaDiM(PaDiMConfig(backbone="random"), image_size=32)
    rec = fit(det, x[:16], x[16:], tmp_path / "p", tc=TrainConfig(progress=False))
    assert rec["epochs"] == 1 and rec["converged"] and int(det.n_fitted) == 16
    assert det.prec_factor.abs().sum() > 0


def test_padim_map_responds_to_a_bright_blob_on_noise() -> None:
    size = 64
    det = PaDiM(PaDiMConfig(backbone="random"), image_size=size)
    det.fit_extra(torch.as_tensor(noise(64, size, seed=0))[:, None])
    clean = noise(4, size, seed=1)
    blob = clean.copy()
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - 40) ** 2 + (xx - 24) ** 2 <= 10 ** 2
    blob[:, inside] = 1.0
    pc, pb = det.predict(clean), det.predict(blob)
    assert pb.anomaly_map.shape == (4, size, size)
    in_blob, elsewhere = pb.anomaly_map[:, inside].mean(1), pb.anomaly_map[:, ~inside].mean(1)
    assert (in_blob > 1.2 * elsewhere).all()  # the blob stands out in its own image
    assert (in_blob > 1.2 * pc.anomaly_map[:, inside].mean(1)).all()  # and against the same place without it
    assert (pb.score > pc.score).all()
    for m in pb.anomaly_map:  # the peak lies on the blob
        peak = np.unravel_index(m.argmax(), m.shape)
        assert abs(peak[0] - 40) <= 10 and abs(peak[1] - 24) <= 10


# ---------------------------------------------------------------- RD


def test_rd_student_mirrors_the_teacher_and_vanishes_when_equal() -> None:
    det = RD(RDConfig(backbone="random"), image_size=128).eval()
    x = torch.rand(2, 1, 128, 128)
    feats = det.features(x)
    with torch.no_grad():
        out = det.student(feats)
    assert [tuple(o.shape) for o in out] == [tuple(feats[k].shape) for k in det.layers]
    assert det.ocbe(*(feats[k] for k in det.layers)).shape == (2, det.config.embed_dim, 4, 4)
    with torch.no_grad():
        assert float(det.loss(x, 0)["loss"]) > 0
    det.student = lambda f: [f[k] for k in det.layers]  # a perfect student: no loss, no anomaly
    assert abs(float(det.loss(x, 0)["loss"])) < 1e-5
    assert det.forward_maps(x)["anomaly_map"].abs().max() < 1e-4
    opt = det.configure_optimizers()["main"]
    names = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not names & {id(p) for p in det.backbone.parameters()}  # the teacher is never trained
    assert opt.defaults["betas"] == (0.5, 0.999) and opt.defaults["lr"] == 0.005


# ---------------------------------------------------------------- FAE


def test_fae_feature_ssim_and_levels() -> None:
    a = torch.randn(2, 5, 16, 16)
    torch.testing.assert_close(channel_ssim(a, a), torch.ones(2, 5, 16, 16))
    assert channel_ssim(a, torch.randn(2, 5, 16, 16)).mean() < 0.5
    det = FAE(FAEConfig(backbone="random"), image_size=128).eval()
    f = det.feature_stack(torch.rand(2, 1, 128, 128))
    assert f.shape == (2, 256, 32, 32)
    assert det.encoder(f).shape == (2, 150, 2, 2) and det.reconstruct_features(f).shape == f.shape
    small = FAE(FAEConfig(backbone="random"), image_size=32).eval()  # 8x8 features: 2 levels
    assert small.encoder(small.feature_stack(torch.rand(1, 1, 32, 32))).shape[-1] == 2
    m = det.forward_maps(torch.rand(2, 1, 128, 128))["anomaly_map"]
    assert m.shape == (2, 128, 128) and (m >= 0).all()


# ---------------------------------------------------------------- CFLOW-AD


def test_positional_encoding() -> None:
    p = positional_encoding_2d(8, 3, 5)
    assert p.shape == (8, 3, 5)
    torch.testing.assert_close(p[0, 1], torch.sin(torch.arange(5.0)))  # column, lowest frequency
    torch.testing.assert_close(p[4, :, 2], torch.sin(torch.arange(3.0)))  # row
    assert torch.equal(p[0, 0], p[0, 2])  # column channels do not depend on the row


def test_cflow_identity_flow_is_a_standard_normal_and_maps_are_normalised() -> None:
    flow = ConditionalFlow(6, 4, blocks=3, hidden_ratio=1.0, clamp=1.9, seed=0)  # zero-initialised couplings
    e, c = torch.randn(10, 6), torch.randn(10, 4)
    expected = (-0.5 * math.log(2 * math.pi) * 6 - 0.5 * e.pow(2).sum(1)) / 6
    torch.testing.assert_close(flow.log_prob_per_dim(e, c), expected)
    det = CFLOWAD(CFLOWConfig(backbone="random"), image_size=32)
    x = torch.as_tensor(smooth_images(8, 32, seed=6))[:, None]
    lps = det.log_probs(x)
    assert [tuple(lp.shape) for lp in lps] == [(8, 8, 8), (8, 4, 4), (8, 2, 2)]
    det.fit_extra(x)
    assert torch.isclose(det.logp_max, max(lp.max() for lp in lps))
    m = det.eval().forward_maps(x)["anomaly_map"]
    assert m.shape == (8, 32, 32) and (m >= -1e-6).all() and (m <= 1).all()
    loss = det.train().loss(x, 0)
    assert set(loss) == {"loss", "nll_layer1", "nll_layer2", "nll_layer3"} and torch.isfinite(loss["loss"])


# ---------------------------------------------------------------- CCD


def test_ccd_shifts() -> None:
    x = torch.rand(4, 1, 8, 8)
    k = torch.tensor([0, 1, 2, 3])
    y = shift(x, k, "cutperm")
    assert torch.equal(y[0], x[0]) and torch.equal(shift(y, k, "cutperm"), x)  # each CutPerm is an involution
    torch.testing.assert_close(y[1, 0, :, :4], x[1, 0, :, 4:])  # k = 1 swaps left and right halves
    torch.testing.assert_close(y[2, 0, :4], x[2, 0, 4:])  # k = 2 swaps top and bottom halves
    r = shift(x, k, "rotation")
    assert torch.equal(r[3], torch.rot90(x[3], 3, (1, 2)))
    v = weak_view(x, (0.1, 1.0), 0.4, 0.8, 0.5, torch.Generator().manual_seed(0))
    assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1


def test_ccd_loss_schedule_and_heads() -> None:
    det = CCD(CCDConfig(init="random"), image_size=32)
    assert det.config.init_used == "random"
    x = torch.as_tensor(smooth_images(8, 32, seed=8))[:, None]
    with torch.no_grad():
        out = det.loss(x, 0, torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "contrastive", "shift_ce"} and torch.isfinite(out["loss"])
    assert 0 < float(out["shift_ce"]) < 2 * math.log(4)
    assert det.lr_factor(0) == 1.0 and math.isclose(det.lr_factor(200), 1e-3)
    opt = det.configure_optimizers()["main"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    assert det.embed(x).shape == (8, 256)
    det.fit_extra(x)
    m = det.eval().forward_maps(x)["anomaly_map"]
    assert m.shape == (8, 32, 32) and torch.isfinite(m).all()


@pytest.mark.parametrize("cls", (PaDiM, RD, FAE, CFLOWAD))
def test_unknown_backbone_is_refused(cls) -> None:
    with pytest.raises(ValueError, match="backbone must be one of"):
        cls(cls.Config(backbone="vgg"), image_size=32)
