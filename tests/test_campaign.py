"""The training campaign end to end on a generated data set: train, evaluate, stage, status, resume."""
from __future__ import annotations

import json

import pytest

from tests.app_fixtures import env, make_dataset
from upd_core import campaign, campaign_status
from upd_core.campaign import Recipe
from upd_core.errors import UPDError


@pytest.fixture()
def world(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", n=8)  # named cxr-kermany: staged like the shipped data set
    monkeypatch.setattr(campaign, "SIZE", 32)
    monkeypatch.setattr(campaign, "PIXEL_LESIONS", 4)
    monkeypatch.setattr(campaign, "RECIPES", (
        Recipe("spatial-ae", cap_epochs=1, seeds=(0, 1)),
        Recipe("morphaeus", cap_epochs=1, needs=("cradl",)),  # its encoder is not in the queue
    ))
    with env(UPD_RUNS=str(tmp_path / "runs"), UPD_CHECKPOINTS=str(tmp_path / "ckpts"),
             UPD_CACHE_DIR=str(tmp_path / "cache")):
        yield tmp_path, data


def test_run_trains_evaluates_stages_and_reports(world):
    tmp, data = world
    said: list[str] = []
    done = campaign.run(str(data), nice=0, say=said.append)
    assert [j.id for j in done] == ["spatial-ae-kermany-32", "spatial-ae-kermany-32-seed1"]
    assert any("needs cradl first" in s for s in said)
    shipped = tmp / "ckpts" / "spatial-ae-kermany-32"
    assert (shipped / "model.safetensors").exists() and (shipped / "evaluation.json").exists()
    assert not (shipped / "train_state").exists()
    record = json.loads((shipped / "evaluation.json").read_text())
    assert "ci95" in record["image"]
    assert record["checkpoint"] == "spatial-ae-kermany-32"  # its shipped id, not the runs/ path
    assert (shipped / "seeds" / "seed1.json").exists()  # other seeds: their evaluation only
    assert json.loads((shipped / "seeds" / "seed1.json").read_text())["checkpoint"] == "spatial-ae-kermany-32-seed1"
    assert not (tmp / "ckpts" / "spatial-ae-kermany-32-seed1").exists()
    assert "spatial-ae-kermany-32" in json.loads((tmp / "ckpts" / "manifest.json").read_text())["checkpoints"]
    rows = {r["checkpoint"]: r for r in campaign_status.status_rows(str(data))}
    assert rows["spatial-ae-kermany-32"]["state"] == "done" and rows["spatial-ae-kermany-32"]["epochs"] == 1
    assert rows["spatial-ae-kermany-32"]["converged"] == "not converged (epoch cap)"
    assert rows["morphaeus-kermany-32"]["state"] == "queued"
    table = campaign_status.format_status(list(rows.values()))
    assert table.splitlines()[0].startswith("| checkpoint | state | epochs")
    # a second run has nothing left to train (and does not retrain finished jobs)
    mtime = (shipped / "model.safetensors").stat().st_mtime
    campaign.run(str(data), nice=0, say=said.append)
    assert (shipped / "model.safetensors").stat().st_mtime == mtime


def test_interrupted_training_is_resumed(world, monkeypatch):
    tmp, data = world
    job = campaign.jobs(str(data), ["spatial-ae"], seeds=False)[0]
    (job.out / "train_state").mkdir(parents=True)
    (job.out / "train_state" / "state.json").write_text("{}")
    assert job.state() == "interrupted"
    assert "--resume" in campaign.train_command(job)


def test_unknown_recipe_is_a_clear_error(world):
    tmp, data = world
    with pytest.raises(UPDError, match="no recipe for nope"):
        campaign.jobs(str(data), ["nope"])


def test_fresh_machine_skips_shipped_results_and_retrain_overrides(world):
    """runs/ is machine-local: on a new machine the shipped campaign results count as done."""
    import shutil

    tmp, data = world
    campaign.run(str(data), nice=0, say=lambda s: None)
    shipped = tmp / "ckpts" / "spatial-ae-kermany-32"
    mtime = (shipped / "model.safetensors").stat().st_mtime
    shutil.rmtree(tmp / "runs")  # a fresh machine: only the clone's checkpoints/ remain
    said: list[str] = []
    assert campaign.run(str(data), nice=0, say=said.append) == []
    assert sum("already shipped" in s for s in said) == 2  # seed 0 and the seed-1 record
    assert (shipped / "model.safetensors").stat().st_mtime == mtime
    done = campaign.run(str(data), nice=0, seeds=False, retrain=["spatial-ae"], say=said.append)
    assert [j.id for j in done] == ["spatial-ae-kermany-32"]
    assert (shipped / "model.safetensors").stat().st_mtime != mtime


def test_dependency_falls_back_to_the_shipped_encoder_by_id(world):
    tmp, data = world
    job = campaign.jobs(str(data), ["morphaeus"], seeds=False)[0]
    assert campaign.dependency("cradl", job) is None
    cradl = tmp / "ckpts" / "cradl-kermany-32"  # a campaign-trained shipped encoder
    cradl.mkdir(parents=True)
    (cradl / "config.json").write_text(json.dumps({"training": {"n_calib": 3}}))
    (cradl / "evaluation.json").write_text("{}")
    assert campaign.dependency("cradl", job) == "cradl-kermany-32"
    assert "perceptual_encoder=cradl-kermany-32" in campaign.train_command(job)
    (job.root / "cradl-kermany-32").mkdir(parents=True)  # this machine's own run wins
    (job.root / "cradl-kermany-32" / "config.json").write_text("{}")
    assert campaign.dependency("cradl", job) == str(job.root / "cradl-kermany-32")


def test_staged_config_names_the_encoder_by_shipped_id(world):
    tmp, data = world
    job = campaign.jobs(str(data), ["morphaeus"], seeds=False)[0]
    config = tmp / "config.json"
    config.write_text(json.dumps({"config": {"perceptual_encoder": str(job.root / "cradl-kermany-32")}}))
    campaign._ship_dependencies(job, config)
    assert json.loads(config.read_text())["config"]["perceptual_encoder"] == "cradl-kermany-32"


def test_a_changed_recipe_makes_the_shipped_result_out_of_date(world, monkeypatch):
    tmp, data = world
    campaign.run(str(data), nice=0, seeds=False, say=lambda s: None)
    import shutil

    shutil.rmtree(tmp / "runs")
    job = campaign.jobs(str(data), ["spatial-ae"], seeds=False)[0]
    assert job.shipped()
    changed = Recipe("spatial-ae", sets=("latent_channels=64",), cap_epochs=1, seeds=(0, 1))
    monkeypatch.setattr(campaign, "RECIPES", (changed,))
    job = campaign.jobs(str(data), ["spatial-ae"], seeds=False)[0]
    cfg = json.loads((tmp / "ckpts" / "spatial-ae-kermany-32" / "config.json").read_text())["config"]
    assert campaign.recipe_changes(changed, cfg)  # the shipped model has another latent size
    assert not job.shipped()
    row = campaign_status.status_rows(str(data), ["spatial-ae"])[0]
    assert row["state"] == "shipped (recipe changed, to retrain)"
    assert campaign.recipe_changes(Recipe("spatial-ae"), cfg) == []


def test_retraining_the_encoder_makes_its_dependants_out_of_date(world, monkeypatch):
    tmp, data = world
    monkeypatch.setattr(campaign, "RECIPES", (Recipe("cradl", cap_epochs=1),
                                              Recipe("morphaeus", cap_epochs=1, needs=("cradl",))))
    job = campaign.jobs(str(data), ["morphaeus"], seeds=False)[0]
    for name, blob in (("cradl-kermany-32", b"weights v1"), ("morphaeus-kermany-32", b"m")):
        d = tmp / "ckpts" / name
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(blob)
        (d / "config.json").write_text(json.dumps({"config": {}, "training": {"n_calib": 3}}))
        (d / "evaluation.json").write_text("{}")
    config = tmp / "ckpts" / "morphaeus-kermany-32" / "config.json"
    campaign._ship_dependencies(job, config)  # records the encoder's sha256
    assert json.loads(config.read_text())["training"]["needs_sha256"]["cradl"]
    assert job.shipped()
    (tmp / "ckpts" / "cradl-kermany-32" / "model.safetensors").write_bytes(b"weights v2")  # retrained
    assert not job.shipped()
    assert campaign_status.status_rows(str(data), ["morphaeus"])[0]["state"] == "shipped (recipe changed, to retrain)"
