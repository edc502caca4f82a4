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
    assert "registered methods;" in out and "scorings counting each <checkpoint>@<variant>" in out


def test_list_shows_every_scoring_as_an_at_variant(tmp_path, capsys):
    import json

    from tests.app_fixtures import env
    from upd_core.checkpoint import update_global_manifest

    root = tmp_path / "ckpts"
    out = root / "vae-tiny"
    x = smooth_images(8, 32)
    fit(get_method("vae")(image_size=32), x[:6], x[6:], out, tc=TrainConfig(max_epochs=1, batch_size=4, progress=False))
    (out / "evaluation.json").write_text(json.dumps({"image": {"auroc": 0.6, "ap": 0.7}, "variant": "rec",
                                                     "variants": {"kl-grad": {"image": {"auroc": 0.8, "ap": 0.9}}}}))
    update_global_manifest(root)
    with env(UPD_CHECKPOINTS=str(root)):
        assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "vae-tiny@rec" in text and "(default scoring)" in text.split("vae-tiny@rec", 1)[1].splitlines()[0]
    assert "vae-tiny@kl-grad" in text and "AUROC 0.800" in text.split("vae-tiny@kl-grad", 1)[1].splitlines()[0]
    assert "1 checkpoints of 1 of them, 2 scorings" in text


def test_predict_writes_heatmap_and_prints_percentile(ckpt, tmp_path, capsys):
    img = tmp_path / "chest.png"
    Image.fromarray((smooth_images(1, 64)[0] * 255).astype(np.uint8)).save(img)
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "score" in out and "percentile" in out
    heat = tmp_path / "chest_spatial-ae_heatmap.png"
    assert heat.exists() and Image.open(heat).size == (32, 32)


def test_predict_warns_out_of_distribution_as_the_app_does(ckpt, tmp_path, capsys, monkeypatch):
    import json

    from upd_core.app import analysis

    img = tmp_path / "photo.png"
    Image.fromarray((smooth_images(1, 64)[0] * 255).astype(np.uint8)).save(img)
    monkeypatch.setattr(analysis, "domain_probability", lambda image: 0.01)  # the domain classifier: not a chest X-ray
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--json"]) == 0
    cap = capsys.readouterr()
    report = json.loads(cap.out[cap.out.index("["):])[0]
    ood = report["out_of_distribution"]
    assert ood["level"] == "far" and ood["domain_probability_chest_xray"] == 0.01
    assert ood["message"].startswith("This image does not look like one of the chest X-rays")
    assert "Out of distribution." in cap.err and ood["message"] in cap.err
    assert "|x − x̂|" in report["score_unit"]
    monkeypatch.setattr(analysis, "domain_probability", lambda image: 0.99)
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--out", str(tmp_path), "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out[cap.out.index("["):])[0]["out_of_distribution"]["level"] in ("ok", "unusual")


def test_predict_bad_file_is_a_message_not_a_traceback(ckpt, tmp_path, capsys):
    bad = tmp_path / "report.png"
    bad.write_text("<html><body>not an image</body></html>")
    assert main(["predict", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_unknown_checkpoint_is_clear(capsys):
    assert main(["predict", "x.png", "--checkpoint", "no-such-checkpoint"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


def test_every_command_the_readme_shows_exists():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = set(re.findall(r"python -m upd_core (\w+)", readme))
    assert shown and shown <= set(_commands()), shown - set(_commands())


@pytest.mark.parametrize("cmd", _commands())
def test_help_for_every_command(cmd):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([cmd, "--help"])
    assert e.value.code == 0


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "upd_core", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "train" in r.stdout


@pytest.mark.parametrize("kind", ["UPDError", "OSError", "PermissionError"])
def test_every_error_is_one_line_and_exit_2_unless_debug(monkeypatch, capsys, kind):
    import upd_core.cli as cli_module
    from upd_core.errors import UPDError

    exc = {"UPDError": UPDError("the first line\n  and the second"), "OSError": OSError(28, "No space left on device"),
           "PermissionError": PermissionError(13, "Permission denied")}[kind]

    def fails(args):
        raise exc

    monkeypatch.setattr(cli_module, "cmd_list", fails)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(type(exc)):
        main(["--debug", "list"])
    with pytest.raises(type(exc)):
        main(["list", "--debug"])
