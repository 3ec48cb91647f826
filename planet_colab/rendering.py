"""Headless OpenGL for MuJoCo: choose `MUJOCO_GL` before mujoco is imported, and explain a missing GL.

MuJoCo reads `MUJOCO_GL` once, when it is first imported, so `choose_gl_backend()` must run before
any `import mujoco` / `dm_control` / gymnasium MuJoCo env. A value the user set is always kept.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import shutil
from pathlib import Path

# dm_control's Colab tutorial writes this file: Colab's GPU images ship NVIDIA's EGL library but not
# the glvnd entry that lets libEGL find it, so EGL would silently fall back to (or fail on) mesa.
NVIDIA_EGL_VENDOR_FILE = Path("/usr/share/glvnd/egl_vendor.d/10_nvidia.json")
_NVIDIA_EGL_VENDOR = {"file_format_version": "1.0.0", "ICD": {"library_path": "libEGL_nvidia.so.0"}}

GL_FIX = ("install a headless OpenGL library: `apt-get install -y libosmesa6` (used automatically when "
          "MUJOCO_GL is unset) or `apt-get install -y libegl1 libgl1-mesa-dri` for EGL (on Colab prefix with `!`)")


def nvidia_gpu_present() -> bool:
    """True when an NVIDIA driver is loaded (the kernel module's proc entry, or nvidia-smi on PATH)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _write_nvidia_egl_vendor_file() -> None:
    if NVIDIA_EGL_VENDOR_FILE.exists():
        return
    try:
        NVIDIA_EGL_VENDOR_FILE.parent.mkdir(parents=True, exist_ok=True)
        NVIDIA_EGL_VENDOR_FILE.write_text(json.dumps(_NVIDIA_EGL_VENDOR) + "\n")
    except OSError:
        pass  # not root: EGL may still find the driver; a failure then surfaces as the GL error below


def _import_triton_first() -> None:
    # mesa's software renderers (OSMesa, EGL on llvmpipe) bring their own LLVM; importing triton (the
    # compiler that PyPI's CUDA builds of torch ship, Colab's too, and that fused Adam imports) after
    # one of them has rendered segfaults the process (measured: Python 3.13, torch 2.14.1+cu130,
    # mujoco 3.17.0, mesa 22.3, osmesa and egl alike). Imported before any GL library, both work.
    if importlib.util.find_spec("triton") is not None:
        try:
            import triton  # noqa: F401
        except Exception:  # a broken triton is torch's problem to report, not the renderer's
            pass


def choose_gl_backend() -> str:
    """Set MUJOCO_GL (unless already set) to egl on NVIDIA GPUs, else osmesa if present, else egl."""
    _import_triton_first()
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if nvidia_gpu_present():
        _write_nvidia_egl_vendor_file()
        chosen = "egl"
    elif ctypes.util.find_library("OSMesa"):
        chosen = "osmesa"
    else:
        chosen = "egl"  # mesa's EGL renders on the CPU (llvmpipe) when there is no GPU
    os.environ["MUJOCO_GL"] = chosen
    # PyOpenGL (used by dm_control and mujoco's Python renderers) must agree with MuJoCo's choice.
    os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


# Measured on the suite's tasks (cartpole, walker, cheetah, finger, reacher, cup at 64×64 on mesa
# llvmpipe): the 2048² shadow map is most of a frame's cost; at 512² fewer than 0.2% of pixels change
# by more than 8 of 255 (shadow edges) and frames look the same, while turning shadows off darkens
# whole floors (walker: 44% of pixels) and turning multisampling off changes every edge (6%), so both
# stay on. Gymnasium's MuJoCo envs get the same settings (HalfCheetah: see env.make_env).
SHADOW_MAP_SIZE = 512


def configure_offscreen(model: object, image_size: int) -> None:
    """Cheapest faithful settings for small offscreen frames; call before the model's first render."""
    model.vis.quality.shadowsize = min(int(model.vis.quality.shadowsize), SHADOW_MAP_SIZE)
    # The offscreen buffer is allocated (and cleared) at this size; the suite's 640×480 only costs.
    model.vis.global_.offwidth = image_size
    model.vis.global_.offheight = image_size


def is_gl_failure(error: BaseException) -> bool:
    """True when the error was raised while loading or using OpenGL (PyOpenGL, MuJoCo's GL contexts)."""
    tb = error.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if any(part in path for part in ("/OpenGL/", "/egl/", "/osmesa/", "/_render/", "gl_context")):
            return True
        tb = tb.tb_next
    return False


def gl_error_message(error: BaseException) -> str:
    """One line saying that headless OpenGL failed, why, and how to fix it."""
    backend = os.environ.get("MUJOCO_GL", "?")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"MuJoCo cannot render headless (MUJOCO_GL={backend}: {first}); {GL_FIX}"
