"""Bad input gives one clear DataError naming the file, line or example and what was expected."""

import re

import pytest

from spurmem.cli import main
from spurmem.data import DataError, load_dataset
from spurmem.data.folder_fixtures import CELEBA_ATTRS, write_celeba_folder, write_metadata_csv, write_waterbirds_folder

COUNTS = {"train": [2, 1, 1, 2], "val": [1, 1, 1, 1], "test": [1, 1, 1, 1]}


@pytest.fixture
def wb(tmp_path):
    return write_waterbirds_folder(tmp_path / "wb", COUNTS, width=24, height=20)


def _load_wb(root, tmp_path):
    return load_dataset("waterbirds", root=str(root), size=8, cache_dir=str(tmp_path / "cache"))


def _edit_line(path, line_no, fn):
    lines = path.read_text().splitlines()
    lines[line_no - 1] = fn(lines[line_no - 1])
    path.write_text("\n".join(lines) + "\n")


def _set_field(path, line_no, column, value):
    header = path.read_text().splitlines()[0].split(",")
    j = header.index(column)

    def edit(line):
        fields = line.split(",")
        fields[j] = value
        return ",".join(fields)

    _edit_line(path, line_no, edit)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError, match=r"waterbirds: folder not found: .*nowhere"):
        load_dataset("waterbirds", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"waterbirds: give the dataset folder as root=PATH"):
        load_dataset("waterbirds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"Waterbirds metadata.csv not found: .*empty/metadata.csv"):
        load_dataset("waterbirds", root=str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"celeba: image folder not found: .*img_align_celeba"):
        load_dataset("celeba", root=str(tmp_path / "empty"))
    (tmp_path / "empty" / "img_align_celeba").mkdir()
    with pytest.raises(DataError, match=r"neither list_attr_celeba.txt nor list_attr_celeba.csv"):
        load_dataset("celeba", root=str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"metadata CSV not found: .*none.csv"):
        load_dataset("metadata-csv", csv=str(tmp_path / "none.csv"))


def test_missing_image_file_names_file_and_line(wb, tmp_path):
    lines = (wb / "metadata.csv").read_text().splitlines()
    victim = lines[3].split(",")[1]
    (wb / victim).unlink()
    with pytest.raises(DataError, match=rf"1 image file\(s\) missing: .*{re.escape(victim)} \(metadata.csv line 4\)"):
        _load_wb(wb, tmp_path)


def test_missing_column_in_header(wb, tmp_path):
    _edit_line(wb / "metadata.csv", 1, lambda line: line.replace("place,", "location,"))
    with pytest.raises(DataError, match=r"missing column\(s\) \['place'\]"):
        _load_wb(wb, tmp_path)


def test_row_with_missing_field(wb, tmp_path):
    _edit_line(wb / "metadata.csv", 3, lambda line: line.rsplit(",", 1)[0])
    with pytest.raises(DataError, match=r"metadata.csv line 3: expected 6 fields, found 5"):
        _load_wb(wb, tmp_path)


def test_row_with_empty_field(wb, tmp_path):
    _set_field(wb / "metadata.csv", 5, "y", "")
    with pytest.raises(DataError, match=r"metadata.csv line 5: column 'y' is empty"):
        _load_wb(wb, tmp_path)


def test_non_integer_value(wb, tmp_path):
    _set_field(wb / "metadata.csv", 6, "place", "water")
    with pytest.raises(DataError, match=r"metadata.csv line 6: column 'place' should be an integer, got 'water'"):
        _load_wb(wb, tmp_path)


def test_label_out_of_range(wb, tmp_path):
    _set_field(wb / "metadata.csv", 4, "y", "2")
    with pytest.raises(DataError, match=r"metadata.csv line 4: column 'y' is 2, expected 0 \(landbird\) or 1"):
        _load_wb(wb, tmp_path)


def test_split_out_of_range(wb, tmp_path):
    _set_field(wb / "metadata.csv", 2, "split", "3")
    with pytest.raises(DataError, match=r"metadata.csv line 2: column 'split' is 3, expected 0, 1 or 2"):
        _load_wb(wb, tmp_path)


def test_undecodable_image_names_file(wb, tmp_path):
    victim = (wb / "metadata.csv").read_text().splitlines()[7].split(",")[1]
    (wb / victim).write_bytes(b"this is not a JPEG")
    with pytest.raises(DataError, match=rf"cannot decode image .*{re.escape(victim)} \(metadata.csv line 8\)"):
        _load_wb(wb, tmp_path)
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing half-written is left as a cache
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_empty_split(tmp_path):
    root = write_waterbirds_folder(tmp_path / "wb", {**COUNTS, "val": [0, 0, 0, 0]}, width=24, height=20)
    with pytest.raises(DataError, match=r"metadata.csv: split 'val' is empty"):
        _load_wb(root, tmp_path)


def test_group_absent_from_train(tmp_path):
    root = write_waterbirds_folder(tmp_path / "wb", {**COUNTS, "train": [2, 0, 1, 2]}, width=24, height=20)
    with pytest.raises(DataError, match=r"group\(s\) g1 \(landbird/water\) have no training examples"):
        _load_wb(root, tmp_path)


def test_celeba_bad_lists(tmp_path):
    root = write_celeba_folder(tmp_path / "c", COUNTS, form="txt")
    kw = dict(root=str(root), size=8, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"target attribute 'Blond_hair' is not in .*did you mean 'Blond_Hair'"):
        load_dataset("celeba", **{**kw, "target": "Blond_hair"})
    attr = root / "list_attr_celeba.txt"
    original = attr.read_text()
    male = 1 + CELEBA_ATTRS.index("Male")
    _edit_line(attr, 4, lambda line: " ".join("0" if j == male else f for j, f in enumerate(line.split())))
    with pytest.raises(DataError, match=r"list_attr_celeba.txt line 4: column 'Male' is 0, expected -1 or 1"):
        load_dataset("celeba", **kw)
    attr.write_text(original)
    _edit_line(attr, 1, lambda line: "99")
    with pytest.raises(DataError, match=r"line 1 declares 99 rows, the file has 14"):
        load_dataset("celeba", **kw)
    attr.write_text(original)
    part = root / "list_eval_partition.txt"
    partitions = part.read_text()
    _edit_line(part, 2, lambda line: line.split()[0] + " 7")
    with pytest.raises(DataError, match=r"list_eval_partition.txt line 2: column 'partition' is 7, expected 0, 1 or 2"):
        load_dataset("celeba", **kw)
    part.write_text("".join(partitions.splitlines(keepends=True)[1:]))  # drop the first image
    with pytest.raises(DataError, match=r"list_attr_celeba.txt line 3: image '000001.jpg' has no partition"):
        load_dataset("celeba", **kw)


def test_metadata_csv_bad_values(tmp_path):
    csv = write_metadata_csv(tmp_path / "m", COUNTS)
    kw = dict(csv=str(csv), size=8, cache_dir=str(tmp_path / "cache"))
    _set_field(csv, 3, "split", "training")
    with pytest.raises(DataError, match=r"metadata.csv line 3: column 'split' is 'training', expected train, val"):
        load_dataset("metadata-csv", **kw)
    _set_field(csv, 3, "split", "train")
    _set_field(csv, 4, "a", "-1")
    with pytest.raises(DataError, match=r"metadata.csv line 4: column 'a' is -1, expected an integer >= 0"):
        load_dataset("metadata-csv", **kw)
    _set_field(csv, 4, "a", "2")
    with pytest.raises(DataError, match=r"metadata.csv line 4: column 'a' is 2, expected 0..1 \(one of \['land', 'water'\]\)"):
        load_dataset("metadata-csv", **kw, attr_names="land,water")
    with pytest.raises(DataError, match=r"attr_names must list at least two"):
        load_dataset("metadata-csv", **kw, attr_names="land")


def test_unknown_dataset_and_parameter():
    with pytest.raises(DataError, match=r"unknown dataset 'waterbird' \(did you mean 'waterbirds'\?\)"):
        load_dataset("waterbird")
    with pytest.raises(DataError, match=r"has no parameter 'sise' \(did you mean 'size'\?\)"):
        load_dataset("synthetic-shapes", sise=8)


def test_cli_reports_data_errors(tmp_path, capsys):
    assert main(["data", "summary", "waterbirds", f"root={tmp_path / 'nowhere'}"]) == 2
    assert "folder not found" in capsys.readouterr().err


def test_image_listed_twice(wb, tmp_path):
    lines = (wb / "metadata.csv").read_text().splitlines()
    first = lines[2].split(",")[1]
    _set_field(wb / "metadata.csv", 6, "img_filename", first)
    with pytest.raises(DataError, match=rf"metadata.csv line 6: image '{re.escape(first)}' is already listed at metadata.csv line 3"):
        _load_wb(wb, tmp_path)


def test_relative_and_absolute_roots_share_one_cache(wb, tmp_path, monkeypatch):
    monkeypatch.chdir(wb.parent)
    load_dataset("waterbirds", root=wb.name, size=8, cache_dir=str(tmp_path / "cache"))
    again = _load_wb(wb, tmp_path)
    assert "(reused)" in again.source


def test_bad_size_and_resize(wb, tmp_path):
    with pytest.raises(DataError, match=r"size must be a positive whole number of pixels, got 0"):
        load_dataset("waterbirds", root=str(wb), size=0, cache_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"resize must be one of center-crop, stretch, stretch-center-crop, resize-center-crop; got 'crop'"):
        load_dataset("waterbirds", root=str(wb), size=8, resize="crop", cache_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"normalize must be one of imagenet, train; got 'none'"):
        load_dataset("waterbirds", root=str(wb), size=8, normalize="none", cache_dir=str(tmp_path))
