"""Sweeps that are killed and re-run, and sweeps that run at the same time."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

TINY = ["dataset=sbm", "dataset.loader.num_nodes=200", "trainer.epochs=5", "trainer.progress=false"]


def sweep(tmp_path, sweep_dir, *args):
    env = {**os.environ, "VGAE_TOOLKIT_OUTPUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vgae_toolkit", "-m", *TINY, *args]
    if sweep_dir is not None:
        cmd.append(f"hydra.sweep.dir={sweep_dir}")
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(root):
    return {p.parent.name: json.loads(p.read_text()) for p in root.rglob("metrics.json")
            if json.loads(p.read_text()).get("status") == "complete"}


def test_killed_sweep_resumes_without_rerunning_finished_jobs(tmp_path):
    root = tmp_path / "sweep"
    proc = sweep(tmp_path, root, "seed=0,1,2,3,4,5")
    deadline = time.time() + 240
    while len(finished(root)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = finished(root)
    assert 2 <= len(done_before) < 6, "the sweep should have been killed part-way"
    stamps = {name: (root / name / "metrics.json").stat().st_mtime_ns for name in done_before}
    proc = sweep(tmp_path, root, "seed=0,1,2,3,4,5")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    done = finished(root)
    assert sorted(m["seed"] for m in done.values()) == [0, 1, 2, 3, 4, 5]  # each job exactly once
    assert len(list(root.glob("*/metrics.json"))) == 6
    for name, stamp in stamps.items():  # finished jobs were skipped, not trained again
        assert (root / name / "metrics.json").stat().st_mtime_ns == stamp


def test_concurrent_sweeps_do_not_clobber(tmp_path):
    a = sweep(tmp_path, None, "seed=0,1", "model=gae")
    b = sweep(tmp_path, None, "seed=0,1", "model=gae")
    for proc in (a, b):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    runs = list((tmp_path / "out" / "multirun").rglob("metrics.json"))
    assert len(runs) == 4 and len({p.parent for p in runs}) == 4
    assert all(json.loads(p.read_text())["status"] == "complete" for p in runs)
