"""A run directory and its one owner: open or create it, keep its config true, restore its agent.

    <run>/config.json      the run's config, its one truth: what resumes read, where accepted changes go
    <run>/owner.json       the owner lease of the trainer writing here (lease.py)
    <run>/episodes/        episode_000001.npz …: seed episodes are 1..seed_episodes, and iteration i
                           collects seed_episodes + i·collect_episodes + 1 onwards
    <run>/checkpoints/     ckpt_000019.pt … and latest.json (checkpoint.py)
    <run>/metrics.jsonl    one JSON row per finished iteration
    <run>/quarantine/      damaged files set aside, never deleted

Reading a run (evaluation, notebooks, benchmarks, `info`) writes, moves and deletes nothing: a
checkpoint or episode that fails to load (one Drive is still syncing, say) is skipped with a warning:

    run = Run.open(run_dir, new_ok=False)
    agent = run.restore_agent()          # agent.model, agent.planner, agent.device, agent.checkpoint
    rows = run.read_metrics()

Training opens it with the command line's wishes and hands it to the loop, which holds the lease:

    run = Run.open(run_dir, preset, changes={"total_iterations": 20})
    train_planner(run)
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from planet_colab import safeio
from planet_colab.agent import build_agent_parts
from planet_colab.checkpoint import latest_checkpoint_info, load_checkpoint, save_checkpoint
from planet_colab.config import SHAPE_FIELDS, Config, get_config
from planet_colab.env import collect_seed_episodes, make_env_from_config
from planet_colab.lease import OwnerLease
from planet_colab.losses import make_optimizer
from planet_colab.models import WorldModel
from planet_colab.planner import CEMPlanner
from planet_colab.precision import make_grad_scaler, resolve_precision, select_device
from planet_colab.storage import EpisodeStorage

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
# What a run is made of: its model and data shapes, the seed every stored episode derives from, and
# the preset it started from (a label: changing it would not change the run, only misname it).
FIXED_ON_RESUME = (*SHAPE_FIELDS, "seed", "preset")


class RunError(Exception):
    """A run-directory problem the user can fix; the message says how, in one line."""


class ConfigMismatchError(RunError, ValueError):
    """A resume asked to change a field the run cannot change."""


@dataclass
class AgentParts:
    """A world model and its planner, with the newest checkpoint's weights."""

    model: WorldModel
    planner: CEMPlanner
    device: torch.device
    precision: str
    checkpoint: dict[str, Any] | None  # its payload: iteration, episodes, metrics, config, …


@dataclass
class TrainingState(AgentParts):
    """AgentParts plus what training resumes: optimizer, grad scaler, next iteration, metrics so far."""

    optimizer: torch.optim.Optimizer
    scaler: Any
    start_iteration: int
    metrics: list[dict[str, Any]]


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-iteration metrics rows of a run (empty when it has none yet).

    A line that is not a row raises ValueError naming the file and the line (one line of text).
    """
    path = Path(run_dir) / METRICS_NAME
    try:
        text = safeio.retry_io(path.read_text, path=path, what="read")
    except FileNotFoundError:
        return []
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            row, problem = None, str(e)
        else:
            problem = "" if isinstance(row, dict) and isinstance(row.get("iteration"), int) else "no iteration"
        if problem:
            raise ValueError(f"{path}, line {number}, is not a metrics row ({problem}); the run's next `train` "
                             "writes the file again from its newest checkpoint")
        rows.append(row)
    return rows


def check_environment(config: Config) -> None:
    """Make and reset the config's environment once, so a bad env fails before anything is written."""
    try:
        env = make_env_from_config(config)
    except ValueError as e:
        text = one_line(e)
        named = text if text.startswith("env_name") else f"env_name {config.env_name!r}: {text}"
        raise ValueError(named) from None
    try:
        env.reset(seed=0)
    finally:
        env.close()
    resolve_precision(config.precision, select_device())


def one_line(error: BaseException) -> str:
    """An error's message on one line (list items joined with '; ')."""
    parts = [line.strip().removeprefix("- ") for line in str(error).splitlines() if line.strip()]
    if not parts:
        return type(error).__name__
    head, rest = parts[0], parts[1:]
    if not rest:
        return head
    return head + (" " if head.endswith(":") else "; ") + "; ".join(rest)


class _OwnedStorage(EpisodeStorage):
    """The run's EpisodeStorage: read-only while this process does not hold the owner lease; its
    writes first check that the lease is still its own (Run.own makes the folder and cleans it)."""

    def __init__(self, episode_dir: Path, check: Callable[[], None], held: Callable[[], bool]) -> None:
        self._check_owner, self._held = check, held
        super().__init__(episode_dir, read_only=True)

    @property
    def read_only(self) -> bool:
        """True unless this process holds the run's owner lease right now."""
        return not self._held()

    def add_episode(self, *args: Any, **kwargs: Any) -> Path:
        """Check the owner lease, then store the episode (EpisodeStorage.add_episode)."""
        self._check_owner()
        return super().add_episode(*args, **kwargs)

    def quarantine(self, path: str | os.PathLike, reason: str) -> Path | None:
        """Move a damaged file aside after checking the owner lease (read-only: leave it and warn)."""
        if not self.read_only:
            self._check_owner()
        return super().quarantine(path, reason)


class Run:
    """One run directory: its config, episodes, checkpoints, metrics and owner. Make one with `Run.open`."""

    def __init__(self, run_dir: Path, config: Config, *, is_new: bool, changed: dict[str, tuple[Any, Any]],
                 recovered: bool, spec: tuple) -> None:
        self.run_dir = run_dir
        self.config = config
        self.is_new = is_new
        self.changed = changed  # field -> (stored value, new value): saved to config.json by own()
        self._recovered = recovered  # config.json missing or damaged: rewritten by own()
        self._spec = spec
        self._lease: OwnerLease | None = None
        self._storage: EpisodeStorage | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, run_dir: str | os.PathLike, preset: str | None = None, *,
             changes: dict[str, Any] | None = None, config: Config | None = None, new_ok: bool = True) -> "Run":
        """The run in `run_dir`, its config resolved and checked; writes nothing.

        An existing run uses its config.json (recovered from the newest checkpoint when missing or
        damaged, saying so) with `changes` applied, or `config` in its place; changes to
        FIXED_ON_RESUME fields are refused, and a `preset` other than the run's own is refused.
        A new run (only with `new_ok`) takes `config`, else the preset's (default pendulum), with
        `changes`, and its environment is built once to prove it works. Raises RunError/ValueError.
        """
        spec = (Path(run_dir), preset, dict(changes or {}), config, new_ok)
        run = cls(spec[0], Config(), is_new=True, changed={}, recovered=False, spec=spec)
        for note in run._resolve(check_env=True):
            print(note)
        return run

    def _resolve(self, check_env: bool) -> list[str]:
        """(Re)read the stored config and apply the open() arguments; return notes to print."""
        run_dir, preset, changes, config, new_ok = self._spec
        stored, notes, recovered = _stored_config(run_dir, read_only=self._lease is None)
        if stored is None:
            if not new_ok:
                raise RunError(f"{run_dir} is not a run directory (no {CONFIG_NAME}, no checkpoint); start one "
                               f"with `python -m planet_colab train --run-dir {run_dir}`")
            if config is not None and preset is not None and preset != config.preset:
                raise ValueError(f"preset {preset!r} disagrees with config.preset {config.preset!r}")
            if config is not None:
                target = config.replace(**changes)
            else:
                target = get_config(preset or "pendulum", **changes)
            if check_env:
                check_environment(target)
            self.config, self.is_new, self.changed, self._recovered = target, True, {}, False
            return notes
        if preset is not None and preset != stored.preset:
            raise RunError(f"preset {preset!r} does not match {run_dir}, a {stored.preset!r} run (its "
                           f"{CONFIG_NAME}): a preset only chooses a new run's defaults; leave it out to "
                           "resume this run, or use a new run directory")
        target = (config if config is not None else stored).replace(**changes)
        fixed = {k: (getattr(stored, k), getattr(target, k)) for k in FIXED_ON_RESUME
                 if getattr(stored, k) != getattr(target, k)}
        if fixed:
            listing = "; ".join(f"{k}: run has {a!r}, you asked for {b!r}" for k, (a, b) in fixed.items())
            raise ConfigMismatchError(
                f"Refusing to resume {run_dir}, these fields are fixed for the life of a run (model and "
                f"data shapes, seed, preset): {listing}. Use the run's own values (its {CONFIG_NAME}) or a new "
                "run directory")
        if target.total_iterations < stored.total_iterations:
            _check_not_below_checkpointed(run_dir, target.total_iterations)
        if preset is not None and config is None:
            notes += _preset_note(run_dir, preset, changes, target)
        self.config, self.is_new, self._recovered = target, False, recovered
        self.changed = {f.name: (getattr(stored, f.name), getattr(target, f.name)) for f in fields(Config)
                        if getattr(stored, f.name) != getattr(target, f.name)}
        return notes

    # ------------------------------------------------------------------ owning
    @contextlib.contextmanager
    def own(self, take_over: bool = False, **lease_options: float) -> Iterator["Run"]:
        """Hold the run's owner lease while the block writes; saves config.json first when new or changed.

        Raises RunInUseError (one line: who holds it, how to take over) when another trainer is alive;
        `take_over=True` takes its lease anyway. `lease_options`: heartbeat_s, stale_after_s, settle_s.
        """
        lease = OwnerLease(self.run_dir, **lease_options)
        note = lease.acquire(take_over)
        self._lease = lease
        try:
            if note:
                print(note)
            self._resolve(check_env=False)  # the run may have been started or changed while this one was opened
            self._save_config()
            episodes = self.run_dir / "episodes"
            safeio.retry_io(lambda: episodes.mkdir(exist_ok=True), path=episodes, what="create")
            # A killed writer's leftovers (metrics.jsonl, config.json, owner.json, episodes, videos);
            # checkpoints/ is cleaned by each save.
            for folder in (self.run_dir, episodes, self.run_dir / "videos"):
                if folder.is_dir():
                    safeio.clean_temporaries(folder)
            yield self
        finally:
            self._lease = None
            lease.release()

    def check_owner(self) -> None:
        """Raise LeaseLostError/RunError unless this process holds the run (called before every write)."""
        if self._lease is None:
            raise RunError(f"{self.run_dir}: writing to a run needs its owner lease; use `with run.own():`")
        self._lease.check()

    def _save_config(self) -> None:
        path = self.run_dir / CONFIG_NAME
        if not (self.is_new or self._recovered or self.changed):
            return
        self.check_owner()
        if self._recovered and path.exists():
            safeio.quarantine(path, self.run_dir / "quarantine", "replaced by the newest checkpoint's config")
        self.config.save(path)
        if self._recovered:
            print(f"Rewrote {path} from the newest checkpoint")
        elif self.changed:
            print(f"Saved to {path}: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in self.changed.items()))
        self.is_new, self._recovered, self.changed = False, False, {}

    # ------------------------------------------------------------------ episodes and metrics
    @property
    def storage(self) -> EpisodeStorage:
        """The run's EpisodeStorage: read-only (moves nothing) unless inside `with run.own():`."""
        if self._storage is None:
            self._storage = _OwnedStorage(self.run_dir / "episodes", self.check_owner,
                                          lambda: self._lease is not None)
        return self._storage

    def episode_numbers(self, iteration: int) -> list[int]:
        """The numbers of the episodes iteration `iteration` collects."""
        first = self.config.seed_episodes + iteration * self.config.collect_episodes + 1
        return list(range(first, first + self.config.collect_episodes))

    def collect_seed_episodes(self, progress: bool = True) -> list[int]:
        """Collect the missing random seed episodes (exactly: their seeds derive from their numbers).

        Returns their numbers. Takes the owner lease for the while when the caller does not hold it and
        something is missing: with all of them stored it writes nothing, so it never waits on a trainer.
        """
        missing = [k for k in range(1, self.config.seed_episodes + 1) if not self.storage.has_episode(k)]
        if self._lease is None:
            if not missing:
                return []
            with self.own():
                return self.collect_seed_episodes(progress)
        if missing:
            collect_seed_episodes(self.config, self.storage, progress=progress)
        return missing

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-iteration metrics rows (empty when none yet)."""
        return read_metrics(self.run_dir)

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl with `rows` (a whole new file: Drive must never see an append)."""
        self.check_owner()
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        safeio.write_atomic(self.run_dir / METRICS_NAME, text)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, model: Any, optimizer: Any, iteration: int, metrics: list[dict[str, Any]],
                        extra: dict[str, Any] | None = None) -> Path:
        """Checkpoint the state after `iteration` (0-based) with the metrics rows up to it."""
        self.check_owner()
        episodes = self.config.seed_episodes + (iteration + 1) * self.config.collect_episodes
        return save_checkpoint(model, optimizer, iteration, self.config, self.run_dir, episodes=episodes,
                               metrics=[r for r in metrics if r["iteration"] <= iteration], extra=extra)

    def restore_agent(self, device: torch.device | None = None) -> AgentParts:
        """The world model and planner with the newest checkpoint's weights (RunError when none yet)."""
        model, planner, device, precision = build_agent_parts(self.config, device)
        payload = self._load_newest(model, None, device)
        if payload is None:
            raise RunError(f"{self.run_dir} has no checkpoint yet; train first")
        return AgentParts(model, planner, device, precision, payload)

    def restore_training(self, device: torch.device | None = None) -> TrainingState:
        """Everything training resumes from: agent, optimizer (with the config's lr), scaler, metrics."""
        model, planner, device, precision = build_agent_parts(self.config, device)
        optimizer = make_optimizer(model, self.config)
        scaler = make_grad_scaler(precision, device)
        payload = self._load_newest(model, optimizer, device)
        start, metrics = 0, []
        if payload is not None:
            start = payload["start_iteration"]
            metrics = [r for r in payload["metrics"] if r["iteration"] < start]
            if scaler is not None and payload["extra"].get("scaler"):
                scaler.load_state_dict(payload["extra"]["scaler"])
            for group in optimizer.param_groups:  # a learning rate changed on resume takes effect
                group["lr"], group["eps"] = self.config.learning_rate, self.config.adam_eps
        return TrainingState(model, planner, device, precision, payload, optimizer, scaler, start, metrics)

    def _load_newest(self, model: WorldModel, optimizer: torch.optim.Optimizer | None,
                     device: torch.device) -> dict[str, Any] | None:
        try:
            payload = load_checkpoint(self.run_dir, map_location=device, read_only=self._lease is None)
        except RuntimeError as e:
            raise RunError(one_line(e)) from None
        if payload is None:
            return None
        saved = payload.get("config") or {}
        differ = [k for k in SHAPE_FIELDS if k in saved and saved[k] != getattr(self.config, k)]
        if differ:
            raise RunError(f"{payload['path'].name} was trained with "
                           + ", ".join(f"{k}={saved[k]!r}" for k in differ) + f" but {CONFIG_NAME} says "
                           + ", ".join(f"{k}={getattr(self.config, k)!r}" for k in differ)
                           + f"; restore those values in {self.run_dir / CONFIG_NAME}")
        model.load_state_dict(payload["model"])
        if optimizer is not None:
            if payload["optimizer"] is None:
                warnings.warn(f"{payload['path'].name} holds no optimizer state; the optimizer starts fresh",
                              stacklevel=3)
            else:
                optimizer.load_state_dict(payload["optimizer"])
        return payload


def _stored_config(run_dir: Path, read_only: bool) -> tuple[Config | None, list[str], bool]:
    """(config, notes, recovered): config.json, else the newest checkpoint's config; None for a new run.

    `read_only` (no owner lease) moves nothing while looking for that checkpoint."""
    path = run_dir / CONFIG_NAME
    problem = None
    if path.exists():
        try:
            return Config.load(path), [], False
        except (ValueError, TypeError) as e:
            problem = one_line(e)
    try:
        payload = load_checkpoint(run_dir, read_only=read_only) if (run_dir / "checkpoints").is_dir() else None
    except RuntimeError as e:
        raise RunError(f"{path} is {'damaged (' + problem + ')' if problem else 'missing'}, and "
                       f"{one_line(e)}") from None
    if payload is None:
        if problem:
            raise RunError(f"{path} is damaged ({problem}) and no checkpoint holds the run's config; fix the "
                           "file, or move it away to start this run over from a preset")
        return None, _orphan_note(run_dir), False
    try:
        config = Config.from_dict(dict(payload["config"]))
    except (ValueError, TypeError) as e:
        raise RunError(f"{path} is {'damaged' if problem else 'missing'} and the config in "
                       f"{payload['path'].name} is unusable too ({one_line(e)})") from None
    state = f"damaged ({problem})" if problem else "missing"
    return config, [f"Recovered the run's config from {payload['path'].name}: {path} is {state}"], True


def _check_not_below_checkpointed(run_dir: Path, total: int) -> None:
    """Refuse a total_iterations below what the newest checkpoint already holds: a run never goes back."""
    newest = latest_checkpoint_info(run_dir)
    if newest is not None and newest["start_iteration"] > total:
        done = newest["start_iteration"]
        raise RunError(f"total_iterations (--iterations) {total} is below the {done} iterations {run_dir} "
                       f"has already checkpointed ({Path(newest['file']).name}); ask for {done} or more, or "
                       "use a new run directory")


def _orphan_note(run_dir: Path) -> list[str]:
    count = len(list((run_dir / "episodes").glob("episode_*.npz")))
    if not count:
        return []
    return [f"{run_dir} holds {count} episode file(s) but no {CONFIG_NAME} or checkpoint: starting it as a new "
            "run, which reuses those numbered like its own seed and collected episodes"]


def _preset_note(run_dir: Path, preset: str, changes: dict[str, Any], target: Config) -> list[str]:
    """Say which of the run's stored values win over the preset's defaults (never mixed silently)."""
    try:
        asked = get_config(preset, **changes)
    except ValueError:
        return []
    kept = [f.name for f in fields(Config) if getattr(asked, f.name) != getattr(target, f.name)]
    if not kept:
        return []
    listing = ", ".join(f"{k}={getattr(target, k)!r} (preset: {getattr(asked, k)!r})" for k in kept)
    return [f"Resuming {run_dir} with its own config, not the defaults of preset {preset!r}: {listing}"]
