"""CRADL: NT-Xent, encoder API, density heads as scoring variants, NLL-gradient heatmaps, and
checkpoints derived / calibrated with `upd_core.derived`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from upd_core import derived
from upd_core.checkpoint import load_detector, save_checkpoint
from upd_core.density import DENSITIES
from upd_core.lesions import add_lesion
from upd_core.methods.cradl import CRADL, CRADLConfig, DCEncoder, nt_xent
from upd_core.registry import get_method, list_methods
from upd_core.training import TrainConfig, fit, seed_everything

from .test_contract import smooth_images

SIZE = 32


def lesioned(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bright round lesion in each image (upd_core.lesions)."""
    outs, masks = [], []
    for i, im in enumerate(images):
        o, m = add_lesion(im, shape="circle", radius=4, intensity="hyper", strength=0.8, seed=i)
        outs.append(o)
        masks.append(m)
    return np.stack(outs).astype(np.float32), np.stack(masks).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> CRADL:
    x = smooth_images(72, SIZE, seed=1)
    seed_everything(0)  # the initial weights must not depend on which tests ran before
    det = CRADL(image_size=SIZE)
    fit(det, x[:64], x[64:], tmp_path_factory.mktemp("cradl"),
        tc=TrainConfig(max_epochs=3, batch_size=16, progress=False, seed=0))
    return det


def test_one_method_id_the_heads_are_variants() -> None:
    ids = set(list_methods())
    assert "cradl" in ids and not {i for i in ids if i.startswith("cradl-")}  # heads: `<id>@gmm4`, no ids
    det = get_method("cradl")(image_size=SIZE)
    assert det.density == det.variant == "gmm1" and det.variant_names() == DENSITIES
    assert not hasattr(det, "set_density")


def test_nt_xent() -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(16, 8, generator=g)
    aligned = nt_xent(u, u + 0.01 * torch.randn(16, 8, generator=g))
    random = nt_xent(u, torch.randn(16, 8, generator=g))
    assert aligned < random
    # the loss is a 2N-way classification: at most log(2N - 1) for uninformative embeddings
    const = nt_xent(torch.ones(4, 3), torch.ones(4, 3))
    torch.testing.assert_close(const, torch.log(torch.tensor(7.0)))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_encoder_api(size: int) -> None:
    det = CRADL(image_size=size).eval()
    x = torch.rand(2, 1, size, size)
    z = det.encode(x)
    assert z.shape == (2, det.config.latent_dim)
    feats = det.features(x)
    assert len(feats) == len(det.encoder.blocks) and all(f.ndim == 4 for f in feats)
    assert feats[0].shape[-1] == size // 2 and feats[-1].shape[-1] == 4
    assert isinstance(det.encoder, DCEncoder)
    if size == 128:  # one checkpoint with encoder + all heads stays below 15 MB
        n_bytes = sum(t.numel() * t.element_size() for t in det.state_dict().values())
        assert n_bytes < 15e6


def test_heatmap_finite_shaped_and_localises_a_lesion(trained: CRADL) -> None:
    clean = smooth_images(8, SIZE, seed=7)
    les, masks = lesioned(clean)
    pc, pl = trained.predict(clean), trained.predict(les)
    assert pl.anomaly_map.shape == (8, SIZE, SIZE) and np.isfinite(pl.anomaly_map).all()
    assert (pl.anomaly_map.reshape(8, -1).std(1) > 0).all()  # not constant
    frac_c = (pc.anomaly_map * masks).sum((1, 2)) / pc.anomaly_map.sum((1, 2))
    frac_l = (pl.anomaly_map * masks).sum((1, 2)) / pl.anomaly_map.sum((1, 2))
    assert frac_l.mean() > frac_c.mean() * 1.1  # the map's mass moves into the lesion
    assert (frac_l > frac_c).sum() >= 6
    assert pl.score.mean() > pc.score.mean()  # and the representation becomes less likely


def test_map_is_the_abs_input_gradient_of_the_nll_post_processed(trained: CRADL) -> None:
    """The map of [C Tab. 9, Sec. 4.5] and of the authors' code: |d NLL(f(x)) / d x| with the
    encoder in eval mode (each image's map is independent of the rest of the batch), then 5x5
    median pooling and Gaussian smoothing; no autocast on the gradient."""
    from upd_core import scoring

    x = smooth_images(4, SIZE, seed=21)
    t = torch.as_tensor(x)[:, None].requires_grad_(True)
    trained.eval()
    nll = trained.densities.nll(trained.encode(t).float(), trained.density)
    (g,) = torch.autograd.grad(nll.sum(), t)
    want = scoring.postprocess(g.abs()[:, 0], trained.config.median_size, trained.config.gauss_sigma).numpy()
    np.testing.assert_allclose(trained.predict(x).anomaly_map, want, rtol=1e-4, atol=1e-6 * float(want.max()))
    alone = trained.predict(x[:1]).anomaly_map  # batch statistics would make it depend on the batch
    np.testing.assert_allclose(alone[0], want[0], rtol=1e-4, atol=1e-6 * float(want.max()))


def test_density_choice_scores_and_percentiles(trained: CRADL) -> None:
    x = smooth_images(8, SIZE, seed=3)
    scores = trained.score_all(x)
    assert set(scores) == set(DENSITIES) and all(np.isfinite(v).all() for v in scores.values())
    base = trained.predict(x)
    np.testing.assert_allclose(base.score, scores["gmm1"], rtol=1e-4)
    assert base.percentile is not None
    saved = trained.val_scores_all.clone(), trained.calib_scores.clone()
    trained.set_variant("gmm4")
    try:
        p4 = trained.predict(x)
        np.testing.assert_allclose(p4.score, scores["gmm4"], rtol=1e-4)
        assert p4.percentile is None  # no reference NLLs for this head yet
        # older checkpoints: the heads' validation NLLs (val_scores_all, rows in DENSITIES order)
        trained.calibrate_heads(smooth_images(8, SIZE, seed=64))
        assert trained.val_scores_all.shape == (len(DENSITIES), 8)
        torch.testing.assert_close(trained.reference_scores(), trained.val_scores_all[DENSITIES.index("gmm4")])
        assert trained.predict(x).percentile is not None
        # newer checkpoints: calibration rows in variant_names() order take precedence
        trained.calibrate_percentiles(smooth_images(6, SIZE, seed=65))
        assert trained.calib_scores.shape == (len(DENSITIES), 6) and trained.variant == "gmm4"
        torch.testing.assert_close(trained.reference_scores(),
                                   trained.calib_scores[trained.variant_names().index("gmm4")])
        with pytest.raises(ValueError, match="unknown density"):
            trained.set_variant("gmm3")
    finally:
        trained.set_variant(None)
        trained.val_scores_all, trained.calib_scores = saved
    assert trained.variant == "gmm1"
    # all heads' maps on request
    trained.config.all_maps = True
    try:
        pa = trained.predict(x[:2])
        assert {f"nll_grad_{d}" for d in DENSITIES} <= set(pa.extras)
        assert all(v.shape == (2, SIZE, SIZE) for v in pa.extras.values())
    finally:
        trained.config.all_maps = False


def test_checkpoint_round_trip_derive_and_calibrate(trained: CRADL, tmp_path, monkeypatch) -> None:
    trained.calibrate_heads(smooth_images(8, SIZE, seed=64))
    save_checkpoint(trained, tmp_path / "src", checkpoint_id="src")
    loaded = load_detector(tmp_path / "src", device="cpu")
    assert torch.equal(loaded.val_scores_all, trained.val_scores_all.cpu())
    x = smooth_images(4, SIZE, seed=9)
    np.testing.assert_allclose(loaded.predict(x).score, trained.to("cpu").predict(x).score, rtol=1e-4)

    val = smooth_images(8, SIZE, seed=64)
    monkeypatch.setattr(derived, "load_split", lambda *a, **k: (None, val, None, None, None))
    # another default head, through the entry point's `--set` (typed by the config's fields)
    assert derived.main(["derive", "--source", str(tmp_path / "src"), "--method", "cradl",
                         "--out", str(tmp_path / "gmm2"), "--id", "gmm2", "--set", "density=gmm2"]) == 0
    other = load_detector(tmp_path / "gmm2", device="cpu")
    assert other.method == "cradl" and other.density == "gmm2" and other.variant_names()[0] == "gmm2"
    np.testing.assert_allclose(other.predict(x).score, loaded.score_all(x)["gmm2"], rtol=1e-4)
    np.testing.assert_allclose(other.val_scores.numpy(), loaded.val_scores_all[1].numpy(), rtol=1e-4)
    assert other.calib_scores.numel() == 0  # the source had none

    # `calibrate`: the heads' validation NLLs; `--percentiles`: calibration rows of every variant
    assert derived.main(["calibrate", "--checkpoint", str(tmp_path / "src"), "--percentiles"]) == 0
    cal = load_detector(tmp_path / "src", device="cpu")
    assert cal.val_scores_all.shape == (len(DENSITIES), 8) and cal.calib_scores.shape == (len(DENSITIES), 8)
    np.testing.assert_allclose(cal.calib_scores[0].numpy(), loaded.score_all(val)["gmm1"], rtol=1e-4)


def test_config_defaults_follow_the_paper() -> None:
    c = CRADLConfig()
    assert c.temperature == 0.5 and c.lr == 1e-4 and c.warmup_epochs == 10 and c.max_epochs == 100
    assert c.median_size == 5 and c.flow_blocks == 8 and c.gmm_tol == 0.1
    det = CRADL(CRADLConfig(warmup_epochs=2, max_epochs=10))
    factors = [det.lr_factor(e) for e in range(10)]
    assert factors[0] < factors[1] < factors[2] == 1.0 and factors[-1] < 0.05


def test_density_heads_are_scoring_variants(trained: CRADL, tmp_path) -> None:
    """`<id>@<head>` loads a density head; evaluate reports every head; a wrong head is a clear error."""
    from upd_core.checkpoint import save_checkpoint
    from upd_core.errors import CheckpointError
    from upd_core.evaluate import evaluate

    assert trained.variant_names()[0] == trained.config.density and set(trained.variant_names()) == set(DENSITIES)
    save_dir = tmp_path / "cradl"
    save_checkpoint(trained, save_dir, checkpoint_id="cradl-test")
    x = smooth_images(6, SIZE, seed=11)
    det8 = load_detector(f"{save_dir}@gmm8", device="cpu")
    assert det8.variant == "gmm8"
    np.testing.assert_allclose(det8.predict(x).score, trained.score_all(x)["gmm8"], rtol=1e-4)
    with pytest.raises(CheckpointError, match="unknown density"):
        load_detector(f"{save_dir}@gmm3")
    res = evaluate(trained, x, np.array([0, 0, 0, 1, 1, 1]))
    assert res["variant"] == "gmm1" and set(res["variants"]) == set(DENSITIES) - {"gmm1"}
    for name, v in res["variants"].items():
        assert 0 <= v["image"]["auroc"] <= 1, name
    assert trained.variant == "gmm1"  # evaluation restores the checkpoint's own head


@pytest.mark.parametrize("selection, expect_val", [("val", True), ("holdout", False)])
def test_heads_choose_the_flow_on_validation_images_unless_told_otherwise(monkeypatch, selection, expect_val):
    det = CRADL(CRADLConfig(flow_selection=selection), image_size=32)
    seen = {}
    monkeypatch.setattr(det.densities, "fit", lambda z, **kw: seen.update(kw) or {})
    x = torch.as_tensor(smooth_images(6, 32))[:, None]
    det.fit_extra(x, progress=False, val=x[:3])
    assert (seen["flow_val"] is not None) == expect_val
    if expect_val:
        assert seen["flow_val"].shape[0] == 3
