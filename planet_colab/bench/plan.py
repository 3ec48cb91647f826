"""Planner benchmark: `python -m planet_colab.bench plan [--repeats N] [--compare] [--no-episode]`.

Times one CEM action at the paper's settings (horizon 12, 1000 candidates, 10 iterations, top 100)
with the paper's WorldModel sizes (random weights: the cost does not depend on them), times the
`pendulum` preset's smaller CEM (500 candidates × 5 refits) too, then collects one whole Pendulum
episode with the pendulum preset's planner, as training does, into a temporary storage
(env steps = agent steps × action repeat). `--compare` also times the generic img_step/reward
path (what a GPU runs instead of cpu_kernels.FastRollout) and fp32. The last line is JSON:
ms_per_action, cpu_ms_per_action (process CPU time; also for the pendulum preset), env_steps_per_s, precision, load. Target on
the 2-core dev box: <= 200 ms per action.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from typing import Any

import torch

from planet_colab.__main__ import OneLineParser


def _time_plan(model: Any, state: Any, planner: Any, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU milliseconds of `repeats` planner calls after one warm-up call."""
    g = torch.Generator().manual_seed(0)
    planner(model, state, g)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        planner(model, state, g)
        times.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.process_time() - c0))
    return times, cpu


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print human lines, then one JSON line."""
    parser = OneLineParser(prog="python -m planet_colab.bench plan")
    parser.add_argument("--repeats", type=int, default=5, help="timed planner calls (after a warm-up)")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16")
    parser.add_argument("--compare", action="store_true", help="also time the generic path and fp32")
    parser.add_argument("--no-episode", action="store_true", help="skip the collected episode")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the dev box and Colab have 2)")
    parser.add_argument("--max-episode-steps", type=int, default=None,
                        help="env steps of the collected episode (default: the preset's whole episode, 200)")
    args = parser.parse_args(argv)

    from planet_colab.agent import collect_experience
    from planet_colab.config import get_config
    from planet_colab.env import make_env_from_config
    from planet_colab.models import WorldModel
    from planet_colab.planner import CEMPlanner
    from planet_colab.precision import resolve_precision
    from planet_colab.storage import EpisodeStorage

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    config = get_config("paper", precision=args.precision)
    pendulum = get_config("pendulum", precision=args.precision)
    torch.manual_seed(0)
    model = WorldModel(1, config).eval()
    precision = resolve_precision(config.precision, torch.device("cpu"))
    planner = CEMPlanner.from_config(config, 1, precision=precision)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load_before:.2f}")
    print(f"{planner}")

    # A belief as the agent would plan from: one filtering step on a random image.
    with torch.inference_mode():
        g = torch.Generator().manual_seed(0)
        obs = torch.rand(1, 64, 64, 3, generator=g) - 0.5
        state = model.obs_step(model.initial_state(1), torch.zeros(1, 1), model.encode(obs), g)[0]

    variants = [("fast", precision, True)]
    if args.compare:
        variants += [("fast", "fp32", True), ("generic", precision, False), ("generic", "fp32", False)]
    results: dict[str, float] = {}
    cpu_results: dict[str, float] = {}  # process CPU time: on a shared machine, wall ≈ this / usable cores
    for name, prec, fast in variants:
        p = CEMPlanner.from_config(config, 1, precision=prec)
        p.fast_rollout = fast
        times, cpu = _time_plan(model, state, p, args.repeats)
        results[f"{name}_{prec}"] = statistics.median(times)
        cpu_results[f"{name}_{prec}"] = statistics.median(cpu)
        print(f"{name:8s} {prec:5s} ms/action: median {statistics.median(times):7.1f}  min {min(times):7.1f}  "
              f"({', '.join(f'{t:.0f}' for t in times)})")
    ms_per_action = results[f"fast_{precision}"]
    pendulum_planner = CEMPlanner.from_config(pendulum, 1, precision=precision)
    times, cpu = _time_plan(model, state, pendulum_planner, args.repeats)
    ms_pendulum, cpu_ms_pendulum = statistics.median(times), statistics.median(cpu)
    print(f"pendulum preset ({pendulum_planner.candidates} candidates × {pendulum_planner.optim_iters}): "
          f"median {ms_pendulum:.1f} ms/action, {cpu_ms_pendulum:.1f} ms CPU")

    env_steps_per_s, steps = None, 0
    if not args.no_episode:
        episode_config = pendulum if args.max_episode_steps is None else pendulum.replace(
            max_episode_steps=args.max_episode_steps, seq_len=2)
        env = make_env_from_config(episode_config)
        with tempfile.TemporaryDirectory(prefix="plan_bench_") as tmp:
            t0 = time.perf_counter()
            out = collect_experience(env, model, pendulum_planner, EpisodeStorage(tmp), 1, episode_config,
                                     iteration=0, progress=False)
            seconds = time.perf_counter() - t0
        env.close()
        steps = out["lengths"][0] * config.action_repeat  # the last step may be cut short by the limit
        env_steps_per_s = steps / seconds
        print(f"episode: {out['lengths'][0]} agent steps = {steps} env steps in {seconds:.1f} s "
              f"-> {env_steps_per_s:.2f} env steps/s ({1e3 * seconds / out['lengths'][0]:.0f} ms per agent step)")

    load_after = os.getloadavg()[0]
    print(f"target <= 200 ms per action at the paper's settings: {'met' if ms_per_action <= 200 else 'not met'}")
    summary = {"bench": "plan", "ms_per_action": round(ms_per_action, 1),
               "cpu_ms_per_action": round(cpu_results[f"fast_{precision}"], 1), "precision": precision,
               "threads": torch.get_num_threads(),
               "horizon": planner.horizon, "candidates": planner.candidates,
               "optim_iters": planner.optim_iters, "top_k": planner.top_k,
               "ms_per_action_pendulum_preset": round(ms_pendulum, 1),
               "cpu_ms_per_action_pendulum_preset": round(cpu_ms_pendulum, 1),
               "env_steps_per_s": None if env_steps_per_s is None else round(env_steps_per_s, 2),
               "episode_env_steps": steps,
               "load_avg_before": round(load_before, 2), "load_avg_after": round(load_after, 2),
               **{f"ms_{k}": round(v, 1) for k, v in results.items()}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
