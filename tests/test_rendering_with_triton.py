"""MuJoCo's software rendering and torch's triton in one process (Colab's CPU runtime, a CPU box with
PyPI's CUDA torch): training a DMC task must not crash when fused Adam imports triton after a frame."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from run_checks import subprocess_env

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or importlib.util.find_spec("dm_control") is None,
    reason="needs triton (PyPI's CUDA torch) and dm_control (pip install -e .[dmc])")

_RENDER_THEN_TRITON = """
from planet_colab.env import make_env
env = make_env("dmc:cartpole-swingup", action_repeat=8, max_episode_steps=16)
env.reset(seed=0)
import triton
print("survived", flush=True)
"""


@pytest.mark.parametrize("backend", ["osmesa", "egl"])
def test_triton_imported_after_a_software_rendered_frame_does_not_crash(backend):
    env = subprocess_env(MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    out = subprocess.run([sys.executable, "-c", _RENDER_THEN_TRITON], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert "survived" in out.stdout, f"exit {out.returncode}: {out.stderr[-2000:]}"
