"""Batched image augmentations shared by the methods: CRADL's SimCLR views (also the ceVAE's
training views) and the ceVAE's cut-out boxes. All take (N,1,H,W) tensors in [0, 1] and an
optional `torch.Generator`, so a seeded call is reproducible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, scale: tuple[float, float] = (0.6, 1.0), rotate_deg: float = 15.0,
                  flip: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random resized crop / scaling, mirroring and rotation in one `grid_sample` per batch.

    A scale s < 1 zooms in on a random window of relative side s (random crop + resize), s > 1
    zooms out; borders are replicated.
    """
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    s = u(*scale)
    a = torch.deg2rad(u(-rotate_deg, rotate_deg))
    fl = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    room = (1 - s).clamp_min(0)
    tx, ty = u(-1, 1) * room, u(-1, 1) * room
    theta = torch.stack([torch.stack([s * a.cos() * fl, -s * a.sin(), tx], 1),
                         torch.stack([s * a.sin() * fl, s * a.cos(), ty], 1)], 1).to(x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(x: torch.Tensor, scale: tuple[float, float] = (0.6, 1.0), rotate_deg: float = 15.0,
            flip: bool = True, brightness: float = 0.25, noise_std: float = 0.05,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """CRADL's views (Sec. 4.3): crop/scale, mirror, rotate, multiplicative brightness, Gaussian noise.

    Batched and vectorised (one affine resampling per batch); output clipped to [0, 1].
    """
    n = x.shape[0]
    y = random_affine(x, scale, rotate_deg, flip, generator)
    b = 1 + brightness * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
    sigma = noise_std * torch.rand(n, 1, 1, 1, generator=generator)
    noise = torch.randn(y.shape, generator=generator)
    return (y * b.to(y.device) + sigma.to(y.device) * noise.to(y.device)).clamp(0, 1)


def cutout(x: torch.Tensor, n_boxes: int = 3, size: tuple[float, float] = (0.1, 0.4),
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero 1..n_boxes random rectangles (sides `size` x image side) per image (ceVAE context task)."""
    n, _, h, w = x.shape
    k = n_boxes

    def u(lo: float, hi: float, shape) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator)

    bh, bw = u(*size, (n, k)) * h, u(*size, (n, k)) * w
    y0, x0 = u(0, 1, (n, k)) * (h - bh), u(0, 1, (n, k)) * (w - bw)
    used = torch.arange(k)[None] < torch.randint(1, k + 1, (n, 1), generator=generator)
    yy = torch.arange(h, dtype=torch.float32)[None, None, :, None]
    xx = torch.arange(w, dtype=torch.float32)[None, None, None, :]
    inside = ((yy >= y0[..., None, None]) & (yy < (y0 + bh)[..., None, None]) &
              (xx >= x0[..., None, None]) & (xx < (x0 + bw)[..., None, None]) & used[..., None, None])
    keep = (~inside.any(1, keepdim=True)).to(x.device, x.dtype)
    return x * keep
