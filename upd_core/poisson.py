"""Poisson image interpolation (PII, Tan et al.) and foreign patch interpolation (FPI) samples.

PII blends a patch of a source image x_j into a destination image x_i by solving the Poisson
equation on the patch (PII Eq. 4-6): the discrete Laplacian of the result equals the divergence of
a guidance field v, with Dirichlet boundary values taken from the destination on the patch border.
The guidance mixes both images' gradients with the interpolation factor alpha (Eq. 8).

The patch is a rectangle, so the 5-point Laplacian with Dirichlet boundary is diagonalised by the
2D type-I discrete sine transform: one solve is four small matrix products (no iterations, no
per-pixel Python loops); a 128 x 128 image needs well under a millisecond per sample.
"""
from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=64)
def _dst_basis(n: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """DST-I matrix S (S @ S = (n+1)/2 I) and the eigenvalues 2 - 2 cos(pi k / (n+1)) of -d2/dx2."""
    k = torch.arange(1, n + 1, dtype=torch.float64)
    s = torch.sin(math.pi * k[:, None] * k[None, :] / (n + 1))
    lam = 2 - 2 * torch.cos(math.pi * k / (n + 1))
    return s.to(dtype=dtype, device=device), lam.to(dtype=dtype, device=device)


def solve_dirichlet(rhs: torch.Tensor) -> torch.Tensor:
    """Solve (4 f_p - sum of the 4 neighbours f_q) = rhs_p on an (h, w) grid with f = 0 outside.

    Known boundary values enter through `rhs`. Exact (direct) solve via DST-I in both axes.
    """
    h, w = rhs.shape[-2:]
    sh, lh = _dst_basis(h, rhs.dtype, str(rhs.device))
    sw, lw = _dst_basis(w, rhs.dtype, str(rhs.device))
    coef = sh @ rhs @ sw
    coef = coef / (lh[:, None] + lw[None, :])
    return (sh @ coef @ sw) * (4.0 / ((h + 1) * (w + 1)))


def _neighbour_diffs(a: torch.Tensor) -> list[torch.Tensor]:
    """a_p - a_q for every interior pixel p of a region and its 4 neighbours q: 4 x (h-2, w-2)."""
    c = a[1:-1, 1:-1]
    return [c - a[:-2, 1:-1], c - a[2:, 1:-1], c - a[1:-1, :-2], c - a[1:-1, 2:]]


def guidance_divergence(dst: torch.Tensor, src: torch.Tensor, alpha: float, mixing: bool = True) -> torch.Tensor:
    """Sum over the 4 neighbours of the guidance v_pq for the interior of a region.

    mixing=True: PII Eq. 8, per pixel pair the larger of (1 - alpha) grad(dst) and alpha grad(src).
    mixing=False: the interpolated field alpha grad(src) + (1 - alpha) grad(dst); alpha = 1 is
    Pérez et al.'s plain seamless cloning (the source's gradients).
    """
    total = torch.zeros_like(dst[1:-1, 1:-1])
    for dd, ds in zip(_neighbour_diffs(dst), _neighbour_diffs(src)):
        a, b = (1 - alpha) * dd, alpha * ds
        total = total + (torch.where(a.abs() > b.abs(), a, b) if mixing else a + b)
    return total


def poisson_blend(dst: torch.Tensor, src: torch.Tensor, box: tuple[int, int, int, int], alpha: float,
                  mixing: bool = True) -> torch.Tensor:
    """Blend src into dst (both (H, W)) inside box = (y0, y1, x0, x1) (end exclusive).

    The pixels of the box's outer ring keep the destination's values (Dirichlet boundary); the
    inside solves the discrete Poisson equation (PII Eq. 5-6). Returns a new (H, W) image.
    """
    y0, y1, x0, x1 = box
    out = dst.clone()
    if y1 - y0 < 3 or x1 - x0 < 3:
        return out
    with torch.autocast(device_type=dst.device.type, enabled=False):
        d = dst[y0:y1, x0:x1].double()
        s = src[y0:y1, x0:x1].double()
        ring = d.clone()
        ring[1:-1, 1:-1] = 0
        boundary = ring[:-2, 1:-1] + ring[2:, 1:-1] + ring[1:-1, :-2] + ring[1:-1, 2:]
        f = solve_dirichlet(guidance_divergence(d, s, alpha, mixing) + boundary)
    out[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = f.to(dst.dtype)
    return out


def linear_blend(dst: torch.Tensor, src: torch.Tensor, box: tuple[int, int, int, int], alpha: float) -> torch.Tensor:
    """FPI (Tan et al. 2020, PII Eq. 1): (1 - alpha) dst + alpha src inside the box."""
    y0, y1, x0, x1 = box
    out = dst.clone()
    out[y0:y1, x0:x1] = (1 - alpha) * dst[y0:y1, x0:x1] + alpha * src[y0:y1, x0:x1]
    return out


def random_box(size: int, generator: torch.Generator | None = None, size_range: tuple[float, float] = (0.1, 0.4),
               center_range: tuple[float, float] = (0.1, 0.9)) -> tuple[int, int, int, int]:
    """Square patch of side U(0.1 N, 0.4 N) centred at U_2(0.1 N, 0.9 N) (PII Sec. 2), clipped."""
    r = torch.rand(3, generator=generator).tolist()
    side = max(3, round(size * (size_range[0] + (size_range[1] - size_range[0]) * r[0])))
    cy, cx = (size * (center_range[0] + (center_range[1] - center_range[0]) * v) for v in r[1:])
    y0, x0 = round(cy - side / 2), round(cx - side / 2)
    return max(0, y0), min(size, y0 + side), max(0, x0), min(size, x0 + side)


def make_samples(x: torch.Tensor, mode: str = "poisson", generator: torch.Generator | None = None,
                 alpha_range: tuple[float, float] = (0.05, 0.95), size_range: tuple[float, float] = (0.1, 0.4),
                 center_range: tuple[float, float] = (0.1, 0.9), mixing: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-supervised training pairs from normal images x (N,1,H,W): each image receives one patch
    from another image of the batch (Poisson-blended for "poisson"/PII, convex for "linear"/FPI).

    Returns (images, labels), labels = alpha inside the altered patch and 0 elsewhere (PII Eq. 2);
    an image whose source patch equals its own (e.g. a batch of one) gets label 0.
    """
    if mode not in ("poisson", "linear"):
        raise ValueError(f"mode must be 'poisson' or 'linear', got {mode!r}")
    n, _, h, w = x.shape
    src_idx = torch.roll(torch.arange(n), 1)
    out = x.detach().clone()
    label = torch.zeros_like(out)
    alphas = alpha_range[0] + (alpha_range[1] - alpha_range[0]) * torch.rand(n, generator=generator)
    for i in range(n):
        y0, y1, x0, x1 = random_box(min(h, w), generator, size_range, center_range)
        a = float(alphas[i])
        dst, src = x[i, 0].detach(), x[int(src_idx[i]), 0].detach()
        if mode == "poisson":
            out[i, 0] = poisson_blend(dst, src, (y0, y1, x0, x1), a, mixing).clamp(0, 1)
            y0, y1, x0, x1 = y0 + 1, y1 - 1, x0 + 1, x1 - 1  # the ring keeps the destination
        else:
            out[i, 0] = linear_blend(dst, src, (y0, y1, x0, x1), a)
        if y1 > y0 and x1 > x0 and not torch.equal(dst[y0:y1, x0:x1], src[y0:y1, x0:x1]):
            label[i, 0, y0:y1, x0:x1] = a
    return out, label
