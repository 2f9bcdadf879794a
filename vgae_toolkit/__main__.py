"""Command line: ``python -m vgae_toolkit model=vgae dataset=cora`` (Hydra overrides), or ``vgae-toolkit ...``."""
from vgae_toolkit.process import enable_huge_pages

enable_huge_pages()  # before torch is first imported, when PyTorch reads the setting (vgae_toolkit/process.py)

import importlib  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

STOPPED = "stopped by {}: no run was training (a run's files are written whole)"


def _stop_outside_training(signum, frame) -> None:
    # while no run is training (it then installs its own handlers, vgae_toolkit/interrupt.py), a stop
    # request ends the command with one line instead of a traceback from whatever was under way
    print(STOPPED.format(signal.Signals(signum).name), file=sys.stderr)
    sys.exit(128 + signum)


# only when this is the command (python -m vgae_toolkit, or the vgae-toolkit script), not an import
COMMAND = __name__ == "__main__" or sys.argv[0].endswith("vgae-toolkit")
if COMMAND and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _stop_outside_training)
    signal.signal(signal.SIGINT, _stop_outside_training)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from vgae_toolkit.api import config_dir  # noqa: E402 (its folder logic is shared with the Python interface)
from vgae_toolkit.distributed import command_line  # noqa: E402
from vgae_toolkit.errors import ToolkitError  # noqa: E402
from vgae_toolkit.hydra_checks import fail  # noqa: E402
from vgae_toolkit.run import run  # noqa: E402

# The task class of each dataset kind, whose ``primary_metric`` is what ``trainer.monitor=auto`` means.
TASK_CLASSES = {"graph": "vgae_toolkit.tasks.link.LinkPredictionTask",
                "image": "vgae_toolkit.tasks.image.ImageDensityTask"}


def monitored(cfg: DictConfig, metrics: dict) -> float:
    """The run's validation value of ``trainer.monitor`` (``auto``: the task's main metric).

    This is what a tuning sweep (``hparams_search=optuna``) maximises; NaN when the run has no
    validation split, or its fit reports no such value.
    """
    name = cfg.trainer.get("monitor", "auto")
    if name == "auto":
        module, cls = TASK_CLASSES[cfg.dataset.kind].rsplit(".", 1)
        name = getattr(importlib.import_module(module), cls).primary_metric
    value = metrics.get(name)
    return float(value) if isinstance(value, (int, float)) else math.nan


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def main(cfg: DictConfig) -> float:
    """One run; returns its monitored validation value (:func:`monitored`) for Hydra's sweepers."""
    try:
        metrics = run(cfg)
    except ToolkitError as err:  # a named, expected failure: one line, no traceback
        fail(err)
    return monitored(cfg, metrics)


def cli() -> None:
    """The ``vgae-toolkit`` console command: the same as ``python -m vgae_toolkit``."""
    with command_line():  # under torchrun: one run folder (rank 0's), the process group closed at exit
        main()


if __name__ == "__main__":
    cli()
