"""upd_core.imaging.load_slices and the `max_bytes` decoded-size cap (issue 12).

load_slices decodes a file once and returns every slice as load_image returns it, with
image_info's description; `max_bytes` refuses, from the header and before inflating or decoding,
what would decode to more than the caller's cap; a .nii.gz is inflated into memory it fills once.
"""
from __future__ import annotations

import gzip
import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from tests.app_fixtures import smooth_images
from upd_core import imaging
from upd_core.errors import ImageError


def nifti(depth: int = 9, side: int = 40, gz: bool = True, affine=None) -> bytes:
    nib = pytest.importorskip("nibabel")
    vol = (smooth_images(depth, side, seed=2) * 900 - 100).astype(np.int16).transpose(1, 2, 0)
    raw = nib.Nifti1Image(vol, np.diag([1.2, -1.0, 2.0, 1.0]) if affine is None else affine).to_bytes()
    return gzip.compress(raw) if gz else raw


def npy_stack(depth: int = 5) -> bytes:
    buf = io.BytesIO()
    np.save(buf, (smooth_images(depth, 24, seed=3) * 255).astype(np.uint8))
    return buf.getvalue()


def png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((smooth_images(1, max(h, w), seed=4)[0][:h, :w] * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg(h: int, w: int, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    im.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def dicom_multiframe() -> bytes | None:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtdose.dcm", download=False)  # 15 frames, shipped inside the pydicom wheel
    return open(path, "rb").read() if path else None


@pytest.mark.parametrize("make", [lambda: nifti(gz=True), lambda: nifti(gz=False), npy_stack, dicom_multiframe,
                                  lambda: png(50, 70)], ids=["nii.gz", "nii", "npy", "dicom", "png"])
def test_every_slice_equals_load_image(make):
    data = make()
    if data is None:
        pytest.skip("test file absent")
    stack, info = imaging.load_slices(data, 32)
    assert info == imaging.image_info(data)
    n = int(info.get("n_slices", 1) or 1)
    assert stack.shape == (n, 32, 32) and stack.dtype == np.float32
    for k in range(n):
        expected = imaging.load_image(data, 32, slice_index=k) if n > 1 else imaging.load_image(data, 32)
        assert np.array_equal(stack[k], expected), k
    window = (300.0, 400.0)
    stack_w, _ = imaging.load_slices(data, 32, window=window, indices=[0, n - 1])
    assert np.array_equal(stack_w[1], imaging.load_image(data, 32, slice_index=n - 1 if n > 1 else None,
                                                         window=window))


def test_indices_may_be_chosen_from_the_header():
    data = nifti(depth=9)
    seen = []

    def pick(n, default):
        seen.append((n, default))
        return [default, 0]

    stack, info = imaging.load_slices(data, 16, indices=pick)
    assert seen == [(9, 4)] and stack.shape == (2, 16, 16)
    assert np.array_equal(stack[1], imaging.load_image(data, 16, slice_index=0))
    with pytest.raises(ImageError, match="Slice 9 was requested"):
        imaging.load_slices(data, 16, indices=[9])
    with pytest.raises(ImageError, match="output size"):
        imaging.load_slices(data, None)


@pytest.mark.parametrize("orientation", [None, 6])
def test_a_drafted_jpeg_reports_its_full_plane_shape(orientation):
    data = jpeg(600, 900, orientation)
    stack, info = imaging.load_slices(data, 64)
    assert info["plane_shape"] == imaging.image_info(data)["plane_shape"]
    assert info["plane_shape"] == ((900, 600) if orientation == 6 else (600, 900))
    assert np.array_equal(stack[0], imaging.load_image(data, 64))


def test_max_bytes_refuses_before_decoding():
    data = png(300, 300)  # 300 x 300 x 4 bytes = 360 kB as float32
    for call in (lambda: imaging.load_image(data, 32, max_bytes=300_000),
                 lambda: imaging.image_info(data, max_bytes=300_000),
                 lambda: imaging.load_slices(data, 32, max_bytes=300_000)):
        with pytest.raises(ImageError, match="too large to open here"):
            call()
    assert imaging.load_image(data, 32, max_bytes=400_000).shape == (32, 32)
    vol = nifti(depth=20, side=64)  # 20 x 64 x 64 x 2 bytes + header = 164 kB inflated
    with pytest.raises(ImageError, match="NIfTI volume is too large to open here"):
        imaging.load_image(vol, 32, max_bytes=100_000)
    assert imaging.load_image(vol, 32, max_bytes=200_000).shape == (32, 32)
    for bad in (0, -5, 1.5, True, "10"):
        with pytest.raises(ImageError, match="decoded-size limit"):
            imaging.load_image(data, 32, max_bytes=bad)


def test_the_cap_is_per_call():
    data = png(300, 300)
    with pytest.raises(ImageError):
        imaging.load_image(data, 32, max_bytes=1000)
    assert imaging.load_image(data, 32).shape == (32, 32)  # no cap left behind


def test_a_lying_gzip_header_costs_no_memory():
    """A .nii.gz whose header promises 400 MB but holds a few bytes: refused as incomplete, and
    the inflation buffer (a memory map) costs nothing for the pages never written."""
    nib = pytest.importorskip("nibabel")
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 200))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    data = gzip.compress(hdr.binaryblock + b"\0" * 4 + b"\1" * 1000)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="incomplete"):
            imaging.load_image(data, 32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
