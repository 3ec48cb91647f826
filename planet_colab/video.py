"""Episode videos: on disk in the format the file name says (GIF always, MP4 when ffmpeg is installed),
and inline in a notebook (a looping GIF, or a player with play/pause/step controls).

MP4 goes through imageio-ffmpeg (`pip install imageio-ffmpeg`, which brings its own ffmpeg binary);
without it a .mp4 name is refused before any episode is played, never silently written as a GIF.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from planet_colab.checks import positive_int
from planet_colab.frames import as_frames
from planet_colab.safeio import mkdir, write_atomic

__all__ = ["check_video_path", "save_video", "save_gif", "gif_html", "video_html"]

MP4_INSTALL = "pip install imageio-ffmpeg"
# A 64×64 episode is a stamp on today's screens: files are written 4× larger (256×256), pixels kept crisp.
FILE_SCALE = 4


def check_video_path(path: str | os.PathLike, what: str = "video") -> Path:
    """`path` as a Path when this machine can write its format; else ValueError naming the fix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ValueError(f"{what} {path}: writing MP4 needs imageio-ffmpeg (`{MP4_INSTALL}`); "
                         "or give a .gif name")
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{what} {path}: unknown video format {suffix or '(no extension)'!r}; "
                         "name it .gif or .mp4")
    return path


def _scaled_frames(frames: Any, fps: float, scale: int) -> np.ndarray:
    """Checked (T, H·scale, W·scale, 3) uint8 frames; ValueError for a bad fps or scale."""
    imgs = as_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    positive_int("scale", scale)
    if scale > 1:
        imgs = imgs.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest-neighbour: crisp pixels
    return imgs


def _gif_bytes(frames: Any, fps: float, scale: int) -> bytes:
    from PIL import Image

    pil = [Image.fromarray(f) for f in _scaled_frames(frames, fps, scale)]
    buf = io.BytesIO()
    # Pillow merges identical consecutive frames (adding their durations): the clip's timing is kept.
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:],
                duration=max(1, round(1000 / fps)), loop=0)
    return buf.getvalue()


def save_gif(frames: Any, path: str | os.PathLike, fps: float = 15, scale: int = FILE_SCALE) -> Path:
    """Write frames (T, H, W, 3) as a looping GIF (optionally upscaled by `scale`); return the path."""
    data = _gif_bytes(frames, fps, scale)
    path = Path(path)
    mkdir(path.parent, parents=True)
    write_atomic(path, data)
    return path


def save_video(frames: Any, path: str | os.PathLike, fps: float = 15, scale: int = FILE_SCALE) -> Path:
    """Write frames (T, H, W, 3) uint8 as the GIF or MP4 that `path`'s extension names; return the path."""
    path = check_video_path(path)
    if path.suffix.lower() == ".gif":
        return save_gif(frames, path, fps=fps, scale=scale)
    imgs = _scaled_frames(frames, fps, scale)
    mkdir(path.parent, parents=True)
    # ffmpeg writes to a file name (and picks the container from its suffix): encode on the local
    # disk, then put the finished bytes on the run directory (Drive) in one crash-safe write.
    with tempfile.TemporaryDirectory(prefix="planet_colab_video_") as scratch:
        local = Path(scratch) / f"video{path.suffix}"
        _encode_mp4(imgs, local, fps)
        write_atomic(path, local.read_bytes())  # an episode's video: tens of kilobytes
    return path


def _encode_mp4(imgs: np.ndarray, path: Path, fps: float) -> None:
    import imageio_ffmpeg

    height, width = imgs.shape[1:3]
    # H.264 in yuv420p (what every player opens) needs even sizes; 16-pixel blocks avoid a rescale.
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                         pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=16,
                                         ffmpeg_log_level="error")
    writer.send(None)
    try:
        for frame in imgs:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def gif_html(frames: Any, fps: float = 15, scale: int = 3) -> Any:
    """An inline, looping GIF of the frames as IPython HTML (no JavaScript, so it works everywhere)."""
    from IPython.display import HTML

    data = base64.b64encode(_gif_bytes(frames, fps, scale)).decode("ascii")
    return HTML(f'<img src="data:image/gif;base64,{data}" style="image-rendering: pixelated"/>')


def video_html(frames: Any, fps: float = 15, scale: int = 3) -> Any:
    """A player with play/pause/step controls (matplotlib's to_jshtml) for the frames."""
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation
    from matplotlib.figure import Figure

    imgs = as_frames(frames)
    size = imgs.shape[2] * scale / 100
    fig = Figure(figsize=(size, size * imgs.shape[1] / imgs.shape[2]), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    artist = ax.imshow(imgs[0], interpolation="nearest")
    anim = FuncAnimation(fig, lambda i: (artist.set_data(imgs[i]), artist)[1:],
                         frames=len(imgs), interval=1000 / fps, blit=False)
    return HTML(anim.to_jshtml(fps=fps, default_mode="loop"))
