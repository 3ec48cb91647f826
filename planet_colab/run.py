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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from planet_colab import safeio
from planet_colab.agent import build_agent_parts
from planet_colab.checkpoint import load_checkpoint, save_checkpoint
from planet_colab.config import SHAPE_FIELDS, Config
from planet_colab.env import collect_seed_episodes
from planet_colab.lease import OwnerLease
from planet_colab.losses import make_optimizer
from planet_colab.models import WorldModel
from planet_colab.planner import CEMPlanner
from planet_colab.precision import make_grad_scaler
from planet_colab.run_config import CONFIG_NAME, RunError, one_line, resolve_config
from planet_colab.storage import EpisodeStorage

METRICS_NAME = "metrics.jsonl"


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
        text = safeio.read_text(path)
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
        resolved = resolve_config(*self._spec, read_only=self._lease is None, check_env=check_env)
        self.config, self.is_new, self.changed = resolved.config, resolved.is_new, resolved.changed
        self._recovered = resolved.recovered
        return resolved.notes

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
        disk_error = False
        try:
            if note:
                print(note)
            self._resolve(check_env=False)  # the run may have been started or changed while this one was opened
            self._save_config()
            episodes = self.run_dir / "episodes"
            safeio.mkdir(episodes)
            # A killed writer's leftovers (metrics.jsonl, config.json, owner.json, episodes, videos);
            # checkpoints/ is cleaned by each save.
            for folder in (self.run_dir, episodes, self.run_dir / "videos"):
                if safeio.is_dir(folder):
                    safeio.clean_temporaries(folder)
            yield self
        except OSError:
            disk_error = True  # its one line says what to do; the lease the same drop leaves needs none
            raise
        finally:
            self._lease = None
            lease.release(quiet=disk_error)

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
        if self._recovered and safeio.exists(path):
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

    def collected_by(self, number: int) -> tuple[int, int] | None:
        """(iteration, k): episode `number` is that iteration's k-th (episode_numbers' inverse); None for a seed one."""
        if number <= self.config.seed_episodes:
            return None
        iteration, k = divmod(number - self.config.seed_episodes - 1, self.config.collect_episodes)
        return iteration, k

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
            raise RunError(f"{self.run_dir} has no checkpoint yet; train it first (notebook 02, or "
                           f"`python -m planet_colab train --run-dir {self.run_dir}`)")
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


