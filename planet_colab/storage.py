"""EpisodeStorage: one compressed .npz per episode, written atomically, damaged files quarantined.

Layout (seed §2): `<run>/episodes/episode_000001.npz` … with obs uint8 (T, 64, 64, 3), action float32
(T, A), reward float32 (T,), terminal bool (T,). Step t holds the observation seen, the action taken
in it, the reward received for that action and whether the episode truly ended there.

Google Drive facts that shape this file: a mount can drop mid-write ("Transport endpoint is not
connected"), and a file being synced may be read half-written. So each episode is written once
under a temporary name that never matches `episode_*.npz`, flushed, then renamed; files are never
appended to or rewritten; and a file that still fails to load is moved to `<run>/quarantine/` with a
warning instead of being deleted or crashing training.
"""

from __future__ import annotations

import os
import re
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

IMAGE_SHAPE = (64, 64, 3)
EPISODE_KEYS = ("obs", "action", "reward", "terminal")
_EPISODE_RE = re.compile(r"^episode_(\d{6,})\.npz$")
_NUMBER_RE = re.compile(r"^episode_(\d{6,})\b")  # also matches quarantined copies, e.g. episode_000003.1.npz
_TEMP_PREFIX = ".tmp_episode_"
_TEMP_SUFFIX = ".partial"
# A temporary younger than this may belong to a writer in another process (e.g. training while a
# notebook inspects the run), so only older leftovers are removed.
TEMP_MAX_AGE_S = 600.0


class DamagedEpisodeWarning(UserWarning):
    """An episode file failed to load and was moved to the quarantine folder."""


class DamagedEpisodeError(ValueError):
    """An episode file failed to load or validate (it has been quarantined)."""


def episode_number(path: str | os.PathLike) -> int | None:
    """The episode number in `episode_000042.npz` (42), or None for any other name."""
    match = _EPISODE_RE.match(os.path.basename(path))
    return int(match.group(1)) if match else None


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: cannot be stacked into one array "
                         f"(steps of different shapes or types?): {e}") from None


def _finite_float32(name: str, values: np.ndarray) -> np.ndarray:
    """`values` as float32, refusing non-numbers and NaN/inf with the field and step named."""
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{name}: expected numbers, got dtype {values.dtype}")
    values = values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        step = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise ValueError(f"{name}: non-finite value ({values.flat[np.argmax(~np.isfinite(values))]}) at step {step}")
    return values


def validate_episode(obs: Any, action: Any, reward: Any, terminal: Any) -> dict[str, np.ndarray]:
    """Check and convert one episode's per-step data to the stored dtypes; ValueError names the field."""
    obs_a, act_a = _as_array("obs", obs), _as_array("action", action)
    rew_a, term_a = _as_array("reward", reward), _as_array("terminal", terminal)

    if obs_a.ndim != 4 or obs_a.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"obs: expected shape (T, 64, 64, 3) (one 64x64x3 image per step), "
                         f"got {obs_a.shape}")
    if obs_a.dtype != np.uint8:
        if not np.issubdtype(obs_a.dtype, np.integer):
            raise ValueError(f"obs: expected uint8 pixels in 0..255, got dtype {obs_a.dtype} "
                             "(floats in [0, 1]? store (obs * 255).round().astype(np.uint8))")
        if obs_a.size and (obs_a.min() < 0 or obs_a.max() > 255):
            raise ValueError(f"obs: pixel values must be in 0..255, got range "
                             f"[{obs_a.min()}, {obs_a.max()}]")
        obs_a = obs_a.astype(np.uint8)
    length = obs_a.shape[0]
    if length == 0:
        raise ValueError("obs: episode is empty (0 steps); nothing to store")

    if act_a.ndim == 1:  # a list of scalars for a one-dimensional action space
        act_a = act_a[:, None]
    if act_a.ndim != 2 or act_a.shape[1] == 0:
        raise ValueError(f"action: expected shape (T, A), got {act_a.shape}")
    act_a = _finite_float32("action", act_a)
    if np.any(np.abs(act_a) > 1.0 + 1e-6):
        raise ValueError(f"action: values must be in [-1, 1] (the agent's normalised action space), "
                         f"got range [{act_a.min():.3g}, {act_a.max():.3g}]; store the clipped action "
                         "the agent chose, not the environment's scaled one")

    if rew_a.ndim == 2 and rew_a.shape[1] == 1:
        rew_a = rew_a[:, 0]
    if rew_a.ndim != 1:
        raise ValueError(f"reward: expected shape (T,), got {rew_a.shape}")
    rew_a = _finite_float32("reward", rew_a)

    if term_a.ndim == 2 and term_a.shape[1] == 1:
        term_a = term_a[:, 0]
    if term_a.ndim != 1:
        raise ValueError(f"terminal: expected shape (T,), got {term_a.shape}")
    if term_a.dtype != np.bool_:
        if not (np.issubdtype(term_a.dtype, np.integer) or np.issubdtype(term_a.dtype, np.floating)) \
                or not np.all((term_a == 0) | (term_a == 1)):
            raise ValueError(f"terminal: expected booleans (or 0/1), got dtype {term_a.dtype}")
        term_a = term_a.astype(bool)

    lengths = {"obs": length, "action": len(act_a), "reward": len(rew_a), "terminal": len(term_a)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"lengths differ (one entry per step expected in each): {lengths}")
    return {"obs": obs_a, "action": act_a, "reward": rew_a, "terminal": term_a}


def _check_loaded(data: dict[str, np.ndarray]) -> str | None:
    """Why a loaded episode is unusable, or None when it is fine."""
    missing = [k for k in EPISODE_KEYS if k not in data]
    if missing:
        return f"missing array(s) {missing}"
    obs, action, reward, terminal = (data[k] for k in EPISODE_KEYS)
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[1:] != IMAGE_SHAPE:
        return f"obs is {obs.dtype} {obs.shape}, expected uint8 (T, 64, 64, 3)"
    if action.dtype != np.float32 or action.ndim != 2:
        return f"action is {action.dtype} {action.shape}, expected float32 (T, A)"
    if reward.dtype != np.float32 or reward.ndim != 1:
        return f"reward is {reward.dtype} {reward.shape}, expected float32 (T,)"
    if terminal.dtype != np.bool_ or terminal.ndim != 1:
        return f"terminal is {terminal.dtype} {terminal.shape}, expected bool (T,)"
    lengths = {k: len(data[k]) for k in EPISODE_KEYS}
    if len(set(lengths.values())) != 1:
        return f"inconsistent lengths {lengths}"
    if lengths["obs"] == 0:
        return "empty episode"
    if not (np.all(np.isfinite(reward)) and np.all(np.isfinite(action))):
        return "non-finite reward or action"
    return None


def _is_transient(error: BaseException) -> bool:
    """An I/O error from the mount itself (Drive dropped), not from the file's contents."""
    return isinstance(error, OSError) and error.errno is not None


class EpisodeStorage:
    """A directory of episode files; create it once per run and reuse it (it caches decoded episodes)."""

    def __init__(self, episode_dir: str | os.PathLike) -> None:
        self.episode_dir = Path(episode_dir)
        self.episode_dir.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir = self.episode_dir.parent / "quarantine"
        # str(path) -> ((size, mtime_ns), episode): decoded episodes, shared by every EpisodeDataset
        # built from this storage so that a refresh decodes only new files (and RAM holds one copy).
        # Keyed by str, not Path: hashing hundreds of Paths would cost as much as decoding an episode.
        self._cache: dict[str, tuple[tuple[int, int], dict[str, np.ndarray]]] = {}
        self._highest_written = 0
        self.clean_temporaries()

    def __repr__(self) -> str:
        return f"EpisodeStorage({str(self.episode_dir)!r}, episodes={self.num_episodes})"

    # ------------------------------------------------------------------ listing
    @property
    def episode_paths(self) -> list[Path]:
        """Every stored episode file, in episode-number order."""
        found = []
        for name in os.listdir(self.episode_dir):
            number = episode_number(name)
            if number is not None:
                found.append((number, self.episode_dir / name))
        return [path for _, path in sorted(found)]

    @property
    def num_episodes(self) -> int:
        """How many episode files are stored (quarantined ones excluded)."""
        return len(self.episode_paths)

    def path_for(self, index: int) -> Path:
        """Where episode number `index` is (or would be) stored."""
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or index < 1:
            raise ValueError(f"index: episode numbers start at 1, got {index!r}")
        return self.episode_dir / f"episode_{int(index):06d}.npz"

    def has_episode(self, index: int) -> bool:
        """Whether episode number `index` is stored (a quarantined one is not)."""
        return self.path_for(index).exists()

    def _used_numbers(self) -> list[int]:
        numbers = [n for n in map(episode_number, os.listdir(self.episode_dir)) if n is not None]
        if self.quarantine_dir.is_dir():
            for name in os.listdir(self.quarantine_dir):
                match = _NUMBER_RE.match(name)
                if match:
                    numbers.append(int(match.group(1)))
        return numbers

    def next_index(self) -> int:
        """The number the next `add_episode(..., index=None)` writes: after every number ever used."""
        return max([self._highest_written, *self._used_numbers()]) + 1

    # ------------------------------------------------------------------ writing
    def add_episode(self, obs_list: Sequence[Any] | np.ndarray, action_list: Sequence[Any] | np.ndarray,
                    reward_list: Sequence[Any] | np.ndarray, terminal_list: Sequence[Any] | np.ndarray,
                    *, index: int | None = None) -> Path:
        """Validate and atomically write one episode; return its path.

        `index=None` takes the next unused number; an explicit `index` writes exactly that number
        (how a resumed loop re-creates the episode of iteration i) and refuses to overwrite.
        """
        data = validate_episode(obs_list, action_list, reward_list, terminal_list)
        if index is None:
            index = self.next_index()
        path = self.path_for(index)
        if path.exists():
            raise ValueError(f"index: episode {index} already exists at {path}; "
                             "stored episodes are never overwritten")
        self._write_atomic(path, data)
        self._highest_written = max(self._highest_written, int(index))
        return path

    def _write_atomic(self, path: Path, data: dict[str, np.ndarray]) -> None:
        tmp = self.episode_dir / f"{_TEMP_PREFIX}{path.stem}_{uuid.uuid4().hex[:8]}{_TEMP_SUFFIX}"
        try:
            # A file object, not a name: np.savez_compressed would append ".npz" to a name.
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # the mount is gone; the leftover never matches episode_*.npz and is cleaned later
            raise
        try:  # make the rename durable where the filesystem allows it (Drive's FUSE may not)
            fd = os.open(self.episode_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass

    def clean_temporaries(self, max_age_s: float = TEMP_MAX_AGE_S) -> list[Path]:
        """Delete leftover temporaries of interrupted writes older than `max_age_s`; return them."""
        removed = []
        now = time.time()
        for name in os.listdir(self.episode_dir):
            if not (name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)):
                continue
            tmp = self.episode_dir / name
            try:
                if now - tmp.stat().st_mtime >= max_age_s:
                    tmp.unlink()
                    removed.append(tmp)
            except FileNotFoundError:
                pass
        return removed

    # ------------------------------------------------------------------ reading
    def load_episode(self, path: str | os.PathLike) -> dict[str, np.ndarray]:
        """Read and validate one episode file (not cached).

        A damaged file is moved to the quarantine folder with a DamagedEpisodeWarning and
        DamagedEpisodeError (a ValueError) is raised; an I/O error of the mount itself (errno set,
        e.g. Drive disconnected) propagates unchanged and quarantines nothing.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: np.array(npz[k]) for k in npz.files}
        except FileNotFoundError:
            raise
        except Exception as e:
            if _is_transient(e):
                raise
            self.quarantine(path, f"{type(e).__name__}: {e}")
            raise DamagedEpisodeError(f"{path} failed to load ({type(e).__name__}: {e}); "
                                      f"moved to {self.quarantine_dir}") from None
        problem = _check_loaded(data)
        if problem is not None:
            self.quarantine(path, problem)
            raise DamagedEpisodeError(f"{path} is not a valid episode ({problem}); "
                                      f"moved to {self.quarantine_dir}")
        return {k: data[k] for k in EPISODE_KEYS}

    def load_cached(self, path: str | os.PathLike) -> dict[str, np.ndarray]:
        """Like `load_episode`, but reuses the decoded arrays while the file's size and mtime are unchanged."""
        name = os.fspath(path)
        stat = os.stat(name)
        key = (stat.st_size, stat.st_mtime_ns)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        self._cache.pop(name, None)
        episode = self.load_episode(name)
        self._cache[name] = (key, episode)
        return episode

    def forget(self, keep: Sequence[Path] | None = None) -> None:
        """Drop cached episodes (all, or all but `keep`) so their RAM can be freed."""
        keep_set = set(map(os.fspath, keep or ()))
        for path in list(self._cache):
            if path not in keep_set:
                del self._cache[path]

    def quarantine(self, path: str | os.PathLike, reason: str) -> Path | None:
        """Move a damaged file to the quarantine folder (never delete it) and warn; return its new path."""
        path = Path(path)
        self._cache.pop(os.fspath(path), None)
        number = episode_number(path)
        if number is not None:
            self._highest_written = max(self._highest_written, number)  # its number is never reused
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            dest = self.quarantine_dir / path.name
            copy = 0
            while dest.exists():  # the same number may be quarantined twice (re-collected, damaged again)
                copy += 1
                dest = self.quarantine_dir / f"{path.stem}.{copy}{path.suffix}"
            os.replace(path, dest)
        except OSError as e:
            warnings.warn(f"Damaged episode file {path} ({reason}) is skipped, but could not be moved to "
                          f"{self.quarantine_dir}: {e}", DamagedEpisodeWarning, stacklevel=3)
            return None
        warnings.warn(f"Damaged episode file {path.name} ({reason}) moved to {dest}; it is skipped "
                      "(inspect or delete it yourself)", DamagedEpisodeWarning, stacklevel=3)
        return dest
