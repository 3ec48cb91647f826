"""Ctrl-C in the seconds `python -m planet_colab` spends importing torch: one line and exit 130, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Runs the command as `python -m planet_colab` does, and sends itself SIGINT the moment it first imports
# the named module: the interrupt lands inside that import, at the same point every time.
INTERRUPT_AT_IMPORT = """
import builtins, os, runpy, signal, sys
target, real = sys.argv[1], builtins.__import__
def interrupting_import(name, *args, **kwargs):
    if name == target and target not in sys.modules:
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = interrupting_import
sys.argv = ["planet_colab", *sys.argv[2:]]
runpy.run_module("planet_colab", run_name="__main__", alter_sys=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT with os.kill, which Windows lacks")
@pytest.mark.parametrize("module", ["torch", "gymnasium"])
def test_ctrl_c_while_importing_prints_one_line_and_exits_130(module, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", INTERRUPT_AT_IMPORT, module, "train", "--preset", "smoke",
                           "--run-dir", str(run_dir), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["Stopped; nothing was lost. Run the same command to resume."]
    assert not run_dir.exists()


def test_importing_the_command_module_leaves_ctrl_c_alone():
    import signal

    before = signal.getsignal(signal.SIGINT)
    import planet_colab.__main__  # noqa: F401

    assert signal.getsignal(signal.SIGINT) is before
