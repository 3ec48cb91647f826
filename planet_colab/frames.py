"""Pictures in and out: image arrays as every picture- or video-making function accepts them,
(N, H, W, 3) uint8, and matplotlib figures as PNG bytes or files.

Callers may pass uint8 pixels, floats in [0, 1], a list of frames or torch tensors; anything else is
refused with a one-line error naming the argument, before a figure or a file is started. The modules
that draw (viz, video, sweep_report) all build on this one, which draws nothing itself.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from planet_colab.safeio import mkdir, write_atomic


def to_numpy(x: Any) -> np.ndarray:
    """`x` as a numpy array; a torch tensor is detached and moved to the CPU first."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """(N, H, W, 3) uint8 from uint8 or floats in [0, 1]; ValueError naming `name` otherwise."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError(f"{name}: got no frames")
        frames = np.stack([to_numpy(f) for f in frames])
    arr = to_numpy(frames)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected images of shape (N, H, W, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: got no frames")
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise ValueError(f"{name}: float images must be in [0, 1], got range "
                             f"[{arr.min():.3g}, {arr.max():.3g}]")
        return np.round(arr * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"{name}: integer pixels must be in 0..255, got range [{arr.min()}, {arr.max()}]")
        return arr.astype(np.uint8)
    raise ValueError(f"{name}: expected uint8 or float pixels, got dtype {arr.dtype}")


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """The matplotlib figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write the figure as a PNG of exactly figsize × dpi pixels (no tight cropping); return the path."""
    path = Path(path)
    mkdir(path.parent, parents=True)
    write_atomic(path, figure_png(fig, dpi))
    return path
