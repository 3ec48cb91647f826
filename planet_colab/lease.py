"""One trainer per run directory: an owner lease that works where file locks do not (Google Drive).

Two Colab runtimes on one Drive folder are two machines, and Drive's mount is eventually
consistent, so POSIX locks mean nothing there. Instead the owner writes `<run>/owner.json` (host,
pid, a random token, start and heartbeat times) under a temporary name and renames it, waits a
moment, and reads it back: of two trainers that raced, only the one whose token is there goes on.
A background thread refreshes the heartbeat, and the owner re-reads the file before each write to
the run, so a trainer that lost the run stops instead of writing over its new owner's files.

A lease counts as free when its file is absent, when its process is gone from this machine (a
killed kernel, or a retry of the same dead job, gets in at once), or when its heartbeat is older
than `STALE_AFTER_S` (a runtime that died with its machine blocks the next Run all for minutes,
not for ever); an empty or garbled file holds no one's lease and is replaced. Anyone else is refused
with one line: who holds the run, since when, and how to take it over. Reading and writing the file
retry Drive's drops as every other file of the run does.

A file is not a lock; two narrow windows remain. Two machines starting within Drive's sync delay can
both read their own lease back, until the first write's check stops one. And `refresh` checks, then
writes: a take-over landing in between is overwritten by the old owner's heartbeat. The new owner is
then refused at its read-back or stops at its next check; the old one stops too if a check of its own
saw the take-over. Neither goes on writing once a check has shown another owner.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable

from planet_colab import safeio
from planet_colab.stop_request import check_stop

LEASE_NAME = "owner.json"
HEARTBEAT_S = 30.0  # how often a live owner says so
STALE_AFTER_S = 180.0  # a heartbeat this old means the owner is gone
SETTLE_S = 1.0  # wait between writing a lease over another and reading it back


class LeaseError(Exception):
    """The run directory belongs to another trainer (its message is one line saying what to do)."""


class RunInUseError(LeaseError):
    """Another live trainer holds the run directory."""


class LeaseLostError(LeaseError):
    """This trainer's lease was taken over; it must stop writing to the run."""


def read_lease(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's owner record as stored (None when nobody holds it or the file is damaged).

    A Drive drop is retried (safeio.retry_io), then raised as a one-line OSError.
    """
    record = _read_record(Path(run_dir) / LEASE_NAME)
    return record if isinstance(record, dict) else None


def _read_record(path: Path) -> dict[str, Any] | bool | None:
    """The owner record in `path`; None when there is no file; False when the file holds no record."""
    try:
        record = json.loads(safeio.read_text(path))
    except FileNotFoundError:
        return None
    except ValueError:  # not JSON, or not text
        return False
    return record if isinstance(record, dict) and isinstance(record.get("token"), str) else False


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a reused pid from the original), None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _alive_here(record: dict[str, Any]) -> bool:
    """Whether the record's process still runs; only meaningful when it is on this machine."""
    if record.get("boot_id") and record.get("boot_id") != _boot_id():
        return False  # the machine rebooted since
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    start = record.get("pid_start")
    return start is None or _process_start(pid) in (None, start)


def _clock(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def _holder(record: dict[str, Any]) -> str:
    where = "this machine" if record.get("host") == socket.gethostname() else f"host {record.get('host')}"
    return f"pid {record.get('pid')} on {where}"


def _write_json(path: Path, record: dict[str, Any], exclusive: bool) -> bool:
    """Write `record` to `path` atomically; with `exclusive`, only if `path` does not exist yet.

    Returns False when `exclusive` found the file there. Exclusivity uses a hard link, which fails
    when the target exists; a filesystem without hard links (a FUSE mount) gets a plain rename and
    relies on the read-back.
    """
    text = json.dumps(record, indent=1, sort_keys=True)
    if not exclusive:
        safeio.write_atomic(path, text)
        return True

    def create() -> bool | None:
        tmp = safeio.temporary_name(path)
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False  # also after a retried link that had landed: the caller reads it back as its own
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV):
                    raise
                return None  # no hard links here
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # the mount dropped; the leftover matches no final name

    created = safeio.retry_io(create, path=path, what="create")
    if created is None:
        safeio.write_atomic(path, text)
        return True
    return created


class OwnerLease:
    """The owner lease of one run directory: `acquire()`, `check()` before each write, `release()`."""

    def __init__(self, run_dir: str | os.PathLike, *, heartbeat_s: float | None = None,
                 stale_after_s: float | None = None, settle_s: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LEASE_NAME
        self.heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self.stale_after_s = STALE_AFTER_S if stale_after_s is None else stale_after_s
        self.settle_s = SETTLE_S if settle_s is None else settle_s
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.held = False
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._record: dict[str, Any] = {}

    def __enter__(self) -> "OwnerLease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ------------------------------------------------------------------ judging another's lease
    def _verdict(self, record: dict[str, Any]) -> str:
        """'mine', 'gone' (its process ended on this machine), 'stale' (no heartbeat lately) or 'live'."""
        if record.get("token") == self.token:
            return "mine"
        if record.get("host") == socket.gethostname():
            if record.get("pid") == os.getpid() or not _alive_here(record):
                return "gone"  # the same pid: an earlier call in this process that never released it
        heartbeat = record.get("heartbeat_at")
        if not isinstance(heartbeat, (int, float)) or self.clock() - heartbeat > self.stale_after_s:
            return "stale"
        return "live"

    def _refusal(self, record: dict[str, Any]) -> str:
        heartbeat = record.get("heartbeat_at")
        if record.get("host") == socket.gethostname():  # its process is alive here (a dead one is taken over)
            return (f"{self.run_dir} is in use by {_holder(record)} since {_clock(record.get('started_at'))}, "
                    f"which is still running; stop it (Ctrl-C there, or `kill {record.get('pid')}`: the command "
                    "line saves first) or take the run over with --take-over (take_over=True in Python)")
        free_at = heartbeat + self.stale_after_s if isinstance(heartbeat, (int, float)) else self.clock()
        return (f"{self.run_dir} is in use by {_holder(record)} since {_clock(record.get('started_at'))} "
                f"(last heartbeat {_ago(self.clock() - (heartbeat or 0))} ago); if that trainer is gone, "
                f"run again after {_clock(free_at)} ({_ago(free_at - self.clock())} from now) or take it "
                "over now with --take-over (take_over=True in Python)")

    # ------------------------------------------------------------------ acquire / check / release
    def acquire(self, take_over: bool = False) -> str | None:
        """Become the run's owner; return a note when a previous owner's lease was taken over.

        Raises RunInUseError naming the holder when another trainer is alive (unless `take_over`).
        """
        safeio.mkdir(self.run_dir, parents=True)
        note = None
        for _ in range(3):
            existing = _read_record(self.path)
            damaged = existing is False
            if damaged:  # an empty or garbled file holds no one's lease: replaced, as a stale one is
                existing, note = None, f"Replaced {self.path}: it held no readable owner record"
            if existing is not None:
                verdict = self._verdict(existing)
                if verdict == "live" and not take_over:
                    raise RunInUseError(self._refusal(existing))
                if verdict != "mine":
                    why = {"gone": "its process is no longer running",
                           "stale": f"no heartbeat since {_clock(existing.get('heartbeat_at'))}",
                           "live": "take_over was asked for"}[verdict]
                    note = f"Took over {self.run_dir} from {_holder(existing)} ({why})"
            record = self._new_record()
            if _write_json(self.path, record, exclusive=existing is None and not damaged):
                break
            # Someone created the lease between our read and our write: judge theirs.
        else:
            raise RunInUseError(f"{self.run_dir}: could not take its owner lease ({self.path} keeps "
                                "changing); another trainer is starting there")
        if existing is not None or damaged:
            time.sleep(self.settle_s)  # let a racing writer's rename land before reading back
        back = read_lease(self.run_dir)
        if back is None or back.get("token") != self.token:
            raise RunInUseError(self._refusal(back) if back else
                                f"{self.run_dir}: another trainer raced for its owner lease; try again")
        self._record, self.held, self._lost = record, True, None
        self._start_heartbeat()
        return note

    def _new_record(self) -> dict[str, Any]:
        now = self.clock()
        started = self._record.get("started_at", now)
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
                "boot_id": _boot_id(), "token": self.token, "started_at": started, "heartbeat_at": now}

    def check(self) -> None:
        """Raise LeaseLostError unless this process still holds the lease (call before every write)."""
        if not self.held:
            raise LeaseLostError(f"{self.run_dir}: this trainer does not hold the run's owner lease")
        if self._lost is None:
            record = read_lease(self.run_dir)
            if record is None or record.get("token") != self.token:
                self._lost = (f"Stopped: {self.run_dir} was taken over by "
                              f"{_holder(record) if record else 'another trainer'}"
                              " since this trainer started; it writes nothing more there")
        if self._lost is not None:
            raise LeaseLostError(self._lost)

    def refresh(self) -> None:
        """Check the lease, then write a new heartbeat time."""
        with self._lock:
            self.check()
            self._record = {**self._record, "heartbeat_at": self.clock()}
            _write_json(self.path, self._record, exclusive=False)

    def release(self, quiet: bool = False) -> None:
        """Stop the heartbeat and remove the lease if it is still ours.

        Never raises an OSError (it runs while another exception, such as Ctrl-C, may be on its way
        out): a Drive error here is a warning (none when `quiet`: the caller is reporting the disk error
        that stopped it), and the lease left behind lapses as a dead owner's does.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.held:
            return
        self.held = False
        with self._lock:
            try:
                record = read_lease(self.run_dir)
                if record is not None and record.get("token") == self.token:
                    safeio.unlink(self.path, missing_ok=True)
            except OSError as e:
                if quiet:
                    return
                warnings.warn(f"{e}. The owner lease stays behind: the next trainer on this machine takes it "
                              f"over at once, one elsewhere after {_ago(self.stale_after_s)} without a heartbeat "
                              "(or at once with --take-over)", stacklevel=2)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="planet-colab-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.refresh()
            except LeaseLostError:
                return  # check() remembers why; the trainer stops at its next write
            except OSError:
                continue  # a Drive hiccup: the next beat tries again


def held_by_live_trainer(run_dir: str | os.PathLike, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether a trainer that may still be alive holds the run: a live process on this machine, or
    another machine's whose heartbeat is fresher than `stale_after_s`."""
    record = read_lease(run_dir)
    if record is None:
        return False
    if record.get("host") == socket.gethostname():
        return _alive_here(record)
    heartbeat = record.get("heartbeat_at")
    return isinstance(heartbeat, (int, float)) and time.time() - heartbeat <= stale_after_s


def describe_holder(run_dir: str | os.PathLike) -> str:
    """Who trains the run now, as `info` says it: a live holder with its host and pid, or nobody."""
    record = read_lease(run_dir)
    if record is None or not held_by_live_trainer(run_dir):
        return "none now (no trainer holds the run)"
    return f"{_holder(record)}, since {_clock(record.get('started_at'))} (a `train` now would be refused)"


def wait_for_lapse(run_dir: str | os.PathLike, *, poll_s: float = 5.0, stale_after_s: float = STALE_AFTER_S,
                   say: Callable[[str], None] = print) -> str:
    """Wait out a lease left by a trainer lost with its machine (a Colab runtime after a disconnect).

    Returns at once "free" (no lease), "stale" (already lapsed) or "here" (held on this machine, where
    `acquire` tells a dead process from a live one itself). Otherwise says how long it waits and polls:
    "lapsed" once the heartbeat is older than `stale_after_s`, "free" if the lease goes away, "live" as
    soon as the heartbeat moves (a trainer is alive there; `acquire` then refuses, naming it). A stop
    asked for meanwhile (stop_request.py: a sweep that stops) raises StopRequested within `poll_s`.
    """
    record = read_lease(run_dir)
    if record is None:
        return "free"
    heartbeat = record.get("heartbeat_at")
    if record.get("host") == socket.gethostname():
        return "here"
    if not isinstance(heartbeat, (int, float)) or time.time() - heartbeat > stale_after_s:
        return "stale"
    lapse_at = heartbeat + stale_after_s + 1.0
    say(f"Waiting {lapse_at - time.time():.0f} s for the lease of another machine to lapse: {_holder(record)}, "
        f"last heartbeat {_ago(time.time() - heartbeat)} ago (a trainer lost with its machine leaves its "
        "lease behind; a live one renews it and is not taken over)")
    while True:
        time.sleep(max(0.0, min(poll_s, lapse_at - time.time())))
        check_stop()
        now = read_lease(run_dir)
        if now is None:
            return "free"
        if now.get("token") != record.get("token") or now.get("heartbeat_at") != heartbeat:
            return "live"
        if time.time() >= lapse_at:
            return "lapsed"
