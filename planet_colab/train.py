"""The resumable online loop (seed §6, §7): train the world model, collect with the planner, checkpoint.

Every random draw of iteration i comes from streams derived from (config.seed, i, …), and the
episodes iteration i trains on are exactly the first `seed_episodes + i·collect_episodes` stored
ones. So a run killed at any instant and resumed from its newest checkpoint redoes the lost
iterations bit for bit (on CPU), and reuses, rather than collects again, any episode an unfinished
iteration had already stored.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from planet_colab import safeio
from planet_colab.agent import collect_experience, evaluate
from planet_colab.checkpoint import load_checkpoint, save_checkpoint
from planet_colab.config import Config
from planet_colab.dataset import EpisodeDataset, collate_episode_batch
from planet_colab.env import collect_seed_episodes, make_env_from_config
from planet_colab.losses import make_optimizer, train_step
from planet_colab.models import WorldModel
from planet_colab.planner import CEMPlanner
from planet_colab.precision import make_grad_scaler, resolve_precision, select_device
from planet_colab.seeding import derive_seed, numpy_rng, torch_generator
from planet_colab.storage import EpisodeStorage, episode_number

__all__ = ["train_planner", "train_step", "collect_experience", "evaluate", "build_agent_parts",
           "read_metrics"]

LOSS_KEYS = ("loss", "obs_loss", "reward_loss", "kl_loss", "grad_norm")


def check_resume_config(config: Config, run_dir: Path) -> None:
    """Write config.json on a new run; refuse to resume with a config that changes shapes."""
    path = run_dir / "config.json"
    if not path.exists():
        config.save(path)
        return
    stored = Config.load(path)
    diffs = stored.shape_differences(config)
    if diffs:
        lines = "\n".join(f"  {k}: run has {a!r}, you asked for {b!r}" for k, (a, b) in diffs.items())
        raise ValueError(
            f"Refusing to resume {run_dir}: the config changes the model or data shapes.\n{lines}\n"
            "Use the run's own values (see its config.json) or start a new run directory.")


def build_agent_parts(config: Config, device: torch.device | None = None
                      ) -> tuple[WorldModel, CEMPlanner, torch.device, str]:
    """A world model initialised from the config's seed, its planner, the device and precision."""
    device = device or select_device()
    precision = resolve_precision(config.precision, device)
    env = make_env_from_config(config)
    action_dim = int(np.prod(env.action_space.shape))
    env.close()
    # Initial weights from a derived seed, so a fresh run and its restart start identically.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = WorldModel(action_dim, config)
    model.to(device)
    planner = CEMPlanner.from_config(config, action_dim, precision=precision)
    return model, planner, device, precision


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-iteration metrics rows of a run (empty when it has none yet)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    # Drive: never append in place; the whole (small) file is rewritten atomically.
    safeio.write_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            copy.deepcopy(optimizer.state_dict()))


def _format_row(row: dict[str, Any], total: int) -> str:
    text = (f"iter {row['iteration'] + 1:>4}/{total}  episodes {row['episodes']:>4}  "
            f"loss {row['loss']:8.2f} (obs {row['obs_loss']:7.2f} rew {row['reward_loss']:6.3f} "
            f"kl {row['kl_loss']:5.2f})  return {row['collect_return']:8.1f}  "
            f"{row['seconds']:5.1f}s")
    if "eval_mean" in row:
        text += f"  eval {row['eval_mean']:.1f} ± {row['eval_std']:.1f}"
    return text


def train_planner(config: Config, run_dir: str | os.PathLike, *, device: torch.device | None = None,
                  progress: bool = True, callback: Callable[[dict[str, Any]], None] | None = None,
                  ) -> dict[str, Any]:
    """Run (or resume) PlaNet's online loop in `run_dir` until `config.total_iterations` are done.

    Returns dict(model, planner, metrics, start_iteration, run_dir). `callback(row)` is called
    after each iteration with its metrics row (the notebooks' live view).
    """
    config.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_resume_config(config, run_dir)
    storage = EpisodeStorage(run_dir / "episodes")
    collected = collect_seed_episodes(config, storage, progress=progress)
    if collected:
        print(f"Collected {collected} random seed episodes into {storage.episode_dir}")

    model, planner, device, precision = build_agent_parts(config, device)
    optimizer = make_optimizer(model)
    scaler = make_grad_scaler(precision, device)
    ckpt = load_checkpoint(run_dir, model, optimizer, map_location=device)
    if ckpt is None:
        start, metrics = 0, []
        print(f"Starting a new run in {run_dir} ({config.preset} preset, {device}, {precision})")
    else:
        start, metrics = ckpt["start_iteration"], list(ckpt["metrics"])
        if scaler is not None and ckpt.get("extra", {}).get("scaler"):
            scaler.load_state_dict(ckpt["extra"]["scaler"])
        print(f"Resumed from checkpoint after iteration {start} of {config.total_iterations} "
              f"({storage.num_episodes} episodes stored, {device}, {precision})")
    metrics = [r for r in metrics if r["iteration"] < start]
    _write_metrics(run_dir, metrics)

    env = make_env_from_config(config)
    last_saved, last_save_time = start - 1, time.monotonic()
    # `done`: the last iteration whose training finished, i.e. whose weights `model` holds.
    snapshot, done, current = None, start - 1, start

    def save(iteration: int, state: tuple[dict, dict] | None = None) -> None:
        nonlocal last_saved, last_save_time
        if state is not None:
            live = _snapshot(model, optimizer)
            model.load_state_dict(state[0])
            optimizer.load_state_dict(state[1])
        extra = {"scaler": scaler.state_dict()} if scaler is not None else {}
        save_checkpoint(model, optimizer, iteration, config, run_dir,
                        episodes=config.seed_episodes + (iteration + 1) * config.collect_episodes,
                        metrics=[r for r in metrics if r["iteration"] <= iteration], extra=extra)
        if state is not None:
            model.load_state_dict(live[0])
            optimizer.load_state_dict(live[1])
        last_saved, last_save_time = iteration, time.monotonic()

    bar = tqdm(range(start, config.total_iterations), desc="iterations", initial=start,
               total=config.total_iterations, disable=not progress, dynamic_ncols=True)
    try:
        for it in bar:
            current = it
            t0 = time.perf_counter()
            # Weights as they were after iteration it-1: what a Stop mid-iteration can still save.
            snapshot = _snapshot(model, optimizer) if last_saved < it - 1 else None
            known = config.seed_episodes + it * config.collect_episodes
            paths = storage.episode_paths
            if len(paths) < known:
                raise RuntimeError(
                    f"Iteration {it} needs {known} stored episodes but {storage.episode_dir} holds "
                    f"{len(paths)}; were episode files removed? (quarantined ones are in "
                    f"{run_dir / 'quarantine'})")
            dataset = EpisodeDataset(storage, config.seq_len, config.virtual_len,
                                     seed=numpy_rng(config.seed, "batches", it),
                                     max_index=episode_number(paths[known - 1]))
            loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                                drop_last=True, collate_fn=collate_episode_batch)
            t_io = time.perf_counter() - t0

            t1 = time.perf_counter()
            generator = torch_generator(config.seed, "train", it, device=device)
            model.train()
            sums = dict.fromkeys(LOSS_KEYS, 0.0)
            steps = skipped = 0
            for obs_b, act_b, rew_b, _ in loader:
                out = train_step(model, optimizer, obs_b, act_b, rew_b, device,
                                 generator=generator, scaler=scaler)
                if out.get("skipped"):
                    skipped += 1
                    continue
                steps += 1
                for k in LOSS_KEYS:
                    sums[k] += out[k]
            t_train = time.perf_counter() - t1

            t2 = time.perf_counter()
            stored_after = config.seed_episodes + (it + 1) * config.collect_episodes
            # A run killed after storing some of this iteration's episodes: reuse them, never
            # collect twice (the weights that collected them are the ones we have again now).
            mine = storage.episode_paths[known:stored_after]
            rewards = [storage.load_cached(p)["reward"] for p in mine]
            returns, lengths = [float(r.sum()) for r in rewards], [len(r) for r in rewards]
            if len(mine) < config.collect_episodes:
                result = collect_experience(env, model, planner, storage,
                                            config.collect_episodes - len(mine), config, iteration=it,
                                            device=device, progress=progress, first_episode=len(mine))
                returns += list(result["returns"])
                lengths += list(result["lengths"])
            t_collect = time.perf_counter() - t2

            stored_steps = sum(len(ep["reward"]) for ep in dataset.episodes) + sum(lengths)
            row: dict[str, Any] = {"iteration": it, "episodes": stored_after,
                                   "env_steps": stored_steps * config.action_repeat}
            row.update({k: sums[k] / max(steps, 1) for k in LOSS_KEYS})
            row.update(train_steps=steps, skipped_steps=skipped,
                       collect_return=float(np.mean(returns)), collect_length=float(np.mean(lengths)))

            t3 = time.perf_counter()
            if (it + 1) % config.eval_every == 0 or it + 1 == config.total_iterations:
                ev = evaluate(config, model, planner, config, num_episodes=config.eval_episodes,
                              seed_key=it, device=device)
                row.update(eval_mean=float(ev["mean"]), eval_std=float(ev["std"]),
                           eval_returns=[float(x) for x in ev["returns"]])
            t_eval = time.perf_counter() - t3
            row.update(train_s=t_train, collect_s=t_collect, eval_s=t_eval, io_s=t_io,
                       seconds=time.perf_counter() - t0)
            metrics.append(row)
            done = it

            t4 = time.perf_counter()
            overdue = time.monotonic() - last_save_time >= 60 * config.checkpoint_minutes
            if (it + 1) % config.checkpoint_every == 0 or overdue or it + 1 == config.total_iterations:
                save(it)
            _write_metrics(run_dir, metrics)
            row["checkpoint_s"] = time.perf_counter() - t4
            line = _format_row(row, config.total_iterations)
            bar.write(line) if progress else print(line, flush=True)
            if callback is not None:
                callback(row)
    except KeyboardInterrupt:
        # Colab's Stop button: keep what is finished. Mid-iteration weights are half-trained, so
        # save the snapshot taken before the iteration began instead.
        if done > last_saved:
            if done == current:
                save(done)
            elif snapshot is not None:
                save(current - 1, snapshot)
            print(f"\nStopped: saved a checkpoint after iteration {last_saved + 1}; run again to resume.")
        raise
    finally:
        bar.close()
        env.close()
    return {"model": model, "planner": planner, "metrics": metrics, "start_iteration": start,
            "run_dir": run_dir}
