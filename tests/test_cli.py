"""CLI: list, predict (heatmap + score + percentile), clear errors, --help everywhere."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.methods.test_contract import smooth_images
from upd_core.cli import build_parser, main
from upd_core.registry import get_method
from upd_core.training import TrainConfig, fit


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "tiny-ae"
    x = smooth_images(12)
    fit(get_method("spatial-ae")(image_size=32), x[:8], x[8:], out,
        tc=TrainConfig(max_epochs=1, batch_size=4, progress=False))
    return out


def test_list_shows_methods(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for m in ("spatial-ae", "dense-ae", "vae"):
        assert m in out


def test_predict_writes_heatmap_and_prints_percentile(ckpt, tmp_path, capsys):
    img = tmp_path / "chest.png"
    Image.fromarray((smooth_images(1, 64)[0] * 255).astype(np.uint8)).save(img)
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "score" in out and "percentile" in out
    heat = tmp_path / "chest_spatial-ae_heatmap.png"
    assert heat.exists() and Image.open(heat).size == (32, 32)


def test_predict_bad_file_is_a_message_not_a_traceback(ckpt, tmp_path, capsys):
    bad = tmp_path / "report.png"
    bad.write_text("<html><body>not an image</body></html>")
    assert main(["predict", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_unknown_checkpoint_is_clear(capsys):
    assert main(["predict", "x.png", "--checkpoint", "no-such-checkpoint"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["list", "train", "evaluate", "predict", "benchmark"])
def test_help_for_every_command(cmd):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([cmd, "--help"])
    assert e.value.code == 0


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "upd_core", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "train" in r.stdout
