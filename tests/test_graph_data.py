import numpy as np
import pytest
import torch

from conftest import require_files
from vgae_toolkit.data.graphs import bernoulli_positions, load_edgelist, load_karate, load_planetoid, make_sbm, sbm_edges
from vgae_toolkit.errors import DataError


def undirected_pairs(data):
    row, col = data.edge_index
    return {(int(a), int(b)) for a, b in zip(row, col) if a < b}


def test_edgelist_cleans_and_symmetrises(tmp_path):
    file = tmp_path / "edges.csv"
    file.write_text("src,dst\na,b\nb,a\nb,c\nc,c\nb,c\nd,a\n")
    data = load_edgelist(tmp_path, path="edges.csv", source="src", target="dst")
    assert data.num_nodes == 4 and data.node_ids == ["a", "b", "c", "d"]
    assert undirected_pairs(data) == {(0, 1), (1, 2), (0, 3)}
    assert data.edge_index.size(1) == 6  # both directions, self-loop and duplicates gone
    assert data.x is None


def test_edgelist_tsv_with_npy_and_csv_features(tmp_path):
    (tmp_path / "g.tsv").write_text("source\ttarget\n0\t1\n1\t2\n")
    np.save(tmp_path / "x.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    data = load_edgelist(tmp_path, path="g.tsv", features="x.npy")
    assert data.num_nodes == 4  # node 3 has features but no edge: an isolated node
    assert torch.equal(data.x[2], torch.tensor([4.0, 5.0]))
    (tmp_path / "x.csv").write_text("id,f1,f2\n2,20,21\n1,10,11\n0,0,1\n")
    data = load_edgelist(tmp_path, path="g.tsv", features="x.csv")
    assert torch.equal(data.x, torch.tensor([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]]))


@pytest.mark.parametrize("text, kwargs, match", [
    ("a,b\n1,2\n", {}, "column 'source'"),
    (None, {}, "not found"),
])
def test_edgelist_errors_name_the_problem(tmp_path, text, kwargs, match):
    if text is not None:
        (tmp_path / "e.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_edgelist(tmp_path, path="e.csv", **kwargs)


def test_edgelist_missing_feature_rows(tmp_path):
    (tmp_path / "e.csv").write_text("source,target\n0,1\n1,2\n")
    (tmp_path / "x.csv").write_text("id,f\n0,1\n1,2\n")
    with pytest.raises(DataError, match="no .*row"):
        load_edgelist(tmp_path, path="e.csv", features="x.csv")


def test_builtin_graphs_need_no_files():
    karate = load_karate()
    assert karate.num_nodes == 34 and karate.edge_index.size(1) == 156
    a, b = make_sbm(num_nodes=200, seed=5), make_sbm(num_nodes=200, seed=5)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert not torch.equal(a.edge_index, make_sbm(num_nodes=200, seed=6).edge_index)
    row, col = a.edge_index
    same_block = (a.y[row] == a.y[col]).float().mean()
    assert same_block > 0.8  # communities are visible in the edges


def test_missing_planetoid_names_dataset_dir_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_planetoid(tmp_path, name="cora", download=False)
    message = str(err.value)
    assert "'cora'" in message and str(tmp_path / "Planetoid" / "Cora" / "raw") in message
    assert "VGAE_TOOLKIT_DATA" in message and "paths.data_dir" in message


def test_real_planetoid(data_root):
    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph", "Planetoid/CiteSeer/raw/ind.citeseer.graph")
    cora = load_planetoid(data_root, name="cora", download=False)
    assert cora.num_nodes == 2708 and cora.x.shape == (2708, 1433) and cora.edge_index.size(1) == 10556
    citeseer = load_planetoid(data_root, name="CiteSeer", download=False)
    assert citeseer.num_nodes == 3327 and citeseer.edge_index.size(1) == 9104


def test_sbm_edges_follow_the_block_probabilities():
    gen = torch.Generator().manual_seed(0)
    sizes = torch.tensor([30, 31, 29])
    block = torch.repeat_interleave(torch.arange(3), sizes)
    same = block[:, None] == block[None]
    counts, rounds = torch.zeros(90, 90), 300
    for _ in range(rounds):
        edges = sbm_edges(sizes, 0.3, 0.05, gen)
        assert edges.size(1) == torch.unique(edges[0] * 90 + edges[1]).numel()  # no duplicates
        counts[edges[0], edges[1]] += 1
    assert torch.equal(counts, counts.t()) and counts.diag().sum() == 0  # undirected, no self-loops
    off_diagonal = same & ~torch.eye(90, dtype=torch.bool)
    assert abs(counts[off_diagonal].mean() / rounds - 0.3) < 0.005
    assert abs(counts[~same].mean() / rounds - 0.05) < 0.002
    # every pair, not just on average: the rarest same-block pair is still near 0.3
    assert counts[off_diagonal].min() / rounds > 0.2


@pytest.mark.parametrize("total, p", [(0, 0.5), (1, 1.0), (50, 0.0), (10**6, 0.01), (10**12, 1e-9)])
def test_bernoulli_positions_are_sorted_distinct_and_in_range(total, p):
    pos = bernoulli_positions(total, p, torch.Generator().manual_seed(1))
    assert torch.all(pos[1:] > pos[:-1]) and (pos.numel() == 0 or (pos[0] >= 0 and pos[-1] < total))
    expected = total * p
    assert abs(pos.numel() - expected) <= 6 * expected ** 0.5 + 1e-9
