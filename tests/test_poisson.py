"""Poisson blending (PII) and convex patch interpolation (FPI) of upd_core.poisson."""
from __future__ import annotations

import time

import torch

from upd_core.poisson import (_neighbour_diffs, guidance_divergence, linear_blend, make_samples, poisson_blend,
                              random_box, solve_dirichlet)


def _laplacian(a: torch.Tensor) -> torch.Tensor:
    """Discrete 5-point Laplacian (sum of neighbours - 4 * centre) on the interior."""
    return -sum(_neighbour_diffs(a))


def test_dst_solver_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(7, 11, generator=g, dtype=torch.float64)
    p = torch.nn.functional.pad(f, (1, 1, 1, 1))
    rhs = 4 * f - (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])
    torch.testing.assert_close(solve_dirichlet(rhs), f, atol=1e-12, rtol=0)


def test_border_equals_destination_and_outside_unchanged() -> None:
    g = torch.Generator().manual_seed(1)
    dst, src = torch.rand(48, 48, generator=g), torch.rand(48, 48, generator=g)
    y0, y1, x0, x1 = 5, 30, 12, 40
    out = poisson_blend(dst, src, (y0, y1, x0, x1), alpha=0.6)
    ring = torch.zeros(48, 48, dtype=torch.bool)
    ring[y0:y1, x0:x1] = True
    ring[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = False
    assert torch.equal(out[ring], dst[ring])  # Dirichlet boundary from the destination
    inside = torch.zeros_like(ring)
    inside[y0:y1, x0:x1] = True
    assert torch.equal(out[~inside], dst[~inside])
    assert not torch.allclose(out[y0 + 1:y1 - 1, x0 + 1:x1 - 1], dst[y0 + 1:y1 - 1, x0 + 1:x1 - 1])


def test_alpha_one_without_mixing_reproduces_source_gradients() -> None:
    g = torch.Generator().manual_seed(2)
    dst, src = torch.rand(40, 40, generator=g, dtype=torch.float64), torch.rand(40, 40, generator=g, dtype=torch.float64)
    box = (4, 30, 6, 36)
    out = poisson_blend(dst, src, box, alpha=1.0, mixing=False)
    region = (slice(box[0], box[1]), slice(box[2], box[3]))
    # Laplacian of the result equals the source's at every interior pixel (Eq. 4 with v = grad src)
    torch.testing.assert_close(_laplacian(out[region]), _laplacian(src[region]), atol=1e-9, rtol=0)
    # with boundary values consistent with the source (src + c), the source itself is recovered
    out2 = poisson_blend(src + 0.25, src, box, alpha=1.0, mixing=False)
    torch.testing.assert_close(out2[region], src[region] + 0.25, atol=1e-9, rtol=0)


def test_gradient_mixing_follows_eq8() -> None:
    dst = torch.zeros(3, 3, dtype=torch.float64)
    dst[1, 1] = 1.0  # destination: strong gradient at the centre
    src = torch.zeros(3, 3, dtype=torch.float64)
    src[1, 1] = 0.2  # source: weak gradient
    # alpha 0.5: |0.5 * 1| > |0.5 * 0.2| in all 4 directions -> the destination's wins
    torch.testing.assert_close(guidance_divergence(dst, src, 0.5), torch.tensor([[4 * 0.5]], dtype=torch.float64))
    # alpha 0.9: |0.1 * 1| < |0.9 * 0.2| -> the source's wins
    torch.testing.assert_close(guidance_divergence(dst, src, 0.9), torch.tensor([[4 * 0.9 * 0.2]], dtype=torch.float64))


def test_fpi_is_the_convex_combination() -> None:
    g = torch.Generator().manual_seed(3)
    dst, src = torch.rand(32, 32, generator=g), torch.rand(32, 32, generator=g)
    out = linear_blend(dst, src, (3, 20, 8, 30), alpha=0.3)
    torch.testing.assert_close(out[3:20, 8:30], 0.7 * dst[3:20, 8:30] + 0.3 * src[3:20, 8:30])
    mask = torch.ones(32, 32, dtype=torch.bool)
    mask[3:20, 8:30] = False
    assert torch.equal(out[mask], dst[mask])


def test_random_box_follows_pii_ranges() -> None:
    g = torch.Generator().manual_seed(4)
    for _ in range(200):
        y0, y1, x0, x1 = random_box(100, g)
        assert 0 <= y0 < y1 <= 100 and 0 <= x0 < x1 <= 100
        assert max(y1 - y0, x1 - x0) <= 40 and min(y1 - y0, x1 - x0) >= 3


def test_make_samples_labels_and_speed() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(6, 1, 64, 64, generator=g)
    for mode in ("poisson", "linear"):
        out, label = make_samples(x, mode, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and label.shape == x.shape
        assert out.min() >= 0 and out.max() <= 1
        changed = (out != x)
        assert (label[changed] > 0).float().mean() > 0.95  # changed pixels are labelled...
        assert ((label > 0) & (label < 0.05)).sum() == 0 and label.max() <= 0.95  # ...with alpha
        for i in range(6):  # one patch per image, one alpha per patch
            vals = label[i][label[i] > 0].unique()
            assert len(vals) == 1
        if mode == "linear":  # label = alpha of the convex combination (FPI Eq. 1-2)
            src = x[torch.roll(torch.arange(6), 1)]
            sel = label > 0
            torch.testing.assert_close(out[sel], ((1 - label) * x + label * src)[sel])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xs = torch.rand(16, 1, 128, 128)
        t0 = time.perf_counter()
        make_samples(xs, "poisson")
        per_sample = (time.perf_counter() - t0) / 16
    finally:
        torch.set_num_threads(threads)
    assert per_sample < 0.020  # target: < 20 ms per 128 x 128 sample on one core
