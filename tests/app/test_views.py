"""upd_core.app.views: checkpoints as the app lists them, default selection, planned methods."""
from __future__ import annotations

import upd_core
from upd_core.app import views


def test_checkpoint_views_order_and_default_selection(ckpts):
    found = views.checkpoint_views()
    assert [v.method for v in found] == ["spatial-ae", "morphaeus", "ae-latent-1"]
    assert views.default_selection(found) == ["spatial-ae-tiny-32", "morphaeus-tiny-32"]
    fake = [views.CheckpointView("ae-latent-1-x", "ae-latent-1", "t", "", (), False, {}, ""), *found]
    assert "ae-latent-1-x" not in views.default_selection(fake)
    table = views.checkpoint_table(found)
    assert table[0]["checkpoint"] == "spatial-ae-tiny-32" and table[0]["outputs"].startswith("score, anomaly map")


def test_missing_reasons():
    assert "global prior" in views.missing_reason("spatial-ae", "prior")
    assert "estimates no deformation" in views.missing_reason("spatial-ae", "deformation")
    assert "no deformation branch" in views.missing_reason("morphaeus-no-warp", "warped")
    assert "no residual" in views.missing_reason("cradl", "residual")


def test_planned_methods_are_the_unregistered_ones():
    planned = views.planned_methods()
    titles = [t for group in planned.values() for t in group]
    assert "ADM" in planned["multi-contrast MRI paper"] and "PaDiM" in planned["UPD study"]
    registered = set(upd_core.list_methods())
    assert not {mid for mid, title, _ in views.PLANNED if title in titles} & registered
    assert views.method_title("padim") == "padim" and views.method_title("morphaeus") == "MorphAEus"
