import pytest
import torch
import torch.nn.functional as F

from vgae_toolkit.data.graphs import make_sbm
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.graph import GraphAutoEncoder, GraphBatch
from vgae_toolkit.ops.dense import softplus_gram_sum
from vgae_toolkit.ops.pairs import PairPlan, inner_product
from vgae_toolkit.ops import sparse as sparse_ops
from vgae_toolkit.ops.sparse import SparseMatrix, csr_matmul, maybe_sparse
from vgae_toolkit.tasks.link import LinkPredictionTask, normalized_adjacency
from vgae_toolkit.trainer import Trainer

PATH = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # 0-1-2-3


def dense_normalized(edge_index, n):
    a = torch.zeros(n, n)
    a[edge_index[0], edge_index[1]] = 1
    a = a + torch.eye(n)
    d = a.sum(1).pow(-0.5)
    return d[:, None] * a * d[None, :]


def test_decoder_is_sigmoid_of_z_zt():
    z = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 1.0]])
    pairs = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 0]])
    expected = torch.sigmoid(z @ z.t())[pairs[0], pairs[1]]
    assert torch.allclose(torch.sigmoid(inner_product(z, pairs)), expected)
    assert torch.allclose(inner_product(z, pairs), torch.tensor([0.5, 1.5, -1.0, 1.0]))


def test_planned_pair_logits_match_autograd_through_indexing():
    # repeated pairs, both orientations, self-pairs and a node in no pair
    pairs = torch.tensor([[0, 1, 1, 2, 3, 3, 0], [1, 0, 2, 2, 0, 1, 1]])
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(pairs.size(1), dtype=torch.float64)
    (grad_ref,) = torch.autograd.grad((inner_product(z, pairs) * weights).sum(), z)
    plan = PairPlan.build(pairs, 5)
    logits = plan.logits(z)
    assert torch.allclose(logits, inner_product(z, pairs))
    (grad,) = torch.autograd.grad((logits * weights).sum(), z)
    assert torch.allclose(grad, grad_ref)
    assert grad[4].abs().sum() == 0


@pytest.mark.parametrize("ordered", [False, True], ids=["draw-order", "ordered-negatives"])
@pytest.mark.parametrize("keep_rows", [True, False], ids=["rows-kept", "rows-gathered-again"])
@pytest.mark.parametrize("part", [(0, 1), (1, 2)])
def test_sampled_loss_and_its_gradient_match_autograd(part, keep_rows, ordered, monkeypatch):
    import vgae_toolkit.ops.pairs as ops_pairs

    if not keep_rows:  # the large-graph path: the backward pass gathers the negatives' rows itself
        monkeypatch.setattr(ops_pairs, "KEEP_ROWS_MAX", 0)
    torch.manual_seed(0)
    pos = torch.tensor([[0, 0, 1, 2, 3], [1, 2, 2, 3, 4]])
    neg = torch.tensor([[0, 4, 1, 3, 0, 2], [3, 1, 4, 0, 4, 0]])
    if ordered:  # as the large-graph sampler draws them: by first node, which gets a CSR gradient
        neg = neg[:, torch.argsort(neg[0], stable=True)]
    model = GraphAutoEncoder(in_channels=None, num_nodes=5, variational=False, recon="sampled")
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    batch = GraphBatch(x=None, adj=normalized_adjacency(pos, 5), pos=pos, neg=neg, part=part, neg_ordered=ordered)
    loss = model._sampled_recon(z, batch)
    mine = [pos[:, 2:], neg[:, 3:]] if part == (1, 2) else [pos, neg]  # the second process's share
    expected = (F.softplus(-inner_product(z, mine[0])).sum() / 5 + F.softplus(inner_product(z, mine[1])).sum() / 6) * part[1]
    assert torch.allclose(loss, expected)
    assert torch.allclose(torch.autograd.grad(loss, z)[0], torch.autograd.grad(expected, z)[0])


def test_chunked_pair_logits_and_gradients_match_one_chunk(monkeypatch):
    import vgae_toolkit.ops.pairs as ops_pairs

    torch.manual_seed(0)
    z = torch.randn(30, 4, dtype=torch.float64)
    pairs = torch.randint(0, 30, (2, 101))
    grad = torch.randn(101, dtype=torch.float64)
    whole = ops_pairs.inner_product(z, pairs), ops_pairs.scatter_pair_grads(torch.zeros_like(z), z, pairs, grad)
    monkeypatch.setattr(ops_pairs, "PAIR_CHUNK", 7)  # 15 chunks, the last one short
    chunked = ops_pairs.inner_product(z, pairs), ops_pairs.scatter_pair_grads(torch.zeros_like(z), z, pairs, grad)
    assert torch.allclose(whole[0], chunked[0]) and torch.allclose(whole[1], chunked[1])
    rows = (z.index_select(0, pairs[0]), z.index_select(0, pairs[1]))  # kept from a forward pass
    assert torch.equal(ops_pairs.scatter_pair_grads(torch.zeros_like(z), z, pairs, grad, rows), chunked[1])
    (expected,) = torch.autograd.grad((ops_pairs.inner_product(z.requires_grad_(), pairs) * grad).sum(), z)
    assert torch.allclose(chunked[1], expected)


def test_sorted_pairs_are_the_same_pairs_in_node_order():
    from vgae_toolkit.ops.pairs import sorted_pairs

    pairs = torch.tensor([[3, 0, 2, 0, 3], [1, 4, 2, 1, 0]])
    assert sorted_pairs(pairs, 5).tolist() == [[0, 0, 2, 3, 3], [1, 4, 2, 0, 1]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_csr_matmul_matches_the_dense_product(dtype):
    a = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, -3.0]])  # an empty row
    csr = a.to_sparse_csr()
    d = torch.randn(3, 4, dtype=dtype)
    out = csr_matmul(csr.crow_indices(), csr.col_indices(), csr.values(), d)
    assert out.dtype == dtype
    assert torch.allclose(out, a.to(dtype) @ d, atol=1e-6)


def test_normalized_adjacency_matches_dense_formula():
    adj = normalized_adjacency(PATH, 4)
    assert adj.csr.layout == torch.sparse_csr
    assert torch.allclose(adj.to_dense(), dense_normalized(PATH, 4), atol=1e-6)


@pytest.mark.parametrize("features", ["dense", "sparse", None])
def test_encoder_is_a_two_layer_gcn_and_its_gradients(features):
    torch.manual_seed(0)
    x = torch.randn(4, 3) * (torch.rand(4, 3) > 0.5)
    inputs = {"dense": x, "sparse": SparseMatrix.from_dense(x), None: None}[features]
    model = GraphAutoEncoder(in_channels=None if features is None else 3, num_nodes=4, hidden=5, latent=2)
    batch = GraphBatch(x=inputs, adj=normalized_adjacency(PATH, 4), pos=PATH[:, ::2])
    post = model.encode(batch)
    a, enc = dense_normalized(PATH, 4), model.encoder
    # Â X W0 with features; Â I W0 = Â W0 without: a learnable per-node embedding, no identity matrix
    h = (a @ (enc.conv1.weight if features is None else x @ enc.conv1.weight) + enc.conv1.bias).relu()
    assert enc.conv1.weight.shape == ((4 if features is None else 3), 5)
    (w_mu, w_sigma), (b_mu, b_sigma) = enc.conv2.weight.chunk(2, dim=1), enc.conv2.bias.chunk(2)  # the two heads
    mu = a @ (h @ w_mu) + b_mu
    logstd = a @ (h @ w_sigma) + b_sigma
    assert torch.allclose(post.mu, mu, atol=1e-5)
    assert torch.allclose(post.logstd, logstd, atol=1e-5)
    # gradients through the cached sparse products equal the dense ones
    (post.mu.sum() + post.logstd.pow(2).sum()).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (mu.sum() + logstd.pow(2).sum()).backward()
    for got, want in zip(grads, [p.grad for p in model.parameters()]):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("variational", [True, False])
def test_encoder_starts_from_the_weights_of_separate_head_layers(variational):
    from vgae_toolkit.models.graph import GCNLayer

    torch.manual_seed(5)
    model = GraphAutoEncoder(in_channels=7, num_nodes=4, hidden=6, latent=3, variational=variational)
    torch.manual_seed(5)  # the paper's layout: first layer, then one GCN layer per head, in that order
    layers = [GCNLayer(7, 6), GCNLayer(6, 3)] + ([GCNLayer(6, 3)] if variational else [])
    enc = model.encoder
    assert torch.equal(enc.conv1.weight, layers[0].weight)
    assert torch.equal(enc.conv2.weight, torch.cat([layer.weight for layer in layers[1:]], dim=1))
    assert not enc.conv2.bias.any()


def test_weights_saved_with_two_head_layers_still_load():
    torch.manual_seed(0)
    model = GraphAutoEncoder(in_channels=None, num_nodes=4, hidden=5, latent=2)
    state = model.state_dict()
    old = {k: v for k, v in state.items() if "conv2" not in k}  # the layout of earlier checkpoints
    for name in ("weight", "bias"):
        old[f"encoder.conv_mu.{name}"], old[f"encoder.conv_logstd.{name}"] = state[f"encoder.conv2.{name}"].chunk(2, dim=-1)
    fresh = GraphAutoEncoder(in_channels=None, num_nodes=4, hidden=5, latent=2)
    fresh.load_state_dict(old)  # strict: no key missing or left over
    for key, value in state.items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_sparse_matrix_matches_dense_products():
    torch.manual_seed(1)
    m = torch.randn(6, 4) * (torch.rand(6, 4) > 0.6)
    d = torch.randn(4, 3, requires_grad=True)
    out = SparseMatrix.from_dense(m) @ d
    assert torch.allclose(out, m @ d, atol=1e-6)
    (grad,) = torch.autograd.grad(out.pow(2).sum(), d)
    (want,) = torch.autograd.grad((m @ d).pow(2).sum(), d)
    assert torch.allclose(grad, want, atol=1e-5)
    assert isinstance(maybe_sparse(m), SparseMatrix) is bool((m != 0).float().mean() <= 0.25)


@pytest.mark.parametrize("binary", [False, True])
def test_the_transposed_product_over_blocks_of_rows_equals_the_dense_one(monkeypatch, binary):
    # a tall, narrow A (n >> m) and a D too big for a block: A^T @ D sums blocks of D's rows
    torch.manual_seed(3)
    n, m, d = 300, 7, 4
    keep = torch.rand(n, m) < 0.3
    a = keep.float() if binary else keep * torch.rand(n, m)
    matrix = SparseMatrix.from_dense(a)
    dense = torch.randn(n, d)
    monkeypatch.setattr(sparse_ops, "BLOCK_BYTES", 16 * d * 4)  # 16 rows per block: 19 blocks
    assert sparse_ops.block_rows(n, m, dense) == 16
    assert sparse_ops.block_rows(n, n, dense) == n  # partial sums bigger than D: the plain transpose
    out = matrix.t_matmul(dense)
    torch.testing.assert_close(out, a.t() @ dense)
    assert list(matrix.plans) == [16] and matrix.plans[16].blocks == 19
    x = torch.randn(m, d, requires_grad=True)  # the gradient of A @ X goes through the same product
    (grad,) = torch.autograd.grad((matrix @ x).mul(dense).sum(), x)
    torch.testing.assert_close(grad, a.t() @ dense)
    monkeypatch.setattr(sparse_ops, "BLOCK_BYTES", 1 << 30)  # D fits: the cached transpose
    torch.testing.assert_close(matrix.t_matmul(dense), a.t() @ dense)
    assert list(matrix.plans) == [16]


def test_a_zero_one_sparse_matrix_multiplies_without_weights_and_gives_the_same_products():
    torch.manual_seed(2)
    binary = (torch.rand(7, 5) > 0.6).float()  # bag-of-words features: every stored value is 1
    weighted = binary * torch.rand(7, 5)
    d = torch.randn(5, 3, requires_grad=True)
    for m, unweighted in ((binary, True), (weighted, False)):
        matrix = SparseMatrix.from_dense(m)
        assert (matrix.arrays[2] is None) == unweighted and (matrix.arrays_t[2] is None) == unweighted
        out = matrix @ d
        assert torch.allclose(out, m @ d, atol=1e-6)
        (grad,) = torch.autograd.grad(out.pow(2).sum(), d)
        (want,) = torch.autograd.grad((m @ d).pow(2).sum(), d)
        assert torch.allclose(grad, want, atol=1e-5)
    crow, col, _ = SparseMatrix.from_dense(binary).arrays
    assert torch.equal(csr_matmul(crow, col, None, d), csr_matmul(crow, col, torch.ones(col.numel()), d))


def test_gae_is_deterministic_and_has_no_kl():
    model = GraphAutoEncoder(in_channels=3, num_nodes=4, variational=False)
    batch = GraphBatch(x=torch.randn(4, 3), adj=normalized_adjacency(PATH, 4), pos=PATH[:, ::2], neg=torch.tensor([[0], [3]]))
    out1, out2 = model.loss(batch), model.loss(batch)
    assert out1["kl"] == 0 and torch.equal(out1["loss"], out2["loss"])
    assert model.encode(batch).logstd is None


def test_dense_loss_equals_weighted_bce_over_all_pairs():
    torch.manual_seed(0)
    n, pos = 4, PATH[:, ::2]  # edges 0-1, 1-2, 2-3
    z = torch.randn(n, 3)
    labels = torch.zeros(n, n)
    labels[PATH[0], PATH[1]] = 1
    num_ones = labels.sum()
    labels += torch.eye(n)  # the reference code's adj_label = A_train + I
    pos_weight = (n * n - num_ones) / num_ones
    norm = n * n / (2 * (n * n - num_ones))
    expected = norm * F.binary_cross_entropy_with_logits(z @ z.t(), labels, pos_weight=pos_weight)
    assert torch.allclose(GraphAutoEncoder._dense_recon(z, pos), expected, atol=1e-6)


@pytest.mark.parametrize("self_loops", [True, False])
def test_dense_loss_labels_self_loops_only_when_asked(self_loops):
    torch.manual_seed(0)
    n, pos = 4, PATH[:, ::2]
    z = torch.randn(n, 3)
    adj = torch.zeros(n, n)
    adj[PATH[0], PATH[1]] = 1
    num_ones = adj.sum()  # pos_weight and norm count A_train's edges with or without self-loop labels
    labels = adj + torch.eye(n) if self_loops else adj  # the paper's A (unit diagonal) and adj_label, or links only
    pos_weight = (n * n - num_ones) / num_ones
    norm = n * n / (2 * (n * n - num_ones))
    expected = norm * F.binary_cross_entropy_with_logits(z @ z.t(), labels, pos_weight=pos_weight)
    assert torch.allclose(GraphAutoEncoder._dense_recon(z, pos, self_loops=self_loops), expected, atol=1e-6)
    model = GraphAutoEncoder(in_channels=None, num_nodes=n, variational=False, recon="dense",
                             dense_self_loops=self_loops)
    batch = GraphBatch(x=None, adj=normalized_adjacency(PATH, n), pos=pos)
    z = model.encode(batch).mu
    assert torch.allclose(model.loss(batch)["recon"], GraphAutoEncoder._dense_recon(z, pos, self_loops=self_loops))
    assert model.describe()["dense_self_loops"] is self_loops


def test_sampled_loss_is_bce_on_positives_and_negatives():
    z = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    pos, neg = torch.tensor([[0], [1]]), torch.tensor([[0, 0], [2, 1]])
    model = GraphAutoEncoder(in_channels=2, num_nodes=3, variational=False)
    batch = GraphBatch(x=None, adj=normalized_adjacency(PATH[:, :4], 3), pos=pos, neg=neg)
    expected = F.binary_cross_entropy(torch.sigmoid(torch.tensor([1.0])), torch.ones(1)) + F.binary_cross_entropy(
        torch.sigmoid(torch.tensor([0.0, 1.0])), torch.zeros(2))
    assert torch.allclose(model._sampled_recon(z, batch), expected)


def test_explicit_dense_runs_above_the_auto_limit():
    assert GraphAutoEncoder(in_channels=None, num_nodes=50, recon="dense", dense_max_nodes=10).recon == "dense"
    with pytest.raises(ConfigError, match="model.recon"):
        GraphAutoEncoder(in_channels=None, num_nodes=5, recon="full")


@pytest.mark.parametrize("n, block", [(1, 4), (7, 3), (9, 3), (300, 64), (300, 300), (300, 512)])
def test_blocked_gram_softplus_sum_matches_the_dense_formula(n, block):
    torch.manual_seed(n)
    z = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    expected = F.softplus(z @ z.t()).sum()
    (grad_expected,) = torch.autograd.grad(3 * expected, z)
    got = softplus_gram_sum(z, block)
    (grad,) = torch.autograd.grad(3 * got, z)
    assert torch.allclose(got, expected) and torch.allclose(grad, grad_expected)


@pytest.mark.parametrize("variational", [False, True])
@pytest.mark.parametrize("recon", ["sampled", "dense"])
def test_learns_links_on_sbm(variational, recon):
    torch.manual_seed(0)
    task = LinkPredictionTask(make_sbm(num_nodes=400, num_blocks=20, p_in=0.4, p_out=0.001, seed=0), split_seed=0)
    model = GraphAutoEncoder(**task.model_kwargs(), variational=variational, recon=recon)
    before = task.evaluate(model, "val")["val_ap"]
    fit = Trainer(epochs=60, progress=False).fit(model, task.train_batches(model), lambda m: task.evaluate(m, "val"))
    test = task.evaluate(model, "test")
    assert fit.history[-1]["train_recon"] < fit.history[0]["train_recon"]
    assert fit.history[-1]["val_ap"] > before
    assert test["test_auc"] > 0.9 and test["test_ap"] > 0.9, test


def test_auto_recon_is_dense_only_where_it_fits():
    small = GraphAutoEncoder(in_channels=None, num_nodes=50, dense_max_nodes=100)
    assert small.recon == "dense" and small.negatives_per_positive == 0
    large = GraphAutoEncoder(in_channels=None, num_nodes=500, dense_max_nodes=100)
    assert large.recon == "sampled" and large.negatives_per_positive == 1
    assert large.describe() == {"recon": "sampled", "kl_weight": 1 / 500, "neg_ratio": 1, "dense_self_loops": None,
                                "encoder": "GCNEncoder", "decoder": "InnerProductDecoder", "regulariser": None}


def test_layers_without_bias_as_the_reference_code():
    model = GraphAutoEncoder(in_channels=3, num_nodes=4, bias=False)
    assert not [name for name, _ in model.named_parameters() if "bias" in name]
    adj = normalized_adjacency(PATH, 4)
    post = model.encode(GraphBatch(x=torch.zeros(4, 3), adj=adj, pos=PATH[:, ::2]))
    assert torch.equal(post.mu, torch.zeros(4, 16))  # zero input, no bias: exactly zero


def test_make_optimizer_fuses_adam_and_adagrad_with_the_same_updates():
    from vgae_toolkit.trainer import make_optimizer

    for cls in (torch.optim.Adam, torch.optim.Adagrad, torch.optim.SGD):
        torch.manual_seed(0)
        fused_model, plain_model = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
        plain_model.load_state_dict(fused_model.state_dict())
        start = fused_model.weight.detach().clone()
        fused, plain = make_optimizer(cls, fused_model, lr=0.1), cls(plain_model.parameters(), lr=0.1)
        assert bool(fused.defaults.get("fused")) == (cls is not torch.optim.SGD)
        for _ in range(5):
            x = torch.randn(8, 5)
            for model, opt in ((fused_model, fused), (plain_model, plain)):
                opt.zero_grad()
                model(x).pow(2).sum().backward()
                opt.step()
        for a, b in zip(fused_model.parameters(), plain_model.parameters()):
            assert torch.allclose(a, b, atol=1e-6)
        assert not torch.allclose(fused_model.weight, start)  # the steps did move the weights


def test_fused_adam_takes_the_same_steps_as_torch_adam_bit_for_bit_and_keeps_its_state():
    from vgae_toolkit.ops.optim import FusedAdam

    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = [p.detach().clone() for p in models[0].parameters()]
    ours = FusedAdam(models[0].parameters(), lr=0.05, weight_decay=1e-3, betas=(0.8, 0.99))
    theirs = torch.optim.Adam(models[1].parameters(), lr=0.05, weight_decay=1e-3, betas=(0.8, 0.99), fused=True)
    calls = []
    ours.register_step_post_hook(lambda opt, args, kwargs: calls.append(1))  # hooks still run
    for step in range(6):
        x = torch.randn(8, 5)
        for model, opt in zip(models, (ours, theirs)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
        if step == 2:  # a changed learning rate is read at every step, as by torch's Adam
            for opt in (ours, theirs):
                opt.param_groups[0]["lr"] = 0.01
    for a, b, s in zip(models[0].parameters(), models[1].parameters(), start):
        assert torch.equal(a, b) and not torch.equal(a, s)
        assert a.grad is not None
    assert len(calls) == 6
    assert ours._direct_lists() is not None  # the steps after the first took the direct call
    mine, ref = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert mine.keys() == ref.keys()
    for key in mine:
        assert all(torch.equal(mine[key][k], ref[key][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    ours.zero_grad()
    assert all(p.grad is None for p in models[0].parameters())


def test_fused_adam_falls_back_to_torch_adam_where_its_direct_call_does_not_apply():
    from vgae_toolkit.ops.optim import FusedAdam

    torch.manual_seed(1)
    used, unused = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    params = list(used.parameters()) + list(unused.parameters())
    opt = FusedAdam(params, lr=0.1, amsgrad=True)
    ref_used = torch.nn.Linear(3, 2)
    ref_used.load_state_dict(used.state_dict())
    ref = torch.optim.Adam(ref_used.parameters(), lr=0.1, amsgrad=True, fused=True)
    for _ in range(3):
        x = torch.randn(4, 3)
        for model, o in ((used, opt), (ref_used, ref)):
            o.zero_grad()
            model(x).sum().backward()  # the second layer gets no gradient: the direct call does not apply
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(used.parameters(), ref_used.parameters()))
