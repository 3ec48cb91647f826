"""EpisodeStorage: one compressed .npz per episode, written atomically, damaged files quarantined.

Layout: `<run>/episodes/episode_000001.npz` … with obs uint8 (T, 64, 64, 3), action float32
(T, A), reward float32 (T,), terminal bool (T,). Step t holds the observation seen, the action taken
in it, the reward received for that action and whether the episode truly ended there. Only the name
`path_for(n)` writes counts as episode n; any other file in the folder is ignored.

Each episode is written once through `safeio.write_atomic` (temporary name, fsync, rename; Drive's
transient errors retried). Stored data is trusted no further than new data: a file that fails to load
or holds values `validate_episode` would refuse is moved to `<run>/quarantine/` with a warning
instead of being deleted or reaching training. A storage opened `read_only` (a process that does
not own the run: evaluation, a notebook on another runtime) creates, moves and deletes nothing: it
skips such a file with a warning and leaves it where it is.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from planet_colab import safeio
from planet_colab.checks import positive_int

IMAGE_SHAPE = (64, 64, 3)
EPISODE_KEYS = ("obs", "action", "reward", "terminal")
_EPISODE_RE = re.compile(r"^episode_(\d{6,})\.npz$")
_NUMBER_RE = re.compile(r"^episode_(\d{6,})\b")  # also matches quarantined copies, e.g. episode_000003.1.npz
TEMP_MAX_AGE_S = safeio.STALE_TEMP_AGE_S
# The largest |reward| of one step stored. The reward head's squared error, summed over a batch of
# thousands of steps, must stay finite in float32 (max 3.4e38): 1e6 keeps it below 1e16, while 1e18
# would already overflow and make every train step skip. Real environments are many orders below
# (DMC: [0, 1] per step; Pendulum: >= -16.3), even summed over an action repeat.
MAX_ABS_REWARD = 1e6
_ACTION_TOLERANCE = 1e-6  # float32 rounding of an action clipped to [-1, 1]


class DamagedEpisodeWarning(safeio.QuarantineWarning):
    """An episode file failed to load and was moved to the quarantine folder."""


class DamagedEpisodeError(ValueError):
    """An episode file failed to load or validate (it has been quarantined)."""


def episode_number(path: str | os.PathLike) -> int | None:
    """The episode number in `episode_000042.npz` (42), or None for any name `path_for` would not write."""
    name = os.path.basename(path)
    match = _EPISODE_RE.match(name)
    if match is None:
        return None
    number = int(match.group(1))
    # "episode_0000042.npz" is not what the writer makes: a stray copy, never episode 42.
    return number if number >= 1 and name == _episode_name(number) else None


def _episode_name(number: int) -> str:
    return f"episode_{number:06d}.npz"


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name}: cannot be stacked into one array "
                         f"(steps of different shapes or types?): {e}") from None


def _as_float32(name: str, values: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{name}: expected numbers, got dtype {values.dtype}")
    return values.astype(np.float32)


def _value_problem(action: np.ndarray, reward: np.ndarray) -> str | None:
    """Why float32 actions (T, A) and rewards (T,) are outside their valid range, or None; names field and step."""
    for name, values in (("action", action), ("reward", reward)):
        bad = ~np.isfinite(values)
        if bad.any():
            step = int(np.argwhere(bad)[0, 0])
            return f"{name}: non-finite value ({values[bad][0]}) at step {step}"
    if np.any(np.abs(action) > 1.0 + _ACTION_TOLERANCE):
        return (f"action: values must be in [-1, 1] (the agent's normalised action space), "
                f"got range [{action.min():.3g}, {action.max():.3g}]")
    big = np.abs(reward) > MAX_ABS_REWARD
    if big.any():
        step = int(np.argmax(big))
        return (f"reward: {reward[step]:.3g} at step {step} is beyond ±{MAX_ABS_REWARD:.0e}, more than any "
                "environment gives and enough to overflow the reward loss")
    return None


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
    act_a = _as_float32("action", act_a)

    if rew_a.ndim == 2 and rew_a.shape[1] == 1:
        rew_a = rew_a[:, 0]
    if rew_a.ndim != 1:
        raise ValueError(f"reward: expected shape (T,), got {rew_a.shape}")
    rew_a = _as_float32("reward", rew_a)
    problem = _value_problem(act_a, rew_a)
    if problem is not None:
        hint = "; store the clipped action the agent chose, not the environment's scaled one" \
            if problem.startswith("action: values") else ""
        raise ValueError(problem + hint)

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
    return _value_problem(action, reward)


def _npz_bytes(data: dict[str, np.ndarray]) -> bytes:
    """The episode as `np.savez_compressed` writes it, in memory: a retried write rewrites the same bytes."""
    buf = io.BytesIO()  # seekable, unlike a hashing file wrapper: the zip is laid out as on a plain file
    np.savez_compressed(buf, **data)
    return buf.getvalue()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: np.array(npz[k]) for k in npz.files}


class EpisodeStorage:
    """A directory of episode files; create it once per run and reuse it (it caches decoded episodes)."""

    def __init__(self, episode_dir: str | os.PathLike, *, read_only: bool = False) -> None:
        self.episode_dir = Path(episode_dir)
        self._read_only = read_only
        self.quarantine_dir = self.episode_dir.parent / "quarantine"
        # str(path) -> ((size, mtime_ns), episode): decoded episodes, shared by every EpisodeDataset
        # built from this storage so that a refresh decodes only new files (and RAM holds one copy).
        # Keyed by str, not Path: hashing hundreds of Paths would cost as much as decoding an episode.
        self._cache: dict[str, tuple[tuple[int, int], dict[str, np.ndarray]]] = {}
        self._highest_written = 0
        if not read_only:
            safeio.mkdir(self.episode_dir, parents=True)
            self.clean_temporaries()

    @property
    def read_only(self) -> bool:
        """Whether this storage only reads: it then writes, moves and deletes nothing."""
        return self._read_only

    def __repr__(self) -> str:
        return f"EpisodeStorage({str(self.episode_dir)!r}, episodes={self.num_episodes})"

    # ------------------------------------------------------------------ listing
    @property
    def episode_paths(self) -> list[Path]:
        """Every stored episode file, in episode-number order."""
        found = []
        for name in self._listdir(self.episode_dir):
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
        return self.episode_dir / _episode_name(int(index))

    def has_episode(self, index: int) -> bool:
        """Whether episode number `index` is stored (a quarantined one is not)."""
        return safeio.exists(self.path_for(index))

    def _listdir(self, directory: Path) -> list[str]:
        if self.read_only and not safeio.is_dir(directory):
            return []  # a reader never creates the folder; a run without episodes yet has none
        return safeio.listdir(directory)

    def _used_numbers(self) -> list[int]:
        numbers = [n for n in map(episode_number, self._listdir(self.episode_dir)) if n is not None]
        if safeio.is_dir(self.quarantine_dir):
            for name in self._listdir(self.quarantine_dir):
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
        if self.read_only:
            raise ValueError(f"{self.episode_dir} was opened read-only (without the run's owner lease); "
                             "episodes are stored by the run's trainer")
        data = validate_episode(obs_list, action_list, reward_list, terminal_list)
        if index is None:
            index = self.next_index()
        path = self.path_for(index)
        if safeio.exists(path):
            raise ValueError(f"index: episode {index} already exists at {path}; "
                             "stored episodes are never overwritten")
        safeio.write_atomic(path, _npz_bytes(data))
        self._highest_written = max(self._highest_written, int(index))
        return path

    def clean_temporaries(self, max_age_s: float = TEMP_MAX_AGE_S) -> list[Path]:
        """Delete leftover temporaries of interrupted writes older than `max_age_s`; return them (none when read-only)."""
        return [] if self.read_only else safeio.clean_temporaries(self.episode_dir, max_age_s)

    # ------------------------------------------------------------------ reading
    def load_episode(self, path: str | os.PathLike) -> dict[str, np.ndarray]:
        """Read and validate one episode file (not cached).

        A damaged file is moved to the quarantine folder (left in place when read-only) with a
        DamagedEpisodeWarning and DamagedEpisodeError (a ValueError) is raised; an I/O error of the
        mount itself (errno set, e.g. Drive disconnected; retried first) is raised as an OSError and
        quarantines nothing.
        """
        path = Path(path)
        try:
            data = safeio.retry_io(lambda: _read_npz(path), path=path, what="read")
        except Exception as e:
            if isinstance(e, OSError) and e.errno is not None:  # the mount or a missing file, not the contents
                raise
            reason = safeio.load_error(e)
            self.quarantine(path, reason)
            raise DamagedEpisodeError(f"{path} failed to load ({reason}); {self._where()}") from None
        problem = _check_loaded(data)
        if problem is not None:
            self.quarantine(path, problem)
            raise DamagedEpisodeError(f"{path} is not a valid episode ({problem}); {self._where()}")
        return {k: data[k] for k in EPISODE_KEYS}

    def newest_episodes(self, count: int = 1) -> list[tuple[Path, dict[str, np.ndarray]]]:
        """The `count` newest episodes that load, as (path, episode), oldest first.

        A damaged one (e.g. a file Drive has not finished syncing) is skipped with its warning and
        quarantined as `load_episode` does; ValueError when not one episode loads.
        """
        positive_int("count", count)
        found: list[tuple[Path, dict[str, np.ndarray]]] = []
        for path in reversed(self.episode_paths):
            try:
                found.append((path, self.load_episode(path)))
            except DamagedEpisodeError:
                continue
            if len(found) == count:
                break
        if not found:
            raise ValueError(f"{self.episode_dir} holds no episode that loads "
                             f"({self.num_episodes} stored); collect episodes first")
        return found[::-1]

    def _where(self) -> str:
        return "left in place (read-only)" if self.read_only else f"moved to {self.quarantine_dir}"

    def load_cached(self, path: str | os.PathLike) -> dict[str, np.ndarray]:
        """Like `load_episode`, but reuses the decoded arrays while the file's size and mtime are unchanged."""
        name = os.fspath(path)
        stat = safeio.stat(name)
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
        """Move a damaged file to the quarantine folder (never delete it) and warn; return its new path.

        Read-only, the file is left where it is (None is returned), with the same warning.
        """
        path = Path(path)
        self._cache.pop(os.fspath(path), None)
        number = episode_number(path)
        if number is not None:
            self._highest_written = max(self._highest_written, number)  # its number is never reused
        if self.read_only:
            safeio.leave_in_place(path, reason, DamagedEpisodeWarning)
            return None
        try:
            return safeio.quarantine(path, self.quarantine_dir, reason, DamagedEpisodeWarning)
        except OSError as e:
            warnings.warn(f"Damaged episode file {path} ({reason}) is skipped, but could not be moved to "
                          f"{self.quarantine_dir}: {e}", DamagedEpisodeWarning, stacklevel=3)
            return None
