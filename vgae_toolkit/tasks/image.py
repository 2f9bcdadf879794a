"""Density estimation on images: the experiments of Kingma & Welling, *Auto-Encoding Variational
Bayes* (AEVB), https://arxiv.org/abs/1312.6114.

Every epoch reports the per-datapoint ELBO in nats on a validation split (the dataset's own, else a
seeded hold-out of the training set). The test split is touched at the end, where the ELBO is
reported next to an importance-weighted estimate of log p(x) (AEVB App. D), the KL per latent
dimension and the number of active units; ``track_test`` additionally logs the test bound every
epoch, as AEVB's Figure 2 plots it (never used for selection).
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from vgae_toolkit.builders import build, data_root
from vgae_toolkit.data.images import BINARIZE_MODES, MAX_CLASSES, ImageBatches, ImageData
from vgae_toolkit.data.images import binarize as binarize_images
from vgae_toolkit.errors import ConfigError, DataError
from vgae_toolkit.metrics import (KL_DIM_THRESHOLD, active_units, elbo, importance_weighted_log_likelihood,
                                  kl_dims as count_kl_dims, kl_per_dimension)
from vgae_toolkit.models.latent import Posterior
from vgae_toolkit.models.vae import warmup_callback

# Seeds of the fixed draws used in evaluation: one binarisation of the evaluation images (when the
# training data are binarised dynamically) and the z samples of every ELBO estimate, so that two
# epochs' validation numbers differ only through the model.
EVAL_SEED = 1234


def hold_out(num: int, val_size: float | int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded split of ``range(num)`` into (train, validation) indices, each sorted.

    Args:
        num (int): number of training images.
        val_size (float or int): a fraction in (0, 1), a count >= 1, or 0 for no validation split.
        seed (int): seed of the permutation.
    """
    fraction = 0 < val_size < 1
    if isinstance(val_size, bool) or val_size < 0 or not (fraction or float(val_size).is_integer()):
        raise ConfigError(f"dataset.val_size: expected 0, a fraction in (0, 1) or a count, got {val_size!r}")
    count = round(num * val_size) if fraction else int(val_size)
    if count >= num:
        raise ConfigError(f"dataset.val_size={val_size} leaves no training images out of {num}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(num))
    return perm[count:].sort().values, perm[:count].sort().values


def check_classes(data: ImageData) -> None:
    """Every label is a class number below ``data.num_classes``, as the one-hot inputs and plots need.

    Loaders check their files; this catches data built elsewhere, before a label outside the
    classes fails deep in training or a huge ``num_classes`` allocates a plot of that width.
    """
    k = data.num_classes
    if k is None or not 1 <= k <= MAX_CLASSES:
        raise DataError(f"dataset {data.name}: a conditional model needs 1..{MAX_CLASSES} classes, got {k}")
    for split in ("train", "valid", "test"):
        y = getattr(data, f"{split}_y")
        if y is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            raise DataError(f"dataset {data.name}: {split} labels span {int(y.min())}..{int(y.max())}, "
                            f"but the dataset has {k} classes (0..{k - 1})")


class ImageDensityTask:
    """Mini-batch training of a VAE on images; ELBO and log-likelihood estimates in nats.

    ``primary_metric`` (``val_elbo``) is what ``trainer.monitor=auto`` maximises.

    Args:
        data (ImageData): images in [0, 1] from :mod:`vgae_toolkit.data.images`.
        conditional (bool): feed labels to the model (the CVAE); the data must have labels.
        batch_size (int): images per mini-batch (AEVB: M = 100).
        binarize (str): ``none`` (intensities as Bernoulli targets), ``dynamic`` (a fresh draw per
            epoch; evaluation sets are drawn once, seeded) or ``threshold`` (x > 0.5).
        val_size (float or int): validation images held out of the training set when the dataset
            has no validation split: a fraction, a count, or 0 for none.
        val_seed (int): seed of that hold-out.
        track_test (bool): also log the test ELBO every epoch (AEVB Fig. 2); never used for selection.
        iw_samples (int): importance samples K of the final log p(x) estimate (Burda et al.,
            https://arxiv.org/abs/1509.00519, evaluate with K = 5000; the datasets'
            configs default to 500; the cost grows linearly with K, see the README); 0 skips it.
        batch_seed (int): seeds the mini-batch order and dynamic binarisation.
        progress (bool): show a progress bar over the importance-weighted estimate (``trainer.progress``).
    """

    def __init__(self, data: ImageData, *, conditional: bool = False, batch_size: int = 100, binarize: str = "none",
                 val_size: float | int = 0.1, val_seed: int = 0, track_test: bool = False, iw_samples: int = 500,
                 batch_seed: int = 0, progress: bool = False) -> None:
        if binarize not in BINARIZE_MODES:
            raise ConfigError(f"dataset.binarize: expected one of {BINARIZE_MODES}, got {binarize!r}")
        if batch_size < 1 or iw_samples < 0:
            raise ConfigError("dataset.batch_size must be >= 1 and dataset.iw_samples >= 0")
        if conditional and data.train_y is None:
            raise ConfigError(f"a conditional model needs labels, but dataset {data.name} has none")
        if conditional:
            check_classes(data)
        self.data, self.conditional, self.batch_size, self.binarize = data, conditional, batch_size, binarize
        self.track_test, self.iw_samples, self.batch_seed = track_test, iw_samples, batch_seed
        self.progress = progress
        x, y = data.train_x, data.train_y
        if data.valid_x is not None:  # the dataset's own validation split wins over val_size
            val_x, val_y = data.valid_x, data.valid_y
        else:
            train, val = hold_out(len(x), val_size, val_seed)
            x, y, val_x, val_y = x[train], None if y is None else y[train], x[val], None if y is None else y[val]
        self.train_x, self.train_y = x, y
        # Evaluation sees one fixed binarisation of each set (dynamic) or the same transform as training.
        gen = torch.Generator().manual_seed(EVAL_SEED)
        self.sets = {name: (None if sx is None or len(sx) == 0 else binarize_images(sx, binarize, gen), sy)
                     for name, (sx, sy) in {"train": (x, y), "val": (val_x, val_y),
                                            "test": (data.test_x, data.test_y)}.items()}
        self.history: list[dict] = []  # the records the trainer hands to our callback, for the curves
        self.final: dict = {}  # filled by the test evaluation, reported by describe()
        self.device: torch.device | None = None  # where training batches go (to()); None: where they are

    # -- the task protocol ------------------------------------------------------------------
    primary_metric = "val_elbo"

    def model_kwargs(self) -> dict:
        return {"input_dim": self.data.num_features, "num_classes": self.data.num_classes if self.conditional else None,
                "image_shape": tuple(self.data.shape)}  # for convolutional encoders

    def to(self, device: torch.device | str) -> ImageDensityTask:
        """Moves the evaluation sets to ``device``; training batches are cut on the CPU (the same
        images whatever the device) and moved one at a time."""
        self.device = torch.device(device)
        self.sets = {name: (None if x is None else x.to(device), None if y is None else y.to(device))
                     for name, (x, y) in self.sets.items()}
        return self

    def train_batches(self, model: nn.Module, *, rank: int = 0, world_size: int = 1) -> ImageBatches:
        """Mini-batches of ``batch_size`` images; with several processes, each takes its share of every one."""
        if world_size > 1:  # each process draws its own z for its own images (the weights are already equal)
            torch.manual_seed(int(np.random.SeedSequence([self.batch_seed, rank]).generate_state(1)[0]))
        return ImageBatches(self.train_x, self.train_y if self.conditional else None, batch_size=self.batch_size,
                            binarize=self.binarize, seed=self.batch_seed, device=self.device, rank=rank,
                            world_size=world_size)

    def bound(self, model: nn.Module, split: str) -> dict[str, float]:
        """``{"<split>_elbo": mean per-datapoint ELBO in nats}``; empty when the split has no images."""
        x, y = self.sets[split]
        if x is None:
            return {}
        model.eval()
        with eval_rng():
            return {f"{split}_elbo": float(elbo(model, x, self._labels(y)).mean())}

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        out = self.bound(model, split)
        if split != "test":
            return out
        x, y = self.sets["test"]
        y = self._labels(y)
        posterior = self._posterior(model, x, y)
        kl_dims = kl_per_dimension(posterior)  # [latent]
        out["test_kl"] = float(kl_dims.sum())
        if self.iw_samples and not posterior.deterministic:  # an auto-encoder (model=ae) has no q to weight by
            with eval_rng():
                iw = importance_weighted_log_likelihood(model, x, y, num_samples=self.iw_samples,
                                                        progress=self.progress)
            out["test_iw_log_likelihood"] = float(iw.mean())
        self.final = {"train_elbo": self.bound(model, "train")["train_elbo"],
                      "kl_per_dim": [float(v) for v in kl_dims],
                      # active units measure what the KL leaves of the code: none for a deterministic encoder
                      "active_units": None if posterior.deterministic else active_units(posterior.mu),
                      # beside them, the dimensions that cost more than KL_DIM_THRESHOLD nats (metrics.kl_dims)
                      "kl_dims": count_kl_dims(kl_dims), "kl_dims_threshold": KL_DIM_THRESHOLD}
        return out

    def describe(self) -> dict:
        sizes = {name: 0 if x is None else len(x) for name, (x, _) in self.sets.items()}
        return {"image_shape": list(self.data.shape), "num_classes": self.data.num_classes,
                "conditional": self.conditional, "binarize": self.binarize, "batch_size": self.batch_size,
                "split_sizes": sizes, "iw_samples": self.iw_samples, **self.final}

    def embed(self, model: nn.Module, num_samples: int = 100) -> dict[str, Tensor]:
        """Latent codes (posterior means) of the test images and decoder means of prior samples."""
        x, y = self.sets["test"]
        y = self._labels(y)
        with torch.no_grad(), eval_rng():
            labels = torch.arange(num_samples) % self.data.num_classes if self.conditional else None
            out = {"latent_test": self._posterior(model, x, y).mu, "samples": model.sample(num_samples, labels)}
        if y is not None:
            out["labels_test"] = y
        return out

    def callbacks(self, model: nn.Module) -> list:
        return [warmup_callback, self.after_epoch]

    def after_epoch(self, epoch: int, record: dict, model: nn.Module) -> None:
        """Adds the training samples seen (AEVB Fig. 2's axis) and, if tracked, the test bound."""
        record["samples_seen"] = epoch * len(self.train_x)  # every epoch passes over each image once
        if self.track_test:
            record.update(self.bound(model, "test"))
        self.history.append(record)

    def artefacts(self, model: nn.Module, out_dir: Path) -> list[Path]:
        from vgae_toolkit.plots import vae as plots_vae

        out_dir, shape = Path(out_dir), self.data.shape
        model.eval()
        x, y = self.sets["test"]
        paths = [plots_vae.plot_elbo_curves(self.history, out_dir / "elbo_curves.png",
                                            title=f"{self.data.name}: per-datapoint ELBO"),
                 plots_vae.save_reconstructions(model, x, self._labels(y), shape, out_dir / "reconstructions.png")]
        if self.conditional:
            paths.append(plots_vae.save_style_grid(model, shape, out_dir / "styles.png",
                                                   num_classes=self.data.num_classes))
            k = self.data.num_classes
            labels = torch.arange(k).repeat(10)  # ten rows, column j shows label j
            paths.append(plots_vae.save_samples(model, shape, out_dir / "samples.png", num=10 * k, nrow=k,
                                                labels=labels))
        else:
            paths.append(plots_vae.save_samples(model, shape, out_dir / "samples.png"))
            if model.latent_dim == 2:
                paths.append(plots_vae.save_manifold(model, shape, out_dir / "manifold.png"))
        return paths

    # -- helpers ------------------------------------------------------------------------------
    def _labels(self, y: Tensor | None) -> Tensor | None:
        return y if self.conditional else None

    @staticmethod
    @torch.no_grad()
    def _posterior(model: nn.Module, x: Tensor, y: Tensor | None, batch: int = 1000) -> Posterior:
        parts = [model.encode(x[i:i + batch], None if y is None else y[i:i + batch]) for i in range(0, len(x), batch)]
        logstd = None if parts[0].deterministic else torch.cat([p.logstd for p in parts])
        return Posterior(torch.cat([p.mu for p in parts]), logstd)


@contextmanager
def eval_rng():
    """Evaluate with fixed z samples and leave the training random stream untouched."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []  # the GPU's stream too
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED)
        yield


def load_images(cfg: DictConfig) -> ImageData:
    """Instantiates ``cfg.dataset.loader``, passing the data root to loaders that read files."""
    from hydra.utils import get_method

    loader = cfg.dataset.loader
    try:
        params = inspect.signature(get_method(loader._target_)).parameters
    except (ImportError, ValueError) as err:
        raise ConfigError(f"dataset.loader._target_={loader._target_!r}: {err}") from err
    kwargs = {}
    root = data_root(cfg)
    if "root" in params:
        kwargs["root"] = root
    for key in ("path", "labels"):  # a user's files: relative to the data root, then as given
        value = loader.get(key)
        if isinstance(value, str) and key in params and (key == "path" or value.endswith((".npy", ".npz"))):
            kwargs[key] = str(resolve(root, value, f"dataset.loader.{key}"))
    return build(loader, "dataset.loader", **kwargs)


def resolve(root: Path, path: str, key: str) -> Path:
    candidates = [Path(path).expanduser()]
    if not candidates[0].is_absolute():
        candidates.insert(0, root / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"{key}: file {path!r} not found (looked in: {', '.join(str(c) for c in candidates)})")


def build_image_task(cfg: DictConfig) -> ImageDensityTask:
    """The image task from a composed config (``dataset.kind: image``)."""
    conditional = cfg.model.get("num_classes") is not None
    data = load_images(cfg)
    wanted = cfg.model.get("num_classes")
    if conditional and wanted != "auto" and data.num_classes is not None and wanted != data.num_classes:
        # the model is built for the data's classes: another number would be ignored without a word
        raise ConfigError(f"model.num_classes={wanted}, but the labels of dataset={cfg.dataset.name} have "
                          f"{data.num_classes} classes; use model.num_classes=auto or {data.num_classes}")
    ds = cfg.dataset
    task = ImageDensityTask(data, conditional=conditional, batch_size=ds.batch_size, binarize=ds.binarize,
                            val_size=ds.val_size, val_seed=ds.val_seed, track_test=ds.track_test,
                            iw_samples=ds.iw_samples, batch_seed=cfg.seed,
                            progress=bool(cfg.trainer.get("progress", False)))
    if cfg.trainer.select == "best" and task.sets["val"][0] is None:
        raise ConfigError("trainer.select=best needs a validation split; set dataset.val_size > 0")
    return task
