"""The resumable online loop: train the world model, collect with the planner, evaluate, checkpoint, log.

Every random draw of iteration i comes from streams derived from (config.seed, i, …), and iteration i
trains on the episodes numbered up to `seed_episodes + i·collect_episodes`. So a run killed at any
instant and resumed from its newest checkpoint redoes the lost iterations bit for bit (on CPU), and
reuses, rather than collects again, any episode an unfinished iteration had already stored.

An episode that went missing (quarantined as damaged, or moved away) is said aloud and never stops
the run: a seed episode is collected again exactly (its seeds derive from its number); a collected
one is left out, and the metrics rows list it under `missing_episodes`.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from planet_colab import stop_signals
from planet_colab.agent import build_agent_parts, collect_experience, evaluate
from planet_colab.checkpointer import Checkpointer
from planet_colab.config import Config
from planet_colab.dataset import EpisodeDataset, collate_episode_batch, project_episode_ram
from planet_colab.env import make_env_from_config
from planet_colab.losses import SILENT_SPREAD, train_step
from planet_colab.precision import machine_record
from planet_colab.run import Run, TrainingState, read_metrics
from planet_colab.run_config import RunError
from planet_colab.seeding import numpy_rng, torch_generator
from planet_colab.storage import DamagedEpisodeError, EpisodeStorage, episode_number
from planet_colab.stop_request import check_stop
from planet_colab.summary import kl_itself
from planet_colab.threads import apply_threads
from planet_colab.words import plural

__all__ = ["train_planner", "train_step", "collect_experience", "evaluate", "build_agent_parts",
           "read_metrics", "TrainingStalled"]

PhaseCallback = Callable[[str, int, int], None]
# kl_loss is the loss term, max(KL, free_nats) per step; kl is the KL itself. A kl_loss of 1.00 with 1 free nat
# says only that the KL was at or under the free nats, where it gets no gradient: kl says how far under.
# embed_spread ~0 says the encoder gives every frame the same embedding (a silent encoder): the model sees nothing.
LOSS_KEYS = ("loss", "obs_loss", "reward_loss", "kl_loss", "kl", "grad_norm", "embed_spread")
STALL_LIMIT = 3  # iterations in a row that applied no gradient step before the run stops
SILENT_LIMIT = 2  # iterations in a row with a silent encoder before the run says so (the first may be dying)


class TrainingStalled(RunError):
    """Several iterations in a row skipped every train step: the model was learning nothing."""


def train_planner(run: Run | Config, run_dir: Any = None, *, device: torch.device | None = None,
                  progress: bool = True, callback: Callable[[dict[str, Any]], None] | None = None,
                  take_over: bool = False, phase: PhaseCallback | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """Run (or resume) PlaNet's online loop until the run's `total_iterations` are done.

    `run` is a Run (see `Run.open`), or a Config together with `run_dir`. The run's owner lease is held
    throughout (`take_over=True` takes a live one over). Returns dict(model, planner, metrics,
    start_iteration, run_dir). `callback(row)` gets each iteration's metrics row (the notebooks' live view);
    `phase(name, done, total)` hears each phase start ("train", "collect", "evaluate") and each train step.
    `threads` sets torch's thread count (planet_colab.threads.apply_threads); None keeps the process's.
    """
    if threads is not None:
        apply_threads(threads)
    if not isinstance(run, Run):
        if run_dir is None:
            raise ValueError("run_dir is needed when train_planner is given a Config (or pass a Run)")
        run = Run.open(run_dir, config=run)
    with stop_signals.interrupts_outlive_finalisers(), run.own(take_over=take_over):
        return OnlineLoop(run, device=device, progress=progress, phase=phase).iterate(callback)


def training_data(run: Run, config: Config, iteration: int) -> tuple[EpisodeDataset, dict[str, list[int]]]:
    """The episodes iteration `iteration` trains on: numbers 1 .. seed_episodes + iteration·collect_episodes.

    A seed episode that is missing, or found damaged while loading, is collected again first; a
    collected one is left out. Returns the dataset and {"missing": […], "recollected": […]}.
    """
    last = config.seed_episodes + iteration * config.collect_episodes
    recollected: list[int] = []

    def seeds_stored() -> bool:
        return all(run.storage.has_episode(k) for k in range(1, config.seed_episodes + 1))

    for attempt in range(2):
        recollected += run.collect_seed_episodes(progress=False)
        try:
            dataset = EpisodeDataset(run.storage, config.seq_len, config.virtual_len,
                                     seed=numpy_rng(config.seed, "batches", iteration), max_index=last)
        except ValueError:
            # Every episode it found was damaged (quarantined now), as all seed episodes are before the
            # first iteration is checkpointed: collected again, they are data to train on.
            if attempt or seeds_stored():
                raise
            continue
        if seeds_stored():
            break
    loaded = {episode_number(p) for p in [*dataset.episode_paths, *dataset.short_paths]}
    return dataset, {"missing": sorted(set(range(1, last + 1)) - loaded), "recollected": recollected}


def train_iteration(state: TrainingState, dataset: EpisodeDataset, config: Config, iteration: int,
                    on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """`config.train_steps` gradient steps on batches from `dataset`; mean losses over the applied ones."""
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, drop_last=True,
                        collate_fn=collate_episode_batch)
    generator = torch_generator(config.seed, "train", iteration, device=state.device)
    state.model.train()
    sums = dict.fromkeys(LOSS_KEYS, 0.0)
    steps = skipped = 0
    for obs_b, act_b, rew_b, _ in loader:
        check_stop()
        out = train_step(state.model, state.optimizer, obs_b, act_b, rew_b, state.device, config=config,
                         generator=generator, scaler=state.scaler)
        if on_step is not None:
            on_step(steps + skipped + 1)
        if out.get("skipped"):
            skipped += 1
            continue
        steps += 1
        for k in LOSS_KEYS:
            sums[k] += out[k]
    # No applied step leaves no loss to report: NaN, never a reassuring 0.
    row: dict[str, Any] = {k: sums[k] / steps if steps else math.nan for k in LOSS_KEYS}
    row.update(train_steps=steps, skipped_steps=skipped)
    if not steps:
        row["all_steps_skipped"] = True
    return row


def _stored_episode(storage: EpisodeStorage, number: int) -> dict[str, np.ndarray] | None:
    if not storage.has_episode(number):
        return None
    try:
        return storage.load_cached(storage.path_for(number))
    except (DamagedEpisodeError, FileNotFoundError):
        return None  # quarantined (and warned about): collected again, identically


def collect_iteration(run: Run, env: Any, state: TrainingState, config: Config, iteration: int,
                      progress: bool) -> dict[str, list]:
    """This iteration's episodes: reuse what a killed run already stored (these weights made it), collect the rest."""
    returns, lengths = [], []
    for k, number in enumerate(run.episode_numbers(iteration)):
        episode = _stored_episode(run.storage, number)
        if episode is None:
            out = collect_experience(env, state.model, state.planner, run.storage, 1, config,
                                     iteration=iteration, device=state.device, progress=progress,
                                     first_episode=k, numbers=[number])
            returns += out["returns"]
            lengths += out["lengths"]
        else:
            returns.append(float(episode["reward"].sum()))
            lengths.append(len(episode["reward"]))
    return {"returns": returns, "lengths": lengths}


def evaluates(config: Config, iteration: int) -> bool:
    """True when `iteration` ends with a noise-free evaluation (every `eval_every`, and the last one)."""
    return (iteration + 1) % config.eval_every == 0 or iteration + 1 == config.total_iterations


def evaluate_iteration(state: TrainingState, config: Config, iteration: int) -> dict[str, Any]:
    """Noise-free evaluation every `eval_every` iterations and after the last one ({} otherwise)."""
    if not evaluates(config, iteration):
        return {}
    ev = evaluate(state.model, state.planner, config, num_episodes=config.eval_episodes, seed_key=iteration,
                  device=state.device)
    return {"eval_mean": float(ev["mean"]), "eval_std": float(ev["std"]),
            "eval_returns": [float(x) for x in ev["returns"]]}


def format_row(row: dict[str, Any], total: int) -> str:
    """One iteration's printed line; skipped train steps and missing episodes are said, not hidden."""
    text = f"iter {row['iteration'] + 1:>4}/{total}  episodes {row['episodes']:>4}  "
    if row["train_steps"] == 0:
        text += (f"ALL {row['skipped_steps']} TRAIN STEPS SKIPPED "
                 "(non-finite loss or gradient; weights unchanged)")
    else:
        text += (f"loss {row['loss']:8.2f} (obs {row['obs_loss']:7.2f} rew {row['reward_loss']:6.3f} "
                 f"kl {row['kl_loss']:5.2f}{kl_itself(row)})")
        if row["skipped_steps"]:
            text += f" {row['skipped_steps']} of {row['train_steps'] + row['skipped_steps']} steps skipped"
    text += f"  return {row['collect_return']:8.1f}  {row['seconds']:5.1f}s"
    if "eval_mean" in row:
        text += f"  eval {row['eval_mean']:.1f} ± {row['eval_std']:.1f}"
    if row.get("missing_episodes"):
        text += f"  (without missing episode(s) {', '.join(map(str, row['missing_episodes']))})"
    return text


def check_progress(metrics: list[dict[str, Any]], dataset: EpisodeDataset, config: Config) -> None:
    """Raise TrainingStalled when the last STALL_LIMIT iterations applied no gradient step at all."""
    recent = metrics[-STALL_LIMIT:]
    if len(recent) < STALL_LIMIT or any(r["train_steps"] for r in recent):
        return
    worst, where = max((float(np.abs(ep["reward"]).max()), path.name)
                       for ep, path in zip(dataset.episodes, dataset.episode_paths))
    raise TrainingStalled(
        f"Stopped: the last {STALL_LIMIT} iterations skipped every train step (non-finite loss or gradient), "
        f"so the model learns nothing. Likely causes: huge or non-finite values in the stored episodes "
        f"(largest |reward| {worst:.3g}, in {where}; move bad files out of {dataset.storage.episode_dir}), "
        f"or learning_rate {config.learning_rate:g} too high (lower it with --set learning_rate=...)")


def silent_encoder_warning(metrics: list[dict[str, Any]], config: Config) -> str | None:
    """A one-line warning when the last SILENT_LIMIT iterations' encoder gave every frame the same embedding."""
    recent = [r.get("embed_spread", math.nan) for r in metrics[-SILENT_LIMIT:]]
    if len(recent) < SILENT_LIMIT or not all(spread < SILENT_SPREAD for spread in recent):  # NaN: not measured
        return None
    cure = ("a ReLU that is never positive gets no gradient, so it stays silent: start a new run with --set "
            "encoder_activation=elu" if config.encoder_activation == "relu" else
            "check the stored frames with python -m planet_colab.bench probe --run-dir <run>")
    return (f"Warning: the encoder gives every frame the same embedding (embed_spread {recent[-1]:.1e} in the last "
            f"{SILENT_LIMIT} iterations, below {SILENT_SPREAD:g}): the model sees nothing and plans on the actions "
            f"alone; {cure}")


class OnlineLoop:
    """One training session of a run: its restored state, its metrics so far, its checkpoint schedule."""

    def __init__(self, run: Run, *, device: torch.device | None = None, progress: bool = True,
                 phase: PhaseCallback | None = None) -> None:
        self.run, self.config, self.progress, self.phase = run, run.config, progress, phase
        print(project_episode_ram(self.config)[1])  # warns when the episodes will not fit in RAM
        seeded = run.collect_seed_episodes(progress)
        if seeded:
            print(f"Collected {plural(len(seeded), 'random seed episode')} into {run.storage.episode_dir}")
        self.state = run.restore_training(device)
        self.metrics = list(self.state.metrics)
        run.write_metrics(self.metrics)
        self.checkpoints = Checkpointer(run, self.state)
        self._reported: set[int] = set()
        self._said_silent = False
        self.bar: Any = None
        start, where = self.state.start_iteration, f"{self.state.device}, {self.state.precision}"
        stored = run.storage.num_episodes
        if start == 0 and stored > len(seeded):
            print(f"Starting {run.run_dir} from iteration 1 (no checkpoint yet), reusing its "
                  f"{plural(stored, 'stored episode')} ({self.config.preset} preset, {where})")
        elif start == 0:
            print(f"Starting a new run in {run.run_dir} ({self.config.preset} preset, {where})")
        else:
            print(f"Resumed from checkpoint after iteration {start} of {self.config.total_iterations} "
                  f"({self.config.preset} preset, {plural(stored, 'episode')} stored, {where})")

    def iterate(self, callback: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Iterations start_iteration .. total_iterations-1; Stop (KeyboardInterrupt) saves what is finished."""
        config, start = self.config, self.state.start_iteration
        env = make_env_from_config(config)
        bar = self.bar = tqdm(range(start, config.total_iterations), desc="iterations", initial=start,
                              total=config.total_iterations, disable=not self.progress, dynamic_ncols=True)
        try:
            for it in bar:
                self.checkpoints.begin(it)
                row, dataset = self.iteration(it, env)
                self.say(format_row(row, config.total_iterations))
                if callback is not None:
                    callback(row)
                check_progress(self.metrics, dataset, config)
                silent = silent_encoder_warning(self.metrics, config)
                if silent is not None and not self._said_silent:
                    self._said_silent = True  # once per session: a dead encoder stays dead
                    self.say(silent)
        except KeyboardInterrupt as stop:
            # Colab's Stop button and Ctrl-C: keep what is finished, say so once.
            self.say(("\n" if self.progress else "") + self.checkpoints.save_on_stop(self.metrics))
            stop.reported = True  # type: ignore[attr-defined]
            raise
        finally:
            bar.close()
            env.close()
        return {"model": self.state.model, "planner": self.state.planner, "metrics": self.metrics,
                "start_iteration": start, "run_dir": self.run.run_dir}

    def iteration(self, it: int, env: Any) -> tuple[dict[str, Any], EpisodeDataset]:
        """train → collect → evaluate → checkpoint → log iteration `it`; return its row and dataset."""
        config, t0, c0 = self.config, time.perf_counter(), time.process_time()
        dataset, episodes = training_data(self.run, config, it)
        self.report(episodes, it)
        t_io, t1, c1 = time.perf_counter() - t0, time.perf_counter(), time.process_time()
        with self.train_progress(it) as on_step:
            losses = train_iteration(self.state, dataset, config, it, on_step)
        t_train, t2, c2 = time.perf_counter() - t1, time.perf_counter(), time.process_time()
        self._phase("collect", 0, config.collect_episodes)
        collected = collect_iteration(self.run, env, self.state, config, it, self.progress)
        t_collect, t3, c3 = time.perf_counter() - t2, time.perf_counter(), time.process_time()
        if evaluates(config, it):
            self._phase("evaluate", 0, config.eval_episodes)
        evaluation = evaluate_iteration(self.state, config, it)
        stored_steps = sum(len(ep["reward"]) for ep in dataset.episodes) + sum(collected["lengths"])
        episodes_so_far = config.seed_episodes + (it + 1) * config.collect_episodes
        row: dict[str, Any] = {"iteration": it, "episodes": episodes_so_far,
                               "env_steps": stored_steps * config.action_repeat, **losses,
                               "collect_return": float(np.mean(collected["returns"])),
                               "collect_length": float(np.mean(collected["lengths"])), **evaluation}
        row.update({f"{k}_episodes": v for k, v in episodes.items() if v})
        row.update(train_s=t_train, collect_s=t_collect, eval_s=time.perf_counter() - t3, io_s=t_io,
                   seconds=time.perf_counter() - t0, threads=torch.get_num_threads(),
                   **machine_record(self.state.device))  # what the seconds were measured on (sweep-report)
        # Process CPU seconds beside the wall ones: on a shared machine the wall time includes waiting
        # for a core, the CPU time is the work itself (all of the process's threads).
        c4 = time.process_time()
        row.update(train_cpu_s=c2 - c1, collect_cpu_s=c3 - c2, eval_cpu_s=c4 - c3, cpu_s=c4 - c0)
        self.metrics.append(row)
        t4 = time.perf_counter()
        self.checkpoints.finish(it, self.metrics)
        # Before metrics.jsonl is written, so every row there has it (the checkpoint's own copy of
        # its iteration's row cannot: the time is known only once the file is written).
        row["checkpoint_s"] = time.perf_counter() - t4
        self.run.write_metrics(self.metrics)
        return row, dataset

    def _phase(self, name: str, done: int, total: int) -> None:
        if self.phase is not None:
            self.phase(name, done, total)

    @contextlib.contextmanager
    def train_progress(self, it: int) -> Iterator[Callable[[int], None]]:
        """The train phase, shown: a bar of its gradient steps, or (plain lines) one line in a session's first
        iteration, so the minutes before its first finished line are never silent."""
        total, config = self.config.train_steps, self.config
        self._phase("train", 0, total)
        bar = None
        if self.progress:
            bar = tqdm(total=total, desc=f"iteration {it + 1} train", unit="step", leave=False, dynamic_ncols=True)
        elif it == self.state.start_iteration:
            evaluation = f", evaluate {plural(config.eval_episodes, 'episode')}" if evaluates(config, it) else ""
            self.say(f"Iteration {it + 1} of {config.total_iterations}: train {plural(total, 'gradient step')}, "
                     f"collect {plural(config.collect_episodes, 'episode')}{evaluation} "
                     "(each finished iteration prints one line)")

        def on_step(done: int) -> None:
            if bar is not None:
                bar.update(1)
            self._phase("train", done, total)

        try:
            yield on_step
        finally:
            if bar is not None:
                bar.close()

    def report(self, episodes: dict[str, list[int]], it: int) -> None:
        """Say once per episode number that it went missing, and when a seed episode was collected again."""
        for number in episodes["recollected"]:
            self.say(f"Seed episode {number} was missing (quarantined or moved away); collected it again "
                     "exactly (its seeds derive from its number)")
        new = [n for n in episodes["missing"] if n not in self._reported]
        if new:
            self._reported.update(new)
            self.say(f"Episode(s) {', '.join(map(str, new))} missing (quarantined in "
                     f"{self.run.storage.quarantine_dir}, or moved away): iteration {it + 1} and later train "
                     "without them (metrics: missing_episodes)")

    def say(self, line: str) -> None:
        """Print a line without breaking the progress bar."""
        self.bar.write(line) if self.progress else print(line, flush=True)
