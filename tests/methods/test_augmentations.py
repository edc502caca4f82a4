"""Shared augmentations: CRADL's views (also the ceVAE's training views) and the ceVAE's cut-outs."""
from __future__ import annotations

import torch

from upd_core.methods.augmentations import augment, cutout, random_affine

from .test_contract import smooth_images


def test_augment_is_batched_seeded_and_in_range() -> None:
    x = torch.as_tensor(smooth_images(8, 64))[:, None]
    a = augment(x, generator=torch.Generator().manual_seed(0))
    b = augment(x, generator=torch.Generator().manual_seed(0))
    c = augment(x, generator=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, x)


def test_random_affine_identity_settings_keep_the_image() -> None:
    x = torch.as_tensor(smooth_images(3, 32))[:, None]
    y = random_affine(x, scale=(1.0, 1.0), rotate_deg=0.0, flip=False, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_cutout_zeroes_boxes_only() -> None:
    x = torch.rand(6, 1, 32, 32) * 0.5 + 0.5
    y = cutout(x, generator=torch.Generator().manual_seed(0))
    zeroed = y == 0
    assert zeroed.any() and (zeroed.flatten(1).any(1)).all()  # every image loses at least one box
    assert torch.equal(y[~zeroed], x[~zeroed])
    assert zeroed.float().mean() < 0.6
