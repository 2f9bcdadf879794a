"""The type and range of every config value, declared once; :func:`validate` checks a composed config.

Hydra parses command-line values by their look (``2.5`` is a float, ``true`` a bool, ``abc`` a
string), so a value of the wrong kind reaches the code that uses it: a float epoch count fails deep
inside the trainer, a negative seed or ``neg_ratio=100000000`` (a 119 GB allocation) is simply
tried. :func:`validate` refuses such values before anything is built, naming the key, the value and
what is allowed. Keys a given model or dataset does not have are skipped.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vgae_toolkit.errors import ConfigError

MAX_SEED = 2**63 - 1  # the largest seed every generator the toolkit seeds accepts
MAX_WIDTH = 1 << 16  # layer widths: far above any published setting, far below an out-of-memory crash
MAX_EPOCHS = 10**6


class Rule:
    """What one config key accepts.

    Args:
        nullable (bool): ``null`` is accepted too. (default: ``False``)
        also (tuple): special strings accepted too, e.g. ``("auto",)``. (default: ``()``)
        example (str, optional): a value to show when a required (``???``) value is missing.
    """

    what = "a value"

    def __init__(self, *, nullable: bool = False, also: tuple = (), example: str | None = None) -> None:
        self.nullable, self.also, self.example = nullable, tuple(also), example

    def accepts(self, value) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, str) and value in self.also:
            return True
        return self.check(value)

    def check(self, value) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        extra = [show(a) for a in self.also] + (["null"] if self.nullable else [])
        return " or ".join([*extra, self.what]) if extra else self.what


def show(value) -> str:
    """A value as it is written on the command line (``true``, ``null``, ``'abc'``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return repr(value)


def _interval(low, high, low_open: bool = False, high_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _within(value, low, high, low_open: bool, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


class Number(Rule):
    """A finite number (never a bool) between ``low`` and ``high``; with ``integer`` an int, never a
    float such as ``2.5`` or ``1e9``."""

    def __init__(self, low: float | None = None, high: float | None = None, *, integer: bool = False,
                 low_open: bool = False, high_open: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.integer, self.bounds = integer, (low, high, low_open, high_open)
        self.what = ("an integer" if integer else "a finite number") + _interval(*self.bounds)

    def check(self, value) -> bool:
        if self.integer:
            return type(value) is int and _within(value, *self.bounds)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value) and _within(value, *self.bounds)


def Int(low: int | None = None, high: int | None = None, **kwargs) -> Number:  # noqa: N802 - reads as a type
    return Number(low, high, integer=True, **kwargs)


Real = Number


class Bool(Rule):
    what = "true or false"

    def check(self, value) -> bool:
        return isinstance(value, bool)


class Text(Rule):
    what = "a string"

    def check(self, value) -> bool:
        return isinstance(value, str)


class Choice(Rule):
    """One of a fixed set of strings."""

    def __init__(self, *choices: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.choices = tuple(choices)
        self.what = "one of " + ", ".join(show(c) for c in self.choices)

    def check(self, value) -> bool:
        return isinstance(value, str) and value in self.choices


class IntList(Rule):
    """A list of integers, each in ``[low, high]`` (layer widths)."""

    def __init__(self, low: int | None = None, high: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.item = Int(low, high)
        self.what = f"a list of integers{_interval(low, high)}"

    def check(self, value) -> bool:
        return isinstance(value, list) and all(self.item.check(v) for v in value)


class Mapping(Rule):
    """A mapping of keyword arguments (handed on to a library class, which checks them)."""

    what = "a mapping of keyword arguments"

    def check(self, value) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)


class AnyOf(Rule):
    """Any value one of ``rules`` accepts."""

    def __init__(self, *rules: Rule, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rules = rules
        self.what = " or ".join(r.describe() for r in rules)

    def check(self, value) -> bool:
        return any(r.accepts(value) for r in self.rules)


# Config keys (each with the keys below it) that say where a run is written, how it is shown or
# logged, on which device it runs and which finished run it goes on from (the same result by construction),
# not what it computes: two runs that differ only there are the same run, for the run-folder check
# (vgae_toolkit/run_folder.py) and the report's cells alike.
RESULT_NEUTRAL_KEYS = ("paths", "hydra", "skip_finished", "trainer.progress", "trainer.resume", "trainer.device",
                       "trainer.extend_from", "logger",
                       "node_metrics")  # node_metrics adds numbers to metrics.json, changes none


def result_key(key: str, ignored: tuple[str, ...] = RESULT_NEUTRAL_KEYS) -> bool:
    """Whether the dotted ``key`` can change a run's result (it is none of ``ignored`` nor below one)."""
    return not any(key == i or key.startswith(f"{i}.") for i in ignored)

# -- the tables -------------------------------------------------------------------------------------
SEED = Int(0, MAX_SEED)
FRACTION = Real(0, 1, high_open=True)  # a held-out share: 0 = none, never everything
OPEN_FRACTION = Real(0, 1, low_open=True, high_open=True)

# Keys of every config (conf/config.yaml, conf/split, conf/trainer/*).
COMMON: dict[str, Rule] = {
    "seed": SEED,
    "skip_finished": Bool(),
    "node_metrics": Bool(),
    "paths.data_dir": Text(),
    "paths.download": Bool(),
    "paths.output_dir": Text(),
    "model.name": Text(),
    "model.kind": Choice("graph", "image"),
    "dataset.name": Text(),
    "dataset.kind": Choice("graph", "image"),
    "split.val_frac": FRACTION,
    "split.test_frac": FRACTION,
    "split.seed": SEED,
    "split.test_graph": Choice("train", "train_val"),
    "trainer.epochs": Int(1, MAX_EPOCHS),
    "trainer.lr": Real(0, low_open=True),
    "trainer.optimizer": Choice("adam", "adagrad", "sgd"),  # vgae_toolkit.trainer.OPTIMIZERS (tested)
    "trainer.weight_decay": Real(0),
    "trainer.select": Choice("last", "best"),
    "trainer.monitor": Text(),  # auto or a validation metric; the trainer checks the name
    "trainer.eval_every": Int(1, MAX_EPOCHS),
    "trainer.grad_clip": Real(0),
    "trainer.patience": Int(0, MAX_EPOCHS),
    "trainer.progress": Bool(),
    "trainer.device": Text(),  # auto, cpu, cuda or cuda:N; resolve_device checks the form and the GPU
    "trainer.resume": Bool(),
    "trainer.extend_from": Text(nullable=True),
    # logger=csv|tensorboard|mlflow (conf/logger/*); absent without a logger
    "logger.filename": Text(),
    "logger.subdir": Text(),
    "logger.experiment": Text(),
    "logger.run_name": Text(nullable=True),
}

# Keys of each model, by the class its ``_target_`` names: the same key may mean different things
# (``hidden`` is one width for the graph auto-encoder, a list of widths for the VAE).
MODELS: dict[str, dict[str, Rule]] = {
    "vgae_toolkit.models.graph.GraphAutoEncoder": {
        "variational": Bool(),
        "hidden": Int(1, MAX_WIDTH),
        "latent": Int(1, MAX_WIDTH),
        "dropout": Real(0, 1, high_open=True),
        "bias": Bool(),
        "recon": Choice("auto", "sampled", "dense"),
        "neg_ratio": Int(0, 1000),  # 0 is fine unless recon=sampled (the model says so); 1000 x E pairs at most
        "dense_self_loops": Bool(),
        "kl_weight": Real(0, nullable=True),
        "dense_max_nodes": Int(0),
        "noise": Real(0),  # std of training-only noise on the GCN's hidden layer (ARGA)
        # the parts (conf/model/{encoder,decoder,regulariser}/*.yaml)
        "encoder.name": Text(),  # gcn, linear or a message-passing preset; the model names the choices
        "encoder.conv": Text(),  # a torch_geometric.nn class name; the encoder checks it
        "encoder.layers": Int(1, 64),
        "encoder.heads": Int(1, 64),
        "encoder.activation": Choice("relu", "elu", "prelu", "tanh", "leaky_relu", "gelu", "identity"),
        "encoder.batch_norm": Bool(),
        "encoder.input_dropout": Real(0, 1, high_open=True),
        "encoder.conv_kwargs": Mapping(),
        "decoder.name": Choice("inner_product", "hadamard_mlp"),
        "decoder.hidden": IntList(1, MAX_WIDTH),
        "decoder.dropout": Real(0, 1, high_open=True),
        "regulariser.name": Choice("none", "adversarial"),
        "regulariser.hidden": Int(1, MAX_WIDTH),
        "regulariser.lr": Real(0, low_open=True),
        "regulariser.steps": Int(1, 100),
        "regulariser.weight": Real(0),
        "regulariser.every": Int(1, 100),
    },
    "vgae_toolkit.models.maskgae.MaskGAE": {
        "hidden": Int(1, MAX_WIDTH),
        "latent": Int(1, MAX_WIDTH),
        "layers": Int(1, 64),
        "dropout": Real(0, 1, high_open=True),
        "batch_norm": Bool(),
        "activation": Choice("relu", "elu", "tanh", "leaky_relu", "gelu", "identity"),
        "bias": Bool(),
        "mask": Choice("path", "edge", "none"),
        "mask_ratio": Real(0, 1),
        "walk_length": Int(1, 1000),
        "walks_per_node": Int(1, 1000),
        "walk_start": Choice("edge", "node"),
        "decoder_hidden": IntList(1, MAX_WIDTH),
        "decoder_dropout": Real(0, 1, high_open=True),
        "degree_weight": Real(0),
    },
    "vgae_toolkit.models.s2gae.S2GAE": {
        "hidden": Int(1, MAX_WIDTH),
        "layers": Int(1, 8),  # the decoder's input is layers^2 x hidden wide
        "dropout": Real(0, 1, high_open=True),
        "bias": Bool(),
        "mask_ratio": Real(0, 1, low_open=True, high_open=True),
        "decoder_hidden": IntList(1, MAX_WIDTH),
        "decoder_dropout": Real(0, 1, high_open=True),
    },
    "vgae_toolkit.models.embedding.SpectralEmbedding": {
        "dim": Int(1, MAX_WIDTH),
        "regularization": Real(0),
        "solver": Choice("auto", "dense", "block"),  # vgae_toolkit.models.baselines.SOLVERS
        "seed": SEED,
    },
    "vgae_toolkit.models.embedding.DeepWalk": {
        "dim": Int(1, MAX_WIDTH),
        "walks_per_node": Int(1),
        "walk_length": Int(1),
        "window": Int(1),
        "negative": Int(0),
        "epochs": Int(1, MAX_EPOCHS),
        "workers": Int(1),
        "seed": SEED,
    },
    "vgae_toolkit.models.vae.VAE": {
        "latent_dim": Int(1, MAX_WIDTH),
        "hidden": IntList(1, MAX_WIDTH),
        "activation": Choice("tanh", "relu", "elu", "gelu", "softplus", "sigmoid", "leaky_relu"),
        "decoder": Choice("bernoulli", "continuous_bernoulli", "gaussian", "gaussian_fixed", "pixelcnn"),
        "num_samples": Int(1, 10**4),
        "kl_warmup_epochs": Int(0, MAX_EPOCHS),
        "kl_cycle_epochs": Int(0, MAX_EPOCHS),  # cyclical KL annealing (Fu et al. 2019); 0 = off
        "kl_cycle_ramp": Real(0, 1, low_open=True),
        "free_bits": Real(0),
        "num_classes": Int(1, nullable=True, also=("auto",)),
        "init_std": Real(0, low_open=True, nullable=True),
        "min_logvar": Real(),
        "beta": Real(0),  # constant KL weight (beta-VAE)
        "variational": Bool(),  # false: the deterministic auto-encoder (model=ae)
        "objective": Choice("elbo", "iwae"),  # iwae: Burda et al.'s importance-weighted bound
        "encoder.name": Choice("mlp", "conv"),  # image encoders (conf/model/encoder/{mlp,conv}.yaml)
        "encoder.channels": IntList(1, MAX_WIDTH),
    },
}

# Keys of each kind of dataset (conf/dataset/*), loaders included.
DATASETS: dict[str, dict[str, Rule]] = {
    "graph": {
        "features": Bool(),
        "normalize_features": Bool(),
        "loader": Mapping(nullable=True),  # null: dataset=given, the graph comes with a Python call
        "loader.name": Text(),
        "loader.download": Bool(),
        "loader.path": Text(example="edges.csv"),
        "loader.source": Text(),
        "loader.target": Text(),
        "loader.sep": Text(nullable=True),
        "loader.features": Text(nullable=True),
        "loader.feature_id": Text(nullable=True),
        "loader.num_nodes": Int(1),
        "loader.num_blocks": Int(1),
        "loader.p_in": Real(0, 1),
        "loader.p_out": Real(0, 1),
        "loader.num_features": Int(1, MAX_WIDTH),
        "loader.feature_noise": Real(0),
        "loader.seed": SEED,
    },
    "image": {
        "binarize": Choice("none", "threshold", "dynamic"),
        "batch_size": Int(1),
        "val_size": AnyOf(Int(0), OPEN_FRACTION),  # a count, a fraction, or 0 = none
        "val_seed": SEED,
        "track_test": Bool(),
        "iw_samples": Int(0),
        "loader.path": Text(example="faces.npz"),
        "loader.labels": Text(nullable=True),
        "loader.test_fraction": OPEN_FRACTION,
        "loader.train_size": Int(1, nullable=True),  # binarized_mnist: N evenly spaced images of a split
        "loader.valid_size": Int(1, nullable=True),
        "loader.test_size": Int(1, nullable=True),
        "loader.seed": SEED,
    },
}


def rules_for(cfg: DictConfig) -> Iterator[tuple[str, Rule]]:
    """``(dotted key, rule)`` for every declared key that applies to ``cfg``'s model and dataset."""
    yield from COMMON.items()
    target = _get(cfg, "model._target_")
    for key, rule in MODELS.get(target if isinstance(target, str) else "", {}).items():
        yield f"model.{key}", rule
    kind = _get(cfg, "dataset.kind")
    for key, rule in DATASETS.get(kind if isinstance(kind, str) else "", {}).items():
        yield f"dataset.{key}", rule


_ABSENT = object()


def _get(cfg: DictConfig, key: str):
    """The resolved value at ``key``, or ``_ABSENT`` where the config has no such key."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return _ABSENT
        try:
            node = node[part]
        except OmegaConfBaseException as err:
            raise ConfigError(f"{key} cannot be resolved: {err}") from None
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _example(cfg: DictConfig, key: str) -> str:
    return next((rule.example for full, rule in rules_for(cfg) if full == key and rule.example), "...")


def missing_keys(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[str]:
    """Dotted keys of the values left at ``???``, without resolving anything (an interpolation
    that a given row or dataset never uses may not resolve, and need not)."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        child = node._get_node(key)
        full = f"{prefix}.{key}" if prefix else str(key)
        if child._is_missing():
            yield full
        elif isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation() and full != "hydra":
            yield from missing_keys(child, full)


def check_required(cfg: DictConfig) -> None:
    """Refuse a mandatory value left at ``???``, saying which key to set and how."""
    missing = sorted(missing_keys(cfg))
    if missing:
        key = missing[0]
        raise ConfigError(f"{key} is required: set it on the command line, e.g. {key}={_example(cfg, key)}")


# Nodes whose every key is declared above and read by no builder: a key added to them (a typo such
# as ``+split.val_fraction=0.2``) would otherwise be ignored while the default is used.
CLOSED_NODES = ("split", "paths", "dataset")
# Keys of ``dataset`` besides its kind's declared ones: its identity and the loader (whose keys its
# builder checks).
DATASET_OWN = ("name", "kind", "loader")


CONF = Path(__file__).resolve().parents[1] / "conf"


@lru_cache(maxsize=1)
def top_level_keys(conf: Path = CONF) -> frozenset[str] | None:
    """The top-level keys the shipped configs can produce: ``conf/config.yaml``'s, one per config
    group, and those set by files of the global package (experiments, rows); ``None`` without ``conf/``."""
    import yaml

    if not (conf / "config.yaml").is_file():
        return None
    keys = {"hydra"} | {p.name for p in conf.iterdir() if p.is_dir()}
    for file in conf.rglob("*.yaml"):
        try:
            text = file.read_text()
            if file != conf / "config.yaml" and "@package _global_" not in text:
                continue
            loaded = yaml.safe_load(text)
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict):
            keys |= {str(key) for key in loaded if key != "defaults"}
    return frozenset(keys)


def check_unknown(cfg: DictConfig) -> None:
    """Refuse a key that no config declares at the top level or no rule declares in
    :data:`CLOSED_NODES`, naming the keys allowed there (``+seeed=1`` would otherwise be ignored)."""
    allowed_top = top_level_keys()
    if allowed_top is not None and isinstance(cfg, DictConfig):
        unknown = sorted(str(key) for key in cfg.keys() if key not in allowed_top)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown top-level key (misspelt?); the config's top-level keys are "
                              f"{', '.join(sorted(allowed_top - {'hydra'}))}")
    declared = {key for key, _ in rules_for(cfg)}
    for node in CLOSED_NODES:
        value = cfg.get(node) if isinstance(cfg, DictConfig) else None
        if not isinstance(value, DictConfig):
            continue
        allowed = {key.split(".")[1] for key in declared if key.startswith(f"{node}.")}
        if node == "dataset":
            allowed |= set(DATASET_OWN)
        unknown = sorted(str(key) for key in value.keys() if key not in allowed)
        if unknown:
            kind = f" of kind {show(_get(cfg, 'dataset.kind'))}" if node == "dataset" else ""
            raise ConfigError(f"{node}.{unknown[0]}: unknown key (misspelt?); a {node}{kind} takes "
                              f"{', '.join(f'{node}.{key}' for key in sorted(allowed))}")


def validate(cfg: DictConfig) -> None:
    """Check a composed config against the declared types and ranges.

    Args:
        cfg (DictConfig): a composed config (``conf/config.yaml`` and its groups); a ``hydra``
            node, if present, is not checked.

    Raises:
        ConfigError: a required value is missing, or a value has the wrong type or lies outside
            its range; the message names the key, the value and what is allowed.
    """
    check_required(cfg)
    check_unknown(cfg)
    for key, rule in rules_for(cfg):
        value = _get(cfg, key)
        if value is not _ABSENT and not rule.accepts(value):
            raise ConfigError(f"{key}: expected {rule.describe()}, got {show(value)}")
    val, test = _get(cfg, "split.val_frac"), _get(cfg, "split.test_frac")
    if isinstance(val, (int, float)) and isinstance(test, (int, float)) and val + test >= 1:
        raise ConfigError(f"split.val_frac={val} and split.test_frac={test} leave no training edges: "
                          "expected two fractions in [0, 1) with a sum below 1")
