"""`python -m upd_core evaluate`: never rewrites a shipped checkpoint unless told to; clear errors."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.app_fixtures import env, make_checkpoints, make_dataset
from upd_core import cli
from upd_core.checkpoint import EVALUATION, sha256_file


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("ev")
    ckpts = make_checkpoints(base / "checkpoints", ("spatial-ae",))
    data = make_dataset(base / "data", n=8)
    return base, ckpts, data


def _files(folder):
    return {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}


def test_shipped_checkpoint_is_not_rewritten_by_default(setup, tmp_path, monkeypatch, capsys):
    base, ckpts, data = setup
    cid = json.loads((ckpts / "manifest.json").read_text())["checkpoints"]
    cid = next(iter(cid))
    before = _files(ckpts / cid)
    monkeypatch.setattr("upd_core.paths.REPO_ROOT", tmp_path)
    with env(UPD_CHECKPOINTS=str(ckpts), UPD_CACHE_DIR=str(tmp_path / "cache")):
        assert cli.main(["evaluate", "--checkpoint", cid, "--data", str(data), "--quiet",
                         "--synthetic-lesions", "4"]) == 0
        assert _files(ckpts / cid) == before  # shipped files untouched
        written = list((tmp_path / "runs" / "evaluations").glob(f"{cid}-*/{EVALUATION}"))
        assert len(written) == 1
        res = json.loads(written[0].read_text())
        assert "ci95" in res["image"] and res["pixel"]["pixel_ap"] >= 0
        out = capsys.readouterr()
        assert "AUROC" in out.out and "floor" in out.out and "Evaluating" in out.err
        # --update-shipped writes into the checkpoint and refreshes card + manifests
        assert cli.main(["evaluate", "--checkpoint", cid, "--data", str(data), "--quiet",
                         "--synthetic-lesions", "0", "--update-shipped"]) == 0
        after = _files(ckpts / cid)
        assert after[EVALUATION] != before.get(EVALUATION) and after["model.safetensors"] == before["model.safetensors"]


def test_limit_is_stratified_and_one_class_is_a_clear_error(setup, tmp_path, capsys):
    base, ckpts, data = setup
    cid = next(iter(json.loads((ckpts / "manifest.json").read_text())["checkpoints"]))
    folder = tmp_path / "own"
    shutil.copytree(ckpts / cid, folder)
    with env(UPD_CACHE_DIR=str(tmp_path / "cache")):
        # 16 test images (8 normal, 8 abnormal): the first 4 are all normal, a stratified 4 has both
        assert cli.main(["evaluate", "--checkpoint", str(folder), "--data", str(data), "--limit", "4",
                         "--quiet", "--synthetic-lesions", "0"]) == 0
        res = json.loads((folder / EVALUATION).read_text())  # the user's own folder: written beside it
        assert res["n_normal"] == 2 and res["n_abnormal"] == 2
        capsys.readouterr()
        assert cli.main(["evaluate", "--checkpoint", str(folder), "--data", str(data), "--split", "val",
                         "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "only normal images" in err and "Traceback" not in err
