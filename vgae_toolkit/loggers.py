"""Optional experiment loggers (``logger=csv|tensorboard|mlflow``), next to ``metrics.json``.

A logger is a trainer callback: it receives each epoch's record (``epoch``, ``train_*``, ``val_*``
and whatever the task adds) as the trainer makes it, then the run's final metrics. Everything is
written inside the run directory, so a run folder stays self-contained and needs no server:

- :class:`CSVLogger`: ``<run>/log.csv``, one row per epoch and a last row ``epoch=final``;
- :class:`TensorBoardLogger`: ``<run>/tensorboard/`` (``tensorboard --logdir outputs``);
- :class:`MLflowLogger`: ``<run>/mlflow/``, a local file store (``mlflow ui --backend-store-uri <run>/mlflow``).

The libraries behind the last two are optional extras, imported only when such a logger is built.
"""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

from torch import nn

from vgae_toolkit.builders import build
from vgae_toolkit.errors import ConfigError

FINAL = "final"  # the epoch column of log.csv's last row, which holds the final metrics


def scalars(record: dict) -> dict[str, float]:
    """The numeric entries of ``record`` (no bools, nested values or strings), as floats."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


def missing_extra(name: str, extra: str, err: ImportError) -> ConfigError:
    return ConfigError(f"logger={name} needs the {extra} package, which is not installed ({err}); "
                       f'install it with: pip install "vgae-toolkit[{extra}]"')


class Logger:
    """Base class: a trainer callback ``f(epoch, record, model)`` that also takes the final metrics.

    Args:
        out_dir (str or Path): the run directory; a logger writes only below it.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def __call__(self, epoch: int, record: dict, model: nn.Module) -> None:
        self.log_epoch(epoch, scalars(record))

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        """Records one epoch's numbers."""
        raise NotImplementedError

    def finish(self, metrics: dict) -> None:
        """Records the final metrics (what ``metrics.json`` holds) and closes the logger."""
        raise NotImplementedError


class CSVLogger(Logger):
    """``<run>/log.csv``: a header, one row per epoch, then a row ``epoch=final`` of the final numbers.

    Columns are the union of every row's keys (validation numbers may come every few epochs only);
    a new column rewrites the file, otherwise rows are appended. Rows left from an earlier attempt
    at the same epochs are dropped, so a resumed run continues its log and a re-run starts it afresh.

    Args:
        out_dir (str or Path): the run directory.
        filename (str): the file's name in it. (default: ``log.csv``)
    """

    def __init__(self, out_dir: str | Path, filename: str = "log.csv") -> None:
        super().__init__(out_dir)
        self.path = self.out_dir / filename
        self.rows: list[dict] | None = None  # read from an earlier attempt on the first epoch
        self.columns: list[str] = ["epoch"]

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        if self.rows is None:
            self.rows = [r for r in self._earlier() if r["epoch"] != FINAL and int(r["epoch"]) < epoch]
            self.columns = list(dict.fromkeys(["epoch", *(k for r in self.rows for k in r)]))
            self._rewrite()
        self._add({"epoch": epoch, **values})

    def finish(self, metrics: dict) -> None:
        if self.rows is None:  # a run without epochs still leaves its final row
            self.rows = []
        self._add({"epoch": FINAL, **scalars(metrics)})

    def _earlier(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

    def _add(self, row: dict) -> None:
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half


class TensorBoardLogger(Logger):
    """``<run>/tensorboard/``: every epoch's numbers as scalars; the final ones under ``final/``.

    Needs the ``tensorboard`` package (extra ``tensorboard``).

    Args:
        out_dir (str or Path): the run directory.
        subdir (str): the event files' folder in it. (default: ``tensorboard``)
    """

    def __init__(self, out_dir: str | Path, subdir: str = "tensorboard") -> None:
        super().__init__(out_dir)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise missing_extra("tensorboard", "tensorboard", err) from None
        self.writer = SummaryWriter(log_dir=str(self.out_dir / subdir))
        self.last_epoch = 0

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()  # an interrupted run keeps its curves
        self.last_epoch = epoch

    def finish(self, metrics: dict) -> None:
        step = metrics.get("selected_epoch") or self.last_epoch
        for key, value in scalars(metrics).items():
            self.writer.add_scalar(f"final/{key}", value, step)
        self.writer.close()


class MLflowLogger(Logger):
    """``<run>/mlflow/``: an MLflow file store holding one MLflow run per toolkit run.

    Epoch numbers are logged as metrics at their epoch; at the end the resolved config goes in as
    parameters (dotted keys), the final numbers as metrics and the status as a tag. The store is
    local (a ``file:`` URI): nothing is sent anywhere.

    Needs the ``mlflow`` package (extra ``mlflow``).

    Args:
        out_dir (str or Path): the run directory.
        experiment (str): the MLflow experiment's name. (default: ``vgae-toolkit``)
        run_name (str, optional): the MLflow run's name; the run folder's name if not given.
        subdir (str): the store's folder in the run directory. (default: ``mlflow``)
    """

    def __init__(self, out_dir: str | Path, experiment: str = "vgae-toolkit", run_name: str | None = None,
                 subdir: str = "mlflow") -> None:
        super().__init__(out_dir)
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient
        except ImportError as err:
            raise missing_extra("mlflow", "mlflow", err) from None
        self.metric, self.param = Metric, Param
        store = (self.out_dir / subdir).absolute()
        store.mkdir(parents=True, exist_ok=True)
        self.uri = store.as_uri()  # file:///...: a local store, never the environment's tracking server
        # MLflow 3 refuses its file store unless asked: a folder inside the run is what this logger is for
        # (a database store would cost seconds of set-up per run). An explicit setting is left alone.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name or self.out_dir.name).info.run_id

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._metrics(values, step=epoch)

    def finish(self, metrics: dict) -> None:
        params = [self.param(k, str(v)[:500]) for k, v in flatten(metrics.get("config", {})).items()]
        for start in range(0, len(params), 100):  # the most one batch may hold
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        self._metrics({f"final_{k}": v for k, v in scalars(metrics).items()}, step=metrics.get("selected_epoch") or 0)
        self.client.set_tag(self.run_id, "status", str(metrics.get("status", "")))
        self.client.set_terminated(self.run_id)

    def _metrics(self, values: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [self.metric(k, v, now, step) for k, v in values.items() if math.isfinite(v)]
        for start in range(0, len(batch), 1000):  # the most one batch may hold
            self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])


def flatten(node, prefix: str = "") -> dict[str, object]:
    """A nested config as ``{"trainer.lr": 0.01, ...}``; lists stay whole values."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def build_logger(cfg, out_dir: str | Path) -> Logger | None:
    """The run's logger from ``cfg.logger`` (``logger=csv|tensorboard|mlflow``); ``None`` without one.

    Args:
        cfg (DictConfig): the run's config.
        out_dir (str or Path): the run directory, where the logger writes.
    """
    node = cfg.get("logger")
    return None if node is None else build(node, "logger", out_dir=str(out_dir))
