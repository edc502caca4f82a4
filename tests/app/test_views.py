"""upd_core.app.views: checkpoints as the app lists them, default selection, planned methods."""
from __future__ import annotations

import json

import upd_core
from upd_core.app import views


def test_checkpoint_views_best_auroc_first(ckpts):
    found = views.checkpoint_views()
    assert {v.method for v in found} == {"spatial-ae", "morphaeus", "ae-latent-1"}
    aurocs = [v.auroc for v in found]
    assert aurocs == sorted(aurocs, reverse=True)  # the evaluation.json AUROC, best first
    assert all(v.auroc == v.metrics["auroc"] for v in found)
    assert {v.family for v in found} == {"autoencoders", "morphaeus"}
    fake = [views.CheckpointView("x", "vae", "VAE", "", (), False, {}, ""),
            views.CheckpointView("y", "vae", "VAE", "", (), False, {"auroc": 0.6}, ""),
            views.CheckpointView("z", "dae", "DAE", "", (), False, {"auroc": 0.7}, "")]
    assert [v.id for v in sorted(fake, key=views.auroc_order)] == ["z", "y", "x"]  # unevaluated last
    table = views.checkpoint_table(found)
    assert table[0]["checkpoint"] == found[0].id and table[0]["outputs"].startswith("score, anomaly map")
    conv = {r["checkpoint"]: (r["converged"], r["epochs"]) for r in table}
    assert conv["spatial-ae-tiny-32"] == ("converged (max epochs)", 1)
    assert conv["ae-latent-1-tiny-32"] == ("not converged (epoch cap)", 1)
    capped = next(v for v in found if v.method == "ae-latent-1")
    assert capped.converged is False and capped.label.endswith("⚠ not converged") and not found[0].flag
    note = views.convergence_note(found)
    assert note.startswith("⚠ Not converged: ") and f"{capped.title} (epoch cap)" in note
    assert found[0].title not in note and views.convergence_note(found[:2]) == ""


def test_training_status_new_old_and_missing_records(tmp_path):
    def status(training):
        d = tmp_path / str(len(list(tmp_path.iterdir())))
        d.mkdir()
        if training is not None:
            (d / "config.json").write_text(json.dumps({"training": training}))
        return views.training_status(d)

    new = {"stop_kind": "epoch cap", "converged": False, "epochs": 100, "seconds": 3600.0,
           "stop_reason": "epoch cap of 100 reached (paper: up to 1000)"}
    assert status(new) == ("not converged (epoch cap)", 100)
    assert status({"stop_kind": "early stopping", "epochs": 61}) == ("converged (early stopping)", 61)
    assert status({"stop_reason": "time budget of 6.0 min reached", "epochs": 13}) == ("not converged (time budget)", 13)
    assert status({"epochs": 3, "cradl_sha256": "x"}) == ("", None)  # a record without a stop (not a training)
    assert status(None) == ("", None)  # no config.json
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{broken")
    assert views.training_status(bad) == ("", None)
    view = views.CheckpointView("x", "vae", "VAE", "", (), False, {}, "")
    assert view.converged is None and view.flag == "" and view.label == "VAE (x)"


def test_missing_reasons():
    assert "global prior" in views.missing_reason("spatial-ae", "prior")
    assert "estimates no deformation" in views.missing_reason("spatial-ae", "deformation")
    assert "no deformation branch" in views.missing_reason("morphaeus-no-warp", "warped")
    assert "no residual" in views.missing_reason("cradl", "residual")


def test_planned_methods_are_the_unregistered_ones():
    planned = views.planned_methods()
    titles = [t for group in planned.values() for t in group]
    assert "ADM" in planned["multi-contrast MRI paper"] and "ExpVAE" in planned["UPD study"]
    registered = set(upd_core.list_methods())
    assert not {mid for mid, title, _ in views.PLANNED if title in titles} & registered
    assert views.method_title("adm") == "adm" and views.method_title("morphaeus") == "MorphAEus"


def test_variants_are_titled_with_their_scoring(tmp_path):
    import shutil

    from tests.app_fixtures import shared_checkpoints
    from upd_core.checkpoint import CheckpointInfo

    src = shared_checkpoints() / "spatial-ae-tiny-32"
    folder = tmp_path / "ck"
    shutil.copytree(src, folder)
    ev = json.loads((folder / "evaluation.json").read_text())
    ev["variant"] = "rec"
    ev["variants"] = {"kl-grad": {"image": {"auroc": 0.99, "ap": 0.9}}}
    (folder / "evaluation.json").write_text(json.dumps(ev))
    found = views.checkpoint_views([CheckpointInfo("ck", "spatial-ae", "generated", folder, ev["image"])])
    assert [(v.id, v.title, v.variant) for v in found] == [("ck@kl-grad", "Spatial AE [kl-grad]", "kl-grad"),
                                                          ("ck", "Spatial AE [rec]", "rec")]
    assert {v.weights for v in found} == {"ck"}
    inv = views.inventory(found)
    assert (inv.checkpoints, inv.scorings, inv.methods_with_checkpoints) == (1, 2, 1)
    assert len(inv.methods) == len(upd_core.list_methods())


def test_inventory_text_names_what_exists_and_what_is_planned():
    inv = views.Inventory(("VAE", "CRADL"), 3, 5, 2, {"multi-contrast MRI paper": ["ADM", "DAGMM"]})
    text = views.inventory_text(inv)
    assert "2 registered methods (VAE · CRADL)" in text and "3 trained checkpoints of 2 of them" in text
    assert "5 scorings" in text and text.endswith("**Planned, not implemented yet:** ADM, DAGMM (multi-contrast MRI paper).")
    assert "Planned" not in views.inventory_text(views.Inventory(("VAE",), 1, 1, 1, {}))
