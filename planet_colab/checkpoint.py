"""Checkpoints that survive a runtime killed at any instant: atomic, hashed, rotated, safely loaded.

Layout inside a run directory:
    checkpoints/ckpt_000019.pt   one file per saved iteration (the last COMPLETED one, 0-based)
    checkpoints/latest.json      index: the newest file with its sha256, and {file: sha256, …} of all kept
    quarantine/                  damaged checkpoints moved aside (never deleted)

Every file is written by `safeio.write_atomic` (temporary name that never matches ckpt_*.pt, fsync,
rename), hashed as it streams out; a kill leaves the old file or the new one, never half of one. Payloads hold
only tensors and Python primitives so `torch.load(..., weights_only=True)` can read them: loading a
checkpoint never runs code from a file that Drive sync or a person may have altered.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import warnings
from collections import OrderedDict
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from planet_colab import safeio
from planet_colab.checks import positive_int

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
QUARANTINE_DIR = "quarantine"
INDEX_NAME = "latest.json"
DEFAULT_KEEP = 3
_CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")
_REQUIRED_KEYS = ("format_version", "iteration", "episodes", "model", "optimizer", "config",
                  "metrics", "extra")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def save_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, iteration: int,
                    config: Any, run_dir: str | os.PathLike, *, episodes: int, metrics: list[dict],
                    extra: dict | None = None) -> Path:
    """Atomically write run_dir/checkpoints/ckpt_{iteration:06d}.pt, update the index, rotate old ones."""
    _check_count("iteration", iteration)
    _check_count("episodes", episodes)
    if not isinstance(metrics, (list, tuple)):
        raise TypeError(f"metrics must be a list of dicts, got {type(metrics).__name__}")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
    config_dict = _config_to_dict(config)
    keep = _keep_count(config)

    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    safeio.mkdir(ckpt_dir, parents=True)
    safeio.clean_temporaries(ckpt_dir, max_age_s=0.0)

    payload = {
        "format_version": FORMAT_VERSION,
        "iteration": int(iteration),
        "episodes": int(episodes),
        "model": _to_cpu(model.state_dict()),
        "optimizer": _to_cpu(optimizer.state_dict()) if optimizer is not None else None,
        "config": sanitize(config_dict, "config"),
        "metrics": sanitize(list(metrics), "metrics"),
        "extra": sanitize(dict(extra or {}), "extra"),
        "saved_at": time.time(),
        "torch_version": str(torch.__version__),  # TorchVersion, a str subclass, is not weights_only-safe
    }

    path = ckpt_dir / f"ckpt_{iteration:06d}.pt"
    later = [p.name for it, p in _list_checkpoints(ckpt_dir) if it > iteration]
    if later:
        warnings.warn(f"Saving {path.name} while later checkpoints exist ({', '.join(later)}); "
                      "load_checkpoint will still prefer the later ones.", stacklevel=2)

    digest, size = safeio.write_atomic(path, lambda f: torch.save(payload, f))

    # The index is rewritten before old files are deleted, so it never lists a file that is gone.
    index = _read_index(ckpt_dir, on_damage="quarantine")
    entries = {name: e for name, e in index.get("checkpoints", {}).items() if safeio.exists(ckpt_dir / name)}
    entries[path.name] = {"sha256": digest, "iteration": int(iteration), "size": size}
    others = [p for it, p in _list_checkpoints(ckpt_dir) if p.name != path.name]  # newest first
    doomed = others[max(keep - 1, 0):]
    for p in doomed:
        entries.pop(p.name, None)
    _write_index(ckpt_dir, entries)
    for p in doomed:
        _delete_for_good(p)
    return path


def load_checkpoint(run_dir: str | os.PathLike, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu", *, read_only: bool = False) -> dict | None:
    """Newest checkpoint that loads and matches its hash (older ones as fallback); None if there is none.

    The run's owner (the default) moves a checkpoint that fails to load to quarantine/ and rewrites the
    index without it. `read_only=True` is for a process that does not own the run (evaluation, a
    notebook on another runtime): it moves, rewrites and deletes nothing, and skips such a file with a
    warning; often it is the trainer's newest one, which Drive has not finished syncing here.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    if not safeio.is_dir(ckpt_dir):
        return None
    if not read_only:
        # A load must not delete the temporary of a save running right now in another process (a
        # notebook on the same Drive run): only stale ones go.
        safeio.clean_temporaries(ckpt_dir, safeio.STALE_TEMP_AGE_S)
    index = _read_index(ckpt_dir, on_damage="warn" if read_only else "quarantine")
    entries: dict[str, dict] = dict(index.get("checkpoints", {}))
    candidates = _list_checkpoints(ckpt_dir)

    missing = sorted(n for n in entries if not safeio.exists(ckpt_dir / n))
    if missing:
        warnings.warn(f"{ckpt_dir / INDEX_NAME} lists checkpoint(s) that are missing: {', '.join(missing)}; "
                      "using the newest one still present.", stacklevel=2)
    if not candidates:
        if missing:
            raise RuntimeError(
                f"No checkpoint file is left in {ckpt_dir}, but its index {INDEX_NAME} lists "
                f"{', '.join(missing)}. Refusing to start over (that would overwrite the run). If they "
                f"are still syncing from Drive, wait and retry; to really start over, delete {INDEX_NAME}.")
        return None

    failures: list[tuple[Path, str]] = []
    payload = None
    for _, path in candidates:
        payload, problem = _try_load(path, entries.get(path.name), map_location)
        if payload is not None:
            break
        failures.append((path, problem))

    if payload is None:
        # Nothing is moved aside here: with no good checkpoint left, quarantining them all would make
        # the next load see an empty directory and silently start the run over.
        listing = "\n  - ".join(f"{p.name}: {why}" for p, why in failures)
        raise RuntimeError(
            f"None of the {len(failures)} checkpoint(s) in {ckpt_dir} can be loaded:\n  - {listing}\n"
            "Refusing to start over, which would overwrite this run's progress. If Drive is still "
            "syncing, wait and retry; to start over anyway, move these files away or use a new run directory.")

    for path, problem in failures:
        if read_only:
            safeio.leave_in_place(path, f"{problem}; using the older {payload['path'].name}", UserWarning,
                                  stacklevel=2)
            continue
        safeio.quarantine(path, Path(run_dir) / QUARANTINE_DIR,
                          f"{problem}; resuming from the older {payload['path'].name} instead", UserWarning)
        entries.pop(path.name, None)
    if failures and not read_only:
        _write_index(ckpt_dir, {n: e for n, e in entries.items() if safeio.exists(ckpt_dir / n)})

    if model is not None:
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as e:
            raise RuntimeError(
                f"Checkpoint {payload['path']} does not fit this model (was the run started with a different "
                f"config? compare {Path(run_dir) / 'config.json'}):\n{e}") from None
    if optimizer is not None:
        if payload["optimizer"] is None:
            warnings.warn(f"Checkpoint {payload['path'].name} holds no optimizer state; "
                          "the optimizer starts fresh.", stacklevel=2)
        else:
            optimizer.load_state_dict(payload["optimizer"])
    payload["start_iteration"] = payload["iteration"] + 1
    return payload


def latest_checkpoint_info(run_dir: str | os.PathLike) -> dict | None:
    """File, iteration, size and mtime of the newest checkpoint file, without loading or verifying it."""
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    candidates = _list_checkpoints(ckpt_dir) if safeio.is_dir(ckpt_dir) else []
    if not candidates:
        return None
    iteration, path = candidates[0]
    st = safeio.stat(path)
    entry = _read_index(ckpt_dir, on_damage="ignore").get("checkpoints", {}).get(path.name, {})
    return {"file": str(path), "iteration": iteration, "start_iteration": iteration + 1, "size": st.st_size,
            "mtime": st.st_mtime, "sha256": entry.get("sha256"), "num_checkpoints": len(candidates)}


def newest_checkpoint_config(run_dir: str | os.PathLike) -> tuple[dict, str] | None:
    """(config dict, file name) of the newest checkpoint file, read cheaply and unverified; None when there is
    none or it does not load (load_checkpoint then judges it, and falls back to an older one)."""
    info = latest_checkpoint_info(run_dir)
    if info is None:
        return None
    path = Path(info["file"])
    try:  # mmap: only the pickled header is read, not megabytes of weights (this runs at every open)
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # damaged or half-synced: not this function's to report
        return None
    config = payload.get("config") if isinstance(payload, dict) else None
    return (config, path.name) if isinstance(config, dict) else None


def sanitize(obj: Any, key: str = "value") -> Any:
    """Copy of `obj` holding only what weights_only loading accepts; TypeError naming `key` otherwise."""
    if obj is None or type(obj) in (bool, int, float, str, bytes):
        return obj
    if isinstance(obj, np.generic):  # before the primitives: np.float64 subclasses float
        return sanitize(obj.item(), key)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(obj))
        except TypeError:
            raise TypeError(f"{key}: a numpy array of dtype {obj.dtype} cannot be stored in a checkpoint "
                            "(no matching torch dtype); convert it to numbers or a list") from None
    if isinstance(obj, (torch.Size, torch.device, torch.dtype)):
        return obj
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            sk = sanitize(k, f"{key} key {k!r}")
            if not (sk is None or type(sk) in (bool, int, float, str, tuple)):
                raise TypeError(f"{key}: key {k!r} of type {type(k).__name__} cannot be stored in a checkpoint")
            out[sk] = sanitize(v, f"{key}[{k!r}]")
        return out
    if type(obj) in (list, tuple, set):
        return type(obj)(sanitize(v, f"{key}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"{key}: cannot store a {type(obj).__module__}.{type(obj).__qualname__} in a checkpoint "
                    "that loads with torch.load(weights_only=True); convert it to a tensor, number, string, "
                    "list or dict first")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _check_count(name: str, value: Any) -> None:
    if isinstance(value, np.integer):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _config_to_dict(config: Any) -> dict:
    if config is None:
        return {}
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"config must be a Config or a dict, got {type(config).__name__}")


def _keep_count(config: Any) -> int:
    keep = config.get("keep_checkpoints", DEFAULT_KEEP) if isinstance(config, dict) \
        else getattr(config, "keep_checkpoints", DEFAULT_KEEP)
    return positive_int("keep_checkpoints", keep)


def _to_cpu(obj: Any) -> Any:
    """State dict with every tensor on the CPU, so the file loads on a machine without a GPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()  # no copy when already on the CPU
    if isinstance(obj, dict):
        out = type(obj)((k, _to_cpu(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict) \
            else {k: _to_cpu(v) for k, v in obj.items()}
        if hasattr(obj, "_metadata"):  # module versions that load_state_dict relies on
            out._metadata = obj._metadata
        return out
    if type(obj) in (list, tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every ckpt_*.pt, newest first."""
    found = []
    for name in safeio.listdir(ckpt_dir):
        m = _CKPT_RE.match(name)
        if m and safeio.is_file(ckpt_dir / name):
            found.append((int(m.group(1)), ckpt_dir / name))
    return sorted(found, key=lambda t: t[0], reverse=True)


def _read_index(ckpt_dir: Path, on_damage: str) -> dict:
    """The index as stored; {} when missing or damaged, which `on_damage` "quarantine"s, "warn"s of or "ignore"s."""
    path = ckpt_dir / INDEX_NAME
    if not safeio.exists(path):
        return {}
    try:
        index = json.loads(safeio.read_text(path))
        if not isinstance(index, dict) or not isinstance(index.get("checkpoints", {}), dict):
            raise ValueError("not an index object")
        for name, e in index.get("checkpoints", {}).items():
            if not (isinstance(e, dict) and isinstance(e.get("sha256"), str)
                    and type(e.get("iteration")) is int and type(e.get("size")) is int):
                raise ValueError(f"bad entry for {name!r}")
        return index
    except (OSError, ValueError) as e:
        if safeio.is_transient(e):
            raise  # the mount dropped: the index may be fine
        if on_damage == "quarantine":
            safeio.quarantine(path, ckpt_dir.parent / QUARANTINE_DIR, f"{e}; checkpoints are loaded without "
                              "hash verification until the next save rewrites it", UserWarning)
        elif on_damage == "warn":
            warnings.warn(f"{path} is damaged or half-synced ({e}); loading checkpoints without hash "
                          "verification", UserWarning, stacklevel=3)
        return {}


def _write_index(ckpt_dir: Path, entries: dict[str, dict]) -> None:
    ordered = dict(sorted(entries.items(), key=lambda kv: kv[1]["iteration"], reverse=True))
    index: dict[str, Any] = {"format_version": FORMAT_VERSION}
    if ordered:
        newest = next(iter(ordered))
        index.update(file=newest, sha256=ordered[newest]["sha256"], iteration=ordered[newest]["iteration"])
    index["checkpoints"] = ordered
    text = json.dumps(index, indent=2) + "\n"
    safeio.write_atomic(ckpt_dir / INDEX_NAME, text)


def _try_load(path: Path, entry: dict | None, map_location: str | torch.device) -> tuple[dict | None, str]:
    """(payload, "") when `path` is intact and valid, else (None, what is wrong with it)."""
    try:
        size = safeio.stat(path).st_size
        if entry is not None and size != entry.get("size", size):
            return None, f"truncated or altered: {size} bytes, {entry['size']} were written"
        data = safeio.read_bytes(path)  # hashed and unpickled from memory
    except OSError as e:
        if safeio.is_transient(e):
            raise  # the mount dropped, not the file: quarantining it would throw progress away
        return None, f"unreadable: {e}"
    if entry is not None and hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        return None, "sha256 does not match the one recorded when it was written"
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # a damaged zip can fail in many ways; all mean "don't trust it"
        return None, f"cannot be loaded: {safeio.load_error(e)}"
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED_KEYS):
        return None, "not a planet_colab checkpoint (keys missing)"
    if not (type(payload["iteration"]) is int and type(payload["episodes"]) is int
            and isinstance(payload["metrics"], list) and isinstance(payload["extra"], dict)
            and isinstance(payload["model"], dict)):
        return None, "not a planet_colab checkpoint (fields of the wrong type)"
    expected = int(_CKPT_RE.match(path.name).group(1))
    if payload["iteration"] != expected:
        return None, f"holds iteration {payload['iteration']}, but its name says {expected}"
    if entry is None:
        warnings.warn(f"{path.name} is not listed in {INDEX_NAME} (a save was interrupted, or the index "
                      "was lost); it loaded cleanly, so it is used without hash verification.", stacklevel=3)
    payload["path"] = path
    return payload, ""


def _delete_for_good(path: Path) -> None:
    # Drive moves deleted files to its Trash, where they keep counting against the quota for 30
    # days; truncating first leaves only an empty file there.
    try:
        safeio.truncate(path, 0)
        safeio.unlink(path)
    except OSError as e:
        warnings.warn(f"Could not delete old checkpoint {path}: {e}", stacklevel=3)
