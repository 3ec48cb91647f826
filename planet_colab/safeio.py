"""Crash-safe files on a run directory, on a local disk or on Google Drive's FUSE mount.

This module holds the run directory's guarantee, for every file the package writes (config.json,
episodes, checkpoints and their index, metrics.jsonl, figures and videos): each file is written once
under a temporary name, flushed, fsynced and renamed over its final name, so a runtime killed at any
instant leaves the old file or the new one, never half of one. Files are never appended to or
rewritten in place. A temporary's name starts with "." and ends in ".tmp-<pid>-<random>", so it never
matches the pattern of a final file (`episode_*.npz`, `ckpt_*.pt`, …) and no reader mistakes it for one;
`clean_temporaries` removes those a killed writer left behind.

Drive's mount can drop for a moment ("Transport endpoint is not connected", EIO, timeouts). Such
errors are retried with backoff (`RETRY_DELAYS_S`) and then reported as one OSError naming the path
and what to do; a full disk says "disk full"; no other error claims so. That holds for every call on
a run directory, not only writes: the package checks, stats, lists, reads and deletes through
`exists`, `is_dir`, `is_file`, `stat`, `listdir`, `read_bytes`, `read_text`, `mkdir`, `unlink` and
`truncate` here (and moves through `write_atomic` and `quarantine`), never through pathlib's or os's
own. A file that fails to load is moved to the run's quarantine folder with a warning
(`quarantine`), never deleted.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
import uuid
import warnings
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import BinaryIO, Callable, TypeVar

T = TypeVar("T")

# Errors of the mount itself, not of the file: a moment later the same operation may succeed.
TRANSIENT_ERRNOS = frozenset({errno.ENOTCONN, errno.EIO, errno.ETIMEDOUT, errno.ESTALE, errno.EAGAIN,
                              errno.ECONNABORTED, errno.ECONNRESET})
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM})  # on a write: the folder is not writable
# Seconds slept before each retry: four tries in about 2.5 s. Tests patch `_sleep` (or this).
RETRY_DELAYS_S: tuple[float, ...] = (0.25, 0.75, 1.5)
# A temporary younger than this may belong to a writer in another process (a notebook inspecting
# the run while it trains; a large checkpoint still uploading), so only older ones are removed.
STALE_TEMP_AGE_S = 15 * 60.0
# Temporaries: this module's names, plus those of earlier versions of the package (".tmp_*.partial"
# for episodes, ".<name>.tmp" for small files), since a run directory outlives the code that began it.
_TEMP_RE = re.compile(r"^\.(?:.+\.tmp-\d+-[0-9a-f]{8}|tmp_.+\.partial|.+\.tmp)$")

_sleep = time.sleep


class QuarantineWarning(UserWarning):
    """A damaged file was moved to the quarantine folder (never deleted)."""


def is_transient(error: BaseException) -> bool:
    """Whether `error` is a mount failure (Drive dropped, timed out) that a retry may get past."""
    return isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS


def explain(error: OSError, path: str | os.PathLike, what: str, tries: int = 1) -> OSError:
    """A one-line OSError (same errno, so the same subclass) saying what failed on `path` and what to do."""
    reason = error.strerror or str(error)
    if error.errno in DISK_FULL_ERRNOS:
        advice = ("disk full. Free space (on Google Drive: delete files, then empty Drive's Trash, "
                  "which still counts against the quota) and run again; files already stored are intact")
    elif is_transient(error):
        advice = (f"{reason} (tried {tries} times). The disk or Drive mount dropped: remount Drive "
                  "(drive.mount('/content/drive', force_remount=True)) or check the disk, then run again; "
                  "nothing stored was lost")
    elif error.errno == errno.EROFS or (error.errno in NOT_WRITABLE_ERRNOS and what not in ("read", "list")):
        advice = (f"{reason}. The folder is not writable (remounted read-only, a failing disk, changed "
                  "permissions): make it writable again (on Colab remount Drive: drive.mount('/content/drive', "
                  "force_remount=True)) or copy the run to a writable place, then run again; files already "
                  "stored are intact")
    else:
        advice = reason
    message = f"Could not {what} {os.fspath(path)}: {advice}"
    return OSError(error.errno, message) if error.errno is not None else OSError(message)


def retry_io(fn: Callable[[], T], *, path: str | os.PathLike, what: str) -> T:
    """Return fn(), retrying transient mount errors with backoff; then raise `explain`'s OSError.

    Errors that a retry cannot fix (file not found, permission, disk full…) are raised at once,
    re-worded by `explain` to name the path.
    """
    for delay in RETRY_DELAYS_S:
        try:
            return fn()
        except OSError as e:
            if not is_transient(e):
                raise explain(e, path, what) from e
        _sleep(delay)
    try:
        return fn()
    except OSError as e:
        raise explain(e, path, what, tries=len(RETRY_DELAYS_S) + 1) from e


# Every file-system call on a run directory goes through retry_io: a check or a stat meets a Drive
# drop as often as a write does, and one unretried ENOTCONN would end a run that otherwise finishes.
_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


def _stat_or_none(path: str | os.PathLike) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError as e:
        if e.errno in _ABSENT_ERRNOS:
            return None
        raise


def stat(path: str | os.PathLike) -> os.stat_result:
    """os.stat(path), Drive drops retried; FileNotFoundError (naming the path) when it is absent."""
    return retry_io(lambda: os.stat(path), path=path, what="read")


def exists(path: str | os.PathLike) -> bool:
    """Whether `path` exists; a dropped mount is retried, then raised, never taken for "absent"."""
    # Only "no such file" means absent: os.path.exists would say False for a dropped mount too.
    return retry_io(lambda: _stat_or_none(path), path=path, what="read") is not None


def is_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory (Drive drops retried, then raised)."""
    found = retry_io(lambda: _stat_or_none(path), path=path, what="read")
    return found is not None and S_ISDIR(found.st_mode)


def is_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a regular file (Drive drops retried, then raised)."""
    found = retry_io(lambda: _stat_or_none(path), path=path, what="read")
    return found is not None and S_ISREG(found.st_mode)


def listdir(path: str | os.PathLike) -> list[str]:
    """The names in directory `path` (Drive drops retried)."""
    return retry_io(lambda: os.listdir(path), path=path, what="list")


def mkdir(path: str | os.PathLike, parents: bool = False) -> None:
    """Create directory `path` (and its parents with `parents`) unless it exists (Drive drops retried)."""
    retry_io(lambda: Path(path).mkdir(parents=parents, exist_ok=True), path=path, what="create")


def unlink(path: str | os.PathLike, missing_ok: bool = False) -> None:
    """Delete file `path` (Drive drops retried)."""
    retry_io(lambda: Path(path).unlink(missing_ok=missing_ok), path=path, what="remove")


def truncate(path: str | os.PathLike, size: int) -> None:
    """os.truncate(path, size) (Drive drops retried)."""
    retry_io(lambda: os.truncate(path, size), path=path, what="truncate")


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of file `path` (Drive drops retried)."""
    return retry_io(Path(path).read_bytes, path=path, what="read")


def read_text(path: str | os.PathLike) -> str:
    """The UTF-8 text of file `path` (Drive drops retried)."""
    return retry_io(lambda: Path(path).read_text(encoding="utf-8"), path=path, what="read")


class _HashingWriter:
    """File wrapper that hashes bytes as they are written, so a large file is never read back."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0
        self.error: OSError | KeyboardInterrupt | None = None

    def write(self, data: bytes) -> int:
        try:
            n = self.f.write(data)
        except (OSError, KeyboardInterrupt) as e:
            # torch.save may turn this into a RuntimeError without errno (its zip writer, cut short,
            # fails on its own clean-up), or retry the chunk and carry on: either way the attempt is
            # kept as failed, and a stop stays a stop.
            self.error = e
            raise
        self.sha.update(data)
        self.size += n
        return n

    def flush(self) -> None:
        self.f.flush()

    def tell(self) -> int:
        return self.size


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh temporary path next to `path` that matches no final file's pattern."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_atomic(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> tuple[str, int]:
    """Write `data` (bytes, UTF-8 text, or a function writing to a file) as `path`; return (sha256 hex, size).

    The whole write (temporary, fsync, rename) is retried on transient errors, so a function
    passed as `data` may be called more than once: it must write the same bytes each time.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        write: Callable[[BinaryIO], None] = lambda f: f.write(raw)  # noqa: E731
    elif callable(data):
        write = data
    else:
        raise TypeError(f"data must be bytes, str or a function of a file, got {type(data).__name__}")
    digest, size = retry_io(lambda: _write_once(path, write), path=path, what="write")
    _fsync_dir(path.parent)
    return digest, size


def _write_once(path: Path, write: Callable[[BinaryIO], None]) -> tuple[str, int]:
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            writer = _HashingWriter(f)
            try:
                write(writer)  # type: ignore[arg-type]
            except Exception as e:
                cause = writer.error or _stop_behind(e)
                if cause is None or cause is e:
                    raise
                raise cause from e
            if writer.error is not None:
                raise writer.error
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the mount is gone; the leftover matches no final name and is cleaned later
        raise
    return writer.sha.hexdigest(), writer.size


def _stop_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The stop (KeyboardInterrupt) that `error` replaced while it was being handled, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__context__
    return None


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable on local disks; Drive's FUSE mount may not support it, which is fine.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_temporaries(directory: str | os.PathLike, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Delete temporaries of interrupted writes in `directory` older than `max_age_s`; return them."""
    directory = Path(directory)
    removed = []
    now = time.time()
    for name in listdir(directory):
        if not _TEMP_RE.match(name):
            continue
        tmp = directory / name
        try:
            if now - tmp.stat().st_mtime >= max_age_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass  # another process just renamed or removed it, or the mount dropped: try next time
    return removed


def load_error(error: BaseException) -> str:
    """Why a file failed to load, in one short line: the error's type and its first sentence."""
    text = " ".join(str(error).split())
    # torch and numpy append paragraphs of advice ("This is an internal miniz error. If you are…")
    # that would bury the file's name in every warning.
    first = re.split(r"(?<=[a-z0-9)])\. (?=[A-Z])", text, maxsplit=1)[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def quarantine(path: str | os.PathLike, quarantine_dir: str | os.PathLike, reason: str,
               category: type[Warning] = QuarantineWarning) -> Path:
    """Move a damaged file into `quarantine_dir` under an unused name, warn, and return its new path.

    The file is never deleted: the same name quarantined twice becomes `name.1.ext`, `name.2.ext`, ….
    An OSError (from `explain`) means the file could not be moved; it is then left where it is.
    """
    path, quarantine_dir = Path(path), Path(quarantine_dir)
    mkdir(quarantine_dir, parents=True)
    dest = quarantine_dir / path.name
    copy = 0
    while exists(dest):
        copy += 1
        dest = quarantine_dir / f"{path.stem}.{copy}{path.suffix}"
    retry_io(lambda: os.replace(path, dest), path=path, what="quarantine")
    warnings.warn(f"{path} is damaged ({reason}); moved to {dest}. It is skipped (inspect or delete it "
                  "yourself).", category, stacklevel=3)
    return dest


def leave_in_place(path: str | os.PathLike, reason: str, category: type[Warning] = QuarantineWarning,
                   stacklevel: int = 3) -> None:
    """Warn that a damaged file is skipped but not moved: this process reads a run it does not own."""
    warnings.warn(f"{path} is damaged or not fully synced yet ({reason}); skipped and left in place: this "
                  "process does not own the run (if its trainer wrote the file moments ago, Drive may not "
                  "have finished syncing it)", category, stacklevel=stacklevel + 1)
