"""Dataset folders are confined: listed images must resolve inside the root (symlinks resolved) unless
``allow_outside_root=true``; images above the pixel limit are refused from their header; a metadata
file with a header and no rows is a clear error."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from spurmem.data import DataError, load_dataset
from spurmem.data.folder_fixtures import write_celeba_folder, write_metadata_csv, write_waterbirds_folder

COUNTS = {"train": [1, 1, 1, 1], "val": [1, 1, 1, 1], "test": [1, 1, 1, 1]}


@pytest.fixture
def outside(tmp_path):
    """A secret image outside every dataset root."""
    path = tmp_path / "secret" / "private.png"
    path.parent.mkdir()
    Image.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(path)
    return path


def _csv(tmp_path):
    return write_metadata_csv(tmp_path / "ds", COUNTS)


def _replace_path(csv, row: int, new: str) -> None:
    lines = csv.read_text().splitlines()
    fields = lines[row].split(",")
    fields[0] = new
    lines[row] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")


def _load(csv, tmp_path, **params):
    return load_dataset("metadata-csv", csv=str(csv), size=8, cache_dir=str(tmp_path / "cache"), progress=False,
                        **params)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink-file", "symlink-dir", "symlink-then-dotdot"])
def test_metadata_csv_paths_outside_the_root_are_refused(tmp_path, outside, how):
    csv = _csv(tmp_path)
    root = csv.parent
    if how == "dotdot":
        listed = os.path.relpath(outside, root)
    elif how == "absolute":
        listed = str(outside)
    elif how == "symlink-file":
        (root / "images" / "link.png").symlink_to(outside)
        listed = "images/link.png"
    elif how == "symlink-dir":
        (root / "images" / "linkdir").symlink_to(outside.parent, target_is_directory=True)
        listed = "images/linkdir/private.png"
    else:  # read lexically it stays inside (images/private.png); the OS follows the link first
        (outside.parent / "sub").mkdir()
        (root / "images" / "linkdir").symlink_to(outside.parent / "sub", target_is_directory=True)
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(root / "images" / "private.png")
        listed = "images/linkdir/../private.png"
    _replace_path(csv, 3, listed)
    with pytest.raises(DataError, match=r"metadata.csv line 4: image .* is outside the dataset root .*allow_outside_root"):
        _load(csv, tmp_path)
    ds = _load(csv, tmp_path, allow_outside_root=True)  # the explicit opt-in
    assert len(ds["train"]) + len(ds["val"]) + len(ds["test"]) == 12


def test_waterbirds_and_celeba_paths_are_confined(tmp_path, outside):
    wb = write_waterbirds_folder(tmp_path / "wb", COUNTS, width=16, height=16)
    lines = (wb / "metadata.csv").read_text().splitlines()
    header = lines[0].split(",")
    fields = lines[2].split(",")
    fields[header.index("img_filename")] = os.path.relpath(outside, wb)
    lines[2] = ",".join(fields)
    (wb / "metadata.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="outside the dataset root"):
        load_dataset("waterbirds", root=str(wb), size=8, cache_dir=str(tmp_path / "cache"), progress=False)

    celeba = write_celeba_folder(tmp_path / "celeba", COUNTS, form="csv")
    images = celeba / "img_align_celeba"
    victim = sorted(images.iterdir())[0]
    victim.unlink()
    victim.symlink_to(outside)
    with pytest.raises(DataError, match=f"{victim.name}.* is outside the dataset root"):
        load_dataset("celeba", root=str(celeba), size=8, cache_dir=str(tmp_path / "cache"), progress=False)


def test_image_above_the_pixel_limit_is_refused_from_its_header(tmp_path):
    csv = _csv(tmp_path)
    big = csv.parent / "images" / "big.png"
    Image.new("RGB", (300, 200)).save(big)  # 60,000 px, tiny on disk
    _replace_path(csv, 2, "images/big.png")
    with pytest.raises(DataError, match=r"big.png .*300 x 200 = 60000 pixels.*max_pixels=50000"):
        _load(csv, tmp_path, max_pixels=50_000)
    assert len(_load(csv, tmp_path, max_pixels=60_000)["train"]) == 4


def test_default_pixel_limit_is_below_pils():
    from PIL import Image as PILImage

    from spurmem.data.image_cache import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS <= 40_000_000 < PILImage.MAX_IMAGE_PIXELS


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    from spurmem.data.image_cache import decode_image

    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded before the size check"))
    with pytest.raises(DataError, match="100 x 100"):
        decode_image(path, 8, max_pixels=1000)


@pytest.mark.parametrize("text", ["path,y,a,split\n", "path,y,a,split\n\n\n"])
def test_header_only_metadata_csv_is_a_clear_error(tmp_path, text):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match=f"{csv}: no data rows"):
        _load(csv, tmp_path)


def test_header_only_celeba_lists_are_clear_errors(tmp_path):
    celeba = write_celeba_folder(tmp_path / "celeba", COUNTS, form="txt")
    attrs = celeba / "list_attr_celeba.txt"
    attrs.write_text("0\n" + attrs.read_text().splitlines()[1] + "\n")
    with pytest.raises(DataError, match="list_attr_celeba.txt: no data rows"):
        load_dataset("celeba", root=str(celeba), size=8, cache_dir=str(tmp_path / "cache"), progress=False)
