"""A config or output directory that cannot work fails in one line, before Hydra creates any folder."""
import errno
import os
import subprocess
import sys
import tempfile

import pytest

SMALL = ["dataset=sbm", "dataset.loader.num_nodes=100", "trainer.epochs=2", "trainer.progress=false"]


def cli(tmp_path, *args, output=None):
    env = {**os.environ, "VGAE_TOOLKIT_OUTPUT": str(output or tmp_path / "out")}
    return subprocess.run([sys.executable, "-m", "vgae_toolkit", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Error executing job" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ConfigError: "), proc.stderr
    for needle in needles:
        assert needle in line, line


def folders_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


@pytest.mark.slow
def test_output_variable_naming_a_file(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    proc = cli(tmp_path, *SMALL, output=tmp_path / "taken")
    assert_one_line_error(proc, "hydra.run.dir=", f"{tmp_path / 'taken'} is a file", "VGAE_TOOLKIT_OUTPUT")
    assert (tmp_path / "taken").read_text() == "not a folder"


@pytest.mark.slow
def test_run_dir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    proc = cli(tmp_path, *SMALL, f"hydra.run.dir={tmp_path / 'file' / 'run'}")
    assert_one_line_error(proc, f"hydra.run.dir={tmp_path / 'file' / 'run'}", "is a file")


@pytest.mark.slow
def test_read_only_run_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:  # root writes through any mode bits: nothing to test then
            os.rmdir(tempfile.mkdtemp(dir=locked))
            pytest.skip("this user can write into a 0o500 directory (root): permissions do not stop writes")
        except PermissionError:
            pass
        proc = cli(tmp_path, *SMALL, f"hydra.run.dir={locked / 'a' / 'run'}")
        assert_one_line_error(proc, f"hydra.run.dir={locked / 'a' / 'run'}", "Permission denied")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    ([*SMALL, "trainer.epochs=2.5"], "trainer.epochs: expected an integer in [1, 1000000], got 2.5"),
    (["dataset=edgelist"], "dataset.loader.path is required: set it on the command line, "
                           "e.g. dataset.loader.path=edges.csv"),
    ([*SMALL, "model=vae"], "model=vae is a image model but dataset=sbm is a graph dataset"),
])
def test_bad_config_leaves_no_run_folder(tmp_path, args, message):
    proc = cli(tmp_path, *args)
    assert_one_line_error(proc, message)
    assert folders_under(tmp_path / "out") == []


@pytest.mark.slow
def test_bad_sweep_leaves_no_folders(tmp_path):
    proc = cli(tmp_path, "-m", "model=gae,vgae", *SMALL, "model.dropout=1.5")
    assert_one_line_error(proc, "model.dropout: expected a finite number in [0, 1), got 1.5")
    assert folders_under(tmp_path / "out") == []
    # a value that only one job of the sweep has: that job's folder goes too
    proc = cli(tmp_path, "-m", *SMALL, "seed=-1,0")
    assert_one_line_error(proc, "seed: expected an integer in [0, 9223372036854775807], got -1")
    assert not list((tmp_path / "out").glob("multirun/*/*_s-1*"))  # the job folder, whatever overrides it names


def test_unwritable_output_root_is_a_config_error(tmp_path, monkeypatch):
    from vgae_toolkit.errors import ConfigError
    from vgae_toolkit.hydra_checks import check_output_root

    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"hydra\.run\.dir=.*file/x/y: cannot create the output directory, "
                                          r".*file is a file; set VGAE_TOOLKIT_OUTPUT"):
        check_output_root(tmp_path / "file" / "x" / "y", "hydra.run.dir")
    check_output_root(tmp_path / "new" / "deeper", "hydra.run.dir")  # creatable: fine, and nothing is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)  # a read-only filesystem, which root cannot write either
    with pytest.raises(ConfigError, match=r"hydra\.sweep\.dir=.*: cannot create the output directory in .* "
                                          r"\(Read-only file system\)"):
        check_output_root(tmp_path / "out", "hydra.sweep.dir")
