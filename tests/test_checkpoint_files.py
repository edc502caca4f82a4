"""Atomic writes under faults: fsync order, full disk, all-or-nothing groups, stray temporary files,
the writability check made before training."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from upd_core import checkpoint_files as cf
from upd_core.errors import CheckpointError, StorageError, UPDError


def _full_disk_after(n_ok: int, monkeypatch) -> None:
    """Let `n_ok` staged writes succeed, then fail the next ones half-way with ENOSPC."""
    real, calls = cf._write_file, {"n": 0}

    def write(tmp: str, payload: bytes) -> None:
        calls["n"] += 1
        if calls["n"] <= n_ok:
            return real(tmp, payload)
        Path(tmp).write_bytes(payload[:len(payload) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cf, "_write_file", write)


def test_the_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    cf.write_atomic(tmp_path / "a.json", "{}")
    assert events == [("fsync", "file"), ("replace", "a.json"), ("fsync", "folder")]
    assert (tmp_path / "a.json").read_text() == "{}"


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")
    _full_disk_after(0, monkeypatch)
    with pytest.raises(StorageError) as e:
        cf.write_atomic(target, b"new" * 1000)
    assert isinstance(e.value, OSError) and isinstance(e.value, UPDError)
    assert "No space left on device" in str(e.value) and "\n" not in str(e.value)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_group_of_files_is_written_all_or_not_at_all(tmp_path, monkeypatch):
    names = ("model.safetensors", "config.json", "manifest.json")
    for n in names:
        (tmp_path / n).write_text("old")
    _full_disk_after(2, monkeypatch)  # the third (the manifest) does not fit
    with pytest.raises(StorageError):
        cf.write_files_atomic({tmp_path / n: "new" for n in names})
    assert [(tmp_path / n).read_text() for n in names] == ["old"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_only_the_writers_temporary_files_are_removed(tmp_path):
    ours = ["model.safetensors.k3x_9az2.tmp", "state.json.abcdefgh.tmp", ".write-check.0a1b2c3d.tmp"]
    others = ["notes.tmp", "results.tmp.csv", "model.safetensors", "scan.ABCDEFGH.tmp"]
    for n in ours + others:
        (tmp_path / n).write_text("x")
    (tmp_path / "folder.abcdefgh.tmp").mkdir()  # not a file: left alone
    removed = cf.remove_stray_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others + ["folder.abcdefgh.tmp"])
    assert cf.remove_stray_temps(tmp_path / "absent") == []


def test_writability_is_checked_up_front(tmp_path, monkeypatch):
    ok = tmp_path / "a" / "b"
    cf.ensure_writable(ok)
    assert ok.is_dir() and list(ok.iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        cf.ensure_writable(tmp_path / "file" / "out")
    with pytest.raises(StorageError, match="not enough space"):
        cf.ensure_writable(ok, need_bytes=1 << 62)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cf.tempfile, "mkstemp", read_only)  # as root, chmod cannot make a folder read-only
    with pytest.raises(StorageError, match="Read-only file system"):
        cf.ensure_writable(ok)


def test_a_config_that_is_not_an_object_is_a_checkpoint_error(tmp_path):
    (tmp_path / cf.CONFIG).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        cf.read_config(tmp_path)
    (tmp_path / cf.EVALUATION).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        cf.read_evaluation(tmp_path)
