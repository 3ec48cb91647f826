"""Colab and notebook glue: detect Colab, mount Drive (recovering a stale mount), pick the run and task.

Everything a run writes lives under its run directory; in Colab that is on Drive, so a runtime that
dies at 3 am loses nothing. Outside Colab the same code uses a local directory that does not depend
on the working directory, so the command line and notebooks started anywhere find the same runs.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

DRIVE_MOUNTPOINT = "/content/drive"
DRIVE_RUN_ROOT = "/content/drive/MyDrive/planet_colab"
ENV_RUN_DIR = "PLANET_COLAB_RUN_DIR"
ENV_RUN_ROOT = "PLANET_COLAB_RUN_ROOT"
ENV_PRESET = "PLANET_COLAB_PRESET"
LOCAL_RUN_ROOT = Path("~/planet_colab_runs")
# Notebooks 01-03 are separate Colab sessions; the task picked in 01 is remembered here, in the run root.
PICK_FILE = "notebook_task.json"
DEFAULT_TASK = "pendulum"

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
    # Attempt 0 mounts (or finds Drive mounted); attempts 1..retries force a remount. A stale mount,
    # "Transport endpoint is not connected", is Drive's FUSE process dead under a live mount (long
    # idle, or a restart that kept /content): flushing and force-remounting usually revives it.
    for attempt in range(retries + 1):
        if attempt:
            print(f"Google Drive at {mp} is not responding (Transport endpoint is not connected); "
                  f"remounting (attempt {attempt} of {retries})…")
            try:
                drive.flush_and_unmount()
            except Exception:  # an already-dead mount often can't be flushed; remounting is what matters
                pass
        try:
            if not attempt and _is_mounted(mp):
                return mp
            drive.mount(str(mp), force_remount=bool(attempt))
            _listdir(mp)
        except OSError as e:
            if not _is_stale(e):
                raise
            last = e
            continue
        if attempt:
            print(f"Google Drive remounted at {mp}.")
        return mp
    raise RuntimeError(f"Google Drive at {mp} is not responding (Transport endpoint is not connected) and "
                       f"remounting did not help ({last}). {_RESTART_HINT}")


def default_run_root() -> Path:
    """$PLANET_COLAB_RUN_ROOT, else Drive's MyDrive/planet_colab in Colab, else ~/planet_colab_runs."""
    root = os.environ.get(ENV_RUN_ROOT, "").strip()
    if root:
        return Path(root).expanduser()
    if in_colab():
        # Writing here before Drive is mounted would put the run on the ephemeral disk (lost at
        # the next restart) and then block the mount ("mountpoint must not contain files").
        if not _drive_looks_mounted():
            warnings.warn(f"Google Drive is not mounted at {DRIVE_MOUNTPOINT}; call mount_drive() before "
                          "writing to the run directory, or the run will be lost when the runtime restarts.",
                          stacklevel=3)
        return Path(DRIVE_RUN_ROOT)
    return LOCAL_RUN_ROOT.expanduser()


def default_run_dir(name: str) -> Path:
    """$PLANET_COLAB_RUN_DIR, else default_run_root()/name (the same for the command line and notebooks)."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"run name must be a non-empty name without path separators, got {name!r}")
    exact = os.environ.get(ENV_RUN_DIR, "").strip()
    if exact:
        return Path(exact).expanduser()
    return default_run_root() / name


def notebook_preset(picked: str | None = None, *, remember: bool = True) -> str:
    """The task: $PLANET_COLAB_PRESET, else `picked` (then remembered), else the remembered pick, else pendulum."""
    from planet_colab.config import PRESETS

    # Only a pick read or remembered touches the run root (Drive in Colab; notebook 00 mounts none).
    pick_file = None if picked and not remember else default_run_root() / PICK_FILE
    override = os.environ.get(ENV_PRESET, "").strip()
    if override:
        preset, source = override, f"from ${ENV_PRESET}"
    elif picked:
        preset, source = picked, "picked here; notebooks 02 and 03 use it too" if remember else "this notebook's"
    elif pick_file is not None and pick_file.exists():
        preset, source = json.loads(pick_file.read_text())["preset"], "picked in notebook 01"
    else:
        preset, source = DEFAULT_TASK, "the default; pick another in notebook 01"
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r} ({source}); choose one of: {', '.join(PRESETS)}")
    if pick_file is not None and picked and not override:
        from planet_colab.safeio import write_atomic

        pick_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(pick_file, json.dumps({"preset": preset}) + "\n")
    print(f"task {preset!r} ({source})")
    return preset


def ensure_task_dependencies(config: Any) -> None:
    """In Colab, pip-install the `dmc` extra when the config's task needs MuJoCo and it is missing."""
    from planet_colab.dmc_install import pip_install_commands, uses_mujoco  # pip lists per Python version

    needed = ("dm_control", "mujoco") if config.env_name.startswith("dmc:") else ("mujoco",)
    if not uses_mujoco(config.env_name) or all(importlib.util.find_spec(m) for m in needed):
        return
    if not in_colab():
        return  # making the environment says what to install; never change a local environment unasked
    print(f"Installing the dmc extra (dm_control, MuJoCo) for {config.preset}…")
    for args in pip_install_commands():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], check=True)
    importlib.invalidate_caches()


def notebook_tasks() -> list[str]:
    """The notebooks' task picker: pendulum, then every preset that names its own environment."""
    from planet_colab.config import PRESETS

    return [DEFAULT_TASK] + [p for p, fields in PRESETS.items() if p != DEFAULT_TASK and "env_name" in fields]


def open_notebook_run(picked: str | None = None, *, changes: dict[str, Any] | None = None, cost: bool = True,
                      new_ok: bool = True, threads: int | None = None) -> Any:
    """The notebooks' Run (planet_colab.run) for the task (see notebook_preset); says what it will cost.

    `changes` (e.g. {"total_iterations": 200}) are checked like the command line's and saved to the
    run's config.json by the first writer; `new_ok=False` refuses a run that does not exist yet.
    `threads`: torch threads for this runtime (None: planet_colab.threads.default_threads, one per core).
    """
    from planet_colab.config import get_config
    from planet_colab.cost import describe_cost
    from planet_colab.run import Run
    from planet_colab.run_config import RunError
    from planet_colab.threads import apply_threads

    count = apply_threads(threads)  # before the task's environment is made (the renderer's threads)
    preset = notebook_preset(picked)
    ensure_task_dependencies(get_config(preset))  # before Run.open makes the task's environment
    run_dir = default_run_dir(preset)
    if not new_ok and not ((run_dir / "config.json").exists() or (run_dir / "checkpoints").is_dir()):
        raise RunError(f"no {preset} run in {run_dir} yet: run notebook 01 (it starts the run), then 02 "
                       "(it trains it), then this one")
    run = Run.open(run_dir, preset, changes=changes, new_ok=new_ok)
    print(f"run directory {run.run_dir}, {count} torch thread(s)")
    if cost:
        print(describe_cost(run.config))
    return run


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
