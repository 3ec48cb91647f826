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
from typing import Any, Callable

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
    timers.wrap(CEMPlanner, "plan", "planner (CEM)")  # __call__ and the warm start both go through plan
    timers.wrap(env.env, "step", "env: physics (× action repeat)")
    timers.wrap(env, "render_pixels", "env: rendering")
    timers.wrap(storage, "add_episode", "store episode (npz)")


ACT_TOP = ("filter: encoder", "filter: obs_step", "planner (CEM)", "env: physics (× action repeat)",
           "env: rendering", "store episode (npz)")


Phase = tuple[float, float, dict[str, tuple[float, float]]]  # wall s, CPU s, parts {label: (wall, CPU)}


def _run_phase(hooks: Callable[[Timers], None], fn: Callable[[], Any]) -> tuple[Any, Phase]:
    """`fn()` with the parts `hooks` wraps timed; returns its result and the phase's times."""
    with Timers() as timers:
        hooks(timers)
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return result, (wall, cpu, timers.snapshot())


def _print_phase(name: str, phase: Phase, order: tuple[str, ...]) -> dict[str, Any]:
    """Print a phase's total and its parts (with the unattributed rest), wall and CPU; return them rounded."""
    wall, cpu, parts = phase
    print(f"{name}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    rest_wall = wall - sum(parts.get(label, (0.0, 0.0))[0] for label in order)
    rest_cpu = cpu - sum(parts.get(label, (0.0, 0.0))[1] for label in order)
    rows = [(label, *parts[label]) for label in order if label in parts]
    rows.append(("other (python, glue)", rest_wall, rest_cpu))
    for label, w, c in rows:
        print(f"    {label:34s} {w:8.2f} s {c:8.2f} s CPU  {100 * c / max(cpu, 1e-9):5.1f}% of CPU")
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "parts_cpu_s": {label: round(c, 3) for label, _, c in rows},
            "parts_wall_s": {label: round(w, 3) for label, w, _ in rows}}


def _train_copy(state: Any) -> tuple[Any, Any]:
    """Copies of the live model and Adam state, so comparisons leave the real run untouched."""
    model = copy.deepcopy(state.model)
    optimizer = type(state.optimizer)(model.parameters(), **state.optimizer.defaults)
    optimizer.load_state_dict(state.optimizer.state_dict())
    return model, optimizer


def _compare_batches(state: Any, batches: list[tuple], config: Any, steps: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of `train_step` alone, as `bench train` times it, on: the same real
    batch over and over, a fresh real batch each step, and random pixels (bench train's data)."""
    from planet_colab.losses import train_step

    gen = torch.Generator().manual_seed(0)
    first = batches[0]
    noise = torch.randint(0, 256, first[0].shape, generator=gen).float().div_(255)
    variants = {"same real batch": lambda i: first, "fresh real batch": lambda i: batches[i % len(batches)],
                "random pixels": lambda i: (noise, *first[1:])}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(2):  # two interleaved rounds, so a change of load hits every variant alike
        for name, batch_of in variants.items():
            model, optimizer = _train_copy(state)
            for i in range(steps + 1):
                obs, act, rew = batch_of(i)[:3]
                t0, c0 = time.perf_counter(), time.process_time()
                train_step(model, optimizer, obs, act, rew, state.device, config=config, generator=gen)
                if i:  # the first step of a copy warms its Adam buffers
                    times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    return {name: {"wall_s": statistics.median(w for w, _ in t), "cpu_s": statistics.median(c for _, c in t)}
            for name, t in times.items()}


def _component_costs(state: Any, batch: tuple, config: Any, repeats: int = 2) -> dict[str, float]:
    """Forward + backward CPU seconds of encoder, RSSM filter and decoder alone on the batch's shapes."""
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
            c0 = time.process_time()
            with autocast_context(state.precision, state.device):
                loss = fn()
            loss.backward()
            model.zero_grad(set_to_none=True)
            times.append(time.process_time() - c0)
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
    p.add_argument("--compare-steps", type=int, default=4,
                   help="steps per variant and round of the bench-train-style comparison (0: skip it)")
    args = p.parse_args(argv)
    if args.compare_steps < 0:
        p.error("--compare-steps must be >= 0")

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
        if args.run_dir is not None:
            _copy_run(args.run_dir, Path(tmp))
            config.save(Path(tmp) / "config.json")  # the copy's config, with --set applied
        run = Run.open(tmp, config=config)
        with run.own():
            t0 = time.perf_counter()
            run.collect_seed_episodes(progress=False)
            seed_s = time.perf_counter() - t0  # 0 for a copied run's episodes
            state = run.restore_training()
            it = state.start_iteration
            last = config.seed_episodes + it * config.collect_episodes
            for path in run.storage.episode_paths:  # the iteration collects its own episode(s)
                if episode_number(path) > last:
                    path.unlink()
            print(f"{config.preset} ({config.env_name}, repeat {config.action_repeat}), iteration {it + 1} "
                  f"on {last} episodes, {'checkpoint of ' + str(args.run_dir) if state.checkpoint else 'fresh weights'}"
                  f"; B={config.batch_size} L={config.seq_len} × {config.train_steps} steps, CEM "
                  f"{config.candidates}×{config.optim_iters} top {config.top_k} H{config.horizon}"
                  f"{' warm-started' if config.plan_warm_start else ''}; {state.device} {state.precision}, "
                  f"{threads} torch thread(s), CPU flags {' '.join(flags)}, load {load0:.2f}")
            env = make_env_from_config(config)
            try:
                dataset, _ = training_data(run, config, it)
                losses, train = _run_phase(lambda t: _train_hooks(t, state.model, state.optimizer),
                                           lambda: train_iteration(state, dataset, config, it))
                act_hooks = lambda t: _act_hooks(t, state.model, env, run.storage)  # noqa: E731
                collected, collect = _run_phase(act_hooks, lambda: collect_iteration(
                    run, env, state, config, it, progress=False))
                eval_return = None
                if args.no_eval:
                    evaluation = collect
                else:
                    ev, evaluation = _run_phase(act_hooks, lambda: evaluate(
                        state.model, state.planner, config, num_episodes=1, seed_key="bench", env=env,
                        device=state.device))
                    eval_return = ev["mean"]
            finally:
                env.close()
            loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size,
                                                 collate_fn=collate_episode_batch)
            batches = [b for _, b in zip(range(max(args.compare_steps, 1)), loader)]
            compare = _compare_batches(state, batches, config, args.compare_steps) if args.compare_steps else {}
            components = _component_costs(state, batches[0], config) if args.compare_steps else {}

    steps = losses["train_steps"] + losses["skipped_steps"]
    length = collected["lengths"][0]
    # Per iteration, in wall seconds (what a user waits) and CPU seconds (the work, whatever the load).
    per_iteration = {}
    for k, name in ((0, "wall"), (1, "cpu")):
        eval_share = evaluation[k] * config.eval_episodes / config.eval_every
        collect_all = collect[k] * config.collect_episodes / len(collected["lengths"])
        per_iteration[name] = {"train_s": train[k], "collect_s": collect_all, "eval_share_s": eval_share,
                               "total_s": train[k] + collect_all + eval_share}
    iterations = math.ceil((EPISODES_TARGET - config.seed_episodes) / config.collect_episodes)
    hours = {name: (seed_s + iterations * v["total_s"]) / 3600 for name, v in per_iteration.items()}
    print()
    out = {"train": _print_phase(f"train phase ({steps} steps, {train[1] / max(steps, 1):.3f} s CPU per step)",
                                 train, TRAIN_TOP),
           "collect": _print_phase(f"collect phase (1 episode, {length} agent steps, {1e3 * collect[1] / length:.0f} "
                                   f"ms CPU per step, return {collected['returns'][0]:.1f})", collect, ACT_TOP),
           "eval_episode": _print_phase(
               f"evaluation episode ({'estimated from collect' if args.no_eval else 'played'}; counts "
               f"{config.eval_episodes}/{config.eval_every} times per iteration)", evaluation, ACT_TOP)}
    if compare:
        print(f"train_step alone on copies of these weights (median of {2 * args.compare_steps} steps, CPU | wall): "
              + ", ".join(f"{k} {v['cpu_s']:.3f} | {v['wall_s']:.3f} s" for k, v in compare.items())
              + f"; the train phase: {train[1] / max(steps, 1):.3f} | {train[0] / max(steps, 1):.3f} s per step")
        print("forward + backward alone (CPU): " + ", ".join(f"{k} {v:.3f} s" for k, v in components.items()))
    load1 = os.getloadavg()[0]
    for name, v in per_iteration.items():
        print(f"per iteration ({name}): train {v['train_s']:.1f} s + collect {v['collect_s']:.1f} s + eval share "
              f"{v['eval_share_s']:.1f} s = {v['total_s']:.1f} s; {iterations} iterations to {EPISODES_TARGET} "
              f"episodes ≈ {hours[name]:.2f} h")
    print(f"load {load0:.2f} → {load1:.2f} (wall time includes waiting for a core), {threads} torch thread(s)")
    print(json.dumps({
        "bench": "iteration", "preset": config.preset, "iteration": it, "from_checkpoint": bool(state.checkpoint),
        "threads": threads, "cpu_flags": flags, "precision": state.precision, "device": str(state.device),
        "load1_before": round(load0, 2), "load1_after": round(load1, 2), "train_steps": steps,
        "collect_agent_steps": length, "seed_episodes_s": round(seed_s, 2),
        "per_iteration": {n: {k: round(x, 2) for k, x in v.items()} for n, v in per_iteration.items()},
        "hours_to_100_episodes": {n: round(h, 2) for n, h in hours.items()}, "phases": out,
        "train_step_alone": {k: {n: round(x, 4) for n, x in v.items()} for k, v in compare.items()},
        "fwd_bwd_alone_cpu_s": {k: round(v, 4) for k, v in components.items()}, "eval_return": eval_return,
        "config": {k: getattr(config, k) for k in (
            "batch_size", "seq_len", "train_steps", "candidates", "optim_iters", "top_k", "horizon",
            "plan_warm_start", "plan_warm_std", "action_repeat", "eval_every", "eval_episodes")},
    }))
