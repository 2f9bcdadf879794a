"""Process settings made before torch is imported: huge pages for large tensors."""
import os
import subprocess
import sys

from vgae_toolkit import process


def test_huge_pages_follow_the_kernel_mode(tmp_path):
    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    assert process.huge_pages_available(setting)
    setting.write_text("always madvise [never]\n")
    assert not process.huge_pages_available(setting)
    assert not process.huge_pages_available(tmp_path / "missing")  # not Linux, or no THP support


def test_enable_is_a_no_op_once_torch_is_imported(tmp_path, monkeypatch):
    setting = tmp_path / "enabled"
    setting.write_text("[always] madvise never\n")
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert "torch" in sys.modules  # the test session has imported it: too late for PyTorch to read it
    assert process.enable_huge_pages(setting) is False
    assert "THP_MEM_ALLOC_ENABLE" not in os.environ


def _entry_point_setting(env: dict) -> str:
    # a fresh interpreter that imports the command-line module as ``python -m vgae_toolkit`` does
    code = ("import runpy, sys; sys.argv = ['x', '--help']\n"
            "try:\n    runpy.run_module('vgae_toolkit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "import os, sys; print('SETTING', os.environ.get('THP_MEM_ALLOC_ENABLE'), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return next(line for line in out.stderr.splitlines() if line.startswith("SETTING")).split()[1]


def test_the_command_line_sets_it_before_torch_and_keeps_a_user_choice():
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    expected = "1" if process.huge_pages_available() else "None"
    assert _entry_point_setting(env) == expected
    assert _entry_point_setting({**env, "THP_MEM_ALLOC_ENABLE": "0"}) == "0"
