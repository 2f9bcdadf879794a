"""Graph auto-encoders composed from parts: encoders, decoders, the adversarial regulariser, presets."""
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import compose_cfg, options
from vgae_toolkit.data.graphs import make_sbm
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.models.decoders import HadamardMLPDecoder, InnerProductDecoder
from vgae_toolkit.models.encoders import MessagePassingEncoder, to_posterior
from vgae_toolkit.models.graph import GraphAutoEncoder, LinearEncoder
from vgae_toolkit.models.regularisers import AdversarialRegulariser
from vgae_toolkit.run import run
from vgae_toolkit.tasks.link import LinkPredictionTask
from vgae_toolkit.trainer import Trainer

PRESETS = ["arga", "argva", "gae", "linear_gae", "linear_vgae", "vgae"]
ENCODERS = ["gat", "gcn", "gin", "graphconv", "linear", "sage"]


def small_task(**kwargs):
    return LinkPredictionTask(make_sbm(num_nodes=120, num_blocks=4, p_in=0.3, p_out=0.01, seed=0), split_seed=0,
                              **kwargs)


def test_every_preset_and_part_is_shipped():
    assert set(PRESETS) <= set(options("model"))
    assert set(ENCODERS) | {"conv", "mlp"} == set(options("model/encoder"))  # conv, mlp: the image models' encoders
    assert set(options("model/decoder")) == {"inner_product", "hadamard_mlp"}
    assert set(options("model/regulariser")) == {"none", "adversarial"}


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_cite_their_paper_and_train(preset, tmp_path):
    text = (compose_cfg.__globals__["CONF"] / "model" / f"{preset}.yaml").read_text()
    assert "arxiv.org" in text or preset in ("gae",)  # gae inherits vgae's citation
    metrics = run(compose_cfg(f"model={preset}", "dataset=sbm", "dataset.loader.num_nodes=120", "trainer.epochs=3",
                              "trainer.progress=false"), tmp_path)
    assert metrics["model"] == preset and math.isfinite(metrics["test_auc"])


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("features", [True, False])
def test_every_encoder_trains_with_and_without_features(encoder, features, tmp_path):
    metrics = run(compose_cfg("model=vgae", f"model/encoder={encoder}", "dataset=sbm", "dataset.loader.num_nodes=120",
                              f"dataset.features={str(features).lower()}", "trainer.epochs=3",
                              "trainer.progress=false"), tmp_path)
    assert math.isfinite(metrics["test_auc"]) and metrics["features"] is features


def test_linear_encoder_is_one_propagation():
    task = small_task()
    torch.manual_seed(0)
    encoder = LinearEncoder(in_channels=task.x.size(1), num_nodes=120, latent=4, variational=True, bias=False)
    posterior = encoder(task.batch.x, task.batch.adj)
    expected = task.batch.adj.to_dense() @ task.x @ encoder.conv.weight  # Â X [W_mu | W_sigma]
    torch.testing.assert_close(torch.cat([posterior.mu, posterior.logstd], dim=1), expected)


def test_message_passing_encoder_shapes_and_featureless_input():
    task = small_task()
    for variational, width in ((True, 8), (False, 4)):
        encoder = MessagePassingEncoder(in_channels=task.x.size(1), num_nodes=120, conv="GATConv", hidden=8,
                                        latent=4, heads=2, variational=variational)
        assert encoder(task.batch.features, task.batch.edge_index).shape == (120, width)
    featureless = MessagePassingEncoder(in_channels=None, num_nodes=120, conv="SAGEConv", hidden=8, latent=4)
    assert featureless(None, task.batch.edge_index).shape == (120, 8)
    with pytest.raises(ConfigError, match="not a torch_geometric.nn convolution"):
        MessagePassingEncoder(in_channels=3, num_nodes=5, conv="Linear")
    with pytest.raises(ConfigError, match="multiple of"):
        MessagePassingEncoder(in_channels=3, num_nodes=5, conv="GATConv", hidden=10, heads=4)


def test_encoder_outputs_become_posteriors():
    mu, logstd = torch.randn(5, 3), torch.randn(5, 3)
    packed = to_posterior(torch.cat([mu, logstd], 1), variational=True)
    assert torch.equal(packed.mu, mu) and torch.equal(packed.logstd, logstd)
    pair = to_posterior((mu, logstd), variational=True)
    assert torch.equal(pair.logstd, logstd)
    assert to_posterior(mu, variational=False).deterministic
    with pytest.raises(ConfigError, match="2 \\* latent"):
        to_posterior(torch.randn(5, 3), variational=True)


def test_decoders_score_pairs():
    z = torch.randn(6, 4)
    pairs = torch.tensor([[0, 2, 5], [1, 3, 4]])
    torch.testing.assert_close(InnerProductDecoder()(z, pairs), (z[pairs[0]] * z[pairs[1]]).sum(1))
    mlp = HadamardMLPDecoder(latent=4, hidden=[8])
    torch.testing.assert_close(mlp(z, pairs), mlp(z, pairs.flip(0)))  # symmetric in i and j
    assert mlp(z, pairs).shape == (3,)


def test_hadamard_decoder_loss_is_bce_of_edges_and_negatives():
    task = small_task()
    torch.manual_seed(0)
    model = GraphAutoEncoder(**task.model_kwargs(), variational=False, decoder={"name": "hadamard_mlp", "hidden": [8]})
    assert model.recon == "sampled"  # auto: the dense loss needs the inner product
    (batch,) = list(task.train_batches(model))
    out = model.loss(batch)
    z = model.encode(batch).mu
    pos, neg = model.decoder(z, batch.pos), model.decoder(z, batch.neg)
    expected = (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))
    torch.testing.assert_close(out["recon"], expected)
    with pytest.raises(ConfigError, match="needs the inner-product decoder"):
        GraphAutoEncoder(**task.model_kwargs(), decoder="hadamard_mlp", recon="dense")


def adversarial_gae(**options):
    """A seeded GAE with an adversarial regulariser on the small task, its discriminator and its batch."""
    task = small_task()
    torch.manual_seed(0)
    model = GraphAutoEncoder(**task.model_kwargs(), variational=False,
                             regulariser={"name": "adversarial", "hidden": 8, **options})
    (batch,) = list(task.train_batches(model))
    return model, model.regulariser.discriminator, batch


def test_adversary_is_trained_by_its_own_steps_only():
    model, disc, batch = adversarial_gae(steps=3)
    before = [p.detach().clone() for p in disc.parameters()]
    out = model.loss(batch)
    moved = [p.detach().clone() for p in disc.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, moved))  # its own Adam steps ran
    out["loss"].backward()
    assert all(p.grad is None for p in disc.parameters())  # the encoder's loss sends it no gradient
    assert model.encoder.conv1.weight.grad is not None
    assert torch.isclose(out["loss"], out["recon"] + out["adv"]) and out["adv"] > 0
    model.eval()
    frozen = [p.detach().clone() for p in disc.parameters()]
    model.loss(batch)
    assert all(torch.equal(a, b) for a, b in zip(frozen, disc.parameters()))  # no steps outside training


def test_adversary_acts_on_every_kth_step_only():
    # model.regulariser.every=3: steps 1 and 2 are reconstruction alone (no adversarial loss, D unchanged),
    # step 3 trains D and adds the encoder's adversarial loss; evaluation neither counts nor trains
    model, disc, batch = adversarial_gae(every=3)
    task = small_task()
    moved, adversarial = [], []
    for _ in range(6):
        before = [p.detach().clone() for p in disc.parameters()]
        out = model.loss(batch)
        moved.append(any(not torch.equal(a, p) for a, p in zip(before, disc.parameters())))
        adversarial.append(float(out["adv"].detach()) > 0)
        assert torch.equal(out["loss"], out["recon"] + out["adv"])
        if model.training and len(moved) == 4:
            model.eval()
            model.loss(batch)  # not a training step: the schedule does not advance
            model.train()
    assert moved == adversarial == [False, False, True, False, False, True]
    assert int(model.state_dict()["regulariser.calls"]) == 6  # a resumed run keeps its place
    every_step = GraphAutoEncoder(**task.model_kwargs(), variational=False, regulariser={"name": "adversarial"})
    assert not any("calls" in key for key in every_step.state_dict())  # every=1: the former weights' keys
    with pytest.raises(ConfigError, match="every"):
        GraphAutoEncoder(**task.model_kwargs(), regulariser={"name": "adversarial", "every": 0})


def test_adversary_pulls_codes_towards_the_prior():
    # GAE codes on a small graph grow far from N(0, I); the adversary keeps them near its scale
    stats = {}
    for regulariser in (None, {"name": "adversarial", "hidden": 16}):
        task = small_task(features=False)
        torch.manual_seed(0)
        model = GraphAutoEncoder(**task.model_kwargs(), variational=False, regulariser=regulariser)
        Trainer(epochs=60, progress=False).fit(model, task.train_batches(model))
        stats[regulariser is None] = float(model.encode(task.batch).mu.detach().std())
    assert abs(stats[False] - 1) < abs(stats[True] - 1), stats


def test_weighted_graphs_weight_the_adjacency_and_reach_encoders_that_take_them():
    data = make_sbm(num_nodes=60, num_blocks=2, p_in=0.4, p_out=0.02, seed=0)
    plain = LinkPredictionTask(data, split_seed=0).batch.adj.to_dense()
    data.edge_weight = torch.rand(data.edge_index.size(1)) + 0.5
    weighted = LinkPredictionTask(data, split_seed=0)
    assert weighted.batch.edge_weight is not None and not torch.allclose(weighted.batch.adj.to_dense(), plain)
    assert torch.equal(weighted.batch.adj.to_dense() != 0, plain != 0)  # same pattern, other values
    model = GraphAutoEncoder(**weighted.model_kwargs(), encoder="graphconv")
    assert model.encode(weighted.batch).mu.shape == (60, 16)
    sage = GraphAutoEncoder(**weighted.model_kwargs(), encoder="sage")
    with pytest.raises(ConfigError, match="takes no edge_weight"):
        sage.encode(weighted.batch)


def test_hidden_noise_perturbs_training_only():
    # ARGA's Gaussian noise on the hidden layer: drawn in training mode, never at evaluation, and a
    # model without it draws no random numbers for it (its runs stay as they were)
    task = small_task()
    torch.manual_seed(0)
    noisy = GraphAutoEncoder(**task.model_kwargs(), variational=False, noise=0.5)
    plain = GraphAutoEncoder(**task.model_kwargs(), variational=False)
    plain.load_state_dict(noisy.state_dict())
    noisy.eval(), plain.eval()
    torch.testing.assert_close(noisy.encode(task.batch).mu, plain.encode(task.batch).mu)
    noisy.train(), plain.train()
    state = torch.get_rng_state()
    clean = plain.encode(task.batch).mu
    assert torch.equal(torch.get_rng_state(), state)
    first, second = noisy.encode(task.batch).mu, noisy.encode(task.batch).mu
    assert not torch.allclose(first, clean) and not torch.allclose(first, second)
    with pytest.raises(ConfigError, match="model.noise"):
        GraphAutoEncoder(**task.model_kwargs(), encoder="sage", noise=0.1)
    with pytest.raises(ConfigError, match="non-negative"):
        GraphAutoEncoder(**task.model_kwargs(), noise=-0.1)


def test_adversarial_presets_set_their_knobs():
    arga, argva = (compose_cfg(f"model={name}").model for name in ("arga", "argva"))
    assert not arga.variational and argva.variational
    assert arga.noise > 0 and argva.get("noise", 0.0) == 0.0  # the hidden-layer noise is ARGA's alone
    assert arga.regulariser.name == argva.regulariser.name == "adversarial"
    assert (arga.regulariser.every, argva.regulariser.every) == (5, 1)  # the reference schedule: ARGA's choice
    assert {k: v for k, v in arga.regulariser.items() if k != "every"} == {
        k: v for k, v in argva.regulariser.items() if k != "every"}
    for cfg in (arga, argva):  # the preset's knobs reach the model
        model = GraphAutoEncoder(in_channels=5, num_nodes=10, **{k: v for k, v in cfg.items()
                                                                 if k not in ("name", "kind", "_target_")})
        assert model.encoder.noise == cfg.get("noise", 0.0)
        assert (model.regulariser.steps, model.regulariser.lr) == (cfg.regulariser.steps, cfg.regulariser.lr)
        assert model.regulariser.every == cfg.regulariser.every


def test_arga_preset_trains_for_its_validated_epochs():
    cfg = compose_cfg("model=arga")
    default = compose_cfg("model=gae").trainer
    assert cfg.trainer.epochs == 150 and {k: v for k, v in cfg.trainer.items() if k != "epochs"} == {
        k: v for k, v in default.items() if k != "epochs"}
    assert compose_cfg("model=arga", "trainer.epochs=200").trainer.epochs == 200  # an override still wins
    assert compose_cfg("model=argva").trainer.epochs == 200
