"""The CSV reader shared by load_data and the command line (fastmlp.tabular)."""

from __future__ import annotations

import numpy as np
import pytest

from fastmlp.datasets import load_data
from fastmlp.tabular import read_csv

pytest.importorskip("pandas")  # the test extra has it; both engines are compared here
ENGINES = ["pandas", "numpy"]


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_header_label_column_wins_over_the_last_column(tmp_path):
    """The Kaggle layout of Fashion-MNIST: label first, under a header."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(50, 6))
    labels = rng.integers(0, 10, size=50)
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 7))
    path = tmp_path / "fashion.csv"
    np.savetxt(path, np.column_stack([labels, pixels]), fmt="%d", delimiter=",",
               header=header, comments="")
    X, y = load_data(path)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X, pixels)


@pytest.mark.parametrize("engine", ENGINES)
def test_label_names_and_types(tmp_path, engine):
    table = read_csv(write(tmp_path, "f1,Target,f2\n1,cat,2\n3, dog ,4\n5,cat,6\n"),
                     engine=engine)
    assert table.y.tolist() == ["cat", "dog", "cat"] and table.y.dtype.kind == "U"
    assert table.label_name == "Target" and table.label_index == 1
    assert table.feature_names == ("f1", "f2")
    np.testing.assert_array_equal(table.X, [[1, 2], [3, 4], [5, 6]])
    assert table.X.dtype == np.float32 and table.X.flags.c_contiguous
    gaps = read_csv(write(tmp_path, "a,class\n0.5,1000\n1.5,0\n2.5,7.0\n"), engine=engine)
    assert gaps.y.tolist() == [1000, 0, 7] and gaps.y.dtype == np.int64
    real = read_csv(write(tmp_path, "a,y\n1,0.25\n2,1.5\n"), engine=engine, dtype="float64")
    assert real.y.tolist() == [0.25, 1.5] and real.X.dtype == np.float64


@pytest.mark.parametrize("engine", ENGINES)
def test_choosing_the_label_column(tmp_path, engine):
    path = write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n")
    assert read_csv(path, label_column="b", engine=engine).y.tolist() == [2, 5]
    assert read_csv(path, label_column="B", engine=engine).y.tolist() == [2, 5]
    assert read_csv(path, label_column=0, engine=engine).y.tolist() == [1, 4]
    assert read_csv(path, label_column=-1, engine=engine).y.tolist() == [3, 6]
    with pytest.raises(ValueError, match=r"cannot tell which column holds the labels.*'a'"):
        read_csv(path, engine=engine)
    with pytest.raises(ValueError, match=r"no column named 'z'"):
        read_csv(path, label_column="z", engine=engine)
    with pytest.raises(ValueError, match=r"label_column=3 out of range for 3 columns"):
        read_csv(path, label_column=3, engine=engine)
    no_header = write(tmp_path, "1,2,3\n4,5,6\n", "n.csv")
    assert read_csv(no_header, engine=engine).y.tolist() == [3, 6]  # documented: label last
    with pytest.raises(ValueError, match=r"no header row"):
        read_csv(no_header, label_column="label", engine=engine)
    twice = write(tmp_path, "label,a,label\n1,2,3\n", "twice.csv")
    with pytest.raises(ValueError, match=r"2 columns are named 'label'"):
        read_csv(twice, engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_features_only_and_header_detection(tmp_path, engine):
    path = write(tmp_path, "\ufeffp0,p1\n0.5,1\n\n2,3\n")  # byte-order mark, blank line
    table = read_csv(path, labels=False, engine=engine)
    assert table.y is None and table.feature_names == ("p0", "p1")
    np.testing.assert_array_equal(table.X, [[0.5, 1], [2, 3]])
    numbered = write(tmp_path, "0,1,label\n1,2,3\n", "numbered.csv")  # numbers as names
    assert read_csv(numbered, engine=engine).y.tolist() == [3]
    assert read_csv(numbered, header=False, engine=engine).y.tolist() == ["label", "3"]
    one_row = write(tmp_path, "1,2,cat\n", "one.csv")
    assert read_csv(one_row, engine=engine).y.tolist() == ["cat"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("text, message", [
    ("a,b,label\n1,2,3\n4,5\n", r"ragged CSV: line 3 has 2 fields, expected 3"),
    ("a,b,label\n1,2,3\n4,5,6,7\n", r"ragged CSV: line 3 has 4 fields, expected 3"),
    ("a,b,label\n1,2,3\n\n4,x,6\n", r"non-numeric value 'x' at line 4, column 2"),
    ("a,b,label\n1,,3\n", r"empty value at line 2, column 2"),
    ("a,b,label\n1,inf,3\n", r"value 'inf' at line 2, column 2 is not a finite number"),
    ("a,b,label\n1,2,\n", r"empty label at line 2, column 3"),
    ("a,label\n1#2,3\n", r"non-numeric value '1#2' at line 2, column 1"),
    ("", r"empty CSV file"),
    ("a,label\n", r"header but no data rows"),
    ("1\n2\n", r"at least 2 columns"),
])
def test_errors_name_the_file_line_and_column(tmp_path, engine, text, message):
    path = write(tmp_path, text, "bad.csv")
    with pytest.raises(ValueError, match=message) as info:
        read_csv(path, engine=engine)
    assert "bad.csv" in str(info.value)


def test_bad_bytes_and_arguments(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,label\n1,caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin\.csv: not a UTF-8 text file"):
        read_csv(latin)
    with pytest.raises(FileNotFoundError, match=r"no such file"):
        read_csv(tmp_path / "missing.csv")
    path = write(tmp_path, "a,label\n1,2\n")
    with pytest.raises(ValueError, match=r"engine must be one of"):
        read_csv(path, engine="polars")
    with pytest.raises(ValueError, match=r"dtype must be float32 or float64"):
        read_csv(path, dtype="int8")


def test_engines_agree_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(scale=100, size=(200, 7))
    y = rng.choice(["a", "bb", "c c"], size=200)
    path = tmp_path / "r.csv"
    with open(path, "w") as fh:
        fh.write(",".join(f"x{i}" for i in range(7)) + ",label\n")
        for row, label in zip(X, y):
            fh.write(",".join(repr(float(v)) for v in row) + f",{label}\n")
    a, b = (read_csv(path, engine=e, dtype="float64") for e in ENGINES)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.X, X)
    assert a.y.tolist() == b.y.tolist() == y.tolist()
    assert np.array_equal(read_csv(path, engine="numpy").X, X.astype(np.float32))


@pytest.mark.parametrize("engine", ENGINES)
def test_prediction_inputs_leave_out_a_named_label_column(tmp_path, engine):
    named = read_csv(write(tmp_path, "Label,a,b\ncat,1,2\n"), labels=None, engine=engine)
    assert named.y.tolist() == ["cat"] and named.X.tolist() == [[1, 2]]
    plain = read_csv(write(tmp_path, "a,b\n1,2\n", "p.csv"), labels=None, engine=engine)
    assert plain.y is None and plain.X.tolist() == [[1, 2]]
    bare = read_csv(write(tmp_path, "1,2\n", "b.csv"), labels=None, engine=engine)
    assert bare.y is None and bare.X.tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="label_column needs labels=True"):
        read_csv(tmp_path / "p.csv", labels=False, label_column=0)
