"""MuJoCo's software rendering and torch's triton in one process (Colab's CPU runtime, a CPU box with
PyPI's CUDA torch): training a DMC task must not crash when fused Adam imports triton after a frame."""

import ctypes.util
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from run_checks import subprocess_env

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None or importlib.util.find_spec("dm_control") is None,
    reason="needs triton (PyPI's CUDA torch) and dm_control (pip install -e \".[dmc]\" && python -m "
           "planet_colab.dmc_install)")

_RENDER_THEN_TRITON = """
from planet_colab.env import make_env
env = make_env("dmc:cartpole-swingup", action_repeat=8, max_episode_steps=16)
env.reset(seed=0)
import triton
print("survived", flush=True)
"""


# The library each backend loads; a machine may have one and not the other (EGL without OSMesa, say).
GL_LIBRARIES = {"osmesa": "OSMesa", "egl": "EGL"}


@pytest.mark.parametrize("backend", ["osmesa", "egl"])
def test_triton_imported_after_a_software_rendered_frame_does_not_crash(backend):
    if ctypes.util.find_library(GL_LIBRARIES[backend]) is None:
        pytest.skip(f"no lib{GL_LIBRARIES[backend]} on this machine, so MuJoCo cannot render with {backend} "
                    f"(apt-get install -y {'libosmesa6' if backend == 'osmesa' else 'libegl1'})")
    env = subprocess_env(MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    out = subprocess.run([sys.executable, "-c", _RENDER_THEN_TRITON], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert "survived" in out.stdout, f"exit {out.returncode}: {out.stderr[-2000:]}"
