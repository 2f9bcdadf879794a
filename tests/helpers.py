"""Shared test helpers: compose the project's configs without a command line."""
from pathlib import Path

from hydra import compose, initialize_config_dir

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def sbm_task(features: bool = True, n: int = 200):
    """A link task on a 4-block SBM graph of ``n`` nodes (split seed 0): small, with community structure."""
    from vgae_toolkit.data.graphs import make_sbm
    from vgae_toolkit.tasks.link import LinkPredictionTask

    return LinkPredictionTask(make_sbm(num_nodes=n, num_blocks=4, p_in=0.2, p_out=0.01, seed=0), split_seed=0,
                              features=features)
