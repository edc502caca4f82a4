"""upd_core.app.units: what each method's score and map measure, from the loaded detector."""
from __future__ import annotations

import pytest

from upd_core.app.units import GENERIC, units_of
from upd_core.registry import get_method


def det(method: str, variant: str | None = None):
    d = get_method(method)(image_size=32)
    if variant is not None:
        d.set_variant(variant)
    return d


def test_residual_methods():
    u = units_of(det("spatial-ae"))
    assert "|x − x̂|" in u.map and u.score.startswith("mean of the map") and "Higher = more abnormal" in u.help


@pytest.mark.parametrize("variant,expect", [("kl-grad", "KL divergence (nats)"), ("elbo", "negative ELBO"),
                                            ("combi", "|∂KL/∂x| × |x − x̂|"), ("rec", "|x − x̂|")])
def test_vae_scorings(variant, expect):
    assert expect in units_of(det("vae", variant)).score


@pytest.mark.parametrize("method", ["cradl", "radl"])
def test_nll_scores_explain_negative_values(method):
    u = units_of(det(method, "gmm4"))
    assert u.score.startswith("NLL") and "K = 4" in u.help and "can be negative" in u.help
    assert "NLL gradient" in u.map


def test_pii_and_generic():
    assert "interpolation factor" in units_of(det("pii")).score

    class Plain:
        method = "x"

    assert units_of(Plain()) == GENERIC
