"""The toolkit's own builders: the only ``_target_`` names an untrusted config may use.

A config the toolkit did not compose itself (the one stored inside a checkpoint, or a run
folder's) is data, not code. Hydra's ``instantiate`` would call whatever ``_target_`` names
(``builtins.open``, ``os.system``, ``torch.load``), so such a config is checked here before
anything in it is built: every ``_target_`` must be one of :data:`BUILDERS`, and no value may
hold an interpolation (``${...}``: resolvers run code and read the environment).
"""
from __future__ import annotations

from collections.abc import Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

from vgae_toolkit.errors import ConfigError

# Every builder a shipped config names; tests check that each conf/ ``_target_`` is listed here.
BUILDERS: frozenset[str] = frozenset({
    # graphs
    "vgae_toolkit.data.graphs.load_planetoid",
    "vgae_toolkit.data.graphs.load_karate",
    "vgae_toolkit.data.graphs.load_edgelist",
    "vgae_toolkit.data.graphs.make_sbm",
    # images
    "vgae_toolkit.data.images.load_mnist",
    "vgae_toolkit.data.images.load_binarized_mnist",
    "vgae_toolkit.data.images.load_freyface",
    "vgae_toolkit.data.images.load_digits_data",
    "vgae_toolkit.data.images.load_array",
    # models
    "vgae_toolkit.models.graph.GraphAutoEncoder",
    "vgae_toolkit.models.maskgae.MaskGAE",
    "vgae_toolkit.models.s2gae.S2GAE",
    "vgae_toolkit.models.vae.VAE",
    "vgae_toolkit.models.embedding.SpectralEmbedding",
    "vgae_toolkit.models.embedding.DeepWalk",
    # fits
    "vgae_toolkit.trainer.Trainer",
    "vgae_toolkit.closed_form.ClosedFormFit",
    # loggers (conf/logger)
    "vgae_toolkit.loggers.CSVLogger",
    "vgae_toolkit.loggers.TensorBoardLogger",
    "vgae_toolkit.loggers.MLflowLogger",
    # the command line's checks before Hydra creates a run folder (conf/config.yaml, hydra.callbacks)
    "vgae_toolkit.hydra_checks.PreflightCallback",
})


# Builders under the names older runs stored (a stored name is checked, never imported, by predict:
# it builds the data and the model, not the trainer).
RENAMED = {"vgae_toolkit.fit.ClosedFormFit": "vgae_toolkit.closed_form.ClosedFormFit"}

# Keys that change how a builder is called (positional arguments, a deferred call, conversion): the
# toolkit's own configs never set them, so in a stored config they can only mean a crafted call.
INSTANTIATE_FLAGS = frozenset({"_args_", "_partial_", "_convert_", "_recursive_"})


def _walk(node, path: str) -> Iterator[tuple[str, object]]:
    """Yields ``(dotted key, value)`` for every leaf below ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    else:
        yield path, node


def check_untrusted(cfg: DictConfig | dict, source: str) -> None:
    """Refuse a stored config that names anything but the toolkit's builders.

    Args:
        cfg: the config as loaded from ``source`` (not yet resolved or instantiated).
        source (str): the file it came from, named in the error.

    Raises:
        ConfigError: a ``_target_`` outside :data:`BUILDERS`, a non-string ``_target_``, an
            interpolation (``${...}``) anywhere in the config, or a call flag (:data:`INSTANTIATE_FLAGS`).
    """
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=False)
        except Exception as err:  # a malformed node: refuse it as data, never partly build it
            raise ConfigError(f"{source}: stored config cannot be read ({err})") from err
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: stored config is a {type(cfg).__name__}, expected a mapping")
    for key, value in _walk(cfg, ""):
        if isinstance(value, str) and "${" in value:
            raise ConfigError(f"{source}: stored config key {key} holds an interpolation ({value[:80]!r}); "
                              f"stored configs must be resolved values")
    _check_targets(cfg, "", source)
    for key in _flag_keys(cfg, ""):
        raise ConfigError(f"{source}: stored config key {key} is one of the builders' call flags "
                          f"({', '.join(sorted(INSTANTIATE_FLAGS))}), which no run's config holds; "
                          f"refused before anything was built")


def _flag_keys(node, path: str) -> Iterator[str]:
    """Dotted keys below ``node`` named as one of :data:`INSTANTIATE_FLAGS`, whatever their value."""
    if isinstance(node, dict):
        for key, value in node.items():
            full = f"{path}.{key}" if path else str(key)
            if key in INSTANTIATE_FLAGS:
                yield full
            yield from _flag_keys(value, full)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _flag_keys(value, f"{path}[{i}]")


def _check_targets(node, path: str, source: str) -> None:
    if isinstance(node, dict):
        if "_target_" in node:
            target = node["_target_"]
            if not isinstance(target, str) or RENAMED.get(target, target) not in BUILDERS:
                where = f"{path}._target_" if path else "_target_"
                raise ConfigError(
                    f"{source}: stored config key {where} names {target!r}, which is not one of the toolkit's "
                    f"builders; refused before anything was built (allowed: {', '.join(sorted(BUILDERS))})")
        for key, value in node.items():
            _check_targets(value, f"{path}.{key}" if path else str(key), source)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_targets(value, f"{path}[{i}]", source)

