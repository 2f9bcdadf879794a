"""``predict --pairs`` on awkward but valid ids, on malformed pairs files, and on a changed graph file."""
import csv
import hashlib
import warnings
from pathlib import Path

import pandas as pd
import pytest

from helpers import compose_cfg
from vgae_toolkit.data import graphs
from vgae_toolkit.errors import DataError
from vgae_toolkit.predict import GraphChangedWarning, load_run, main, read_pairs
from vgae_toolkit.run import run

# ids that look like a header, a comment or a delimiter are still node ids
ODD_IDS = ["#hash", "a,b", "u", "v"]
TINY = ["trainer.epochs=2", "trainer.progress=false"]


def edge_list(path, chords=range(40)):
    """A ring over 40 nodes plus chords (i, i+5); every node appears in the ring, in the same order."""
    names = ODD_IDS + [f"n{i}" for i in range(36)]
    edges = [(names[i], names[(i + 1) % 40]) for i in range(40)] + [(names[i], names[(i + 5) % 40]) for i in chords]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["source", "target"])
        writer.writerows(edges)
    return path


def hashing_loader(monkeypatch):
    """The edge-list loader, recording the file's hash as a loader that hashes its input does."""
    real = graphs.load_edgelist

    def load(*args, **kwargs):
        data = real(*args, **kwargs)
        data.source_sha256 = hashlib.sha256(Path(kwargs["path"]).read_bytes()).hexdigest()
        return data

    monkeypatch.setattr(graphs, "load_edgelist", load)


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    edges = edge_list(root / "edges.csv")
    run(compose_cfg("dataset=edgelist", f"dataset.loader.path={edges}", *TINY), root / "run")
    return root / "run"


def score(run_dir, tmp_path, text, *flags):
    (tmp_path / "pairs.csv").write_text(text)
    main([str(run_dir), "--pairs", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "p"), *flags])
    return pd.read_csv(tmp_path / "p" / "scores.csv", dtype=str, keep_default_na=False)


def test_first_row_is_a_pair_unless_it_is_the_documented_header(odd_run, tmp_path):
    assert list(score(odd_run, tmp_path, "u,v\nn0,n1\n")["source"]) == ["u", "n0"]
    assert list(score(odd_run, tmp_path, "source,target\nu,v\nn0,n1\n")["source"]) == ["u", "n0"]
    assert list(score(odd_run, tmp_path, "from,to\nu,v\n", "--header")["source"]) == ["u"]


def test_ids_starting_with_a_hash_are_ids_not_comments(odd_run, tmp_path):
    scores = score(odd_run, tmp_path, "#hash,n1\nn2,#hash\n")
    assert list(scores["source"]) == ["#hash", "n2"] and list(scores["target"]) == ["n1", "#hash"]


def test_ids_with_commas_round_trip_through_scores_csv(odd_run, tmp_path):
    scores = score(odd_run, tmp_path, '"a,b",n2\nn3,"a,b"\n')
    assert list(scores["source"]) == ["a,b", "n3"] and list(scores["target"]) == ["n2", "a,b"]
    with (tmp_path / "p" / "scores.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[1][:2] == ["a,b", "n2"] and 0 < float(rows[1][2]) < 1


def test_na_like_ids_are_plain_strings(odd_run, tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text("NA,None\nnull,nan\n")
    assert read_pairs(tmp_path / "pairs.csv") == [("NA", "None"), ("null", "nan")]
    with pytest.raises(SystemExit) as exit_info:
        score(odd_run, tmp_path, "NA,n1\n")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "unknown node ids ['NA']" in err and "Traceback" not in err


@pytest.mark.parametrize("text, line, match", [
    ("n0,n1\nn2,\n", 2, "empty node id"),
    ("n0,n1\n,n2\n", 2, "empty node id"),
    ("n0\n", 1, "two columns"),
    ("n0,n1\n\nn3\n", 3, "two columns"),
])
def test_empty_cells_and_short_rows_name_the_line(tmp_path, text, line, match):
    (tmp_path / "pairs.csv").write_text(text)
    with pytest.raises(DataError, match=rf"pairs\.csv, line {line}: .*{match}"):
        read_pairs(tmp_path / "pairs.csv")


def test_malformed_pairs_file_is_a_clean_cli_error(odd_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        score(odd_run, tmp_path, "n0,n1\nn2,\n")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "DataError" in err and "line 2" in err and "Traceback" not in err


def test_a_changed_graph_file_is_warned_about(tmp_path, monkeypatch, capsys):
    hashing_loader(monkeypatch)
    edges = edge_list(tmp_path / "edges.csv")
    metrics = run(compose_cfg("dataset=edgelist", f"dataset.loader.path={edges}", *TINY), tmp_path / "run")
    assert metrics["data_sha256"] == hashlib.sha256(edges.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphChangedWarning)
        load_run(tmp_path / "run")  # the same file: nothing to say
    edge_list(edges, chords=range(39))  # one edge fewer, the same nodes
    with pytest.warns(GraphChangedWarning, match="changed since training"):
        load_run(tmp_path / "run")
    main([str(tmp_path / "run"), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert "changed since training" in err and "node ids may not match" in err
    with edges.open("a") as handle:  # a new node: the weights no longer fit, and the warning says why
        handle.write("n0,extra\n")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "run"), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert "changed since training" in err and "DataError" in err


def test_no_recorded_hash_means_no_warning(odd_run, monkeypatch):
    hashing_loader(monkeypatch)  # the file has a hash now, but the run recorded none
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphChangedWarning)
        load_run(odd_run)
