"""upd_core.app.benchmarks: evaluation tables with the floors first, and the papers' numbers."""
from __future__ import annotations

from upd_core.app import benchmarks


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
    assert status["morphaeus"] == "implemented" and status["padim"] == "planned"
    assert status["deep-svdd"] == "not planned"
