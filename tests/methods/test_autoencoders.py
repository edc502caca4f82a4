"""Plain auto-encoders: the VAE's scoring variants of the CRADL paper (Table 9) from the same weights."""
from __future__ import annotations

import numpy as np
import pytest

from upd_core.checkpoint import load_detector
from upd_core.methods.autoencoders import VAE
from upd_core.training import TrainConfig, fit

from .test_contract import SIZE, smooth_images


@pytest.fixture(scope="module")
def vae_ckpt(tmp_path_factory):
    x = smooth_images(24, SIZE, seed=4)
    out = tmp_path_factory.mktemp("vae") / "vae"
    fit(VAE(image_size=SIZE), x[:20], x[20:], out, tc=TrainConfig(max_epochs=2, batch_size=8, progress=False))
    return out


def test_vae_table9_variants(vae_ckpt) -> None:
    x = smooth_images(3, SIZE, seed=9)
    base = load_detector(vae_ckpt, device="cpu")
    assert base.variant == "rec" and base.variant_names() == ("rec", "kl-grad", "combi", "elbo")
    p_rec = base.predict(x)
    assert p_rec.percentile is not None
    maps = {}
    for name in ("kl-grad", "combi", "elbo"):
        det = load_detector(f"{vae_ckpt}@{name}", device="cpu")
        p = det.predict(x)
        assert det.variant == name and p.percentile is None  # validation scores exist for 'rec' only
        assert p.anomaly_map.shape == (3, SIZE, SIZE) and np.isfinite(p.anomaly_map).all()
        assert (p.anomaly_map.reshape(3, -1).std(1) > 0).all()
        np.testing.assert_allclose(p.reconstruction, p_rec.reconstruction, rtol=1e-4, atol=1e-5)
        maps[name] = p
    # combi = KL-gradient map x (smoothed) residual, so it differs from the KL-gradient map alone
    assert not np.allclose(maps["combi"].anomaly_map, maps["kl-grad"].anomaly_map)
    assert (maps["elbo"].score > maps["combi"].score).all()  # ELBO sums over pixels + KL
    with pytest.raises(ValueError, match="no scoring variant"):
        base.set_variant("nll")
    base.set_variant("kl-grad")
    base.set_variant(None)
    assert base.variant == "rec"
