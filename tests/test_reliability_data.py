"""Bad input to the dataset loaders: refused with a DataError naming the file, never dropped or changed."""
import copy
import hashlib

import numpy as np
import pytest
import torch

from vgae_toolkit.data.graphs import load_edgelist
from vgae_toolkit.data.images import ImageData, load_array
from vgae_toolkit.errors import ConfigError, DataError
from vgae_toolkit.tasks.image import ImageDensityTask


def pairs(data):
    """Undirected edges as sets of node-id pairs."""
    ids = data.node_ids
    return {frozenset((ids[a], ids[b])) for a, b in data.edge_index.t().tolist() if a < b}


# --- edge lists: ids are strings, nothing is missing ------------------------------------------

def test_edgelist_keeps_missing_value_words_as_ids(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\nNA,None\nnull,nan\nN/A,NA\nNaN,#N/A\n")
    data = load_edgelist(tmp_path, path="e.csv")
    assert data.node_ids == ["NA", "None", "null", "nan", "N/A", "NaN", "#N/A"]
    assert pairs(data) == {frozenset(p) for p in (("NA", "None"), ("null", "nan"), ("N/A", "NA"), ("NaN", "#N/A"))}


@pytest.mark.parametrize("text, line", [
    ("source,target\na,b\nc,\n", 3),
    ("source,target\na,b\n\n,d\n", 4),  # a blank line still counts
    ("source,target\na,b\nc\n", 3),  # a short row
    ("source,target\na,b\n  ,d\n", 3),  # spaces only
])
def test_edgelist_empty_cell_names_file_and_line(tmp_path, text, line):
    (tmp_path / "e.csv").write_text(text)
    with pytest.raises(DataError, match=rf"e\.csv.*line {line}\b"):
        load_edgelist(tmp_path, path="e.csv")


def test_ids_are_stripped_in_edges_and_features(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\na,b\n a ,c\nb , c \n")
    (tmp_path / "x.csv").write_text("id,f\n a,1\nb ,2\n c ,3\n")
    data = load_edgelist(tmp_path, path="e.csv", features="x.csv")
    assert data.node_ids == ["a", "b", "c"]
    assert pairs(data) == {frozenset("ab"), frozenset("ac"), frozenset("bc")}
    assert data.x.flatten().tolist() == [1.0, 2.0, 3.0]
    (tmp_path / "t.tsv").write_text("source\ttarget\na \tb\n")
    assert load_edgelist(tmp_path, path="t.tsv").node_ids == ["a", "b"]


def test_feature_csv_keeps_missing_value_words_as_ids(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\nNA,None\nnull,NA\n")
    (tmp_path / "x.csv").write_text("id,f\nnull,3\nNone,2\nNA,1\n")
    data = load_edgelist(tmp_path, path="e.csv", features="x.csv")
    assert data.node_ids == ["NA", "None", "null"]
    assert data.x.flatten().tolist() == [1.0, 2.0, 3.0]


def test_feature_csv_empty_id_names_file_and_line(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n")
    (tmp_path / "x.csv").write_text("id,f\n0,1\n,2\n1,3\n")
    with pytest.raises(DataError, match=r"x\.csv.*line 3\b"):
        load_edgelist(tmp_path, path="e.csv", features="x.csv")


def test_feature_csv_duplicate_ids_are_refused(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n")
    (tmp_path / "x.csv").write_text("id,f\n0,1\n1,2\n 1,3\n")
    with pytest.raises(DataError, match=r"x\.csv.*'1'"):
        load_edgelist(tmp_path, path="e.csv", features="x.csv")


def test_zero_padded_ids_are_distinct(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,00\n00,1\n")
    (tmp_path / "x.csv").write_text("id,f\n1,3\n00,2\n0,1\n")
    data = load_edgelist(tmp_path, path="e.csv", features="x.csv")
    assert data.node_ids == ["0", "00", "1"]
    assert data.x.flatten().tolist() == [1.0, 2.0, 3.0]
    assert pairs(data) == {frozenset(("0", "00")), frozenset(("00", "1"))}


def test_npy_features_need_plain_integer_ids(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,00\n")
    np.save(tmp_path / "x.npy", np.ones((2, 1), np.float32))
    with pytest.raises(DataError, match=r"x\.npy.*'00'"):
        load_edgelist(tmp_path, path="e.csv", features="x.npy")


def test_feature_csv_that_cannot_be_parsed_names_the_file(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n")
    (tmp_path / "x.csv").write_bytes(b"id,f\n0,\xff\xfe\n1,2\n")
    with pytest.raises(DataError, match=r"x\.csv"):
        load_edgelist(tmp_path, path="e.csv", features="x.csv")


# --- feature values ------------------------------------------------------------------------------

def test_zero_feature_columns_are_refused(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n")
    (tmp_path / "x.csv").write_text("id\n0\n1\n")
    with pytest.raises(DataError, match=r"x\.csv.*no feature columns"):
        load_edgelist(tmp_path, path="e.csv", features="x.csv")
    np.save(tmp_path / "x.npy", np.zeros((2, 0), np.float32))
    with pytest.raises(DataError, match=r"x\.npy.*no feature columns"):
        load_edgelist(tmp_path, path="e.csv", features="x.npy")


@pytest.mark.parametrize("value", ["inf", "nan", "-Infinity"])
def test_non_finite_csv_features_are_refused(tmp_path, value):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n")
    (tmp_path / "x.csv").write_text(f"id,f1,f2\n0,1,2\n1,3,{value}\n")
    with pytest.raises(DataError, match=r"x\.csv.*line 3.*'f2'"):
        load_edgelist(tmp_path, path="e.csv", features="x.csv")


def test_non_finite_and_complex_npy_features_are_refused(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n")
    x = np.ones((2, 3), np.float32)
    x[1, 2] = np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match=r"x\.npy.*row 1, column 2"):
        load_edgelist(tmp_path, path="e.csv", features="x.npy")
    np.save(tmp_path / "c.npy", np.ones((2, 3), np.complex64))
    with pytest.raises(DataError, match=r"c\.npy.*complex"):
        load_edgelist(tmp_path, path="e.csv", features="c.npy")
    np.save(tmp_path / "s.npy", np.array([["a"], ["b"]]))
    with pytest.raises(DataError, match=r"s\.npy"):
        load_edgelist(tmp_path, path="e.csv", features="s.npy")


# --- dataset identity ------------------------------------------------------------------------------

def test_edgelist_source_sha256_survives_copies_and_the_task(tmp_path):
    from vgae_toolkit.tasks.link import LinkPredictionTask

    edges = "source,target\n" + "".join(f"{i},{(i + 1) % 30}\n{i},{(i + 7) % 30}\n" for i in range(30))
    (tmp_path / "e.csv").write_text(edges)
    data = load_edgelist(tmp_path, path="e.csv")
    expected = hashlib.sha256(edges.encode()).hexdigest()
    assert data.source_sha256 == expected
    for moved in (data.to("cpu"), data.clone(), copy.copy(data), copy.deepcopy(data), data.cpu()):
        assert moved.source_sha256 == expected
    assert LinkPredictionTask(data.to("cpu")).describe()["data_sha256"] == expected
    (tmp_path / "x.csv").write_text("id,f\n" + "".join(f"{i},{i}\n" for i in range(30)))
    with_features = load_edgelist(tmp_path, path="e.csv", features="x.csv")
    both = (tmp_path / "e.csv").read_bytes() + (tmp_path / "x.csv").read_bytes()
    assert with_features.source_sha256 == hashlib.sha256(both).hexdigest() != expected


# --- image arrays -------------------------------------------------------------------------------------

def all_images(data):
    return torch.cat([data.train_x, data.test_x])


def test_array_scale_is_decided_explicitly(tmp_path):
    x = np.random.default_rng(0).random((6, 2, 2)).astype(np.float32)
    x[0, 0, 0] = 1.0001
    np.save(tmp_path / "over.npy", x)
    with pytest.raises(DataError, match=r"over\.npy.*1\.0001"):
        load_array(tmp_path / "over.npy")
    np.save(tmp_path / "frac255.npy", x * 200)  # floats above 1 that are not whole numbers
    with pytest.raises(DataError, match=r"frac255\.npy"):
        load_array(tmp_path / "frac255.npy")
    whole = np.arange(24, dtype=np.float64).reshape(6, 2, 2) * 10  # whole numbers up to 230
    np.save(tmp_path / "whole.npy", whole)
    assert all_images(load_array(tmp_path / "whole.npy")).sum().item() == pytest.approx(whole.sum() / 255)
    mask = (np.arange(24).reshape(6, 2, 2) % 2).astype(np.uint8)  # 0/1 bytes are already in [0, 1]
    np.save(tmp_path / "mask.npy", mask)
    assert all_images(load_array(tmp_path / "mask.npy")).sum() == mask.sum()
    for name, bad in (("big.npy", whole + 100), ("neg.npy", whole - 1), ("nan.npy", np.full((6, 2, 2), np.nan))):
        np.save(tmp_path / name, bad)
        with pytest.raises(DataError, match=name.replace(".", r"\.")):
            load_array(tmp_path / name)


def test_array_with_one_image_is_refused(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((1, 2, 2), np.float32))
    with pytest.raises(DataError, match=r"one\.npy.*at least 2"):
        load_array(tmp_path / "one.npy")


def test_array_test_fraction_is_a_config_error(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2, 2), np.float32))
    with pytest.raises(ConfigError, match="test_fraction"):
        load_array(tmp_path / "x.npy", test_fraction=1.5)


def test_array_labels_must_be_small_class_numbers(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((6, 2, 2), np.float32))
    np.save(tmp_path / "huge.npy", np.array([0, 1, 200000, 0, 1, 200000]))
    with pytest.raises(DataError, match=r"huge\.npy.*200000.*3 distinct"):
        load_array(tmp_path / "x.npy", labels=tmp_path / "huge.npy")
    np.save(tmp_path / "float.npy", np.array([0.0, 1, 2, 0, 1, 2]))
    with pytest.raises(DataError, match=r"float\.npy.*integer"):
        load_array(tmp_path / "x.npy", labels=tmp_path / "float.npy")
    np.save(tmp_path / "ok.npy", np.array([1, 2, 3, 1, 2, 3]))  # counted from 1: class 0 stays unused
    assert load_array(tmp_path / "x.npy", labels=tmp_path / "ok.npy").num_classes == 4


def test_conditional_task_refuses_labels_outside_the_classes():
    x = torch.zeros(10, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 5, 0])
    data = ImageData(train_x=x, train_y=y, test_x=x[:2], test_y=y[:2], shape=(2, 2), name="toy", num_classes=3)
    with pytest.raises(DataError, match=r"toy.*5.*3 classes"):
        ImageDensityTask(data, conditional=True, iw_samples=0)


# --- every loader error names the file ------------------------------------------------------------

def test_feature_id_column_not_found_names_the_file(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n")
    (tmp_path / "x.csv").write_text("id,f\n0,1\n1,2\n")
    with pytest.raises(DataError, match=r"x\.csv.*'node'"):
        load_edgelist(tmp_path, path="e.csv", features="x.csv", feature_id="node")


def test_damaged_compressed_npz_is_a_data_error(tmp_path):
    rng = np.random.default_rng(0)
    np.savez_compressed(tmp_path / "src.npz", x=rng.integers(0, 256, (6, 4, 4)).astype(np.uint8), y=np.arange(6) % 2)
    raw, bad = (tmp_path / "src.npz").read_bytes(), tmp_path / "bad.npz"
    for _ in range(100):
        buf = bytearray(raw)
        for pos in rng.integers(0, len(buf), size=3):
            buf[pos] = int(rng.integers(256))
        bad.write_bytes(bytes(buf))
        try:
            load_array(bad)
        except DataError as err:
            assert "bad.npz" in str(err)
