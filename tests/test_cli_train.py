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


# ---- refusals, fail-fast checks and faults (issue 12) ----

def _one_line_error(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _weights(out) -> bytes:
    return (out / "model.safetensors").read_bytes()


def _interrupt_in_epoch_2(folder, out, monkeypatch) -> None:
    """Leave the training state of epoch 1 in `out`, as a kill in epoch 2 would."""
    from upd_core.registry import get_method

    cls = get_method("spatial-ae")
    real = cls.training_step

    def dies_in_epoch_2(self, x, epoch, *a, **k):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, x, epoch, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(cls, "training_step", dies_in_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            _train(folder, out, 0)
    assert (out / "train_state" / "state.json").exists() and not (out / "config.json").exists()


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if the data set is decoded (a refusal must come before that)."""
    import upd_core.data

    monkeypatch.setattr(upd_core.data, "load_split", lambda *a, **k: pytest.fail("decoded the data first"))


def test_train_does_not_replace_finished_or_interrupted_work_without_force(folder, tmp_path, capsys, monkeypatch):
    done, part = tmp_path / "done", tmp_path / "part"
    with env(UPD_CACHE_DIR=str(tmp_path / "cache")):
        assert _train(folder, done, 0) == 0
        before, digest = _weights(done), _sha(done)
        assert _train(folder, done, 1) == 2
        assert "--force" in _one_line_error(capsys.readouterr().err) and _weights(done) == before
        assert _train(folder, done, 1, "--force") == 0  # retrains over the finished checkpoint
        assert _sha(done) != digest
        assert _train(folder, done, 0, "--resume", "--force") == 0  # nothing to resume: from scratch
        assert _sha(done) == digest  # seed 0 again: the same weights as the first run
        _interrupt_in_epoch_2(folder, part, monkeypatch)
        capsys.readouterr()
        assert _train(folder, part, 0) == 2
        assert "--resume" in _one_line_error(capsys.readouterr().err)
        assert _train(folder, part, 1, "--force") == 0  # starts afresh
        assert not (part / "train_state").exists()


@pytest.mark.parametrize("fault", ["unknown method", "bad --set", "--out under a file", "read-only --out"])
def test_errors_before_training_are_one_line_exit_2_before_decoding(folder, tmp_path, capsys, monkeypatch,
                                                                     no_decoding, fault):
    import errno
    import os

    from upd_core import checkpoint_files

    out, extra = tmp_path / "out", []
    args = _args(folder, out, 0)
    if fault == "unknown method":
        args[args.index("spatial-ae")] = "spatial-autoencoder"
        expected = "unknown method 'spatial-autoencoder'"
    elif fault == "bad --set":
        extra, expected = ["--set", "lr=fast"], "not a valid value for lr"
    elif fault == "--out under a file":
        (tmp_path / "notes").write_text("x")
        args[args.index(str(out))] = str(tmp_path / "notes" / "out")
        expected = "is a file, not a folder"
    else:
        def read_only(*a, **k):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(checkpoint_files.tempfile, "mkstemp", read_only)  # chmod does not stop root
        expected = "Read-only file system"
    assert cli.main(args + extra) == 2
    assert expected in _one_line_error(capsys.readouterr().err)


def test_resume_refusals_come_before_decoding(folder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    with env(UPD_CACHE_DIR=str(tmp_path / "cache")):
        _interrupt_in_epoch_2(folder, out, monkeypatch)
    capsys.readouterr()
    import upd_core.data

    monkeypatch.setattr(upd_core.data, "load_split", lambda *a, **k: pytest.fail("decoded the data first"))
    args = _args(folder, out, 0, "--resume")
    assert cli.main([*args, "--size", "64"]) == 2  # the last --size wins: another image size
    assert "differs in image_size" in _one_line_error(capsys.readouterr().err)
    assert cli.main([*args, "--set", "lr=0.01"]) == 2
    assert "config.lr" in _one_line_error(capsys.readouterr().err)
    (out / "train_state" / "state.json").write_text('{"record": {"epochs": 1')  # torn by hand
    assert cli.main(args) == 2
    assert "unusable" in _one_line_error(capsys.readouterr().err)


def test_debug_shows_the_traceback(folder, tmp_path, capsys):
    from upd_core.errors import UPDError

    args = _args(folder, tmp_path / "o", 0)
    args[args.index("spatial-ae")] = "nope"
    assert cli.main(args) == 2
    for argv in (["--debug", *args], [*args, "--debug"]):
        with pytest.raises(UPDError, match="unknown method"):
            cli.main(argv)


def test_a_full_disk_at_the_final_save_keeps_the_finished_checkpoint(folder, tmp_path, capsys, monkeypatch):
    import errno
    import os

    from upd_core import checkpoint_files
    from upd_core.checkpoint import load_detector

    out = tmp_path / "done"
    with env(UPD_CACHE_DIR=str(tmp_path / "cache")):
        assert _train(folder, out, 0) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        real = checkpoint_files._write_file

        def disk_full_outside_the_state(tmp, payload):
            if "train_state" not in tmp:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(tmp, payload)

        with monkeypatch.context() as m:
            m.setattr(checkpoint_files, "_write_file", disk_full_outside_the_state)
            assert _train(folder, out, 1, "--force") == 2
        assert "No space left on device" in _one_line_error(capsys.readouterr().err)
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
        assert load_detector(out).predict(torch.zeros(1, 32, 32).numpy()).score.shape == (1,)
        assert _train(folder, out, 1, "--resume") == 0  # the new run's state survived: finish it
        assert _weights(out) != before["model.safetensors"]
