"""The metadata table reader: the fast (pandas) path and the exact line-by-line path agree."""

import pytest

from spurmem.data import DataError
from spurmem.data import tables
from spurmem.data.tables import read_csv, read_whitespace


def _both(monkeypatch, read):
    fast = read()
    with monkeypatch.context() as m:
        m.setattr(tables, "_fast", lambda *a, **k: None)
        exact = read()
    return fast, exact


def _same(a, b):
    assert a.columns == b.columns and a.lines == b.lines
    for c in a.columns:
        assert a.strings(c) == b.strings(c)


def test_csv_fast_and_exact_paths_agree(tmp_path, monkeypatch):
    path = tmp_path / "m.csv"
    path.write_text('path,y,a,split\n"x, y.png",1,0,train\nb.jpg, 0 ,1,val\nc.jpg,1,1,test\n')
    fast, exact = _both(monkeypatch, lambda: read_csv(path, ["path", "y"]))
    _same(fast, exact)
    assert fast.strings("path")[0] == "x, y.png" and fast.lines == [2, 3, 4]
    assert fast.ints("y").tolist() == [1, 0, 1]


def test_whitespace_fast_and_exact_paths_agree(tmp_path, monkeypatch):
    path = tmp_path / "list_attr.txt"
    path.write_text("3\nA B\n1.jpg  1 -1\n2.jpg -1  1\n3.jpg 1 1\n")
    fast, exact = _both(monkeypatch, lambda: read_whitespace(path, None, count_line=True))
    _same(fast, exact)
    assert fast.columns == ["image_id", "A", "B"] and fast.lines == [3, 4, 5]
    part = tmp_path / "part.txt"
    part.write_text("1.jpg 0\n2.jpg 2\n")
    fast, exact = _both(monkeypatch, lambda: read_whitespace(part, ["image_id", "partition"]))
    _same(fast, exact)
    assert fast.ints("partition").tolist() == [0, 2]


def test_unusual_files_fall_back_to_exact_line_numbers(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,y\n\na.png,1\n\nb.png,x\n")  # blank lines shift the line numbers
    table = read_csv(path, ["path", "y"])
    assert table.lines == [3, 5]
    with pytest.raises(DataError, match=r"m.csv line 5: column 'y' should be an integer, got 'x'"):
        table.ints("y")
    path.write_text("path,y\na.png,1\nb.png,1,extra\n")
    with pytest.raises(DataError, match=r"m.csv line 3: expected 2 fields, found 3"):
        read_csv(path, ["path", "y"])
    txt = tmp_path / "l.txt"
    txt.write_text("2\nA\n1.jpg 1\n2.jpg 1 1\n")
    with pytest.raises(DataError, match=r"l.txt line 4: expected 2 fields, found 3"):
        read_whitespace(txt, None, count_line=True)
    txt.write_text("two\nA\n1.jpg 1\n")
    with pytest.raises(DataError, match=r"l.txt line 1: expected the number of rows, got 'two'"):
        read_whitespace(txt, None, count_line=True)
