"""Colab glue: detect Colab, mount Google Drive (and recover a stale mount), pick the run directory.

Everything a run writes lives under its run directory; in Colab that is on Drive, so a runtime that
dies at 3 am loses nothing. Outside Colab the same code uses a local directory.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from pathlib import Path

DRIVE_MOUNTPOINT = "/content/drive"
DRIVE_RUN_ROOT = "/content/drive/MyDrive/planet_colab"
ENV_RUN_DIR = "PLANET_COLAB_RUN_DIR"
ENV_RUN_ROOT = "PLANET_COLAB_RUN_ROOT"

_RESTART_HINT = "Runtime → Restart session, then Run all; your run on Drive is intact."


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def mount_drive(mountpoint: str | os.PathLike = DRIVE_MOUNTPOINT, retries: int = 1) -> Path | None:
    """Mount Google Drive at `mountpoint` once (no-op if mounted); remount a stale mount; None outside Colab."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if not in_colab():
        print("Google Drive can only be mounted inside Colab; runs are stored on the local disk instead.")
        return None
    from google.colab import drive  # only importable in Colab

    mp = Path(mountpoint)
    try:
        if _is_mounted(mp):
            return mp
        drive.mount(str(mp))
        _listdir(mp)
        return mp
    except OSError as e:
        if not _is_stale(e):
            raise
        last = e

    # "Transport endpoint is not connected": Drive's FUSE process died under a live mount (long
    # idle, or a restart that kept /content). Flushing and force-remounting usually revives it.
    for attempt in range(1, retries + 1):
        print(f"Google Drive at {mp} is not responding (Transport endpoint is not connected); "
              f"remounting (attempt {attempt} of {retries})…")
        try:
            drive.flush_and_unmount()
        except Exception:  # an already-dead mount often can't be flushed; remounting is what matters
            pass
        try:
            drive.mount(str(mp), force_remount=True)
            _listdir(mp)
            print(f"Google Drive remounted at {mp}.")
            return mp
        except OSError as e:
            if not _is_stale(e):
                raise
            last = e
    raise RuntimeError(f"Google Drive at {mp} is not responding (Transport endpoint is not connected) and "
                       f"remounting did not help ({last}). {_RESTART_HINT}")


def default_run_dir(name: str) -> Path:
    """$PLANET_COLAB_RUN_DIR, else $PLANET_COLAB_RUN_ROOT/name, else Drive's planet_colab/name in Colab, else ./runs/name."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"run name must be a non-empty name without path separators, got {name!r}")
    exact = os.environ.get(ENV_RUN_DIR, "").strip()
    if exact:
        return Path(exact).expanduser()
    root = os.environ.get(ENV_RUN_ROOT, "").strip()
    if root:
        return Path(root).expanduser() / name
    if in_colab():
        # Writing here before Drive is mounted would put the run on the ephemeral disk (lost at
        # the next restart) and then block the mount ("mountpoint must not contain files").
        if not _drive_looks_mounted():
            warnings.warn(f"Google Drive is not mounted at {DRIVE_MOUNTPOINT}; call mount_drive() before "
                          "writing to the run directory, or the run will be lost when the runtime restarts.",
                          stacklevel=2)
        return Path(DRIVE_RUN_ROOT) / name
    return Path.cwd() / "runs" / name


def _drive_looks_mounted() -> bool:
    return os.path.isdir(os.path.join(DRIVE_MOUNTPOINT, "MyDrive"))  # False (not an error) on a dead mount


def _is_stale(e: OSError) -> bool:
    return e.errno == errno.ENOTCONN or "Transport endpoint is not connected" in str(e)


def _listdir(path: Path) -> list[str]:
    return os.listdir(path)


def _is_mounted(mp: Path) -> bool:
    """True when Drive is mounted and answering; raises the OSError of a stale mount."""
    try:
        entries = _listdir(mp)
    except FileNotFoundError:
        return False
    if "MyDrive" not in entries:
        return False
    _listdir(mp / "MyDrive")  # a dead FUSE mount fails here with ENOTCONN
    return True
