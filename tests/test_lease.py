"""The owner lease: one trainer per run directory, a dead owner taken over, a lost lease noticed."""

import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from planet_colab.lease import (LEASE_NAME, LeaseLostError, OwnerLease, RunInUseError, held_by_live_trainer,
                                read_lease, wait_for_lapse)


@pytest.fixture
def other_process():
    """A live process that is not this one (what a second notebook or CLI trainer looks like)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def plant(run_dir, **fields):
    """Write another trainer's lease record."""
    now = time.time()
    record = {"host": socket.gethostname(), "pid": 1, "token": "theirs", "started_at": now - 600,
              "heartbeat_at": now, **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LEASE_NAME).write_text(json.dumps(record))
    return record


def test_a_live_owner_is_refused_in_one_line_naming_it_and_how_to_take_over(tmp_path, other_process):
    plant(tmp_path, pid=other_process.pid)
    with pytest.raises(RunInUseError) as refused:
        OwnerLease(tmp_path, settle_s=0).acquire()
    text = str(refused.value)
    assert "\n" not in text
    assert f"pid {other_process.pid} on this machine" in text and "since" in text
    # On this machine it is known to be alive: waiting would not help, stopping it or taking over does.
    assert f"still running; stop it (Ctrl-C there, or `kill {other_process.pid}`" in text
    assert "run again after" not in text
    assert "--take-over" in text and "take_over=True" in text
    assert read_lease(tmp_path)["token"] == "theirs"  # untouched


def test_an_owner_on_another_machine_is_refused_until_its_heartbeat_lapses(tmp_path):
    plant(tmp_path, host="another-runtime")
    with pytest.raises(RunInUseError) as refused:
        OwnerLease(tmp_path, settle_s=0).acquire()
    text = str(refused.value)
    assert "pid 1 on host another-runtime" in text and "last heartbeat" in text
    assert "if that trainer is gone, run again after" in text and "--take-over" in text


def test_a_dead_owner_on_this_machine_is_taken_over_at_once(tmp_path, other_process):
    other_process.kill()
    other_process.wait()
    plant(tmp_path, pid=other_process.pid)
    lease = OwnerLease(tmp_path, settle_s=0)
    note = lease.acquire()
    assert "no longer running" in note and str(other_process.pid) in note
    assert read_lease(tmp_path)["token"] == lease.token
    lease.release()
    assert not (tmp_path / LEASE_NAME).exists()


def test_a_reused_pid_does_not_keep_a_dead_owners_lease(tmp_path, other_process):
    plant(tmp_path, pid=other_process.pid, pid_start="1")  # that pid started at another time
    with OwnerLease(tmp_path, settle_s=0) as lease:
        assert "no longer running" in lease.acquire()


def test_another_machines_lease_is_stale_after_its_heartbeat_stops(tmp_path):
    plant(tmp_path, host="colab-vm-that-died", heartbeat_at=time.time() - 200)
    with OwnerLease(tmp_path, settle_s=0, stale_after_s=180) as lease:
        assert "no heartbeat since" in lease.acquire()
    plant(tmp_path, host="colab-vm-alive", heartbeat_at=time.time() - 10)
    with pytest.raises(RunInUseError, match="host colab-vm-alive"):
        OwnerLease(tmp_path, settle_s=0, stale_after_s=180).acquire()
    with OwnerLease(tmp_path, settle_s=0) as lease:
        assert "take_over was asked for" in lease.acquire(take_over=True)


def test_held_by_live_trainer_tells_a_live_owner_from_a_gone_one(tmp_path, other_process):
    assert not held_by_live_trainer(tmp_path)  # nobody
    plant(tmp_path, pid=other_process.pid)
    assert held_by_live_trainer(tmp_path)  # alive on this machine
    plant(tmp_path, host="colab-vm-alive", heartbeat_at=time.time() - 10)
    assert held_by_live_trainer(tmp_path, stale_after_s=180)
    plant(tmp_path, host="colab-vm-that-died", heartbeat_at=time.time() - 200)
    assert not held_by_live_trainer(tmp_path, stale_after_s=180)
    other_process.kill()
    other_process.wait()
    plant(tmp_path, pid=other_process.pid)
    assert not held_by_live_trainer(tmp_path)  # its process is gone


def test_a_trainer_whose_lease_was_taken_stops_writing_and_leaves_the_new_owners_file(tmp_path):
    lease = OwnerLease(tmp_path, settle_s=0)
    lease.acquire()
    lease.check()
    plant(tmp_path, host="colab-vm-new-owner", token="new")
    with pytest.raises(LeaseLostError, match="taken over by pid 1 on host colab-vm-new-owner"):
        lease.check()
    lease.release()
    assert read_lease(tmp_path)["token"] == "new"


def test_the_heartbeat_moves_while_the_owner_works(tmp_path):
    with OwnerLease(tmp_path, settle_s=0, heartbeat_s=0.05) as lease:
        lease.acquire()
        first = read_lease(tmp_path)["heartbeat_at"]
        deadline = time.time() + 10
        while read_lease(tmp_path)["heartbeat_at"] == first and time.time() < deadline:
            time.sleep(0.05)
        assert read_lease(tmp_path)["heartbeat_at"] > first
        lease.check()
    assert read_lease(tmp_path) is None


def test_a_lease_left_by_a_lost_machine_is_waited_out_saying_so_then_taken(tmp_path):
    # A Colab runtime lost with its VM: its last heartbeat is recent, and it will never beat again.
    plant(tmp_path, host="colab-vm-disconnected", pid=4242, heartbeat_at=time.time())
    said, t0 = [], time.monotonic()
    assert wait_for_lapse(tmp_path, stale_after_s=2, say=said.append) == "lapsed"
    assert time.monotonic() - t0 >= 2
    assert len(said) == 1 and re.search(r"^Waiting [23] s for the lease of another machine to lapse", said[0])
    assert "pid 4242 on host colab-vm-disconnected" in said[0]
    with OwnerLease(tmp_path, settle_s=0, stale_after_s=2) as lease:
        assert "no heartbeat since" in lease.acquire()


def test_waiting_ends_as_soon_as_the_other_machines_trainer_beats_and_it_keeps_the_run(tmp_path):
    record = plant(tmp_path, host="colab-vm-alive", heartbeat_at=time.time())
    beat = threading.Timer(0.3, lambda: plant(tmp_path, **{**record, "heartbeat_at": time.time()}))
    beat.start()
    t0 = time.monotonic()
    assert wait_for_lapse(tmp_path, poll_s=0.1, say=lambda line: None) == "live"
    assert time.monotonic() - t0 < 60  # not the 3 minutes a lost machine's lease takes
    beat.join()
    with pytest.raises(RunInUseError, match="host colab-vm-alive"):
        OwnerLease(tmp_path, settle_s=0).acquire()


def test_nothing_to_wait_for_returns_at_once(tmp_path):
    said = []
    assert wait_for_lapse(tmp_path, say=said.append) == "free"
    plant(tmp_path, host="colab-vm-gone", heartbeat_at=time.time() - 1000)
    assert wait_for_lapse(tmp_path, say=said.append) == "stale"
    plant(tmp_path, heartbeat_at=time.time())  # this machine: acquire tells a dead process from a live one
    assert wait_for_lapse(tmp_path, say=said.append) == "here"
    assert said == []


@pytest.mark.parametrize("content", ["", "{\"host\": \"colab", "{}", "[1, 2]", "\udcff"])
def test_a_damaged_lease_file_is_replaced_not_a_block_for_good(tmp_path, content):
    (tmp_path / LEASE_NAME).write_bytes(content.encode("utf-8", "surrogateescape"))
    with OwnerLease(tmp_path, settle_s=0) as lease:
        assert "held no readable owner record" in lease.acquire()
        assert read_lease(tmp_path)["token"] == lease.token
    (tmp_path / LEASE_NAME).write_text("")
    with OwnerLease(tmp_path, settle_s=0) as lease:
        lease.acquire(take_over=True)
        lease.check()


def _drop_once(monkeypatch, target, name):
    """Make `target.name` fail once with ENOTCONN (Drive's mount dropping), then work; retries don't sleep."""
    import errno

    from planet_colab import safeio

    monkeypatch.setattr(safeio, "_sleep", lambda s: None)
    real, calls = getattr(target, name), []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return calls


def test_a_drive_drop_while_reading_or_creating_the_lease_is_retried(tmp_path, monkeypatch):
    import os
    from pathlib import Path

    with OwnerLease(tmp_path, settle_s=0) as lease:
        calls = _drop_once(monkeypatch, os, "link")  # the exclusive create of a new lease
        lease.acquire()
        assert len(calls) == 2
        calls = _drop_once(monkeypatch, Path, "read_text")  # the check before every write
        lease.check()
        assert len(calls) == 2


def test_release_warns_instead_of_hiding_the_exception_on_its_way_out(tmp_path, monkeypatch):
    import errno

    import planet_colab.lease as lease_mod
    from planet_colab.config import get_config
    from planet_colab.run import Run

    get_config("smoke").save(tmp_path / "config.json")
    run = Run.open(tmp_path)

    def gone(run_dir):
        raise OSError(errno.ENOTCONN, f"Could not read {run_dir}/owner.json: remount Drive")

    with pytest.warns(UserWarning, match="remount Drive. The owner lease stays behind"):
        with pytest.raises(KeyboardInterrupt):
            with run.own():
                monkeypatch.setattr(lease_mod, "read_lease", gone)
                raise KeyboardInterrupt
