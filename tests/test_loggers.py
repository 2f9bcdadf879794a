"""Optional loggers (logger=csv|tensorboard|mlflow): every epoch and the final metrics, inside the run folder."""
import csv
import json
import sys

import pytest
import yaml

from helpers import CONF, compose_cfg
from vgae_toolkit.errors import ConfigError
from vgae_toolkit.loggers import CSVLogger
from vgae_toolkit.predict import load_run
from vgae_toolkit.run import run

EPOCHS = 3
TINY = ["dataset=sbm", "dataset.loader.num_nodes=100", f"trainer.epochs={EPOCHS}", "trainer.progress=false"]


def train(tmp_path, logger, *overrides):
    out = tmp_path / "run"
    metrics = run(compose_cfg(*TINY, f"logger={logger}", *overrides), out)
    return out, metrics


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_default_is_metrics_json_only(tmp_path):
    out = tmp_path / "run"
    run(compose_cfg(*TINY), out)
    assert not {"log.csv", "tensorboard", "mlflow"} & {p.name for p in out.iterdir()}


def test_csv_logs_every_epoch_then_the_final_metrics(tmp_path):
    out, metrics = train(tmp_path, "csv")
    rows = read_csv(out / "log.csv")
    assert [r["epoch"] for r in rows] == [*map(str, range(1, EPOCHS + 1)), "final"]
    history = json.loads((out / "metrics.json").read_text())["history"]
    for row, record in zip(rows, history):
        assert float(row["train_loss"]) == pytest.approx(record["train_loss"])
        assert float(row["val_ap"]) == pytest.approx(record["val_ap"])
    assert float(rows[-1]["test_auc"]) == pytest.approx(metrics["test_auc"])
    load_run(out)  # a stored config with a logger is still one predict accepts


def test_csv_keeps_earlier_epochs_of_a_resumed_run_and_drops_stale_ones(tmp_path):
    first = CSVLogger(tmp_path)
    for epoch in (1, 2, 3):
        first(epoch, {"epoch": epoch, "train_loss": float(epoch)}, None)
    resumed = CSVLogger(tmp_path)  # picks up after epoch 2: epoch 3 is logged again
    resumed(3, {"epoch": 3, "train_loss": 30.0, "val_ap": 0.5}, None)  # a new column rewrites the header
    resumed.finish({"test_ap": 0.75, "status": "complete", "history": []})
    rows = read_csv(tmp_path / "log.csv")
    assert [(r["epoch"], r["train_loss"], r["val_ap"]) for r in rows] == [
        ("1", "1.0", ""), ("2", "2.0", ""), ("3", "30.0", "0.5"), ("final", "", "")]
    assert rows[-1]["test_ap"] == "0.75"


def test_tensorboard_writes_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, metrics = train(tmp_path, "tensorboard")
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "val_ap", "final/test_auc"} <= tags
    assert [e.step for e in events.Scalars("train_loss")] == list(range(1, EPOCHS + 1))
    assert events.Scalars("final/test_auc")[0].value == pytest.approx(metrics["test_auc"])


def test_mlflow_writes_a_local_file_store(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out, metrics = train(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=(out / "mlflow").as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == "vgae-toolkit"]
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "run" and logged.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "train_loss")] == list(range(1, EPOCHS + 1))
    assert logged.data.metrics["final_test_auc"] == pytest.approx(metrics["test_auc"])
    assert logged.data.params["trainer.epochs"] == str(EPOCHS) and logged.data.tags["status"] == "complete"


@pytest.mark.parametrize("logger, module", [("tensorboard", "torch.utils.tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_extra_names_what_to_install(tmp_path, monkeypatch, logger, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed
    for name in [m for m in sys.modules if m.startswith(f"{module}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=rf'logger={logger} needs .* pip install "vgae-toolkit\[{logger}\]"'):
        train(tmp_path, logger)
    assert not (tmp_path / "run" / "metrics.json").exists()  # refused before any training


def test_every_logger_key_is_declared():
    from vgae_toolkit.schema import COMMON

    for path in sorted((CONF / "logger").glob("*.yaml")):
        keys = set(yaml.safe_load(path.read_text())) - {"_target_"}
        assert {f"logger.{k}" for k in keys} <= set(COMMON), path.name
        compose_cfg(f"logger={path.stem}")  # and the option composes
