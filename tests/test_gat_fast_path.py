"""The GAT encoder's once-per-graph work and its fused attention sum give GATConv's numbers."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GATConv

from vgae_toolkit.data.graphs import make_sbm
from vgae_toolkit.models.encoders import MessagePassingEncoder
from vgae_toolkit.ops.attention import FeatureLinear


class PlainGAT(torch.nn.Module):
    """The same layers as GATConv builds them: self-loops handled and messages scattered on every call."""

    def __init__(self, encoder: MessagePassingEncoder, in_channels: int, heads: int) -> None:
        super().__init__()
        hidden = encoder.convs[0].heads * encoder.convs[0].out_channels
        self.conv1 = GATConv(in_channels, hidden // heads, heads=heads)
        self.conv2 = GATConv(hidden, encoder.convs[1].out_channels)
        self.conv1.load_state_dict(encoder.convs[0].state_dict())
        self.conv2.load_state_dict(encoder.convs[1].state_dict())

    def forward(self, x, edge_index):
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


@pytest.mark.parametrize("sparse", [True, False])
def test_gat_encoder_equals_gatconv_layers(sparse):
    graph = make_sbm(num_nodes=150, num_blocks=3, p_in=0.1, p_out=0.01, num_features=20, seed=0)
    x = (graph.x > 1.5).float() if sparse else graph.x
    edge_index = torch.cat([graph.edge_index, torch.tensor([[3, 7], [3, 7]])], dim=1)  # two self-loops given
    torch.manual_seed(0)
    encoder = MessagePassingEncoder(in_channels=20, num_nodes=150, conv="GATConv", hidden=8, latent=4, heads=4,
                                    activation="elu", variational=True)
    assert encoder.self_loops and all(encoder.fused)
    assert isinstance(encoder.convs[0].lin, FeatureLinear)
    plain = PlainGAT(encoder, 20, 4)
    ours, theirs = encoder(x, edge_index), plain(x, edge_index)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert (encoder._features[2] is not None) is sparse  # bag-of-words features: the sparse product
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    for (name, mine), other in zip(encoder.convs.named_parameters(),
                                   list(plain.conv1.parameters()) + list(plain.conv2.parameters())):
        torch.testing.assert_close(mine.grad, other.grad, rtol=1e-4, atol=1e-5, msg=name)
    again = encoder(x, edge_index)  # the cached graph and features serve the next call
    torch.testing.assert_close(again, ours.detach(), rtol=0, atol=0)
    assert copy.deepcopy(encoder)._graph is None  # caches are not copied with the module


def test_gat_encoder_without_features_and_with_attention_dropout_in_eval():
    graph = make_sbm(num_nodes=80, num_blocks=2, p_in=0.15, p_out=0.02, num_features=4, seed=1)
    torch.manual_seed(0)
    encoder = MessagePassingEncoder(in_channels=None, num_nodes=80, conv="GATConv", hidden=8, latent=4, heads=2,
                                    variational=False, conv_kwargs={"dropout": 0.3}).eval()
    plain = GATConv(8, 4, heads=2, dropout=0.3).eval(), GATConv(8, 4, dropout=0.3).eval()
    plain[0].load_state_dict(encoder.convs[0].state_dict())
    plain[1].load_state_dict(encoder.convs[1].state_dict())
    expected = plain[1](F.relu(plain[0](encoder.embedding, graph.edge_index)), graph.edge_index)
    torch.testing.assert_close(encoder(None, graph.edge_index), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sparse,kwargs", [(True, {}), (False, {}), (True, {"root_weight": False}),
                                           (False, {"normalize": True, "bias": False})])
def test_sage_encoder_equals_sageconv_layers(sparse, kwargs):
    from torch_geometric.nn import SAGEConv

    graph = make_sbm(num_nodes=120, num_blocks=3, p_in=0.1, p_out=0.01, num_features=30, seed=2)
    x = (graph.x > 1.5).float() if sparse else graph.x
    # a repeated edge, a self-loop, and node 119 left without in-edges
    edge_index = torch.cat([graph.edge_index, torch.tensor([[3, 3, 5], [7, 7, 5]])], dim=1)
    edge_index = edge_index[:, edge_index[1] != 119]
    torch.manual_seed(0)
    encoder = MessagePassingEncoder(in_channels=30, num_nodes=120, conv="SAGEConv", hidden=8, latent=4,
                                    variational=True, conv_kwargs=kwargs)
    assert all(encoder.averaged)
    plain = [SAGEConv(30, 8, **kwargs), SAGEConv(8, 8, **kwargs)]
    for mine, other in zip(encoder.convs, plain):
        other.load_state_dict(mine.state_dict())
    ours = encoder(x, edge_index)
    theirs = plain[1](F.relu(plain[0](x, edge_index)), edge_index)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert (encoder._features[2] is not None) is sparse  # bag-of-words features: the sparse product
    weights = torch.randn_like(ours)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    mine = dict(encoder.convs.named_parameters())
    for k, layer in enumerate(plain):
        for name, other in layer.named_parameters():
            torch.testing.assert_close(mine[f"{k}.{name}"].grad, other.grad, rtol=1e-4, atol=1e-5, msg=name)
    again = encoder(x, edge_index)  # the cached averaging matrix serves the next call
    torch.testing.assert_close(again, ours.detach(), rtol=0, atol=0)
    assert copy.deepcopy(encoder)._mean is None  # caches are not copied with the module


def test_sage_with_max_aggregation_keeps_the_layer():
    encoder = MessagePassingEncoder(in_channels=5, num_nodes=10, conv="SAGEConv", conv_kwargs={"aggr": "max"})
    assert not any(encoder.averaged)
    out = encoder(torch.randn(10, 5), torch.tensor([[0, 1, 2], [1, 2, 0]]))
    assert out.shape == (10, 32)
