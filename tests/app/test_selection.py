"""upd_core.app.selection: default selections by family and AUROC, 'best N', 'select all'."""
from __future__ import annotations

from upd_core.app import selection, views


def view(cid: str, method: str, family: str, auroc: float | None) -> views.CheckpointView:
    return views.CheckpointView(cid, method, method, "", (), False, {} if auroc is None else {"auroc": auroc}, "",
                                family=family, variant=cid.split("@")[1] if "@" in cid else "")


FOUND = [view("radl@flow", "radl", "cevae", 0.83), view("radl", "radl", "cevae", 0.80),
         view("cevae", "cevae", "cevae", 0.64), view("vae@combi", "vae", "autoencoders", 0.79),
         view("spatial-ae", "spatial-ae", "autoencoders", 0.45), view("cradl", "cradl", "cradl", 0.72),
         view("morphaeus", "morphaeus", "morphaeus", 0.70), view("ae-latent-1", "ae-latent-1", "morphaeus", 0.75),
         view("pii", "pii", "pii", 0.66), view("new", "dae", "generative", None)]


def test_ranked_best_first_unevaluated_last():
    assert [v.id for v in selection.ranked(FOUND)][:3] == ["radl@flow", "radl", "vae@combi"]
    assert selection.ranked(FOUND)[-1].id == "new"
    assert selection.select_all(FOUND) == [v.id for v in selection.ranked(FOUND)]


def test_best_n_takes_one_scoring_per_set_of_weights():
    assert selection.best(FOUND, 3) == ["radl@flow", "vae@combi", "ae-latent-1"]
    assert selection.best(FOUND, 0) == [] and len(selection.best(FOUND, 99)) == 9  # 10 views, 9 sets of weights
    assert selection.best_checkpoint(FOUND) == "radl@flow"
    assert selection.best_checkpoint([]) is None


def test_default_selection_is_the_best_of_each_family_without_teaching_aes():
    ids = selection.default_selection(FOUND, selection.Defaults(n=10))
    assert ids == ["radl@flow", "vae@combi", "cradl", "morphaeus", "pii", "new"]  # best first, one per family
    assert "ae-latent-1" not in ids  # the curse-of-resolution series is a teaching device
    two = selection.default_selection(FOUND, selection.Defaults(n=10, per_family=2))
    assert "cevae" in two and "spatial-ae" in two and "radl" not in two  # radl@flow already stands for radl


def test_included_methods_survive_the_cut():
    cut = selection.default_selection(FOUND, selection.Defaults(n=3, include=("morphaeus",)))
    assert cut == ["radl@flow", "vae@combi", "morphaeus"]
    assert selection.default_selection(FOUND, selection.Defaults(n=3)) == ["radl@flow", "vae@combi", "cradl"]


def test_page_defaults():
    compare = selection.page_default(FOUND, "compare")
    assert "morphaeus" in compare and compare[0] == "radl@flow"
    assert len(selection.page_default(FOUND, "tails")) == 4
    assert selection.page_default(FOUND, "unknown page") == selection.default_selection(FOUND)
    only_teaching = [view("ae-latent-1", "ae-latent-1", "morphaeus", 0.7)]
    assert selection.page_default(only_teaching, "compare") == ["ae-latent-1"]  # better than nothing
