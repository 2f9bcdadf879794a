"""Config values of the wrong type or range are refused by name before anything is built."""
import itertools

import pytest
import yaml

from helpers import CONF, compose_cfg, options
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.run import run
from vgae_toolkit.splits import NegativeSampler

BASE = ("dataset=karate", "trainer.progress=false")


def must_not_allocate(*args, **kwargs):
    raise AssertionError("training negatives were drawn: the config should have been refused first")


@pytest.mark.parametrize("override, shown, allowed", [
    ("seed=-1", "seed=-1", "an integer in [0, 9223372036854775807]"),
    ("seed=abc", "seed='abc'", "an integer in [0, 9223372036854775807]"),
    ("trainer.epochs=2.5", "trainer.epochs=2.5", "an integer in [1, 1000000]"),
    ("trainer.epochs=1e9", "trainer.epochs=1000000000.0", "an integer in [1, 1000000]"),
    ("trainer.epochs=true", "trainer.epochs=true", "an integer in [1, 1000000]"),
    ("trainer.lr=-0.01", "trainer.lr=-0.01", "a finite number > 0"),
    ("trainer.lr=nan", "trainer.lr=nan", "a finite number > 0"),
    ("trainer.weight_decay=-1", "trainer.weight_decay=-1", "a finite number >= 0"),
    ("model.dropout=1.5", "model.dropout=1.5", "a finite number in [0, 1)"),
    ("model.kl_weight=-100", "model.kl_weight=-100", "null or a finite number >= 0"),
    ("model.hidden=0", "model.hidden=0", "an integer in [1, 65536]"),
    ("split.val_frac=1.0", "split.val_frac=1.0", "a finite number in [0, 1)"),
    ("trainer.optimizer=adamw", "trainer.optimizer='adamw'", "one of 'adam', 'adagrad', 'sgd'"),
])
def test_bad_values_are_refused_by_name(tmp_path, monkeypatch, override, shown, allowed):
    monkeypatch.setattr(NegativeSampler, "__call__", must_not_allocate)
    epochs = () if override.startswith("trainer.epochs") else ("trainer.epochs=2",)
    with pytest.raises(ConfigError) as info:
        run(compose_cfg(*BASE, *epochs, override), tmp_path / "run")
    key, value = shown.split("=", 1)
    assert str(info.value) == f"{key}: expected {allowed}, got {value}"


def test_huge_neg_ratio_is_refused_before_any_allocation(tmp_path, monkeypatch):
    monkeypatch.setattr(NegativeSampler, "__call__", must_not_allocate)
    cfg = compose_cfg(*BASE, "trainer.epochs=2", "model.recon=sampled", "model.neg_ratio=100000000")
    with pytest.raises(ConfigError, match=r"model\.neg_ratio: expected an integer in \[0, 1000\], got 100000000"):
        run(cfg, tmp_path / "run")


def test_image_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset\.batch_size: expected an integer >= 1, got 0"):
        run(compose_cfg("model=vae", "dataset=digits", "dataset.batch_size=0"), tmp_path / "run")
    with pytest.raises(ConfigError, match=r"model\.hidden: expected a list of integers in \[1, 65536\], "
                                          r"got \[400, -1\]"):
        run(compose_cfg("model=vae", "dataset=digits", "model.hidden=[400,-1]"), tmp_path / "run")


def test_split_fractions_must_leave_training_edges(tmp_path):
    with pytest.raises(ConfigError, match=r"split\.val_frac=0\.5 and split\.test_frac=0\.5 .* below 1"):
        run(compose_cfg(*BASE, "split.val_frac=0.5", "split.test_frac=0.5"), tmp_path / "run")


@pytest.mark.parametrize("dataset, example", [("edgelist", "edges.csv"), ("array", "faces.npz")])
def test_missing_mandatory_value_says_what_to_set(tmp_path, dataset, example):
    model = "vae" if dataset == "array" else "vgae"
    with pytest.raises(ConfigError) as info:
        run(compose_cfg(f"model={model}", f"dataset={dataset}"), tmp_path / "run")
    assert str(info.value) == (f"dataset.loader.path is required: set it on the command line, "
                               f"e.g. dataset.loader.path={example}")


def test_values_the_code_accepts_today_still_pass():
    from vgae_toolkit.schema import validate

    for overrides in (["model.neg_ratio=0", "model.recon=dense"], ["model.kl_weight=null"],
                      ["split.val_frac=0", "split.test_frac=0"], ["trainer.lr=1"], ["model.dropout=0.99"],
                      ["model=vae", "dataset=digits", "model.num_classes=auto", "model.hidden=[]"],
                      ["model=vae", "dataset=digits", "dataset.val_size=0.25"]):
        validate(compose_cfg(*overrides))


def supported_configs():
    """Every model x dataset pair of the same kind, every experiment preset on every dataset it
    names, and every Table 1 row on every Table 1 dataset."""
    path = {"edgelist": "dataset.loader.path=edges.csv", "array": "dataset.loader.path=faces.npz"}
    for model, dataset in itertools.product(options("model"), options("dataset")):
        yield [f"model={model}", f"dataset={dataset}", *([path[dataset]] if dataset in path else [])]
    for preset in ("vae_modern", "vae_paper"):
        for dataset in ("mnist", "binarized_mnist", "freyface", "digits", "array"):
            yield [f"+experiment={preset}", f"dataset={dataset}", *([path[dataset]] if dataset in path else [])]
    for preset in ("figure2_freyface", "figure2_mnist", "figure5"):
        yield [f"+experiment={preset}"]
    for dataset in ("freyface", "mnist"):
        yield ["+experiment=figure4", f"dataset={dataset}"]
    rows = {"table1": options("table1_row"), "table1_tuned": ["gae", "vgae", "gae_star", "vgae_star"]}  # their sweeps
    for preset, names in rows.items():
        for row, dataset in itertools.product(names, ("cora", "citeseer", "pubmed")):
            yield [f"+experiment={preset}", f"table1_row={row}", f"dataset={dataset}"]


def test_every_shipped_config_and_preset_validates():
    from vgae_toolkit.schema import validate

    count = 0
    for overrides in supported_configs():
        try:
            validate(compose_cfg(*overrides))
        except ConfigError as err:
            pytest.fail(f"{' '.join(overrides)}: {err}")
        count += 1
    assert count > 100


def test_every_shipped_key_is_declared():
    """A new key in conf/ needs its type and range in vgae_toolkit/schema.py."""
    from vgae_toolkit.schema import COMMON, DATASETS, MODELS

    undeclared = []
    parts = [(f"model/{part}", name) for part in ("encoder", "decoder", "regulariser") for name in options(f"model/{part}")]
    for group, name in [(g, n) for g in ("model", "dataset", "trainer", "split") for n in options(g)] + parts:
        if "/" in group:  # a part of the graph auto-encoder: its keys sit under model.<part>
            node = compose_cfg("model=vgae", f"{group}={name}").model
            keys = {group.split("/")[1]: yaml.safe_load((CONF / group / f"{name}.yaml").read_text())}
            group = "model"
        else:
            node = compose_cfg(f"{group}={name}")[group]
            keys = yaml.safe_load((CONF / group / f"{name}.yaml").read_text()) or {}
            for key, value in keys.items():
                if key in ("defaults", "_target_"):
                    continue
                leaves = [f"{key}.{k}" for k in value if k != "_target_"] if isinstance(value, dict) else [key]
                for leaf in leaves:
                    declared = (f"{group}.{leaf}" in COMMON
                                or (group == "model" and leaf in MODELS.get(node.get("_target_", ""), {}))
                                or (group == "dataset" and leaf in DATASETS[node.kind]))
                    if not declared:
                        undeclared.append(f"{group}/{name}.yaml: {leaf}")
    assert not undeclared, undeclared


def test_declared_choices_match_the_code():
    from vgae_toolkit.data.images import BINARIZE_MODES
    from vgae_toolkit.models.vae import ACTIVATIONS, DECODERS
    from vgae_toolkit.schema import COMMON, DATASETS, MODELS
    from vgae_toolkit.trainer import OPTIMIZERS

    vae = MODELS["vgae_toolkit.models.vae.VAE"]
    assert set(COMMON["trainer.optimizer"].choices) == set(OPTIMIZERS)
    assert set(vae["activation"].choices) == set(ACTIVATIONS)
    assert set(vae["decoder"].choices) == set(DECODERS)
    assert set(DATASETS["image"]["binarize"].choices) == set(BINARIZE_MODES)
