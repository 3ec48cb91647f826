"""Colab glue with a fake google.colab: run-directory precedence, Drive mount and stale-mount recovery."""

import errno
import sys
import types
from pathlib import Path

import pytest

from planet_colab import colab


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
    monkeypatch.delenv(colab.ENV_RUN_DIR, raising=False)
    monkeypatch.delenv(colab.ENV_RUN_ROOT, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_in_colab_follows_google_colab_module(fake_colab, monkeypatch):
    assert colab.in_colab()
    monkeypatch.delitem(sys.modules, "google.colab")
    assert not colab.in_colab()


def test_run_dir_outside_colab_is_local_runs_dir(no_env, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert colab.default_run_dir("pendulum") == no_env / "runs" / "pendulum"


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
