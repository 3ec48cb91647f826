"""The owner lease: one trainer per run directory, a dead owner taken over, a lost lease noticed."""

import json
import socket
import subprocess
import sys
import time

import pytest

from planet_colab.lease import LEASE_NAME, LeaseLostError, OwnerLease, RunInUseError, read_lease


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
    assert "last heartbeat" in text and "--take-over" in text and "take_over=True" in text
    assert read_lease(tmp_path)["token"] == "theirs"  # untouched


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
