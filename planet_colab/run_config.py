"""Which config a run directory gets: its config.json (or, when that is missing or damaged, the newest
checkpoint's), with the caller's changes applied and checked; a preset's for a new run.

`Run.open` (run.py) resolves through `resolve_config`, and again when it takes the owner lease, since the
run may have been started or changed meanwhile. Writes nothing: `Run.own` saves what was resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from planet_colab import safeio
from planet_colab.checkpoint import latest_checkpoint_info, load_checkpoint, newest_checkpoint_config
from planet_colab.config import SHAPE_FIELDS, Config, get_config
from planet_colab.env import make_env_from_config
from planet_colab.precision import resolve_precision, select_device
from planet_colab.storage import episode_number

CONFIG_NAME = "config.json"
# What a run is made of: its model and data shapes, the seed every stored episode derives from, and
# the preset it started from (a label: changing it would not change the run, only misname it).
FIXED_ON_RESUME = (*SHAPE_FIELDS, "seed", "preset")


class RunError(Exception):
    """A run-directory problem the user can fix; the message says how, in one line."""


class ConfigMismatchError(RunError, ValueError):
    """A resume asked to change a field the run cannot change."""


@dataclass
class ResolvedConfig:
    """A run's config as resolved, and what saving it must do."""

    config: Config
    is_new: bool  # no config.json or checkpoint yet: the preset's (or the given) config
    changed: dict[str, tuple[Any, Any]]  # field -> (stored value, new value)
    recovered: bool  # config.json missing or damaged: taken from the newest checkpoint
    notes: list[str]  # lines to print


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


def resolve_config(run_dir: Path, preset: str | None, changes: dict[str, Any], config: Config | None,
                   new_ok: bool, *, read_only: bool, check_env: bool) -> ResolvedConfig:
    """The config `Run.open`'s arguments give `run_dir` (see Run.open), checked; raises RunError/ValueError.

    `read_only` (no owner lease held) moves nothing while looking for a checkpoint's config;
    `check_env` builds a new run's environment once to prove it works."""
    if safeio.exists(run_dir) and not safeio.is_dir(run_dir):
        raise RunError(f"{run_dir} is a file, not a run directory; give a directory (a new one starts a run)")
    stored, notes, recovered = _stored_config(run_dir, read_only=read_only)
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
        return ResolvedConfig(target, is_new=True, changed={}, recovered=False, notes=notes)
    if preset is not None and preset != stored.preset:
        raise RunError(f"preset {preset!r} does not match {run_dir}, a {stored.preset!r} run (its "
                       f"{CONFIG_NAME}): a preset only chooses a new run's defaults; leave it out to "
                       "resume this run, or use a new run directory")
    target = (config if config is not None else stored).replace(**changes)
    fixed = {k: (getattr(stored, k), getattr(target, k)) for k in FIXED_ON_RESUME
             if getattr(stored, k) != getattr(target, k)}
    if fixed:
        raise fixed_fields_refusal(run_dir, fixed, "you asked for")
    # Against the checkpoint, not config.json: a total edited down in the file is refused like --iterations.
    _check_not_below_checkpointed(run_dir, target.total_iterations)
    if preset is not None and config is None:
        notes += _preset_note(run_dir, preset, changes, target)
    changed = {f.name: (getattr(stored, f.name), getattr(target, f.name)) for f in fields(Config)
               if getattr(stored, f.name) != getattr(target, f.name)}
    return ResolvedConfig(target, is_new=False, changed=changed, recovered=recovered, notes=notes)


def fixed_fields_refusal(run_dir: Path, fixed: dict[str, tuple[Any, Any]], asked: str) -> ConfigMismatchError:
    """The one refusal for a change to FIXED_ON_RESUME fields, whether asked by `--set` or made in the file."""
    listing = "; ".join(f"{k}: run has {a!r}, {asked} {b!r}" for k, (a, b) in fixed.items())
    return ConfigMismatchError(
        f"Refusing to resume {run_dir}, these fields are fixed for the life of a run (task, model and "
        f"data shapes, seed, preset): {listing}. Use the run's own values (its {CONFIG_NAME}) or a new "
        "run directory")


def _check_file_against_checkpoint(run_dir: Path, config: Config) -> None:
    """Refuse a config.json whose fixed fields differ from the newest checkpoint's: edited by hand, it would
    otherwise change what the run is (a seed edited from 0 to 1 resumed silently, matching neither seed)."""
    found = newest_checkpoint_config(run_dir)
    if found is None:
        return
    saved, name = found
    fixed = {k: (saved[k], getattr(config, k)) for k in FIXED_ON_RESUME
             if k in saved and saved[k] != getattr(config, k)}
    if fixed:
        raise fixed_fields_refusal(run_dir, fixed, f"its {CONFIG_NAME} was edited to")


def _stored_config(run_dir: Path, read_only: bool) -> tuple[Config | None, list[str], bool]:
    """(config, notes, recovered): config.json, else the newest checkpoint's config; None for a new run.

    `read_only` (no owner lease) moves nothing while looking for that checkpoint."""
    path = run_dir / CONFIG_NAME
    problem = None
    if safeio.exists(path):
        try:
            config = Config.load(path)
        except (ValueError, TypeError) as e:
            problem = one_line(e)
        else:
            _check_file_against_checkpoint(run_dir, config)
            return config, [], False
    try:
        payload = load_checkpoint(run_dir, read_only=read_only) if safeio.is_dir(run_dir / "checkpoints") else None
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
    episodes = run_dir / "episodes"
    count = sum(episode_number(n) is not None for n in safeio.listdir(episodes)) if safeio.is_dir(episodes) else 0
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
