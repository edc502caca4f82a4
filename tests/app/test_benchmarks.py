"""upd_core.app.benchmarks: evaluation tables with the floors first, and the papers' numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from upd_core.app import benchmarks
from upd_core.checkpoint import CheckpointInfo


def test_benchmark_rows_floors_first(ckpts):
    tables = benchmarks.benchmark_rows()
    assert len(tables) == 1
    rows = next(iter(tables.values()))
    kinds = [r["kind"] for r in rows]
    assert kinds[:2] == ["floor", "floor"] and kinds[2:] == ["method"] * 3
    assert rows[0]["method"].startswith("floor: mean intensity")
    assert all(r["AUROC"] is not None for r in rows)
    n_beat, n_methods, floor = benchmarks.floor_summary(rows)
    assert n_methods == 3 and floor == max(r["AUROC"] for r in rows[:2])
    assert n_beat == sum(r["AUROC"] > floor for r in rows[2:])
    shown = benchmarks.display_rows(rows)
    assert list(shown[0])[:5] == ["kind", "method", "checkpoint", "converged", "AUROC"]  # a floor, in the same columns
    assert shown[0]["AUROC"] == f"{rows[0]['AUROC']:.3f}" and shown[0]["converged"] is None
    by_id = {r["checkpoint"]: r for r in shown if r["checkpoint"]}
    assert by_id["spatial-ae-tiny-32"]["converged"] == "converged (max epochs)"
    assert by_id["ae-latent-1-tiny-32"]["converged"] == "not converged (epoch cap)"
    assert all(r["AUROC"].count("[") == 1 for r in by_id.values())  # evaluate writes bootstrap CIs
    assert by_id["spatial-ae-tiny-32"]["seeds"] == 2 and "±" in by_id["spatial-ae-tiny-32"]["AUROC over seeds"]
    assert by_id["morphaeus-tiny-32"]["seeds"] is None
    cals = benchmarks.calibration_entries(benchmarks.load_evaluations())
    assert set(cals) == set(by_id)
    assert sum(r["share"] for r in benchmarks.calibration_table(cals["spatial-ae-tiny-32"])) == pytest.approx(1, abs=1e-3)


def test_floor_summary_needs_a_floor_and_a_method():
    floor = {"kind": "floor", "AUROC": 0.6}
    methods = [{"kind": "method", "AUROC": a} for a in (0.65, 0.8, None)]
    assert benchmarks.floor_summary([floor, {"kind": "floor", "AUROC": 0.7}, *methods]) == (1, 3, 0.7)
    assert benchmarks.floor_summary([floor]) is None
    assert benchmarks.floor_summary([{"kind": "method", "AUROC": 0.9}]) is None
    assert benchmarks.floor_summary([{"kind": "floor", "AUROC": float("nan")}, methods[1]]) is None


def test_reported_numbers_are_marked_with_their_source_and_status():
    rows = benchmarks.reported_rows(["morphaeus"])
    assert rows and all(r["id"] == "morphaeus" and r["source"] and r["data"] for r in rows)
    assert any(r["source"] == "MorphAEus paper, Table 2" and r["AUROC"] == 0.868 for r in rows)
    assert "0.868" in benchmarks.reported_summary("morphaeus") and benchmarks.reported_summary("no-such-method") == ""
    every = benchmarks.reported_rows()
    assert {r["source"] for r in every} >= {"MorphAEus paper, Table 2", "UPD study, Table III", "PII paper, Table 1"}
    status = {r["id"]: r["in this app"] for r in every}
    assert status["morphaeus"] == "implemented" and status["padim"] == "implemented" and status["expvae"] == "planned"
    assert status["deep-svdd"] == "not planned"


# ---------------------------------------------------------------- generated evaluation files

def _evaluation(auroc: float, ap: float, ci: bool = True, variant_auroc: float | None = None,
                split: str = "gen/test") -> dict:
    """An evaluation.json as `python -m upd_core evaluate` writes it (with or without CIs and a variant)."""
    image = {"auroc": auroc, "ap": ap, "fpr95": 0.5, "fpr99": 0.8}
    if ci:
        image["ci95"] = {"auroc": [auroc - 0.04, auroc + 0.04], "ap": [ap - 0.05, ap + 0.05], "n_boot": 1000}
    ev = {"method": "vae", "split": split, "n_normal": 20, "n_abnormal": 30, "image": image,
          "floors": {"mean_intensity": {"auroc": 0.55, "sign": "higher is abnormal"}}}
    if ci:
        ev["calibration"] = {"bin_shares": [0.05] * 5 + [0.15] * 5, "ks": 0.1, "n": 20,
                             "median_percentile": 60.0, "reference": "calibration split"}
    if variant_auroc is not None:
        ev["variant"] = "rec"
        ev["variants"] = {"kl-grad": {"image": {"auroc": variant_auroc, "ap": 0.5,
                                                "ci95": {"auroc": [variant_auroc - 0.1, variant_auroc + 0.1]}}}}
    return ev


def _checkpoint(root: Path, cid: str, ev: dict, training: dict | None, seeds: dict[int, dict] = {}) -> CheckpointInfo:
    folder = root / cid
    (folder / "seeds").mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps(ev))
    (folder / "config.json").write_text(json.dumps({"id": cid, "method": "vae", "training": training or {}}))
    for k, rec in seeds.items():
        (folder / "seeds" / f"seed{k}.json").write_text(json.dumps(rec))
    return CheckpointInfo(cid, "vae", "generated", folder)


def test_rows_show_ci_seeds_and_convergence(tmp_path):
    new = _checkpoint(tmp_path, "vae-new", _evaluation(0.7, 0.6, variant_auroc=0.65),
                      {"stop_kind": "time budget", "converged": False, "epochs": 9, "seconds": 60.0,
                       "stop_reason": "time budget of 1.0 min reached"},
                      seeds={1: _evaluation(0.8, 0.7, variant_auroc=0.75), 2: _evaluation(0.9, 0.8, ci=False),
                             3: _evaluation(0.1, 0.1, split="other/test")})  # another split: left out
    (tmp_path / "vae-new" / "seeds" / "seed4.json").write_text("{not json")
    old = _checkpoint(tmp_path, "vae-old", _evaluation(0.65, 0.55, ci=False),
                      {"stop_reason": "early stopping (no improvement for 25 epochs)", "epochs": 40})
    bare = _checkpoint(tmp_path, "vae-bare", _evaluation(0.6, 0.5, ci=False), None)
    evals = benchmarks.load_evaluations([new, old, bare])
    rows = {r["checkpoint"]: r for r in next(iter(benchmarks.benchmark_rows(evals).values())) if r["checkpoint"]}
    assert rows["vae-new"]["converged"] == "not converged (time budget)"
    assert rows["vae-new@kl-grad"]["converged"] == "not converged (time budget)"
    assert rows["vae-old"]["converged"] == "converged (early stopping)"
    assert rows["vae-bare"]["converged"] == "not recorded"
    shown = {r["checkpoint"]: r for r in benchmarks.display_rows(rows.values())}
    assert shown["vae-new"]["AUROC"] == "0.700 [0.660, 0.740]" and shown["vae-new"]["AP"] == "0.600 [0.550, 0.650]"
    assert shown["vae-old"]["AUROC"] == "0.650" and shown["vae-old"]["AP"] == "0.550"
    assert shown["vae-new@kl-grad"]["AUROC"] == "0.650 [0.550, 0.750]"
    # seeds 0, 1, 2 (seed 3 evaluated another split, seed 4 is unreadable)
    assert rows["vae-new"]["seeds"] == 3
    assert shown["vae-new"]["AUROC over seeds"] == "0.800 ± 0.100" and shown["vae-new"]["AP over seeds"] == "0.700 ± 0.100"
    assert rows["vae-new@kl-grad"]["seeds"] == 2  # seed 2's record has no kl-grad scoring
    assert shown["vae-new@kl-grad"]["AUROC over seeds"] == f"{0.7:.3f} ± {0.0707:.3f}"
    assert rows["vae-old"]["seeds"] is None and shown["vae-old"]["AUROC over seeds"] is None
    assert all(isinstance(r["AUROC"], float) for r in rows.values())  # numbers stay numbers for the floors


def test_seed_summary_mean_and_sample_std():
    recs = [{"image": {"auroc": a, "ap": p}} for a, p in ((0.6, 0.5), (0.7, 0.6), (0.8, 0.9))]
    s = benchmarks.seed_summary(recs)
    assert s["n"] == 3 and s["auroc"] == pytest.approx((0.7, 0.1)) and s["ap"] == pytest.approx((2 / 3, 0.2081666))
    assert benchmarks.seed_summary(recs[:1]) is None
    assert benchmarks.seed_summary([recs[0], {"image": {"auroc": 0.9}}])["ap"] is None  # AP missing in one seed
    # a variant is read from `variants`, or from the top level where it is the record's default scoring
    with_var = [{"variant": "gmm1", "image": {"auroc": 0.6, "ap": 0.5}, "variants": {"flow": {"image": {"auroc": 0.5}}}},
                {"variant": "flow", "image": {"auroc": 0.7, "ap": 0.6}}]
    assert benchmarks.seed_summary(with_var, "flow")["auroc"] == pytest.approx((0.6, 0.1414214))
    assert benchmarks.seed_summary(with_var, "gmm1") is None


def test_seed_records_order_and_filters(tmp_path):
    info = _checkpoint(tmp_path, "c", _evaluation(0.7, 0.6), None,
                       seeds={10: _evaluation(0.9, 0.9), 2: _evaluation(0.8, 0.8), 0: _evaluation(0.1, 0.1)})
    (info.path / "seeds" / "notes.json").write_text("{}")
    recs = benchmarks.seed_records(info.path)
    assert [r["image"]["auroc"] for r in recs] == [0.7, 0.8, 0.9]  # seed 0 is evaluation.json itself
    assert benchmarks.seed_records(tmp_path / "missing") == []


def test_with_ci():
    assert benchmarks.with_ci(0.7123, [0.6712, 0.7521]) == "0.712 [0.671, 0.752]"
    assert benchmarks.with_ci(0.7123, None) == "0.712" and benchmarks.with_ci(None, [0.1, 0.2]) is None
    assert benchmarks.with_ci(float("nan"), None) is None


def test_calibration_table_and_entries(tmp_path):
    ev = _evaluation(0.7, 0.6, variant_auroc=0.6)
    ev["variants"]["kl-grad"]["calibration"] = {"bin_shares": [0.1] * 10, "ks": 0.02, "n": 20,
                                                "median_percentile": 50.0, "reference": "calibration split"}
    info = _checkpoint(tmp_path, "c", ev, None)
    old = _checkpoint(tmp_path, "o", _evaluation(0.7, 0.6, ci=False, variant_auroc=0.6), None)
    cals = benchmarks.calibration_entries(benchmarks.load_evaluations([info, old]))
    assert set(cals) == {"c", "c@kl-grad"}  # older files have none; a variant never inherits its default's
    assert cals["c@kl-grad"]["ks"] == 0.02 and cals["c"]["ks"] == 0.1
    table = benchmarks.calibration_table(cals["c"])
    assert [r["percentile bin"] for r in table][:2] == ["0–10", "10–20"] and table[-1]["percentile bin"] == "90–100"
    assert [r["share"] for r in table] == [0.05] * 5 + [0.15] * 5
    assert all(r["uniform"] == pytest.approx(0.1) for r in table)
    line = benchmarks.calibration_summary(cals["c"])
    assert "0.100" in line and "median percentile 60.0" in line and "20 normal test images" in line
    assert "calibration split" in line
    assert "spread evenly" in benchmarks.CALIBRATION_HELP and "overstate abnormality" in benchmarks.CALIBRATION_HELP


def test_regime_of_our_and_reported_numbers():
    assert "normal validation images only" in benchmarks.REGIME and "labelled data" in benchmarks.REGIME
    rows = benchmarks.reported_rows()
    assert all(r["regime"] == benchmarks.reported_regime(r["source"]) for r in rows)
    by_source = {r["source"]: r["regime"] for r in rows}
    assert "labelled validation" in by_source["UPD study, Table III"]
    assert by_source["PII paper, Table 1"].startswith(benchmarks.UNSTATED_REGIME)
    assert set(by_source) <= set(benchmarks.REPORTED_REGIME)
    assert benchmarks.reported_regime("Some other paper, Table 9") == "selection regime not stated by the paper"
