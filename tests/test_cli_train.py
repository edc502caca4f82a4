"""`python -m upd_core train`: bit-identical weights under --seed, and a refusing --resume.

No seeding inside the tests: the CLI must seed before it builds the model.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from upd_core import cli
from tests.app_fixtures import env, make_dataset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), n=8)


def _args(folder, out, seed: int, *extra: str) -> list[str]:
    return ["train", "--method", "spatial-ae", "--data", str(folder), "--size", "32",
            "--epochs", "2", "--seed", str(seed), "--out", str(out), "--quiet", *extra]


def _train(folder, out, seed: int, *extra: str) -> int:
    return cli.main(_args(folder, out, seed, *extra))


def _command(folder, out, seed: int, cache) -> None:
    """The command a user types, in its own process (no seeding by the test)."""
    env_vars = {**os.environ, "UPD_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-m", "upd_core", *_args(folder, out, seed)], check=True,
                   capture_output=True, env=env_vars, cwd=REPO)


def _sha(path) -> str:
    """Digest of every tensor's name, dtype, shape and bytes (the file header's metadata order is
    not fixed by safetensors, so the file bytes themselves may differ between identical runs)."""
    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path / "model.safetensors")).items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_same_seed_gives_bit_identical_weights(folder, tmp_path):
    _command(folder, tmp_path / "a", 3, tmp_path / "cache")  # decodes the data set
    _command(folder, tmp_path / "b", 3, tmp_path / "cache")  # reads the decoded cache
    _command(folder, tmp_path / "c", 4, tmp_path / "cache")
    assert _sha(tmp_path / "a") == _sha(tmp_path / "b")
    assert _sha(tmp_path / "a") != _sha(tmp_path / "c")


def test_resume_refuses_finished_or_missing_runs(folder, tmp_path, capsys):
    with env(UPD_CACHE_DIR=str(tmp_path / "cache")):
        assert _train(folder, tmp_path / "done", 0) == 0
        assert _train(folder, tmp_path / "done", 0, "--resume") == 2
        assert "finished checkpoint" in capsys.readouterr().err
        assert _train(folder, tmp_path / "typo", 0, "--resume") == 2
        assert "no training state" in capsys.readouterr().err


def test_resume_refuses_a_run_with_other_settings(folder, tmp_path, capsys, monkeypatch):
    from upd_core import training

    out = tmp_path / "r"
    real_fit = training.fit

    def stop_after_first_epoch(*a, **k):  # leave a training state behind, as a kill would
        k["tc"].time_budget_min = 0.0
        real_fit(*a, **k)
        raise KeyboardInterrupt

    with env(UPD_CACHE_DIR=str(tmp_path / "cache")):
        monkeypatch.setattr("shutil.rmtree", lambda *a, **k: None)  # keep train_state after the stop
        monkeypatch.setattr(training, "fit", stop_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            _train(folder, out, 0)
        monkeypatch.undo()
        assert (out / "train_state" / "state.json").exists()
        assert _train(folder, out, 1, "--resume") == 2  # another seed
        assert "differs in seed" in capsys.readouterr().err
        assert _train(folder, out, 0, "--resume", "--set", "lr=0.001") == 2
        assert "config.lr" in capsys.readouterr().err
        assert _train(folder, out, 0, "--resume") == 0
