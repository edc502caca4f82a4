"""Gradio demo and HTTP API: upload an image, choose a checkpoint, get heatmap overlay, score, percentile.

    python gradio_app.py                 # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / --port to change)

Over HTTP (gradio_client):

    from gradio_client import Client, handle_file
    overlay, score, percentile, report = Client("http://127.0.0.1:7860/").predict(
        handle_file("chest.png"), "spatial-ae-kermany-128", api_name="/predict")

Security: listens on 127.0.0.1 unless told otherwise; serves no files outside Gradio's own temp
folder (no allowed_paths; results are returned as arrays, written by Gradio to its cache); upload
size is limited; checkpoints only from the configured checkpoint folder (upd_core.list_checkpoints).
"""
from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no network calls at start

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

import upd_core  # noqa: E402
from upd_core.app import analysis, cells, views  # noqa: E402
from upd_core.errors import CheckpointError, ImageError  # noqa: E402

MAX_FILE_SIZE = "50mb"
SIZE = 128


@functools.lru_cache(maxsize=32)
def _detector(checkpoint_id: str, root: str):
    return upd_core.load_detector(checkpoint_id)


def checkpoint_choices() -> list[tuple[str, str]]:
    """(label, id) of the available checkpoints, main methods first ('⚠ not converged' in the label
    where training stopped before the paper's rule ended it)."""
    return [(v.label, v.id) for v in views.checkpoint_views()]


def _read(file: Any) -> tuple[bytes, str]:
    """Bytes and name of an upload (a temp-file path from Gradio, or bytes)."""
    if file is None:
        raise gr.Error("Please upload an image.")
    if isinstance(file, (bytes, bytearray)):
        return bytes(file), "upload"
    path = Path(getattr(file, "name", file))
    return path.read_bytes(), path.name


def predict(file: Any, checkpoint: str) -> tuple[np.ndarray, float, float | None, dict[str, Any]]:
    """Heatmap overlay (H,W,3 uint8), score, percentile vs normal validation images, a small report."""
    known = {v.id: v for v in views.checkpoint_views()}
    if checkpoint not in known:
        raise gr.Error(f"Unknown checkpoint {checkpoint!r}; choose one of: {', '.join(sorted(known)) or 'none'}")
    data, name = _read(file)
    try:
        image = upd_core.load_image(data, size=SIZE)
    except ImageError as exc:
        raise gr.Error(str(exc)) from None
    try:
        det = _detector(checkpoint, str(upd_core.checkpoint.checkpoints_root()))
    except CheckpointError as exc:
        raise gr.Error(str(exc)) from None
    res = analysis.run_detector(det, image, checkpoint)
    if res.error:
        raise gr.Error(res.error)
    ood = analysis.ood_check([res], analysis.domain_probability(image))
    report = {**res.summary(), "input": name, "out_of_distribution": ood.level, "message": ood.message,
              "training": known[checkpoint].training or "not recorded",
              "note": "research / teaching software, not a medical device"}
    return cells.output_cell(image, res, "heatmap").image, res.score, res.percentile, report


def build() -> gr.Blocks:
    views.configure_threads()
    choices = checkpoint_choices()
    with gr.Blocks(title="UPD explorer — heatmap demo", analytics_enabled=False) as demo:
        gr.Markdown("## UPD explorer: unsupervised pathology detection heatmap\n"
                    "Upload a chest X-ray (PNG, JPEG, TIFF, BMP, DICOM or NIfTI) and choose a method trained on "
                    "normal chest X-rays. You get the heatmap overlay, the image score and its percentile among "
                    "the method's normal validation images. **Research software, not a medical device.**")
        with gr.Row():
            with gr.Column():
                file = gr.File(label="Image file", type="filepath", file_count="single")
                ckpt = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="Method (checkpoint)")
                btn = gr.Button("Compute heatmap", variant="primary")
            with gr.Column():
                heat = gr.Image(label="Heatmap overlay", type="numpy", format="png")
                score = gr.Number(label="Score (higher = more abnormal)")
                pct = gr.Number(label="Percentile among normal validation images")
                report = gr.JSON(label="Report")
        if not choices:
            gr.Markdown("**No checkpoints found.** Train one (see the README) or set UPD_CHECKPOINTS.")
        btn.click(predict, inputs=[file, ckpt], outputs=[heat, score, pct, report], api_name="predict")
        demo.load(lambda: gr.Dropdown(choices=checkpoint_choices()), outputs=ckpt, api_visibility="private")
    return demo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = p.parse_args(argv)
    build().queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, max_file_size=MAX_FILE_SIZE, allowed_paths=[],
        show_error=True, footer_links=["api"], quiet=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
