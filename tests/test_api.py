"""The Python interface: fit on a dataset name or a user's Data, with a user's encoder; save and load."""
import logging

import pytest
import torch
import torch_geometric.transforms as T
from torch import nn
from torch_geometric.data import Data
from torch_geometric.datasets import KarateClub
from torch_geometric.nn import GATConv, SAGEConv

import vgae_toolkit as vt
from conftest import require_files
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.splits import pair_keys

QUICK = ("trainer.epochs=30", "trainer.progress=false")


class GAT(nn.Module):
    """A user's encoder: two GATConv layers, mu and log sigma side by side."""

    def __init__(self, in_channels: int, latent: int = 16):
        super().__init__()
        self.conv1, self.conv2 = GATConv(in_channels, 32, heads=2), GATConv(64, 2 * latent)

    def forward(self, x, edge_index):
        return self.conv2(torch.nn.functional.elu(self.conv1(x, edge_index)), edge_index)


def keys(pairs, n):
    return set(pair_keys(pairs, n).tolist())


def test_public_names():
    assert set(vt.__all__) >= {"fit", "load", "Result", "compose"}
    assert vt.compose("model=gae").model.name == "gae"


def test_fit_karate_with_a_users_gat_and_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VGAE_TOOLKIT_OUTPUT", str(tmp_path / "outputs"))
    torch.manual_seed(0)
    result = vt.fit(KarateClub()[0], "model=vgae", *QUICK, encoder=GAT(34))
    assert list(tmp_path.iterdir()) == []  # nothing written without output_dir
    assert type(result.model.encoder) is GAT and result.metrics["dataset"] == "given"
    assert result.embed().shape == (34, 16)
    pairs = torch.tensor([[0, 5, 33], [1, 6, 32]])
    probs = result.score(pairs)
    assert probs.shape == (3,) and bool(((probs > 0) & (probs < 1)).all())
    z = result.embed()
    torch.testing.assert_close(probs, torch.sigmoid((z[pairs[0]] * z[pairs[1]]).sum(1)))
    saved = result.save(tmp_path / "run")
    assert {p.name for p in saved.iterdir()} >= {"last.pt", "metrics.json", "graph.pt"}
    again = vt.load(saved, encoder=GAT(34))
    torch.testing.assert_close(again.score(pairs), probs)
    assert again.metrics["test_auc"] == result.metrics["test_auc"]
    with pytest.raises(Exception, match="weights do not fit"):  # the module is needed: code is never stored
        vt.load(saved)


def test_fit_by_dataset_name_and_output_dir(tmp_path):
    result = vt.fit("sbm", "dataset.loader.num_nodes=100", *QUICK, output_dir=tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").is_file() and result.metrics["dataset"] == "sbm"
    again = vt.load(tmp_path / "run")
    assert again.task.evaluate(again.model, "test")["test_auc"] == result.metrics["test_auc"]


def test_a_users_data_is_checked_and_each_change_logged(caplog):
    # a directed path with one duplicate edge and one self-loop: nothing is dropped silently
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 0], [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 0]])
    edge_index = torch.cat([edge_index, torch.stack([torch.arange(10, 40), torch.arange(11, 41)])], dim=1)
    data = Data(edge_index=edge_index, num_nodes=41)
    with caplog.at_level(logging.INFO, logger="vgae_toolkit.graph_input"):
        result = vt.fit(data, "model=gae", "trainer.epochs=2", "trainer.progress=false")
    text = caplog.text
    assert "dropped 1 self-loops" in text and "dropped 1 duplicate edges" in text and "symmetrised" in text
    assert result.metrics["num_edges"] == 39  # every directed edge kept, as one undirected edge
    assert result.task.data.edge_index.size(1) == 78


def test_edge_weights_reach_the_gcn_and_are_refused_by_encoders_without_them():
    data = KarateClub()[0]
    data.edge_weight = torch.rand(data.edge_index.size(1)) + 0.5
    result = vt.fit(data, "model=gae", "trainer.epochs=2", "trainer.progress=false")
    assert result.task.batch.edge_weight is not None

    class Sage(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = SAGEConv(34, 16)

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    with pytest.raises(ConfigError, match="takes no edge_weight"):
        vt.fit(data, "model=gae", "trainer.epochs=2", "trainer.progress=false", encoder=Sage())


def test_a_ready_made_split_is_used_as_given():
    torch.manual_seed(0)
    train, val, test = T.RandomLinkSplit(num_val=0.1, num_test=0.2, is_undirected=True,
                                         add_negative_train_samples=False)(KarateClub()[0])
    result = vt.fit((train, val, test), "model=gae", "trainer.epochs=2", "trainer.progress=false")
    split, n = result.task.split, 34
    assert keys(split.test_pos, n) == keys(test.edge_label_index[:, test.edge_label == 1], n)
    assert keys(split.test_neg, n) == keys(test.edge_label_index[:, test.edge_label == 0], n)
    assert keys(split.val_pos, n) == keys(val.edge_label_index[:, val.edge_label == 1], n)
    # the encoder sees the training edges only, also when testing (the test Data's edge_index has more)
    assert keys(result.task.batch.edge_index, n) == keys(train.edge_index, n)
    assert not keys(result.task.batch.edge_index, n) & keys(split.test_pos, n)


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="leave dataset= out"):
        vt.fit(KarateClub()[0], "dataset=cora")
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        vt.fit("sbm", encoder="gat")
    with pytest.raises(ConfigError, match="Data or a ready-made split"):
        vt.fit(42)
    with pytest.raises(ConfigError, match="strings"):
        vt.fit("sbm", 3)


def test_fit_cora_with_a_users_gat(data_root, one_thread):
    require_files(data_root, "Planetoid/Cora/raw/ind.cora.graph")
    torch.manual_seed(0)
    from vgae_toolkit.data.graphs import load_planetoid

    data = load_planetoid(data_root, name="cora", download=False)
    result = vt.fit(data, "model=vgae", "trainer.progress=false", encoder=GAT(data.num_features))
    # measured: test AUC 0.896 (seed 0), 0.885 (seed 1); untrained encoders score 0.68-0.72 on Cora
    assert result.metrics["test_auc"] > 0.86, result.metrics["test_auc"]
