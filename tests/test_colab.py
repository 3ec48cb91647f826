"""Colab glue with a fake google.colab: run-directory precedence, Drive mount and stale-mount recovery."""

import errno
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

from planet_colab import colab

ROOT = Path(__file__).resolve().parents[1]


class FakeDrive(types.ModuleType):
    """google.colab.drive stand-in: each mount() pops an outcome (None = success, or an exception)."""

    def __init__(self, outcomes):
        super().__init__("google.colab.drive")
        self.outcomes = list(outcomes)
        self.calls = []

    def mount(self, mountpoint, force_remount=False):
        self.calls.append(("mount", force_remount))
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        Path(mountpoint, "MyDrive").mkdir(parents=True, exist_ok=True)

    def flush_and_unmount(self):
        self.calls.append(("flush_and_unmount",))


def _stale():
    return OSError(errno.ENOTCONN, "Transport endpoint is not connected")


@pytest.fixture
def fake_colab(monkeypatch):
    """Pretend to be in Colab; returns a function installing a FakeDrive with given outcomes."""
    google = types.ModuleType("google")
    gcolab = types.ModuleType("google.colab")
    google.colab = gcolab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", gcolab)

    def install(outcomes=(None,)):
        drive = FakeDrive(outcomes)
        gcolab.drive = drive
        monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
        return drive

    return install


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No run-location or task variables, HOME in tmp_path/home, working directory tmp_path."""
    for name in (colab.ENV_RUN_DIR, colab.ENV_RUN_ROOT, colab.ENV_PRESET):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_in_colab_follows_google_colab_module(fake_colab, monkeypatch):
    assert colab.in_colab()
    monkeypatch.delitem(sys.modules, "google.colab")
    assert not colab.in_colab()


def test_run_dir_outside_colab_is_the_same_from_any_working_directory(no_env, monkeypatch):
    # The command line runs from the repository, a notebook from notebooks/: both must find one run.
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    expected = no_env / "home" / "planet_colab_runs" / "pendulum"
    assert colab.default_run_dir("pendulum") == expected
    (no_env / "notebooks").mkdir()
    monkeypatch.chdir(no_env / "notebooks")
    assert colab.default_run_dir("pendulum") == expected


def test_run_dir_in_colab_is_on_drive(no_env, fake_colab, monkeypatch):
    monkeypatch.setattr(colab, "_drive_looks_mounted", lambda: True)  # Drive looks mounted
    assert colab.default_run_dir("pendulum") == Path("/content/drive/MyDrive/planet_colab/pendulum")


def test_run_dir_in_colab_warns_when_drive_not_mounted(no_env, fake_colab, monkeypatch):
    monkeypatch.setattr(colab, "_drive_looks_mounted", lambda: False)
    with pytest.warns(UserWarning, match="mount_drive"):
        colab.default_run_dir("pendulum")


def test_run_root_env_beats_colab_and_run_dir_env_beats_both(no_env, fake_colab, monkeypatch, tmp_path):
    monkeypatch.setenv(colab.ENV_RUN_ROOT, str(tmp_path / "root"))
    assert colab.default_run_dir("pendulum") == tmp_path / "root" / "pendulum"
    monkeypatch.setenv(colab.ENV_RUN_DIR, str(tmp_path / "exact"))
    assert colab.default_run_dir("pendulum") == tmp_path / "exact"


def test_bad_run_name_is_rejected(no_env):
    for bad in ("", "a/b", ".."):
        with pytest.raises(ValueError, match="run name"):
            colab.default_run_dir(bad)


def test_mount_outside_colab_returns_none_with_message(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert colab.mount_drive() is None
    assert "only" in capsys.readouterr().out


def test_mount_mounts_once_then_is_a_noop(fake_colab, tmp_path):
    drive = fake_colab([None])
    assert colab.mount_drive(tmp_path / "drive") == tmp_path / "drive"
    assert colab.mount_drive(tmp_path / "drive") == tmp_path / "drive"
    assert drive.calls == [("mount", False)]


def test_stale_mount_is_remounted(fake_colab, tmp_path, capsys):
    drive = fake_colab([_stale(), None])
    assert colab.mount_drive(tmp_path / "drive") == tmp_path / "drive"
    assert drive.calls == [("mount", False), ("flush_and_unmount",), ("mount", True)]
    assert "remounted" in capsys.readouterr().out


def test_stale_mount_that_stays_stale_tells_user_to_restart(fake_colab, tmp_path):
    fake_colab([_stale(), _stale()])
    with pytest.raises(RuntimeError, match="Restart session, then Run all; your run on Drive is intact"):
        colab.mount_drive(tmp_path / "drive")


def test_already_mounted_but_dead_drive_is_remounted(fake_colab, tmp_path, monkeypatch):
    drive = fake_colab([None])
    mp = tmp_path / "drive"
    (mp / "MyDrive").mkdir(parents=True)
    real_listdir = colab._listdir
    dead = {"yes": True}

    def listdir(path):
        if dead["yes"] and Path(path) == mp / "MyDrive":
            dead["yes"] = False
            raise _stale()
        return real_listdir(path)

    monkeypatch.setattr(colab, "_listdir", listdir)
    assert colab.mount_drive(mp) == mp
    assert drive.calls == [("flush_and_unmount",), ("mount", True)]


def test_other_mount_errors_propagate(fake_colab, tmp_path):
    fake_colab([ValueError("user declined")])
    with pytest.raises(ValueError, match="declined"):
        colab.mount_drive(tmp_path / "drive")


def test_task_picked_in_01_is_what_02_and_03_open(no_env, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert colab.notebook_preset() == "pendulum"  # nothing picked yet: the default, saying so
    assert "pick another in notebook 01" in capsys.readouterr().out
    assert colab.notebook_preset("smoke") == "smoke"  # notebook 01's form
    assert colab.notebook_preset() == "smoke"  # notebooks 02 and 03, in their own sessions
    run = colab.open_notebook_run()
    assert run.run_dir == colab.default_run_dir("smoke") and run.config.preset == "smoke"
    assert "picked in notebook 01" in capsys.readouterr().out


def test_notebook_03_without_a_run_says_to_run_01_and_02(no_env, monkeypatch):
    from planet_colab.run_config import RunError

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(RunError) as info:
        colab.open_notebook_run("smoke", cost=False, new_ok=False)
    message = str(info.value)
    assert "run notebook 01" in message and "then 02" in message and "python -m" not in message
    assert not colab.default_run_dir("smoke").exists()


def test_open_notebook_run_prefers_the_runs_own_config_and_says_the_cost(no_env, monkeypatch, capsys):
    from planet_colab.config import get_config

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    run_dir = colab.default_run_dir("smoke")
    run_dir.mkdir(parents=True)
    get_config("smoke", total_iterations=7).save(run_dir / "config.json")  # e.g. started by the CLI
    assert colab.open_notebook_run("smoke").config.total_iterations == 7
    assert "smoke: 7 iterations, estimated" in capsys.readouterr().out
    # A notebook raising the total goes through the same checks as the command line's --iterations.
    assert colab.open_notebook_run(changes={"total_iterations": 9}).config.total_iterations == 9


def test_preset_variable_wins_and_is_not_remembered(no_env, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    colab.notebook_preset("pendulum")
    monkeypatch.setenv(colab.ENV_PRESET, "smoke")
    assert colab.notebook_preset("pendulum") == "smoke"
    monkeypatch.delenv(colab.ENV_PRESET)
    assert colab.notebook_preset() == "pendulum"


def test_unknown_task_names_the_choices(no_env, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(ValueError, match="Unknown preset 'cartpole'.*choose one of: .*pendulum"):
        colab.notebook_preset("cartpole")
    assert not (no_env / "home" / "planet_colab_runs" / colab.PICK_FILE).exists()


def test_a_mujoco_task_installs_the_dmc_extra_only_in_colab_and_only_when_missing(no_env, fake_colab, monkeypatch):
    from planet_colab import dmc_install
    from planet_colab.config import get_config

    monkeypatch.setattr(colab, "_drive_looks_mounted", lambda: True)
    calls = []
    monkeypatch.setattr(colab.subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setattr(colab.importlib.util, "find_spec", lambda name: None)  # nothing installed
    colab.ensure_task_dependencies(get_config("smoke"))  # Pendulum needs no extra
    assert calls == []
    dmc_task = get_config("smoke", env_name="dmc:cartpole-swingup")
    colab.ensure_task_dependencies(dmc_task)
    # What dmc_install says for this Python (on Colab's 3.13: dm_control without labmaze, --no-deps).
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert calls == [pip + args for args in dmc_install.pip_install_commands()]
    assert any("dm_control==1.0.50" in args for args in dmc_install.pip_install_commands((3, 13)))
    monkeypatch.delitem(sys.modules, "google.colab")  # outside Colab a local environment is never changed
    colab.ensure_task_dependencies(dmc_task)
    assert len(calls) == len(dmc_install.pip_install_commands())


def test_the_data_tour_needs_no_drive_for_its_task(no_env, fake_colab):
    # Notebook 00 mounts nothing: its fixed, unremembered pick must not read or write the run root.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # default_run_root() warns in Colab when Drive is not mounted
        assert colab.notebook_preset("pendulum", remember=False) == "pendulum"


def test_the_data_tour_never_writes_into_a_run_or_the_run_root(tmp_path):
    """Notebook 00 (under nbval, as CI runs it) keeps its episodes in a temporary directory, even when
    $PLANET_COLAB_RUN_DIR names the user's run, and that directory is gone when its kernel exits."""
    run_dir, root, tmp = tmp_path / "my_run", tmp_path / "root", tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, PLANET_COLAB_RUN_DIR=str(run_dir), PLANET_COLAB_RUN_ROOT=str(root), TMPDIR=str(tmp))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "notebooks" / "00_data_pipeline_tour.ipynb")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert not run_dir.exists() and not root.exists()
    assert not list(tmp.glob("planet_colab_data_tour_*"))
