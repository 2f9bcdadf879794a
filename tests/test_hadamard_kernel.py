"""The chunked Hadamard-MLP decoder kernel (vgae_toolkit.ops.hadamard) against autograd through the layers."""
import pytest
import torch
import torch.nn.functional as F

from vgae_toolkit.models.decoders import HadamardMLPDecoder
from vgae_toolkit.ops import hadamard
from vgae_toolkit.ops.dropout import keep_mask
from vgae_toolkit.ops.hadamard import cross_layer_mlp, hadamard_mlp


def reference(z, pairs, w1, b1, w2, b2, mask=None, scale=1.0):
    x = z[pairs[0]] * z[pairs[1]]
    if mask is not None:
        x = x * mask * scale
    return F.linear(F.relu(F.linear(x, w1, b1)), w2, b2).squeeze(-1)


def params(d=6, h=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
            for s in ((h, d), (h,), (1, h), (1,))]


def assert_same_function(ours, ref, inputs, generator):
    """The same logits, and the same gradients of a random weighting of them with respect to ``inputs``."""
    torch.testing.assert_close(ours, ref)
    weights = torch.randn(ours.shape, generator=generator, dtype=ours.dtype)
    grads = torch.autograd.grad((ours * weights).sum(), inputs)
    for a, b in zip(grads, torch.autograd.grad((ref * weights).sum(), inputs)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("chunk", [3, 4096])
@pytest.mark.parametrize("with_mask", [False, True])
def test_values_and_gradients_match_autograd(monkeypatch, chunk, with_mask):
    monkeypatch.setattr(hadamard, "CHUNK", chunk)  # several chunks, and a ragged last one
    g = torch.Generator().manual_seed(1)
    z = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    pairs = torch.randint(0, 9, (2, 14), generator=g)
    pairs[:, 0] = torch.tensor([2, 2])  # a pair of a node with itself, and repeated nodes
    w = params()
    mask = torch.rand(14, 6, generator=g) < 0.7 if with_mask else None
    scale = 1 / 0.7 if with_mask else 1.0
    dropout = 0.3 if with_mask else 0.0
    ours = hadamard_mlp(z, pairs, *w, dropout=dropout, training=True, mask=mask)
    assert_same_function(ours, reference(z, pairs, *w, mask=mask, scale=scale), [z, *w], g)


@pytest.mark.parametrize("kernel", ["hadamard", "cross_layer"])
def test_gradcheck(kernel):
    g = torch.Generator().manual_seed(2)
    cross = kernel == "cross_layer"  # its dropout acts on the hidden layer, the other's on the product
    shape = (5, 2, 3) if cross else (5, 3)
    z = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    pairs = torch.randint(0, 5, (2, 7), generator=g)
    w = params(d=12 if cross else 3, h=4, seed=3)
    mask = torch.rand(7, 4 if cross else 3, generator=g) < 0.5
    run = cross_layer_mlp if cross else hadamard_mlp
    assert torch.autograd.gradcheck(lambda *t: run(t[0], pairs, *t[1:], dropout=0.5, training=True, mask=mask),
                                    (z, *w))


def test_keep_mask_keeps_the_asked_share():
    torch.manual_seed(0)
    for keep in (0.2, 0.8):
        mask = keep_mask(1000, 128, keep)
        assert mask.dtype == torch.bool and mask.shape == (1000, 128)
        assert abs(mask.float().mean().item() - keep) < 0.005  # 128,000 draws: sd 0.0011
        # every one of the four entries a 64-bit word gives: 32,000 draws each, sd 0.0022
        lanes = mask.view(-1, 4).float().mean(0)
        assert (lanes - keep).abs().max().item() < 0.01, lanes
    assert keep_mask(3, 5, 1.0).all() and not keep_mask(3, 5, 0.0).any()
    assert keep_mask(3, 1, 0.5).shape == (3, 1)  # an odd count: half of the last word is unused
    a, b = keep_mask(50, 8, 0.5), keep_mask(50, 8, 0.5)
    assert not torch.equal(a, b)  # fresh draws


@pytest.mark.parametrize("keep", [0.8, 0.3, 1 / 3])
def test_keep_mask_is_the_comparison_of_its_draws(keep):
    # the mask is computed with integer arithmetic: exactly "16-bit lane below the threshold"
    torch.manual_seed(1)
    mask = keep_mask(37, 12, keep)
    torch.manual_seed(1)
    words = torch.empty((37 * 12 + 3) // 4, dtype=torch.int64).random_().bitwise_left_shift_(1)
    expected = words.view(torch.int16)[: 37 * 12].view(37, 12) < round(keep * 65536) - 32768
    assert torch.equal(mask, expected)
    assert set(mask.view(torch.uint8).unique().tolist()) <= {0, 1}  # valid bools


def test_decoder_uses_the_kernel_and_agrees_with_its_layers():
    torch.manual_seed(0)
    dec = HadamardMLPDecoder(latent=6, hidden=[5], dropout=0.3, dropout_last=False)
    z, pairs = torch.randn(8, 6), torch.randint(0, 8, (2, 20))
    dec.eval()  # no dropout: the layers and the kernel compute the same logits
    torch.testing.assert_close(dec(z, pairs), dec.mlp(z[pairs[0]] * z[pairs[1]]).squeeze(-1))
    dec.train()
    torch.manual_seed(5)
    a = dec(z, pairs)
    torch.manual_seed(5)
    b = dec(z, pairs)
    torch.testing.assert_close(a, b)  # seeded dropout: reproducible
    dropped = [dec(z, pairs) for _ in range(2)]
    assert not torch.equal(dropped[0], dropped[1])  # and it does drop


def test_mask_dropout_is_dropout():
    from vgae_toolkit.ops.dropout import MaskDropout
    torch.manual_seed(0)
    x = torch.randn(400, 64, requires_grad=True)
    drop = MaskDropout(0.25)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(y[kept], x[kept] / 0.75)  # the kept entries, rescaled
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    drop.eval()
    assert drop(x) is x
    assert not MaskDropout(1.0).train()(x).any()


def cross_reference(codes, pairs, w1, b1, w2, b2, mask=None, scale=1.0):
    a, b = codes[pairs[0]], codes[pairs[1]]  # [P, K, d]
    h = F.relu(F.linear((a.unsqueeze(2) * b.unsqueeze(1)).flatten(1), w1, b1))
    if mask is not None:
        h = h * mask * scale
    return F.linear(h, w2, b2).squeeze(-1)


@pytest.mark.parametrize("chunk", [3, 4096])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_cross_layer_values_and_gradients_match_autograd(monkeypatch, chunk, with_mask, layers):
    monkeypatch.setattr(hadamard, "CHUNK", chunk)  # several chunks, and a ragged last one
    g = torch.Generator().manual_seed(layers)
    codes = torch.randn(9, layers, 4, generator=g, dtype=torch.float64, requires_grad=True)
    pairs = torch.randint(0, 9, (2, 14), generator=g)
    pairs[:, 0] = torch.tensor([2, 2])  # a pair of a node with itself, and repeated nodes
    w = params(d=layers * layers * 4, h=5, seed=layers)
    mask = torch.rand(14, 5, generator=g) < 0.6 if with_mask else None
    ours = cross_layer_mlp(codes, pairs, *w, dropout=0.4 if with_mask else 0.0, training=True, mask=mask)
    assert_same_function(ours, cross_reference(codes, pairs, *w, mask=mask, scale=1 / 0.6), [codes, *w], g)
    with torch.no_grad():  # scoring: no activations kept, the same logits
        torch.testing.assert_close(cross_layer_mlp(codes, pairs, *w), cross_reference(codes, pairs, *w))


def test_cross_layer_decoder_draws_its_dropout_as_its_layers_would():
    from vgae_toolkit.models.s2gae import CrossLayerDecoder
    torch.manual_seed(0)
    dec = CrossLayerDecoder(latent=4, layers=2, hidden=[6], dropout=0.5).train()
    hs, pairs = [torch.randn(8, 4) for _ in range(2)], torch.randint(0, 8, (2, 20))
    stacked = torch.stack(hs, dim=1)
    torch.manual_seed(5)
    ours = dec(hs, pairs)  # the kernel
    torch.manual_seed(5)
    layers = dec.mlp((stacked[pairs[0]].unsqueeze(2) * stacked[pairs[1]].unsqueeze(1)).flatten(1)).squeeze(-1)
    torch.testing.assert_close(ours, layers)  # the same mask after the ReLU, the same scale
    assert not torch.equal(dec(hs, pairs), dec(hs, pairs))  # fresh masks each call


@pytest.mark.parametrize("kernel", ["hadamard", "cross_layer"])
def test_scoring_keeps_no_activations(monkeypatch, kernel):
    kept = []
    real_empty = torch.Tensor.new_empty

    def spy(self, *size, **kwargs):  # the kernels allocate their kept activations with new_empty
        out = real_empty(self, *size, **kwargs)
        kept.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch.Tensor, "new_empty", spy)
    w = [p.detach().float().requires_grad_() for p in params(d=8 if kernel == "cross_layer" else 4, h=5)]
    z = torch.randn(6, 2, 2) if kernel == "cross_layer" else torch.randn(6, 4)
    pairs = torch.randint(0, 6, (2, 9))
    run = cross_layer_mlp if kernel == "cross_layer" else hadamard_mlp
    with torch.no_grad():
        run(z, pairs, *w)
    assert (9, 5) not in kept  # under no_grad: logits only
    run(z, pairs, *w).sum().backward()
    assert (9, 5) in kept and w[0].grad is not None  # training: the hidden activations, for the backward pass
