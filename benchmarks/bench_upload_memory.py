"""Peak memory of one upload in the apps, for the worst files the apps' size cap allows.

    .venv/bin/python benchmarks/bench_upload_memory.py             # the app cases, JSON to benchmarks/results/
    .venv/bin/python benchmarks/bench_upload_memory.py --with-cli  # also the CLI limit, for comparison

Each case writes a small generated file that decodes to (just under) the cap,
`upd_core.app.uploads.app_max_decoded_bytes()` (128 MB unless UPD_APP_MAX_DECODED_MB says
otherwise), and decodes it in a fresh process exactly as the apps do:

* nifti-gz / upload-page: a .nii.gz of a few hundred kB whose int16 volume inflates to the cap,
  through `uploads.decode_upload` (what the Upload page keeps: every slice at 128 x 128);
* nifti-gz / gradio: the same file through `uploads.load_upload` (the default slice);
* png-grey and png-rgba / upload-page: the largest 2D plane the cap allows (cap / 4 pixels).

Printed per case: file size, decoded size (the bytes the cap counts), the peak of the process'
resident memory above its level before the decode (VmHWM, reset before the decode; after a warm-up
decode of a small file of the same kind, so imports do not count), the tracemalloc peak (Python and NumPy
allocations; Pillow's buffers and the memory map a .nii.gz is inflated into are not traced) and
their ratio to the decoded size.
With --with-cli: the same NIfTI at the command-line limit (512 MB) through `imaging.load_image`.
Generated data only; nothing from ../shared/data.
"""
from __future__ import annotations

import argparse
import gzip
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {repo!r})
from upd_core import imaging
from upd_core.app import uploads
data = open({path!r}, "rb").read()
how = {how!r}
warm = open({warm!r}, "rb").read()  # a small file of the same kind: imports and first-use costs
uploads.decode_upload(warm, 128)
imaging.load_image(warm, 128)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
def high_water():  # this process' peak resident memory (VmHWM; ru_maxrss may hold the parent's)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
try:  # reset the peak to the current resident size (Linux >= 4.0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = rss()
tracemalloc.start()
t0 = time.perf_counter()
if how == "upload-page":
    dec = uploads.decode_upload(data, 128)
    kept = sum(a.nbytes for a in dec.slices.values())
elif how == "gradio":
    kept = uploads.load_upload(data, 128).nbytes
else:
    kept = imaging.load_image(data, 128).nbytes
seconds = time.perf_counter() - t0
traced = tracemalloc.get_traced_memory()[1]
peak = high_water() - before
print(json.dumps({{"seconds": seconds, "traced_peak": traced, "rss_peak": peak, "kept": kept}}))
"""


def nifti_gz(path: Path, cap: int) -> int:
    """A .nii.gz whose int16 volume (with its 352-byte header) inflates to at most `cap` bytes:
    zeros with a few bright blocks, so it compresses to a few hundred kB. Returns the decoded size."""
    import nibabel as nib
    import numpy as np

    side = 512
    depth = (cap - 352) // (side * side * 2)
    vol = np.zeros((side, side, depth), dtype=np.int16)
    for z in range(0, depth, 16):
        vol[64 + z % 256:128 + z % 256, 200:300, z] = 1000
    raw = nib.Nifti1Image(vol, np.eye(4)).to_bytes()
    path.write_bytes(gzip.compress(raw, compresslevel=9))
    return 352 + vol.nbytes


def png(path: Path, cap: int, mode: str) -> int:
    """The largest square PNG whose plane (as float32) fits the cap: mostly black, one square."""
    import numpy as np
    from PIL import Image

    side = int((cap // 4) ** 0.5)
    grey = np.zeros((side, side), dtype=np.uint8)
    grey[side // 4: side // 2, side // 4: side // 2] = 200
    im = Image.fromarray(grey)
    if mode == "RGBA":
        im = im.convert("RGBA")
    im.save(path, format="PNG", compress_level=9)
    return side * side * 4


def measure(path: Path, how: str, warm: Path) -> dict:
    code = CHILD.format(repo=str(REPO), path=str(path), how=how, warm=str(warm))
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--with-cli", action="store_true", help="also decode a NIfTI at the CLI limit (512 MB)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "upload_memory.json")
    args = p.parse_args(argv)

    from upd_core import imaging
    from upd_core.app import uploads

    cap = uploads.app_max_decoded_bytes()
    work = Path(__import__("tempfile").mkdtemp(prefix="upd-bench-upload-"))
    cases = [("nifti-gz", "upload-page", lambda f: nifti_gz(f, cap), "scan.nii.gz"),
             ("nifti-gz", "gradio", None, "scan.nii.gz"),
             ("png-grey", "upload-page", lambda f: png(f, cap, "L"), "grey.png"),
             ("png-rgba", "upload-page", lambda f: png(f, cap, "RGBA"), "rgba.png")]
    if args.with_cli:
        cases.append(("nifti-gz-cli-limit", "cli", lambda f: nifti_gz(f, imaging.MAX_DECOMPRESSED_BYTES),
                      "cli.nii.gz"))
    rows, sizes = [], {}
    print(f"apps' decoded-size cap: {cap / 2**20:.0f} MB (CLI: {imaging.MAX_DECOMPRESSED_BYTES / 2**20:.0f} MB)")
    print(f"{'case':<20} {'decoded as':<12} {'file':>9} {'decoded':>9} {'RSS peak':>9} {'ratio':>6} "
          f"{'traced':>9} {'ratio':>6} {'s':>6}")
    for name, how, make, fname in cases:
        f = work / fname
        warm = work / ("warm-" + fname)
        if make is not None:
            sizes[fname] = make(f)
            make_small = {"scan.nii.gz": nifti_gz, "cli.nii.gz": nifti_gz}.get(fname)
            if make_small is not None:
                make_small(warm, 4 * 2**20)
            else:
                png(warm, 4 * 2**20, "RGBA" if "rgba" in fname else "L")
        decoded = sizes[fname]
        t0 = time.perf_counter()
        m = measure(f, how, warm)
        row = {"case": name, "decoded_as": how, "file_bytes": f.stat().st_size, "decoded_bytes": decoded,
               "rss_peak_bytes": m["rss_peak"], "rss_ratio": m["rss_peak"] / decoded,
               "traced_peak_bytes": m["traced_peak"], "traced_ratio": m["traced_peak"] / decoded,
               "kept_bytes": m["kept"], "decode_s": m["seconds"], "wall_s": time.perf_counter() - t0}
        rows.append(row)
        print(f"{name:<20} {how:<12} {row['file_bytes'] / 2**10:>7.0f}kB {decoded / 2**20:>7.0f}MB "
              f"{m['rss_peak'] / 2**20:>7.0f}MB {row['rss_ratio']:>6.2f} {m['traced_peak'] / 2**20:>7.0f}MB "
              f"{row['traced_ratio']:>6.2f} {m['seconds']:>6.2f}")
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cap_bytes": cap, "machine": platform.platform(), "rows": rows}, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
