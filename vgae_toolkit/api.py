"""The Python interface: ``fit`` a model on a dataset or on your own graph, ``load`` a finished run.

Both build on the same :func:`~vgae_toolkit.run.run` as the command line, with the same configs:
the overrides are the command line's strings.

    >>> import vgae_toolkit as vt
    >>> result = vt.fit("cora", "model=vgae", "trainer.epochs=50")
    >>> result.metrics["test_auc"], result.embed().shape
    >>> result = vt.fit(data, "model=gae", encoder=MyGATEncoder())   # a torch_geometric Data, your module
    >>> result.score(torch.tensor([[0, 1], [2, 3]]))                 # link probabilities of (0, 2), (1, 3)
    >>> result.save("runs/mine"); vt.load("runs/mine").embed()
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from vgae_toolkit.errors import ConfigError


def config_dir() -> str:
    """The folder of the toolkit's ``config.yaml`` (inside an installed package, or the checkout's ``conf/``)."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    return str(installed if (installed / "config.yaml").is_file() else package.parent / "conf")


def compose(*overrides: str) -> DictConfig:
    """The config the command line would compose from ``overrides`` (e.g. ``"model=gae"``)."""
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"overrides are strings such as 'model=gae' or 'trainer.epochs=50', got {item!r}")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


@dataclass
class Result:
    """A trained model with its task and metrics.

    Attributes:
        metrics (dict): what the run wrote to ``metrics.json`` (validation and test numbers, history).
        model (nn.Module): the trained model (the weights ``trainer.select`` chose), in eval mode.
        task: the task it was trained on (the graph, its split, the encoder's inputs).
        config (DictConfig): the composed config.
    """

    metrics: dict
    model: nn.Module
    task: object
    config: DictConfig

    def embed(self) -> Tensor:
        """Node embeddings: posterior means, the encoder on the training graph, ``[N, latent]``."""
        return next(iter(self.task.embed(self.model).values()))

    def score(self, pairs: Tensor) -> Tensor:
        """Link probabilities of the node-index pairs ``pairs`` ``[2, P]``."""
        if not hasattr(self.task, "score_pairs"):
            raise ConfigError("score() needs a graph model")
        pairs = torch.as_tensor(pairs)
        if pairs.dim() != 2 or pairs.size(0) != 2 or pairs.dtype.is_floating_point:
            raise ConfigError(f"pairs: expected a [2, P] tensor of node indices, got {pairs.dtype} {tuple(pairs.shape)}")
        n = self.task.data.num_nodes
        if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= n):
            raise ConfigError(f"pairs: node indices must be in [0, {n})")
        return self.task.score_pairs(self.model, pairs.long())

    def save(self, directory: str | Path) -> Path:
        """Write a run folder (``last.pt``, ``metrics.json``, ``graph.pt`` for a given graph) that
        :func:`load` and ``python -m vgae_toolkit.predict`` read back."""
        from vgae_toolkit.checkpoint import save_checkpoint
        from vgae_toolkit.graph_input import save_graph
        from vgae_toolkit.run import write_json

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        summary = {k: v for k, v in self.metrics.items() if k not in ("history", "config")}
        save_checkpoint(out / "last.pt", self.model, self.config, summary)
        (out / "best.pt").unlink(missing_ok=True)  # the saved weights are the ones in use
        if self.config.dataset.name == "given":
            save_graph(out / "graph.pt", self.task.data, self.task.split)
        write_json(out / "metrics.json", self.metrics)
        return out


def fit(data=None, *overrides: str, encoder: nn.Module | None = None,
        output_dir: str | Path | None = None) -> Result:
    """Train and evaluate a model, as ``python -m vgae_toolkit`` does with the same overrides.

    Args:
        data: a dataset name (``"cora"``, ``"sbm"``; the same as ``"dataset=cora"``), a
            ``torch_geometric.data.Data`` (``edge_index``, optional ``x`` and ``edge_weight``: checked,
            symmetrised, duplicates and self-loops dropped, each change logged), a ready-made split
            (the ``(train, val, test)`` of ``RandomLinkSplit``, or a ``Data`` with
            ``train_pos_edge_index``, ``val_pos_edge_index``, ... tensors: used as given), or ``None``
            to take the dataset from ``overrides``.
        *overrides (str): the command line's overrides, e.g. ``"model=vgae"``, ``"trainer.epochs=50"``.
        encoder (nn.Module, optional): your encoder, ``forward(x, edge_index[, edge_weight])`` returning
            ``[N, d]`` (GAE), ``[N, 2d]`` or ``(mu, logstd)`` (VGAE); ``x`` is ``None`` without features.
        output_dir (str or Path, optional): write the run folder there; by default nothing is written.
    """
    from torch_geometric.data import Data

    if isinstance(data, str):
        overrides = (data if "=" in data else f"dataset={data}", *overrides)
        data = None
    elif data is not None:
        if not isinstance(data, (Data, tuple, list)):
            raise ConfigError(f"data: expected a dataset name, a torch_geometric Data or a ready-made split, "
                              f"got {type(data).__name__}")
        if any(o.startswith("dataset=") for o in overrides if isinstance(o, str)):
            raise ConfigError("data was handed over: leave dataset= out of the overrides")
        overrides = ("dataset=given", *overrides)
    if encoder is not None and not isinstance(encoder, nn.Module):
        raise ConfigError(f"encoder: expected a torch.nn.Module, got {type(encoder).__name__}")
    cfg = compose(*overrides)
    from vgae_toolkit.run import run

    scratch = None if output_dir is not None else tempfile.mkdtemp(prefix="vgae-toolkit-")
    objects: dict = {}
    try:
        metrics = run(cfg, output_dir or scratch, data=data, encoder=encoder, objects=objects)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if "model" not in objects:  # the folder already held this finished run: it was not trained again
        return load(output_dir, data=data, encoder=encoder)
    objects["model"].eval()
    return Result(metrics=metrics, model=objects["model"], task=objects["task"], config=cfg)


def load(run_dir: str | Path, *, which: str | None = None, data=None, encoder: nn.Module | None = None) -> Result:
    """A finished run folder as a :class:`Result` (the stored config is checked as untrusted input).

    Args:
        run_dir (str or Path): a run folder (``metrics.json``, ``last.pt`` and, for a given graph, ``graph.pt``).
        which (str, optional): ``best`` or ``last`` weights; by default those the run reported
            (``best`` under ``trainer.select=best``).
        data, encoder: the graph and encoder module a run was trained with, where they cannot be
            rebuilt from its folder (an encoder module is never stored as code).
    """
    from vgae_toolkit.predict import load_run

    run_dir = Path(run_dir)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{run_dir}: no readable metrics.json, not a finished run folder ({err})") from err
    if not isinstance(metrics, dict):
        raise ConfigError(f"{run_dir}/metrics.json: expected a JSON object")
    if which is None:
        which = "best" if metrics.get("select") == "best" else "last"
    task, model, ckpt = load_run(run_dir, which=which, data=data, encoder=encoder)
    return Result(metrics=metrics, model=model, task=task, config=OmegaConf.create(ckpt["config"]))
