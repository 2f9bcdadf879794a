"""The command line as a user runs it: subprocesses, Hydra's output directories, a sweep."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SMALL = ["dataset=sbm", "dataset.loader.num_nodes=300", "trainer.epochs=10"]


def cli(tmp_path, *args):
    env = {**os.environ, "VGAE_TOOLKIT_OUTPUT": str(tmp_path / "out")}
    return subprocess.run([sys.executable, "-m", "vgae_toolkit", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_single_run_writes_a_run_directory(tmp_path):
    proc = cli(tmp_path, *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "test_auc" in proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    assert {"metrics.json", "curves.png", ".hydra"} <= {p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "metrics.json").read_text())["model"] == "vgae"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing written in the working directory


def test_two_job_sweep(tmp_path):
    proc = cli(tmp_path, "-m", "model=gae,vgae", *SMALL)
    assert proc.returncode == 0, proc.stderr
    runs = sorted((tmp_path / "out" / "multirun").glob("*/*/metrics.json"))
    assert [json.loads(p.read_text())["model"] for p in runs] == ["gae", "vgae"]


def test_errors_are_one_clear_line(tmp_path):
    proc = cli(tmp_path, "dataset=cora", f"paths.data_dir={tmp_path / 'none'}", "paths.download=false")
    assert proc.returncode == 2
    assert "DataError: dataset 'cora'" in proc.stderr and "VGAE_TOOLKIT_DATA" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli(tmp_path, "dataset=nope")
    assert proc.returncode != 0 and "Could not find 'dataset/nope'" in proc.stderr
