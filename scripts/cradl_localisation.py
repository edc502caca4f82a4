"""Does CRADL's NLL-gradient map respond to a lesion? Small, cheap diagnosis on real X-rays.

    nice -n 19 python scripts/cradl_localisation.py                      # shipped cradl-kermany-128
    nice -n 19 python scripts/cradl_localisation.py --checkpoint runs/.../cradl-kermany-128 --n 60

On the first `--n` normal Kermany test images it paints synthetic lesions (`upd_core.lesions`) and
compares, for the checkpoint's encoder, several ways of turning d NLL / d x into a map against two
trivial floors that use no model at all (the image itself and |x - mean normal training image|):

* lesion sets: "mixed" = the `evaluate --synthetic-lesions` protocol (hyper and hypo lesions,
  `lesion_dataset(seed)`); "bright" / "dark" = the same draw restricted to hyper- / hypo-intense
  lesions.
* metrics: pixel AP (all pixels of all images pooled, as `metrics.pixel_metrics`); the
  lesion-to-background ratio (mean map value inside the lesion / outside, per image, averaged;
  1 = no response); and the share of map mass inside the lesion mask on the clean image and on
  the lesioned one (does it rise when the lesion is painted in?).
* gradient targets: |d NLL/dx| (CRADL Tab. 9 and the default), the positive part of d NLL/dx
  (a bright lesion raises the NLL where it is brighter), |d NLL/dx * x| (gradient x input),
  |d log NLL/dx| = |d NLL/dx| / NLL (the formula of CRADL Eq. 3), every density head, BatchNorm
  with batch statistics instead of running ones, bf16 autocast, and a randomly initialised encoder
  of the same architecture with its own GMM (what contrastive training adds or removes).
* post-processing: none, 5x5 median + Gaussian sigma 2 (the shipped `CRADLConfig`), 5x5 median +
  Gaussian sigma 3 on a 7x7 kernel with zero padding (the authors' code), each without and with
  zeroing outside the body (`lesions.auto_foreground`, CRADL Sec. 4.5 zeroes outside the brain).
  The same mask and post-processing are applied to the floors. A sweep of the median size and
  the Gaussian sigma follows for the default map.
* invariance: how far the NLL moves (median |change| / std of the clean images' NLL) under a
  lesion, under global brightness and noise changes and under the training views (the shipped
  config's and the authors' code's milder ranges), for the trained and the untrained encoder: what
  the contrastive training taught the representation to ignore.

Numbers only, no images are written. About 2.5 CPU-minutes (some 5 minutes wall on two idle cores).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import upd_core
from upd_core import metrics, scoring
from upd_core.data import load_split
from upd_core.density import DENSITIES, GaussianMixture
from upd_core.evaluate import synthetic_pixel_eval
from upd_core.lesions import LesionRanges, auto_foreground, lesion_dataset
from upd_core.methods.augmentations import augment
from upd_core.methods.cradl import CRADL


def gauss_zero_pad(m: torch.Tensor, sigma: float = 3.0, size: int = 7) -> torch.Tensor:
    """2D Gaussian smoothing on a truncated size x size kernel with zero padding (how the authors'
    code smooths: kernel 8 -> 7, sigma 3)."""
    t = torch.arange(size, dtype=m.dtype) - (size - 1) / 2
    k = torch.exp(-(t[:, None] ** 2 + t[None] ** 2) / (2 * sigma ** 2))
    k = (k / k.sum())[None, None]
    return F.conv2d(m[:, None], k, padding=size // 2)[:, 0]


POSTS = {
    "raw": lambda m: m,
    "med5+g2 (shipped)": lambda m: scoring.postprocess(m, 5, 2.0),
    "med5+g3/7x7 zero-pad (authors' code)": lambda m: gauss_zero_pad(scoring.median_filter(m, 5)),
}


def gradients(det, images: np.ndarray, head: str, *, bn_batch_stats: bool = False, bf16: bool = False,
              nll_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """NLL (N,) and signed d NLL / d x (N,H,W) in float32."""
    det.eval()
    if bn_batch_stats:
        for mod in det.encoder.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.train()
                mod.momentum = 0.0  # use batch statistics without changing the running ones
    x = torch.as_tensor(images, dtype=torch.float32)[:, None].requires_grad_(True)
    with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        z = det.encode(x).float()
        nll = nll_fn(z) if nll_fn is not None else det.densities.nll(z, head)
        (g,) = torch.autograd.grad(nll.sum(), x)
    det.eval()
    return nll.detach().float().numpy(), g[:, 0].float().numpy()


def measure(maps: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, float]:
    """maps/masks keyed by lesion set; the clean map is scored with the bright lesions' masks."""
    mb = masks["bright"] > 0.5
    share = lambda m: float(np.mean([(m[i] * mb[i]).sum() / max(m[i].sum(), 1e-30) for i in range(len(m))]))
    ratio = float(np.mean([maps["bright"][i][mb[i]].mean() / max(maps["bright"][i][~mb[i]].mean(), 1e-30)
                           for i in range(len(mb))]))
    out = {f"ap_{k}": metrics.pixel_metrics(masks[k], maps[k])["pixel_ap"] for k in ("mixed", "bright", "dark")}
    return {**out, "ratio": ratio, "share_clean": share(maps["clean"]), "share_lesion": share(maps["bright"])}


def views_nll(det, nll_fn, images: np.ndarray, **aug) -> np.ndarray:
    """NLL of one seeded random view of each image (`augmentations.augment` with these ranges)."""
    v = augment(torch.as_tensor(images)[:, None], generator=torch.Generator().manual_seed(0), **aug)
    with torch.no_grad():
        return nll_fn(det.encode(v).float()).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="cradl-kermany-128")
    ap.add_argument("--data", default="cxr-kermany")
    ap.add_argument("--n", type=int, default=60, help="normal test images (first N)")
    ap.add_argument("--seed", type=int, default=0, help="lesion seed (evaluate uses 0)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    det = upd_core.load_detector(args.checkpoint, device="cpu").eval()
    cfg = det.config
    _, x_test, y_test, _, _ = load_split(args.data, split="test", size=det.image_size)
    _, x_train, y_train, _, _ = load_split(args.data, split="train", size=det.image_size)
    clean = x_test[y_test == 0][:args.n].astype(np.float32)
    train = x_train[y_train == 0].astype(np.float32)
    mean_normal = train.mean(0)
    images, masks = {"clean": clean}, {}
    for name, kinds in (("mixed", ("hyper", "hypo")), ("bright", ("hyper",)), ("dark", ("hypo",))):
        images[name], masks[name] = lesion_dataset(clean, seed=args.seed, ranges=LesionRanges(intensities=kinds))
    fg = {k: np.stack([auto_foreground(im) for im in v]).astype(np.float32) for k, v in images.items()}
    print(f"checkpoint {args.checkpoint} (config density {cfg.density}); {len(clean)} normal Kermany test "
          f"images, lesion seed {args.seed}; lesion pixels {masks['mixed'].mean():.2%} (mixed), "
          f"{masks['bright'].mean():.2%} (bright), {masks['dark'].mean():.2%} (dark) = the AP of a random map; "
          f"body mask {fg['mixed'].mean():.1%} of the pixels")

    # the exact `evaluate --synthetic-lesions` path (Detector.predict, the checkpoint's own map)
    pix = synthetic_pixel_eval(det, clean, len(clean), seed=args.seed)
    print(f"evaluate.synthetic_pixel_eval on these images: pixel AP {pix['pixel_ap']:.3f}, "
          f"best Dice {pix['best_dice']:.3f}")

    # ---- signed gradients for every setting: {setting: {set: (nll, grad)}}
    settings: dict[str, dict] = {}
    for head in DENSITIES:
        settings[head] = {k: gradients(det, v, head) for k, v in images.items()}
    settings["gmm1, BatchNorm batch statistics"] = {k: gradients(det, v, "gmm1", bn_batch_stats=True)
                                                    for k, v in images.items()}
    settings["gmm1, bf16 autocast"] = {k: gradients(det, v, "gmm1", bf16=True) for k, v in images.items()}
    torch.manual_seed(0)
    rand = CRADL(type(cfg)(**{**cfg.__dict__}), image_size=det.image_size).eval()
    z_rand = rand.representations(torch.as_tensor(train)[:, None])
    gmm_rand = GaussianMixture(z_rand.shape[1], 1).fit(z_rand, reg_covar=cfg.gmm_reg_covar,
                                                       eig_floor=cfg.gmm_eig_floor, tol=cfg.gmm_tol)
    untrained = "gmm1, random-init encoder (no training)"
    settings[untrained] = {k: gradients(rand, v, "gmm1", nll_fn=gmm_rand.nll) for k, v in images.items()}
    nll_min = min(float(s[k][0].min()) for s in settings.values() for k in s)

    # ---- maps
    rows: list[tuple[str, str, dict]] = []

    def add(name: str, raw: dict[str, np.ndarray], posts=tuple(POSTS), with_mask: bool = True) -> None:
        for p in posts:
            for use_mask in ((False, True) if with_mask else (False,)):
                maps = {}
                for k, m in raw.items():
                    mm = torch.as_tensor(m * fg[k] if use_mask else m, dtype=torch.float32)
                    maps[k] = POSTS[p](mm).numpy()
                rows.append((name, p + (" + body mask" if use_mask else ""), measure(maps, masks)))

    shipped = ("med5+g2 (shipped)",)
    g1 = settings["gmm1"]
    add("\\|dNLL/dx\\| gmm1", {k: np.abs(v[1]) for k, v in g1.items()})
    add("relu(dNLL/dx) gmm1", {k: np.maximum(v[1], 0) for k, v in g1.items()}, posts=shipped, with_mask=False)
    add("\\|dNLL/dx · x\\| gmm1", {k: np.abs(v[1] * images[k]) for k, v in g1.items()}, posts=shipped,
        with_mask=False)
    if nll_min > 0:
        add("\\|dlogNLL/dx\\| gmm1 (Eq. 3)", {k: np.abs(v[1]) / v[0][:, None, None] for k, v in g1.items()},
            posts=shipped, with_mask=False)
    for name, s in settings.items():
        if name != "gmm1":
            add(f"\\|dNLL/dx\\| {name}", {k: np.abs(v[1]) for k, v in s.items()}, posts=shipped, with_mask=False)
    add("floor: image x", images)
    add("floor: \\|x − mean normal\\|", {k: np.abs(v - mean_normal) for k, v in images.items()})

    print("\npixel level. ratio: mean map inside / outside the bright lesion (1 = blind); share: map mass "
          "inside the bright lesion's mask, clean -> lesioned image")
    print("| map | post-processing | pixel AP mixed | AP bright | AP dark | ratio | share clean → lesioned |")
    print("|---|---|---|---|---|---|---|")
    for name, post, r in rows:
        print(f"| {name} | {post} | {r['ap_mixed']:.3f} | {r['ap_bright']:.3f} | {r['ap_dark']:.3f} | "
              f"{r['ratio']:.2f} | {r['share_clean']:.2%} → {r['share_lesion']:.2%} |")
    if nll_min <= 0:
        print(f"(|d log NLL/dx| of Eq. 3 is undefined here: some NLL are <= 0, min {nll_min:.1f})")

    print("\nsweep of the post-processing, \\|dNLL/dx\\| gmm1 (pixel AP mixed / bright / dark)")
    print("| median | Gaussian sigma | AP mixed | AP bright | AP dark |")
    print("|---|---|---|---|---|")
    for med, sig in ((0, 0), (0, 2), (3, 2), (5, 0), (5, 1), (5, 2), (5, 3), (5, 4), (5, 6), (7, 2), (9, 2)):
        r = measure({k: scoring.postprocess(torch.as_tensor(np.abs(v[1])), med, sig).numpy()
                     for k, v in g1.items()}, masks)
        print(f"| {med} | {sig} | {r['ap_mixed']:.3f} | {r['ap_bright']:.3f} | {r['ap_dark']:.3f} |")

    # ---- invariance: how far the NLL moves under a lesion and under nuisance changes
    print("\ninvariance (gmm1): median |NLL change| / std of the clean images' NLL (share of images whose NLL rises)")
    changes = {
        "bright lesion": lambda d, f: f(images["bright"]),
        "dark lesion": lambda d, f: f(images["dark"]),
        "brightness x1.25": lambda d, f: f(np.clip(clean * 1.25, 0, 1)),
        "brightness x1.05": lambda d, f: f(np.clip(clean * 1.05, 0, 1)),
        "noise sigma 0.05": lambda d, f: f(np.clip(clean + 0.05 * np.random.default_rng(0).standard_normal(
            clean.shape).astype(np.float32), 0, 1)),
        "one training view, shipped ranges": lambda d, f: views_nll(
            d, f.nll_fn, clean, scale=tuple(cfg.crop_scale), rotate_deg=cfg.rotate_deg, flip=cfg.flip,
            brightness=cfg.brightness, noise_std=cfg.noise_std),
        "  its geometry only (crop/scale, rotation, mirroring)": lambda d, f: views_nll(
            d, f.nll_fn, clean, scale=tuple(cfg.crop_scale), rotate_deg=cfg.rotate_deg, flip=cfg.flip,
            brightness=0.0, noise_std=0.0),
        "  its intensity part only (brightness, noise)": lambda d, f: views_nll(
            d, f.nll_fn, clean, scale=(1.0, 1.0), rotate_deg=0.0, flip=False, brightness=cfg.brightness,
            noise_std=cfg.noise_std),
        "one view, the authors' code's ranges": lambda d, f: views_nll(
            d, f.nll_fn, clean, scale=(0.9, 1.2), rotate_deg=5.73, flip=cfg.flip, brightness=0.075,
            noise_std=0.0135),
    }
    print("| change | trained encoder | untrained encoder |")
    print("|---|---|---|")

    class NLL:
        def __init__(self, d, nll_fn):
            self.d, self.nll_fn = d, nll_fn

        def __call__(self, imgs):
            with torch.no_grad():
                return self.nll_fn(self.d.encode(torch.as_tensor(imgs, dtype=torch.float32)[:, None]).float()).numpy()

    encs = ((det, NLL(det, lambda z: det.densities.nll(z, "gmm1"))), (rand, NLL(rand, gmm_rand.nll)))
    base = [f(clean) for _, f in encs]
    for name, fn in changes.items():
        cells = []
        for (d, f), b in zip(encs, base):
            delta = fn(d, f) - b
            cells.append(f"{np.median(np.abs(delta)) / b.std():.3f} ({np.mean(delta > 0):.0%})")
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
