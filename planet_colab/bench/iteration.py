"""One real iteration, timed by phase: `python -m planet_colab.bench iteration --preset P [--set K=V …]`.

Runs what the online loop runs (planet_colab.train's training_data, train_iteration,
collect_iteration, and `evaluate` for one episode, whose cost counts eval_episodes / eval_every
times per iteration) in a temporary run directory: on the preset's seed episodes, collected first,
or on a copy of `--run-dir`'s episodes and newest checkpoint (the weights and Adam state a real
iteration starts from). Timers wrapped around the package's functions from outside say where each
phase's time goes; a `bench train`-style step (one batch over and over, on copies of the same
weights) is timed beside the real train phase to show what the loop pays that the benchmark does not.
Prints human lines, then one JSON object (seconds per phase, per part, projected hours to 100 episodes).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from planet_colab.__main__ import OneLineParser
from planet_colab.bench.timers import Timers

EPISODES_TARGET = 100
SUMMARY_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16")


def _train_hooks(timers: Timers, model: Any, optimizer: Any) -> None:
    """Time the train phase's parts: batch assembly, preprocessing, model parts, loss, backward, optimizer."""
    import planet_colab.losses as losses
    import planet_colab.train as train
    from planet_colab.dataset import EpisodeDataset

    timers.wrap(EpisodeDataset, "__getitem__", "batch: slice + uint8→float")
    timers.wrap(train, "collate_episode_batch", "batch: collate (stack)")
    timers.wrap(losses, "preprocess_obs", "preprocess (bit depth, noise)")
    timers.wrap(model, "encode", "fwd: encoder")
    timers.wrap(model, "_filter", "fwd: RSSM sequential filter")
    timers.wrap(model, "_prior_stats", "fwd: prior (batched)")
    timers.wrap(model, "decode", "fwd: decoder")
    timers.wrap(model, "reward", "fwd: reward head")
    timers.wrap(losses, "world_model_loss", "loss terms")
    timers.wrap(torch.Tensor, "backward", "backward (all parts)")
    timers.wrap(torch.nn.utils, "clip_grad_norm_", "grad norm + clip")
    timers.wrap(optimizer, "step", "optimizer (Adam)")


TRAIN_TOP = ("batch: slice + uint8→float", "batch: collate (stack)", "preprocess (bit depth, noise)",
             "fwd: encoder", "fwd: RSSM sequential filter", "fwd: prior (batched)", "fwd: decoder",
             "fwd: reward head", "loss terms", "backward (all parts)", "grad norm + clip", "optimizer (Adam)")


def _act_hooks(timers: Timers, model: Any, env: Any, storage: Any) -> None:
    """Time the acting parts: filtering, planning, physics, rendering, storing."""
    from planet_colab.planner import CEMPlanner

    timers.wrap(model, "encode", "filter: encoder")
    timers.wrap(model, "obs_step", "filter: obs_step")
    timers.wrap(CEMPlanner, "__call__", "planner (CEM)")
    timers.wrap(env.env, "step", "env: physics (× action repeat)")
    timers.wrap(env, "render_pixels", "env: rendering")
    timers.wrap(storage, "add_episode", "store episode (npz)")


ACT_TOP = ("filter: encoder", "filter: obs_step", "planner (CEM)", "env: physics (× action repeat)",
           "env: rendering", "store episode (npz)")


def _print_phase(name: str, seconds: float, parts: dict[str, float], order: tuple[str, ...]) -> dict[str, float]:
    """Print a phase's total and its parts (with the unattributed rest); return the parts rounded."""
    print(f"{name}: {seconds:.2f} s")
    out = {}
    for label in order:
        if label in parts:
            out[label] = round(parts[label], 3)
            print(f"    {label:34s} {parts[label]:8.2f} s  {100 * parts[label] / seconds:5.1f}%")
    rest = seconds - sum(parts.get(label, 0.0) for label in order)
    out["other (python, glue)"] = round(rest, 3)
    print(f"    {'other (python, glue)':34s} {rest:8.2f} s  {100 * rest / seconds:5.1f}%")
    return out


def _fixed_batch_steps(state: Any, batch: tuple, config: Any, steps: int, synthetic: bool) -> float:
    """Median seconds of `train_step` on one batch (or random pixels of its shape), as `bench train` times
    it, on copies of the live weights and Adam state so the real run is untouched."""
    from planet_colab.losses import train_step

    model, optimizer = copy.deepcopy(state.model), copy.deepcopy(state.optimizer)
    # deepcopy of the optimizer keeps references to the old parameters: rebuild it on the copy's.
    optimizer = type(state.optimizer)(model.parameters(), **state.optimizer.defaults)
    optimizer.load_state_dict(state.optimizer.state_dict())
    obs, act, rew = batch[:3]
    gen = torch.Generator().manual_seed(0)
    if synthetic:
        obs = torch.randint(0, 256, obs.shape, generator=gen).float().div_(255)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        train_step(model, optimizer, obs, act, rew, state.device, config=config, generator=gen)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _component_costs(state: Any, batch: tuple, config: Any, repeats: int = 2) -> dict[str, float]:
    """Forward + backward seconds of encoder, RSSM filter and decoder alone on the batch's shapes."""
    from planet_colab.models import RSSMState, preprocess_obs
    from planet_colab.precision import autocast_context

    model = copy.deepcopy(state.model).train()
    obs, act = batch[0], batch[1]
    T, B = obs.shape[:2]
    gen = torch.Generator().manual_seed(0)
    pre = preprocess_obs(obs, config.bit_depth, gen).reshape(T * B, 64, 64, 3)
    with torch.no_grad(), autocast_context(state.precision, state.device):
        embed = model.encode(pre).float().reshape(T, B, -1)
    prev = torch.cat([torch.zeros_like(act[:1]), act[:-1]], 0)
    feats = RSSMState(torch.randn(T * B, model.deter_dim), torch.randn(T * B, model.stoch_dim))

    def enc() -> torch.Tensor:
        return model.encode(pre).float().square().mean()

    def filt() -> torch.Tensor:
        return sum(x.float().square().mean() for x in model._filter(embed.requires_grad_(), prev, gen)[:4])

    def dec() -> torch.Tensor:
        return model.decode(feats).float().square().mean()

    out = {}
    for name, fn in (("encoder", enc), ("RSSM filter", filt), ("decoder", dec)):
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            with autocast_context(state.precision, state.device):
                loss = fn()
            loss.backward()
            model.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times[1:])
    return out


def _copy_run(source: Path, target: Path) -> None:
    """Copy a run's episodes and checkpoints (nothing in `source` is written)."""
    for folder in ("episodes", "checkpoints"):
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder,
                            ignore=shutil.ignore_patterns("*.tmp*", ".*"))


def main(argv: list[str] | None = None) -> None:
    """Run one timed iteration of a preset and print the phases, their parts and a final JSON line."""
    p = OneLineParser(prog="python -m planet_colab.bench iteration", description=__doc__)
    p.add_argument("--preset", default="cartpole_swingup")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--run-dir", type=Path, help="copy this run's episodes and newest checkpoint (read only)")
    p.add_argument("--threads", type=int, help="torch threads (default: planet_colab.threads.default_threads)")
    p.add_argument("--no-eval", action="store_true",
                   help="estimate the evaluation's share from the collected episode instead of playing one")
    p.add_argument("--compare-steps", type=int, default=5,
                   help="steps of the bench-train-style comparison (0: skip it)")
    args = p.parse_args(argv)

    from planet_colab.agent import evaluate
    from planet_colab.config import changes_from_args, get_config
    from planet_colab.dataset import collate_episode_batch
    from planet_colab.env import make_env_from_config
    from planet_colab.precision import cpu_flags
    from planet_colab.run import Run
    from planet_colab.storage import episode_number
    from planet_colab.threads import apply_threads
    from planet_colab.train import collect_iteration, train_iteration, training_data

    threads = apply_threads(args.threads)
    changes = changes_from_args(args.overrides)
    if args.run_dir is not None:
        config = Run.open(args.run_dir, new_ok=False).config.replace(**changes)
    else:
        config = get_config(args.preset, **changes)
    flags = sorted(cpu_flags() & set(SUMMARY_FLAGS))
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_iteration_") as tmp:
        seed_s = 0.0
        if args.run_dir is not None:
            _copy_run(args.run_dir, Path(tmp))
        run = Run.open(tmp, config=config)
        with run.own():
            t0 = time.perf_counter()
            run.collect_seed_episodes(progress=False)
            seed_s = time.perf_counter() - t0
            state = run.restore_training()
            it = state.start_iteration
            last = config.seed_episodes + it * config.collect_episodes
            for path in run.storage.episode_paths:  # the iteration collects its own episode(s)
                if episode_number(path) > last:
                    path.unlink()
            print(f"{config.preset} ({config.env_name}, repeat {config.action_repeat}), iteration {it + 1} "
                  f"on {last} episodes, {'checkpoint of ' + str(args.run_dir) if state.checkpoint else 'fresh weights'}"
                  f"; B={config.batch_size} L={config.seq_len} × {config.train_steps} steps, CEM "
                  f"{config.candidates}×{config.optim_iters} top {config.top_k} H{config.horizon}; "
                  f"{state.device} {state.precision}, {threads} torch thread(s), CPU flags {' '.join(flags)}, "
                  f"load {load0:.2f}")
            if seed_s > 1:
                print(f"seed episodes: {config.seed_episodes} collected in {seed_s:.1f} s")

            env = make_env_from_config(config)
            try:
                dataset, _ = training_data(run, config, it)
                with Timers() as timers:
                    _train_hooks(timers, state.model, state.optimizer)
                    t0 = time.perf_counter()
                    losses = train_iteration(state, dataset, config, it)
                    train_s = time.perf_counter() - t0
                train_parts = timers.snapshot()
                with Timers() as timers:
                    _act_hooks(timers, state.model, env, run.storage)
                    t0 = time.perf_counter()
                    collected = collect_iteration(run, env, state, config, it, progress=False)
                    collect_s = time.perf_counter() - t0
                    collect_parts = timers.snapshot()
                    timers.reset()
                    if args.no_eval:
                        eval_episode_s, eval_parts, eval_return = collect_s, collect_parts, None
                    else:
                        t0 = time.perf_counter()
                        ev = evaluate(state.model, state.planner, config, num_episodes=1, seed_key="bench",
                                      env=env, device=state.device)
                        eval_episode_s, eval_parts = time.perf_counter() - t0, timers.snapshot()
                        eval_return = ev["mean"]
            finally:
                env.close()
            batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=config.batch_size,
                                                          collate_fn=collate_episode_batch)))
            steps = losses["train_steps"] + losses["skipped_steps"]
            compare = {}
            if args.compare_steps > 0:
                compare = {"fixed_real_batch_s_per_step": _fixed_batch_steps(state, batch, config,
                                                                             args.compare_steps, False),
                           "fixed_synthetic_batch_s_per_step": _fixed_batch_steps(state, batch, config,
                                                                                  args.compare_steps, True)}
                components = _component_costs(state, batch, config)
            length = collected["lengths"][0]

    eval_share = eval_episode_s * config.eval_episodes / config.eval_every
    collect_total = collect_s * config.collect_episodes / len(collected["lengths"])
    per_iteration = train_s + collect_total + eval_share
    iterations = math.ceil((EPISODES_TARGET - config.seed_episodes) / config.collect_episodes)
    hours = (seed_s + iterations * per_iteration) / 3600  # seed_s is 0 for a copied run's episodes
    print()
    train_out = _print_phase(f"train phase ({steps} steps, {train_s / max(steps, 1):.3f} s/step)", train_s,
                             train_parts, TRAIN_TOP)
    collect_out = _print_phase(f"collect phase (1 episode, {length} agent steps, "
                               f"{1e3 * collect_s / length:.0f} ms/step, return {collected['returns'][0]:.1f})",
                               collect_s, collect_parts, ACT_TOP)
    eval_out = _print_phase(f"evaluation episode ({'estimated from collect' if args.no_eval else 'played'}; "
                            f"× {config.eval_episodes}/{config.eval_every} per iteration = {eval_share:.1f} s)",
                            eval_episode_s, eval_parts, ACT_TOP)
    if compare:
        real = train_s / max(steps, 1)
        print(f"bench-train-style steps on copies of these weights (no batch assembly): real batch "
              f"{compare['fixed_real_batch_s_per_step']:.3f} s/step, random pixels "
              f"{compare['fixed_synthetic_batch_s_per_step']:.3f} s/step; the train phase paid {real:.3f} s/step "
              f"({real / compare['fixed_real_batch_s_per_step']:.2f}× the fixed-batch step)")
        print("fwd+bwd alone: " + ", ".join(f"{k} {v:.3f} s" for k, v in components.items()))
    load1 = os.getloadavg()[0]
    print(f"per iteration: train {train_s:.1f} s + collect {collect_total:.1f} s + eval share {eval_share:.1f} s "
          f"= {per_iteration:.1f} s; {iterations} iterations to {EPISODES_TARGET} episodes ≈ {hours:.1f} h "
          f"(load {load0:.2f} → {load1:.2f}, {threads} thread(s))")
    print(json.dumps({
        "bench": "iteration", "preset": config.preset, "iteration": it, "from_checkpoint": bool(state.checkpoint),
        "threads": threads, "cpu_flags": flags, "precision": state.precision, "device": str(state.device),
        "load1_before": round(load0, 2), "load1_after": round(load1, 2),
        "train_s": round(train_s, 2), "train_steps": steps, "collect_s": round(collect_s, 2),
        "collect_agent_steps": length, "eval_episode_s": round(eval_episode_s, 2),
        "eval_share_s": round(eval_share, 2), "seed_episodes_s": round(seed_s, 2),
        "seconds_per_iteration": round(per_iteration, 2), "hours_to_100_episodes": round(hours, 2),
        "train_parts_s": train_out, "collect_parts_s": collect_out, "eval_parts_s": eval_out,
        **{k: round(v, 4) for k, v in compare.items()},
        **({"fwd_bwd_alone_s": {k: round(v, 4) for k, v in components.items()}} if compare else {}),
        "eval_return": eval_return, "config": {k: getattr(config, k) for k in (
            "batch_size", "seq_len", "train_steps", "candidates", "optim_iters", "top_k", "horizon",
            "action_repeat", "eval_every", "eval_episodes")},
    }))
