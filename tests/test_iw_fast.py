"""The tiled importance-weighted estimate (vgae_toolkit/ops/iw.py) against the straightforward loop."""
import math

import pytest
import torch

from vgae_toolkit.metrics import importance_weighted_log_likelihood
from vgae_toolkit.models.latent import Posterior, standard_normal_log_prob
from vgae_toolkit.models.vae import DECODERS, VAE, BernoulliDecoder
from vgae_toolkit.ops.iw import bernoulli_log_likelihood, iw_log_likelihood, likelihood_of

K = 96


@torch.no_grad()
def straightforward(model, x, y=None, *, num_samples, chunk, batch_size):
    """The estimate as written before the tiled kernel: one decoder call per chunk, the model's own
    likelihood, the posterior's own densities, and one logsumexp over all K log-weights of a row."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], None if y is None else y[start : start + batch_size]
        posterior = model.encode(xb, yb)
        log_w = []
        for c in range(0, num_samples, chunk):
            z = posterior.rsample(min(chunk, num_samples - c))  # [chunk, batch, latent]
            log_w.append(model.log_likelihood(xb, model.decode(z, yb)) + standard_normal_log_prob(z)
                         - posterior.log_prob(z))
        out.append(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(num_samples))
    return torch.cat(out)


def small_vae(decoder: str, dtype=torch.float64, **kwargs) -> VAE:
    torch.manual_seed(0)
    model = VAE(input_dim=30, latent_dim=3, hidden=(16,), decoder=decoder, **kwargs).to(dtype)
    with torch.no_grad():  # confident outputs, as a trained model has
        for p in model.decoder.parameters():
            p.mul_(4.0)
    return model.eval()


def data(dtype=torch.float64, rows=11):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(rows, 30, generator=gen, dtype=dtype)
    x[:4] = (x[:4] > 0.5).to(dtype)  # binary rows and grey-level rows
    return x


def fast(model, x, y=None, seed=3, **kwargs):
    kwargs = {"num_samples": K, "chunk": 40, "batch_size": 4, **kwargs}
    torch.manual_seed(seed)
    return importance_weighted_log_likelihood(model, x, y, **kwargs)


def reference(model, x, y=None, seed=3, *, chunk=40, batch_size=4):
    torch.manual_seed(seed)
    return straightforward(model, x, y, num_samples=K, chunk=chunk, batch_size=batch_size)


def test_bernoulli_sum_is_the_decoders_likelihood():
    gen = torch.Generator().manual_seed(0)
    for width in (784, 30, 101):  # groups of 98, 30 and (a prime) 1 pixels
        logits = 12 * torch.randn(5, 7, width, generator=gen, dtype=torch.float64)
        logits[0, 0, :3] = torch.tensor([80.0, -80.0, 0.0])  # beyond exp's float32 range, and 0
        logits[0, 1] = 0.01 * logits[0, 1]  # every factor 1 + exp(-|l|) near 2: a product of 784 overflows
        x = torch.rand(7, width, generator=gen, dtype=torch.float64)
        x[0] = (x[0] > 0.5).double()
        expected = BernoulliDecoder.log_likelihood(x, logits)
        torch.testing.assert_close(bernoulli_log_likelihood(x, logits), expected, rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(bernoulli_log_likelihood(x, logits[0]), expected[0], rtol=1e-12, atol=1e-9)
        got32 = bernoulli_log_likelihood(x.float(), logits.float())
        torch.testing.assert_close(got32.double(), expected, rtol=1e-5, atol=2e-3)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_equals_the_straightforward_loop(decoder):
    model, x = small_vae(decoder), data()
    expected = reference(model, x)
    torch.testing.assert_close(fast(model, x), expected, rtol=1e-12, atol=1e-9)
    # float32, as models are trained: the same draws, so only rounding separates the two
    model32, x32 = small_vae(decoder, torch.float32), data(torch.float32)
    torch.testing.assert_close(fast(model32, x32).double(), reference(model32, x32).double(), rtol=0, atol=1e-3)


def test_the_fast_sum_is_taken_only_for_the_bernoulli_likelihood():
    x = data()
    for decoder in DECODERS:  # continuous Bernoulli decoders return logits too, with another likelihood
        model = small_vae(decoder)
        with torch.no_grad():
            picked = likelihood_of(model, x, None, model.encode(x).mu)
        assert picked == (bernoulli_log_likelihood if decoder == "bernoulli" else model.log_likelihood), decoder

    class Shifted(VAE):  # a likelihood on logits that is not Bernoulli's (as a continuous Bernoulli)
        def log_likelihood(self, x, params):
            return super().log_likelihood(x, params) + 0.5 * x.shape[-1]

    shifted = Shifted(input_dim=30, latent_dim=3, hidden=(16,)).double()
    with torch.no_grad():
        assert likelihood_of(shifted, x, None, shifted.encode(x).mu) == shifted.log_likelihood
    torch.testing.assert_close(fast(shifted, x), reference(shifted, x), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("decoder", ["bernoulli", "gaussian"])
def test_chunk_rows_and_workers_do_not_change_the_value(decoder):
    model, x = small_vae(decoder), data()
    base = fast(model, x)
    for rows in (5, 13, 10_000):  # one sample (of 4 rows) per call up to the whole chunk in one call
        torch.testing.assert_close(fast(model, x, rows=rows), base, rtol=1e-12, atol=1e-9)
    threads = torch.get_num_threads()
    for workers in (1, 3):
        torch.testing.assert_close(fast(model, x, workers=workers), base, rtol=1e-12, atol=1e-9)
    assert torch.get_num_threads() == threads  # the workers' single-threaded operators end with the call
    # The chunks are joined by a streaming logaddexp: every chunking gives the one-logsumexp value of
    # its own draws, from a few samples per chunk to all K in one.
    for chunk in (5, 13, K):
        torch.testing.assert_close(fast(model, x, chunk=chunk), reference(model, x, chunk=chunk),
                                   rtol=1e-12, atol=1e-9)


def test_conditional_model_and_batches():
    torch.manual_seed(0)
    model = VAE(input_dim=30, latent_dim=3, hidden=(16,), num_classes=4).double().eval()
    x, y = data(), torch.arange(11) % 4
    torch.testing.assert_close(fast(model, x, y, batch_size=3), reference(model, x, y, batch_size=3),
                               rtol=1e-12, atol=1e-9)
    torch.manual_seed(3)
    whole = iw_log_likelihood(model, x, y, num_samples=K, chunk=40, batch_size=None)
    torch.testing.assert_close(whole, reference(model, x, y, batch_size=11), rtol=1e-12, atol=1e-9)


def test_seeding():
    model, x = small_vae("bernoulli"), data()
    first, again = fast(model, x, seed=7), fast(model, x, seed=7, workers=2)
    assert torch.equal(first, again)
    assert not torch.allclose(first, fast(model, x, seed=8))
    # A generator of its own: the same value for the same seed, the global stream untouched.
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    a = importance_weighted_log_likelihood(model, x, num_samples=K, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    b = importance_weighted_log_likelihood(model, x, num_samples=K, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_progress_counts_every_row_and_errors_are_clear():
    model, x = small_vae("bernoulli"), data()
    seen = []
    iw_log_likelihood(model, x, num_samples=8, batch_size=4, on_rows=seen.append)
    assert seen == [4, 4, 3]
    fast(model, x, progress=True)  # the tqdm bar over the rows

    class PointMass(VAE):  # a deterministic encoder: q(z|x) has no density
        def encode(self, x, y=None):
            return Posterior(super().encode(x, y).mu)

    with pytest.raises(ValueError, match="deterministic posterior"):
        iw_log_likelihood(PointMass(input_dim=30, latent_dim=3, hidden=(16,)).double(), x, num_samples=4)
    with pytest.raises(ValueError, match=">= 1"):
        iw_log_likelihood(model, x, num_samples=0)


def test_a_trained_shape_model_in_float32_agrees_with_the_loop():
    """784 pixels (groups of 98) and logits of a confident decoder, float32: the same draws agree to
    well under the 0.05 nats the estimate is compared at."""
    torch.manual_seed(0)
    model = VAE(input_dim=784, latent_dim=20, hidden=(64,)).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(12.0)
    x = (torch.rand(6, 784) > 0.8).float()
    got = fast(model, x, chunk=50, batch_size=3)
    expected = reference(model, x, chunk=50, batch_size=3)
    assert (got - expected).abs().max() < 1e-3
    with torch.no_grad():
        assert float(model.decode(model.encode(x).mu).abs().max()) > 20  # logits beyond softplus' threshold


def test_bench_section_on_small_images(monkeypatch):
    """The bench's ``iw`` section (benchmarks/bench_iw.py, a script outside the package) end to end."""
    import importlib.util
    from pathlib import Path

    from vgae_toolkit.data import images as images_module
    from vgae_toolkit.data.images import ImageData

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_iw.py"
    spec = importlib.util.spec_from_file_location("bench_iw", path)
    bench_iw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_iw)
    gen = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 784), generator=gen).float().div(255)  # noqa: E731
    small = ImageData(train_x=images(64), train_y=None, test_x=images(30), test_y=None, shape=(28, 28),
                      name="mnist", num_classes=None)
    monkeypatch.setattr(images_module, "load_mnist", lambda root: small)
    row = bench_iw.bench_iw("unused", images=25, num_samples=32, epochs=1, seed=0, batch=10)
    assert row["images"] == 25 and row["ref_s"] > 0 and row["ours_s"] > 0
    assert row["diff_max_abs"] < 1e-3 and row["ours_log_px"] == pytest.approx(row["ref_log_px"], abs=1e-4)
    assert row["ours_full_min"] == pytest.approx(row["ours_s"] * 10_000 / 25 / 60)
    report = "\n".join(bench_iw.render_iw(row))
    assert "K = 32" in report and "| reference: the straightforward loop |" in report
