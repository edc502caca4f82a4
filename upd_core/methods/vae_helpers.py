"""Parts shared by the VAE family: the KL term, the reparameterisation, and the VAE scores of the
CRADL paper (Lüth et al., Table 9), written once for the VAE (autoencoders.py, and the beta-VAE /
Soft-Intro VAE built on it) and the ceVAE / RADL (cevae.py).

Table 9, with Enc(x) = E[z | x] = mu and x_hat = Dec(mu):
  localization maps  'rec'      |x - x_hat|
                     'kl-grad'  |d KL(q(z|x) || p(z)) / d x|
                     'combi'    kl-grad * rec (product of the two raw maps)
                     'nll-grad' |d NLL(mu) / d x| under a density head (RADL)
  detection scores   'elbo'     sum |x - x_hat| + KL
                     'kl'       KL(q(z|x) || p(z))
                     'rec'      mean |x - x_hat|
                     'nll'      NLL(mu) under a density head (RADL)
                     'map'      the chosen map, reduced with the config's `score_reduction`
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from .. import scoring

# CRADL Sec. 4.5 ("Post-processing of Anomaly Heatmaps"): one pipeline for the final pixel scores
# of every method: 2D median pooling with kernel size 5, then Gaussian smoothing. The paper gives
# no sigma for the smoothing; 2 px at 128 px is this project's choice.
MEDIAN_SIZE = 5
GAUSS_SIGMA = 2.0

MAP_KINDS = ("rec", "kl-grad", "combi", "nll-grad")
IMAGE_SCORES = ("elbo", "kl", "rec", "nll", "map")
# Table 9's scorings as variants of the same weights: name -> (map, image score), in the VAE's
# variant order (rows of `calib_scores` in trained checkpoints follow it).
VARIANTS = {"rec": ("rec", "rec"), "kl-grad": ("kl-grad", "kl"), "combi": ("combi", "map"),
            "elbo": ("combi", "elbo")}


class VAELike(Protocol):
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent dimensions (nats, float32)."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample z = mu + sigma * eps of q(z | x)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def kl_gradient(model: VAELike, x: torch.Tensor, retain_graph: bool = False) -> tuple[torch.Tensor, ...]:
    """(x with grad, mu, KL per image, d KL / d x). `retain_graph` keeps the encoder graph for a
    further gradient through mu (RADL's NLL)."""
    x = x.detach().float().requires_grad_(True)
    with torch.enable_grad():
        mu, logvar = model.encode(x)
        mu = mu.float()
        kl = kl_normal(mu, logvar)
        (g_kl,) = torch.autograd.grad(kl.sum(), x, retain_graph=retain_graph)
    return x, mu, kl, g_kl


def table9(model: VAELike, x: torch.Tensor, map_kind: str, image_score: str, post: tuple[int, float],
           nll: Callable[[torch.Tensor], torch.Tensor] | None = None,
           rec_kind: str = "l1") -> dict[str, torch.Tensor]:
    """`forward_maps` outputs of a Table-9 scoring for images x (N,1,H,W).

    'anomaly_map': the `map_kind` map before post-processing; 'reconstruction'; every map under its
    own name ('rec', 'kl_grad', 'combi', 'nll_grad'), post-processed with `post` = (median size,
    Gaussian sigma); 'score' unless `image_score` is 'map'. `nll(mu)` (a density head's NLL)
    adds the 'nll-grad' map and the 'nll' score. `rec_kind` is the reconstruction term of the
    'elbo' score: the model's own training loss ("l1": sum |x - x_hat|, "l2": sum (x - x_hat)^2),
    so the score is the (negative) ELBO the model was trained on.
    """
    x, mu, kl, g_kl = kl_gradient(model, x, retain_graph=nll is not None)
    if nll is not None:
        with torch.enable_grad():
            nll_mu = nll(mu)
            (g_nll,) = torch.autograd.grad(nll_mu.sum(), x)
    with torch.no_grad():
        x_hat = model.decode(mu.detach()).float()
        rec = (x.detach() - x_hat).abs()[:, 0]
        maps = {"rec": rec, "kl-grad": g_kl.abs()[:, 0], "combi": g_kl.abs()[:, 0] * rec}
        rec_term = rec.square() if rec_kind == "l2" else rec
        scores = {"elbo": rec_term.flatten(1).sum(1) + kl.detach(), "kl": kl.detach(), "rec": rec.flatten(1).mean(1)}
        if nll is not None:
            maps["nll-grad"] = g_nll.abs()[:, 0]
            scores["nll"] = nll_mu.detach()
        if map_kind not in maps:
            raise ValueError(f"score_kind {map_kind!r} needs fitted density heads")
        out = {"anomaly_map": maps[map_kind], "reconstruction": x_hat}
        for name, m in maps.items():
            out[name.replace("-", "_")] = scoring.postprocess(m, *post)
        if image_score != "map":
            if image_score not in scores:
                raise ValueError(f"image_score {image_score!r} needs fitted density heads")
            out["score"] = scores[image_score]
    return out
