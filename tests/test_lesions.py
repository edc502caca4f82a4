"""Tests of upd_core.lesions: exact masks, contrast direction, determinism, shapes, datasets."""
from __future__ import annotations

import numpy as np
import pytest

from upd_core.lesions import (INTENSITIES, SHAPES, LesionRanges, LesionSpec, add_lesion,
                              auto_foreground, lesion_dataset)


def phantom(side: int = 64, seed: int = 0) -> np.ndarray:
    """A textured disc on black background (a stand-in for a brain slice)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    disc = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (0.42 * side) ** 2
    return np.where(disc, 0.45 + 0.1 * rng.random((side, side)), 0.0).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("intensity", INTENSITIES)
def test_changes_only_inside_the_mask(shape, intensity):
    img = phantom()
    out, mask = add_lesion(img, shape=shape, intensity=intensity, radius=8, seed=3)
    assert out.shape == img.shape == mask.shape and out.dtype == np.float32 and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() > 20
    assert 0.0 <= out.min() and out.max() <= 1.0
    outside = mask == 0
    assert np.array_equal(out[outside], img[outside])  # exact: nothing changes outside the mask
    changed = np.abs(out - img) > 1e-6
    assert changed[mask > 0].mean() > 0.8  # and (almost) every lesion pixel changes


def test_hyper_is_brighter_hypo_darker_iso_same_mean_other_texture():
    img = phantom()
    kw = dict(shape="circle", radius=9, location=(32, 32), smooth=0, seed=1)
    hyper, m = add_lesion(img, intensity="hyper", strength=0.3, **kw)
    hypo, m2 = add_lesion(img, intensity="hypo", strength=0.3, **kw)
    iso, m3 = add_lesion(img, intensity="iso", texture=0.12, **kw)
    assert np.array_equal(m, m2) and np.array_equal(m, m3)
    inside = m > 0
    base = img[inside].mean()
    assert hyper[inside].mean() == pytest.approx(base + 0.3, abs=0.01)
    assert hypo[inside].mean() == pytest.approx(base - 0.3, abs=0.01)
    assert iso[inside].mean() == pytest.approx(base, abs=0.01)
    assert iso[inside].std() > 2 * img[inside].std()
    added, _ = add_lesion(img, intensity="hyper", strength=0.2, blend="add", **kw)
    assert np.allclose(added[inside], np.clip(img[inside] + 0.2, 0, 1), atol=1e-6)


def test_soft_border_stays_inside_the_mask():
    img = phantom()
    out, mask = add_lesion(img, shape="circle", radius=10, location=(32, 32), smooth=3,
                           intensity="hyper", strength=0.4, seed=0)
    diff = out - img
    assert np.array_equal(diff[mask == 0], np.zeros(int((mask == 0).sum()), np.float32))
    edge = (mask > 0) & (np.roll(mask, 1, 0) == 0)
    assert diff[edge].mean() < 0.5 * diff[32, 32]  # ramps up from the edge


def test_deterministic_with_seed_and_rng():
    img = phantom()
    a = add_lesion(img, shape="irregular", seed=7)
    b = add_lesion(img, shape="irregular", seed=7)
    c = add_lesion(img, shape="irregular", seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    r1 = add_lesion(img, rng=np.random.default_rng(5))
    r2 = add_lesion(img, rng=5)
    assert np.array_equal(r1[0], r2[0])


def test_size_radius_location_and_foreground():
    img = phantom()
    _, small = add_lesion(img, shape="circle", radius=3, location=(32, 32), seed=0)
    _, big = add_lesion(img, shape="circle", size=0.2, location=(32, 32), seed=0)
    assert small.sum() == pytest.approx(np.pi * 9, rel=0.35)
    assert big.sum() == pytest.approx(np.pi * (0.2 * 64) ** 2, rel=0.15)
    assert big[32, 32] == 1 and small[32, 32] == 1
    fg = img > 0
    for seed in range(10):
        _, m = add_lesion(img, shape="blob", size=0.1, foreground=fg, seed=seed)
        assert m.sum() > 0 and not m[~fg].any()  # random lesions stay in the brain
    _, clipped = add_lesion(img, shape="circle", radius=10, location=(32, 5), foreground=fg, seed=0)
    assert not clipped[~fg].any()
    with pytest.raises(ValueError, match="outside the foreground"):
        add_lesion(img, shape="circle", radius=2, location=(1, 1), foreground=fg)


def test_spec_and_validation():
    spec = LesionSpec(shape="blob", radius=6, intensity="hypo", strength=0.2, texture=0.02)
    out1, m1 = add_lesion(phantom(), spec, seed=2)
    out2, m2 = add_lesion(phantom(), spec, intensity="hyper", seed=2)  # keyword overrides spec
    assert np.array_equal(m1, m2) and out2[m2 > 0].mean() > out1[m1 > 0].mean()
    with pytest.raises(ValueError, match="shape"):
        LesionSpec(shape="square")
    with pytest.raises(ValueError, match="intensity"):
        add_lesion(phantom(), intensity="bright")
    with pytest.raises(ValueError, match="2D image"):
        add_lesion(np.zeros((2, 8, 8)))


def test_lesion_dataset_is_deterministic_and_exact():
    imgs = np.stack([phantom(seed=s) for s in range(6)])
    x, m = lesion_dataset(imgs, seed=0)
    x2, m2, specs = lesion_dataset(imgs, seed=0, return_specs=True)
    assert x.shape == m.shape == imgs.shape and x.dtype == np.float32
    assert np.array_equal(x, x2) and np.array_equal(m, m2) and len(specs) == 6
    assert all(s.shape in SHAPES and s.intensity in ("hyper", "hypo") for s in specs)
    assert (m.reshape(6, -1).sum(1) > 0).all()
    assert np.array_equal(x[m == 0], imgs[m == 0])
    assert not m[imgs == 0].any()  # auto foreground keeps lesions off the black background
    first3, _ = lesion_dataset(imgs[:3], seed=0)
    assert np.array_equal(first3, x[:3])  # image i's lesion does not depend on N
    assert not np.array_equal(lesion_dataset(imgs, seed=1)[1], m)
    fixed, fm = lesion_dataset(imgs[:, None], LesionSpec(shape="circle", radius=5), seed=0,
                               foreground=None)
    assert fixed.shape == imgs.shape and (fm.reshape(6, -1).sum(1) > 60).all()
    ranged, rm = lesion_dataset(imgs, ranges=LesionRanges(shapes=("circle",), intensities=("iso",)),
                                seed=0)
    assert ranged.shape == imgs.shape


def test_auto_foreground():
    img = phantom()
    fg = auto_foreground(img)
    assert fg.dtype == bool and fg[32, 32] and not fg[0, 0]
    assert auto_foreground(np.zeros((32, 32))).all()  # nothing found: anywhere
